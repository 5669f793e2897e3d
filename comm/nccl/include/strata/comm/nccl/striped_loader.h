// Striped loads of replicated pools over NCCL: every rank of a group (TP, or TP x CP) holds the
// same pages in its host pool and needs them all on its GPU. Each rank loads a stripe of the
// pages over its own PCIe link into a device staging buffer, an all-gather completes the stripes
// on every GPU, and a device-side scatter puts each page into its pool slot; batches are
// pipelined (the next batch loads while the last one is exchanged), so the aggregate load
// bandwidth grows with the group size.
// Successive load() calls pipeline too (the staging buffers alternate across calls), so a caller
// may load layer by layer and keep one ready event per layer.
// Ownership: a StripedLoader owns its NCCL communicator, two streams and the staging memory;
// the pools of a job must outlive the job's completion event. Thread-safety: one thread.
// Without NCCL in the build, available() is false and every create() fails with kNotSupported.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "strata/comm/mpi_comm.h"
#include "strata/core/status.h"
#include "strata/kernels/backend.h"

namespace strata::comm::nccl {

// An ncclUniqueId as plain bytes, so that it can travel over MPI without NCCL headers.
struct NcclUniqueIdBytes {
    std::array<std::byte, 128> bytes{};
};

// True when this build has NCCL.
bool available() noexcept;
// A fresh id (rank 0 makes it and broadcasts it). kNotSupported without NCCL.
Result<NcclUniqueIdBytes> newUniqueId();

class StripedLoader {
public:
    virtual ~StripedLoader() = default;
    // Collective over `group` (two or more ranks, each on its own GPU): rank 0 of the group makes
    // the NCCL id and broadcasts it over MPI, then every rank joins (the create() below).
    // kNotSupported without NCCL (on every rank, before any collective); when rank 0 could not
    // make an id, rank 0 returns its error and the others kInternal.
    static Result<std::unique_ptr<StripedLoader>> create(kernels::Backend& backend,
                                                         const MpiComm& group,
                                                         std::size_t staging_bytes);
    // Joins the group of the id (collective over all `nranks` ranks, each on its own GPU: NCCL
    // refuses two ranks on one device). The communicator binds to the device of the back end's
    // memory (the calling thread's current device is restored). `staging_bytes` bounds the
    // device staging memory (two batches). kInvalidArgument for a non-CUDA back end or a bad
    // rank.
    static Result<std::unique_ptr<StripedLoader>> create(kernels::Backend& backend,
                                                         const NcclUniqueIdBytes& id, int rank,
                                                         int nranks, std::size_t staging_bytes);

    // Queues a host-to-device load of job.pages (layers [layer_begin, layer_end)) in which this
    // rank moves only its stripe over PCIe. Collective: every rank calls it, in the same order,
    // with the same geometry, layer range and number of pages, and job.pages[i] naming the same
    // logical page (the same bytes) on every rank. The slot numbers themselves may differ per
    // rank: a rank reads job.pages[i].host_page of its own list for the pages of its stripe and
    // writes job.pages[i].device_page of its own list for every page. Returns the event that
    // completes when all pages are in this GPU's pool. kInvalidArgument for a device-to-host job
    // or a bad job (nothing queued).
    virtual Result<kernels::EventPtr> load(const kernels::CopyJob& job) = 0;
    // This rank's place in the loader's group, and the group's size.
    virtual int rank() const noexcept = 0;
    virtual int size() const noexcept = 0;
    // Pages per rank per pipelined batch (for reports).
    virtual std::size_t batchPagesPerRank(const kernels::CopyJob& job) const noexcept = 0;
};

}  // namespace strata::comm::nccl

// Striped loads of replicated pools over NCCL: every rank of a group (TP, or TP x CP) holds the
// same pages in its host pool and needs them all on its GPU. Each rank loads a stripe of the
// pages over its own PCIe link into a device staging buffer, an all-gather completes the stripes
// on every GPU, and a device-side scatter puts each page into its pool slot; batches are
// pipelined (the next batch loads while the last one is exchanged), so the aggregate load
// bandwidth grows with the group size.
// Ownership: a StripedLoader owns its NCCL communicator, two streams and the staging memory;
// the pools of a job must outlive the job's completion event. Thread-safety: one thread.
// Without NCCL in the build, create() fails with kNotSupported.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "strata/core/status.h"
#include "strata/kernels/backend.h"

namespace strata::kernels {

// An ncclUniqueId as plain bytes, so that it can travel over MPI without NCCL headers.
struct NcclUniqueIdBytes {
    std::array<std::byte, 128> bytes{};
};

// True when this build has NCCL.
bool ncclAvailable() noexcept;
// A fresh id (rank 0 makes it and broadcasts it). kNotSupported without NCCL.
Result<NcclUniqueIdBytes> ncclNewUniqueId();

class StripedLoader {
public:
    virtual ~StripedLoader() = default;
    // Joins the group (collective over all `nranks` ranks, each on its own GPU). The calling
    // thread's current CUDA device must be the back end's device. `staging_bytes` bounds the
    // device staging memory (two batches).
    static Result<std::unique_ptr<StripedLoader>> create(Backend& backend,
                                                         const NcclUniqueIdBytes& id, int rank,
                                                         int nranks, std::size_t staging_bytes);

    // Queues a host-to-device load of job.pages (layers [layer_begin, layer_end)) in which this
    // rank moves only its stripe over PCIe. Collective: every rank calls it with an identical
    // page list and geometry. Returns the event that completes when all pages are in this GPU's
    // pool. kInvalidArgument for a device-to-host job or a bad job (nothing queued).
    virtual Result<EventPtr> load(const CopyJob& job) = 0;
    // Pages per rank per pipelined batch (for reports).
    virtual std::size_t batchPagesPerRank(const CopyJob& job) const noexcept = 0;
};

}  // namespace strata::kernels

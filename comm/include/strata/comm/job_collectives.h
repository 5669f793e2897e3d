// Job-wide collectives used around the cache (not per round): sending the request list of a replica
// from its rank 0 to the others, and summing or maximising report figures over a communicator.
// Thread-safety: collective; every rank of the communicator calls it with the same arguments'
// sizes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "strata/comm/mpi_comm.h"
#include "strata/core/status.h"

namespace strata::comm {

// Broadcasts `bytes` from `root` to every rank of `comm` (resized on receivers).
Status broadcastBytes(const MpiComm& comm, std::vector<std::byte>* bytes, int root);

// Element-wise sums / maxima over every rank of `comm`, in place, on every rank.
Status allReduceSum(const MpiComm& comm, std::span<std::uint64_t> values);
Status allReduceSum(const MpiComm& comm, std::span<double> values);
Status allReduceMax(const MpiComm& comm, std::span<double> values);

// Gathers one double per rank to every rank (e.g. sync samples summaries).
Status allGather(const MpiComm& comm, double mine, std::vector<double>* all);

}  // namespace strata::comm

// All-gather of variable-length byte strings over a communicator (private to comm/ucx).
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "strata/comm/mpi_comm.h"
#include "strata/core/status.h"

namespace strata::comm::ucx {

// Every rank's `mine`, indexed by rank of `comm`. Collective.
Result<std::vector<std::vector<std::byte>>> allGatherBytes(const MpiComm& comm,
                                                           std::span<const std::byte> mine);

// Sum over `comm` of `failed` (0 or 1): every rank learns how many ranks failed. Collective.
Result<int> countFailures(const MpiComm& comm, bool failed);

}  // namespace strata::comm::ucx

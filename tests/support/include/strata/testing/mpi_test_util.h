// Helpers for MPI tests (binaries linked with strata_test_mpi_main, which owns MPI init/finalize).
// Thread-safety: call from the test's main thread; the helpers are collectives over world.
#pragma once

#include <gtest/gtest.h>

#include <string>

namespace strata::testing {

int worldRank();
int worldSize();

// Collective over MPI_COMM_WORLD: true iff `ok` is true on every rank. Use it before branching on a
// per-rank outcome so that every rank takes the same branch.
bool allRanks(bool ok);

// Collective: a fresh (emptied) directory path under the temporary directory, named by rank 0
// ("<prefix>-<its pid>") and the same on every rank. The caller creates and removes it.
std::string sharedTempDir(const std::string& prefix);

}  // namespace strata::testing

// Skips the test (on every rank alike) when the world has fewer than `n` ranks.
#define STRATA_SKIP_BELOW_RANKS(n)                                           \
    do {                                                                     \
        if (::strata::testing::worldSize() < (n)) {                          \
            GTEST_SKIP() << "needs at least " << (n) << " ranks, world has " \
                         << ::strata::testing::worldSize();                  \
        }                                                                    \
    } while (0)

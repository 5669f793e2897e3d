#include "strata/testing/mpi_test_util.h"

#include <mpi.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

namespace strata::testing {

int worldRank() {
    int r = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

int worldSize() {
    int n = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    return n;
}

bool allRanks(bool ok) {
    int mine = ok ? 1 : 0;
    int all = 0;
    MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
    return all != 0;
}

std::string sharedTempDir(const std::string& prefix) {
    char path[512] = {};
    if (worldRank() == 0) {
        const auto dir =
            std::filesystem::temp_directory_path() / (prefix + "-" + std::to_string(::getpid()));
        std::filesystem::remove_all(dir);
        std::snprintf(path, sizeof path, "%s", dir.c_str());
    }
    MPI_Bcast(path, sizeof path, MPI_CHAR, 0, MPI_COMM_WORLD);
    return path;
}

}  // namespace strata::testing

// gtest main for MPI tests: MPI through MpiContext (so core::fatal aborts the job), full gtest
// output on rank 0 only, failures of other ranks printed with their rank, and one exit code agreed
// by all.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>

#include "strata/comm/mpi_context.h"

namespace {

// Replaces the default printer on ranks > 0: prints only failed assertions, tagged with the rank.
class FailurePrinter : public ::testing::EmptyTestEventListener {
public:
    explicit FailurePrinter(int rank) : rank_(rank) {}

    void OnTestPartResult(const ::testing::TestPartResult& result) override {
        if (!result.failed()) return;
        std::fprintf(stderr, "[rank %d] %s:%d: failure\n%s\n", rank_,
                     result.file_name() ? result.file_name() : "?", result.line_number(),
                     result.message());
        std::fflush(stderr);
    }
    void OnTestEnd(const ::testing::TestInfo& info) override {
        if (!info.result()->Failed()) return;
        std::fprintf(stderr, "[rank %d] FAILED %s.%s\n", rank_, info.test_suite_name(),
                     info.name());
        std::fflush(stderr);
    }

private:
    int rank_;
};

}  // namespace

int main(int argc, char** argv) {
    auto ctx = strata::comm::MpiContext::create(&argc, &argv);
    if (!ctx.isOk()) {
        std::fprintf(stderr, "mpi test main: %s\n", ctx.status().toString().c_str());
        return 1;
    }
    ::testing::InitGoogleTest(&argc, argv);
    const int rank = ctx->worldRank();
    if (rank > 0) {
        auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
        delete listeners.Release(listeners.default_result_printer());
        listeners.Append(new FailurePrinter(rank));
    }
    const int local_failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
    int any_failed = local_failed;
    MPI_Allreduce(&local_failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0 && any_failed != 0 && local_failed == 0) {
        std::fprintf(stderr, "mpi test main: a test failed on another rank (see [rank N] lines)\n");
    }
    return any_failed;
}

#include "strata/comm/mpi_context.h"

#include <mpi.h>

#include <cstdio>
#include <utility>

#include "mpi_error.h"
#include "strata/core/check.h"
#include "strata/core/log.h"

namespace strata::comm {
namespace {

MpiContext::ThreadLevel fromMpiLevel(int level) {
    switch (level) {
        case MPI_THREAD_MULTIPLE:
            return MpiContext::ThreadLevel::kMultiple;
        case MPI_THREAD_SERIALIZED:
            return MpiContext::ThreadLevel::kSerialized;
        case MPI_THREAD_FUNNELED:
            return MpiContext::ThreadLevel::kFunneled;
        default:
            return MpiContext::ThreadLevel::kSingle;
    }
}

// Runs from core::fatal() after it logged the message: take the whole job down, because a rank
// that exits alone leaves its peers blocked in the next collective forever.
void abortJob(const std::string& message) {
    if (!MpiContext::isActive()) return;  // core::fatal falls back to std::abort()
    int rank = -1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    std::fprintf(stderr, "strata: fatal error on rank %d, calling MPI_Abort: %s\n", rank,
                 message.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

}  // namespace

const char* threadLevelName(MpiContext::ThreadLevel level) noexcept {
    switch (level) {
        case MpiContext::ThreadLevel::kSingle:
            return "single";
        case MpiContext::ThreadLevel::kFunneled:
            return "funneled";
        case MpiContext::ThreadLevel::kSerialized:
            return "serialized";
        case MpiContext::ThreadLevel::kMultiple:
            return "multiple";
    }
    return "unknown";
}

bool MpiContext::isActive() noexcept {
    int initialized = 0;
    int finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    return initialized != 0 && finalized == 0;
}

Result<MpiContext> MpiContext::create(int* argc, char*** argv) {
    int initialized = 0;
    int finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (finalized != 0) {
        return STRATA_ERROR(StatusCode::kFailedPrecondition, "mpi has already been finalised");
    }
    bool owns = false;
    int provided = MPI_THREAD_SINGLE;
    if (initialized == 0) {
        int rc = MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided);
        if (rc != MPI_SUCCESS) {
            Status s = detail::mpiStatus(rc, "MPI_Init_thread", __FILE__, __LINE__);
            return Status(StatusCode::kUnavailable, s.message());
        }
        owns = true;
    } else {
        MPI_Query_thread(&provided);
    }
    // From here on MPI errors on world (and communicators split from it) come back as codes.
    STRATA_MPI_RETURN_IF_ERROR(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    int rank = 0;
    int size = 1;
    STRATA_MPI_RETURN_IF_ERROR(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    STRATA_MPI_RETURN_IF_ERROR(MPI_Comm_size(MPI_COMM_WORLD, &size));
    MpiContext ctx(owns, fromMpiLevel(provided), rank, size);
    if (ctx.thread_level_ == ThreadLevel::kSingle) {
        // ctx's destructor finalises MPI if this call initialised it.
        return STRATA_ERROR(StatusCode::kNotSupported,
                            "mpi provides only MPI_THREAD_SINGLE; strata needs at least "
                            "MPI_THREAD_FUNNELED");
    }
    core::setLogRank(rank);
    core::setFatalHandler(&abortJob);
    if (owns && ctx.thread_level_ != ThreadLevel::kMultiple) {
        core::logger("comm").warn("mpi provides thread level {}, not multiple",
                                  threadLevelName(ctx.thread_level_));
    }
    return ctx;
}

MpiContext::MpiContext(MpiContext&& other) noexcept
    : owns_(std::exchange(other.owns_, false)),
      thread_level_(other.thread_level_),
      world_rank_(other.world_rank_),
      world_size_(other.world_size_) {}

MpiContext& MpiContext::operator=(MpiContext&& other) noexcept {
    if (this != &other) {
        finalize();
        owns_ = std::exchange(other.owns_, false);
        thread_level_ = other.thread_level_;
        world_rank_ = other.world_rank_;
        world_size_ = other.world_size_;
    }
    return *this;
}

MpiContext::~MpiContext() { finalize(); }

void MpiContext::finalize() noexcept {
    if (!owns_) return;
    owns_ = false;
    if (!isActive()) return;
    // MPI_Abort is unusable after MPI_Finalize: fall back to std::abort() first.
    core::setFatalHandler(nullptr);
    int rc = MPI_Finalize();
    if (rc != MPI_SUCCESS) {
        std::fprintf(stderr, "strata: MPI_Finalize failed with code %d\n", rc);
    }
}

}  // namespace strata::comm

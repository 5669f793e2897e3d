// MpiContext: RAII owner of MPI_Init_thread / MPI_Finalize for one process, plus the job-wide
// failure policy (core::fatal -> MPI_Abort, MPI errors returned as Status on MPI_COMM_WORLD).
// Ownership: finalises MPI only if it initialised it. Thread-safety: create and destroy on the main
// thread, before and after every other MPI user.
#pragma once

#include "strata/core/status.h"

namespace strata::comm {

class MpiContext {
public:
    // Ordered as MPI's levels: kSingle < kFunneled < kSerialized < kMultiple.
    enum class ThreadLevel { kSingle, kFunneled, kSerialized, kMultiple };

    // Initialises MPI requesting MPI_THREAD_MULTIPLE (argc/argv may be null). Accepts FUNNELED,
    // SERIALIZED or MULTIPLE and records what was provided; SINGLE fails with kNotSupported.
    // If MPI is already initialised, returns a non-owning context (it will not finalise).
    // On success: world's error handler is MPI_ERRORS_RETURN, core::fatal() calls
    // MPI_Abort(MPI_COMM_WORLD, 1), and the log pattern shows the world rank.
    // Fails with kFailedPrecondition if MPI was already finalised, kUnavailable if init fails.
    static Result<MpiContext> create(int* argc = nullptr, char*** argv = nullptr);

    MpiContext(MpiContext&& other) noexcept;
    MpiContext& operator=(MpiContext&& other) noexcept;
    MpiContext(const MpiContext&) = delete;
    MpiContext& operator=(const MpiContext&) = delete;
    // Finalises MPI if this context initialised it (and restores the default fatal handler).
    ~MpiContext();

    ThreadLevel threadLevel() const noexcept { return thread_level_; }
    bool ownsMpi() const noexcept { return owns_; }
    int worldRank() const noexcept { return world_rank_; }
    int worldSize() const noexcept { return world_size_; }

    // Whether MPI is initialised and not yet finalised in this process.
    static bool isActive() noexcept;

private:
    MpiContext(bool owns, ThreadLevel level, int rank, int size) noexcept
        : owns_(owns), thread_level_(level), world_rank_(rank), world_size_(size) {}
    void finalize() noexcept;

    bool owns_ = false;
    ThreadLevel thread_level_ = ThreadLevel::kSingle;
    int world_rank_ = 0;
    int world_size_ = 1;
};

const char* threadLevelName(MpiContext::ThreadLevel level) noexcept;

}  // namespace strata::comm

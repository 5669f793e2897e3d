// Private to controller/: the background thread that runs every page-store call (existence
// queries, reads into host pages, writes from host pages) so that the scheduler thread never
// blocks on storage. Prefetch work goes before backups. Page stores are touched by this thread
// only, which is what HDF5's serialised library wants.
// Thread-safety: submit() and waitForCompletion() from the scheduler thread; jobs run in order of
// priority then submission on the worker.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace strata::controller {

class StorageWorker {
public:
    StorageWorker();
    // Runs every queued job, then joins (pages being read or written must not be freed under it).
    ~StorageWorker();
    StorageWorker(const StorageWorker&) = delete;
    StorageWorker& operator=(const StorageWorker&) = delete;

    // Queues a job; urgent jobs (prefetch) run before non-urgent ones (backups).
    void submit(bool urgent, std::function<void()> job);
    // Runs `job` on the worker and waits for it (used where the scheduler must know the outcome
    // before going on, e.g. storing pages that are about to be freed).
    void runAndWait(std::function<void()> job);
    // Blocks until at least one job completes after this call, the queue is empty, or max elapses.
    void waitForCompletion(std::chrono::milliseconds max);
    // Blocks until no job is queued or running.
    void waitIdle();
    bool idle();

private:
    void run();
    std::mutex mu_;
    std::condition_variable cv_;       // new work or stop
    std::condition_variable done_cv_;  // a job finished
    std::deque<std::function<void()>> urgent_, normal_;
    bool busy_ = false;
    bool stop_ = false;
    std::uint64_t completed_ = 0;
    std::thread thread_;
};

}  // namespace strata::controller

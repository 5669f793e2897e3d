#include "storage_worker.h"

#include <future>

namespace strata::controller {

StorageWorker::StorageWorker() : thread_([this] { run(); }) {}

StorageWorker::~StorageWorker() {
    {
        std::lock_guard lock(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
}

void StorageWorker::submit(bool urgent, std::function<void()> job) {
    {
        std::lock_guard lock(mu_);
        (urgent ? urgent_ : normal_).push_back(std::move(job));
    }
    cv_.notify_all();
}

void StorageWorker::runAndWait(std::function<void()> job) {
    std::promise<void> done;
    auto f = done.get_future();
    submit(true, [&] {
        job();
        done.set_value();
    });
    f.wait();
}

void StorageWorker::waitForCompletion(std::chrono::milliseconds max) {
    std::unique_lock lock(mu_);
    const std::uint64_t seen = completed_;
    done_cv_.wait_for(lock, max, [&] {
        return completed_ != seen || (urgent_.empty() && normal_.empty() && !busy_);
    });
}

void StorageWorker::waitIdle() {
    std::unique_lock lock(mu_);
    done_cv_.wait(lock, [&] { return urgent_.empty() && normal_.empty() && !busy_; });
}

bool StorageWorker::idle() {
    std::lock_guard lock(mu_);
    return urgent_.empty() && normal_.empty() && !busy_;
}

void StorageWorker::run() {
    std::unique_lock lock(mu_);
    for (;;) {
        cv_.wait(lock, [&] { return stop_ || !urgent_.empty() || !normal_.empty(); });
        if (urgent_.empty() && normal_.empty()) return;  // stop_ and drained
        auto& q = urgent_.empty() ? normal_ : urgent_;
        std::function<void()> job = std::move(q.front());
        q.pop_front();
        busy_ = true;
        lock.unlock();
        job();
        lock.lock();
        busy_ = false;
        ++completed_;
        done_cv_.notify_all();
    }
}

}  // namespace strata::controller

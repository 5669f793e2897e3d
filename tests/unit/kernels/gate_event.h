// Gate: an event a test opens by hand, so a CPU stream that waits for it is held at a known point
// without sleeps; its wait() then returns the status it was made with (a failed dependency).
#pragma once

#include <condition_variable>
#include <mutex>
#include <utility>

#include "strata/kernels/backend.h"

namespace strata::kernels::testing {

class Gate final : public Event {
public:
    explicit Gate(Status result = Status::ok()) : result_(std::move(result)) {}
    void open() {
        {
            std::lock_guard<std::mutex> lock(mu_);
            open_ = true;
        }
        cv_.notify_all();
    }
    bool query() override {
        std::lock_guard<std::mutex> lock(mu_);
        return open_;
    }
    Status wait() override {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return open_; });
        return result_;
    }
    Status blockStream(void*) override { return wait(); }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    bool open_ = false;
    Status result_;
};

}  // namespace strata::kernels::testing

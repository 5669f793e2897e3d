// The transport's progress: the background thread that serves incoming messages, the waits of
// callers (which progress the worker themselves and sleep on a condition variable woken by
// completions, never in a busy loop), and the ordered shutdown.
#include <poll.h>

#include <algorithm>
#include <utility>

#include "transport_impl.h"

namespace strata::comm::ucx {

using Impl = UcxTransport::Impl;

void Impl::notify() {
    std::lock_guard lk(wait_mu);
    wait_cv.notify_all();
}

void Impl::idleWait() {
    std::unique_lock lk(wait_mu);
    wait_cv.wait_for(lk, std::chrono::microseconds(200));
}

void Impl::progressLoop() {
    while (!stop.load(std::memory_order_acquire)) {
        connectWanted();
        closeRetired();  // those no thread uses any more
        bool any = false;
        while (ucp_worker_progress(worker.get()) != 0) any = true;
        if (any) notify();
        const ucs_status_t st = ucp_worker_arm(worker.get());
        if (st == UCS_ERR_BUSY) continue;
        if (st != UCS_OK) {
            log().error("ucp_worker_arm: {}", ucs_status_string(st));
        }
        pollfd pfd{event_fd, POLLIN, 0};
        ::poll(&pfd, 1, 100);
    }
}

bool Impl::waitUntil(const std::function<bool()>& pred, Clock::time_point deadline) {
    for (;;) {
        if (pred()) return true;
        if (Clock::now() >= deadline) return pred();
        if (ucp_worker_progress(worker.get()) == 0) idleWait();
    }
}

void Impl::shutdown() {
    if (!worker) return;
    // Stop the progress thread first: from here on handlers run only inside this thread's
    // own progress calls, so no other thread holds an endpoint while it is closed.
    stop.store(true, std::memory_order_release);
    ucp_worker_signal(worker.get());
    if (progress_thread.joinable()) progress_thread.join();
    // Healthy endpoints close gracefully (flushing what was sent); failed, backing-off and
    // retired ones are force-closed, since a stopped peer never answers a flush. All at once,
    // bounded by close_timeout.
    std::vector<std::pair<ucp_ep_h, bool>> eps;  // endpoint, force
    {
        std::lock_guard connect_lk(connect_mu);
        std::lock_guard lk(peers_mu);
        const auto now = Clock::now();
        for (auto& p : peers) {
            if (p->ep == nullptr) continue;
            eps.emplace_back(p->ep->ep, p->failed || now < p->backoff_until);
            p->ep.reset();
        }
        for (const auto& e : retired) eps.emplace_back(e->ep, true);
        retired.clear();
    }
    std::vector<void*> reqs;
    for (const auto& [ep, force] : eps) {
        ucp_request_param_t param{};
        param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
        param.flags = force ? UCP_EP_CLOSE_FLAG_FORCE : 0;
        void* req = ucp_ep_close_nbx(ep, &param);
        if (req != nullptr && !UCS_PTR_IS_ERR(req)) reqs.push_back(req);
    }
    // Wait, bounded, until every close and every request of ours completed.
    const auto deadline = Clock::now() + options.close_timeout;
    auto pending = [&] {
        return std::count_if(
                   reqs.begin(), reqs.end(),
                   [](void* r) { return ucp_request_check_status(r) == UCS_INPROGRESS; }) +
               outstanding.load();
    };
    while (pending() > 0 && Clock::now() < deadline) {
        if (ucp_worker_progress(worker.get()) == 0) idleWait();
    }
    const auto left = pending();
    for (void* req : reqs) ucp_request_free(req);
    // UCX 1.13 aborts in ucp_worker_destroy when an endpoint still has requests (one whose
    // peer stopped or vanished, or whose transfer a timeout abandoned). The process keeps
    // running (an engine) or is about to exit: leaving the worker and context to it is the
    // lesser harm.
    if (left > 0 || counters.timeouts > 0 || counters.peer_failures > 0) {
        log().info(
            "ucx transport closed with {} operation(s) unfinished, {} timeout(s) and "
            "{} failed endpoint(s): its worker is not destroyed",
            left, counters.timeouts.load(), counters.peer_failures.load());
        (void)worker.release();
        (void)context.release();
        return;
    }
    worker.reset();
    context.reset();
}

}  // namespace strata::comm::ucx

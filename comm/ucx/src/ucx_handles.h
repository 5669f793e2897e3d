// Move-only owners of UCX objects (private to comm/ucx): context, worker, memory registration,
// remote key, packed remote key buffer. Endpoints are closed by the transport, which must progress
// the worker while they close. Each close logs a failure and never throws.
#pragma once

#include <ucp/api/ucp.h>

#include <utility>

#include "strata/core/log.h"
#include "strata/core/unique_handle.h"

namespace strata::comm::ucx {

inline spdlog::logger& log() { return core::logger("comm"); }

struct ContextTraits {
    using Handle = ucp_context_h;
    static Handle invalid() noexcept { return nullptr; }
    static void close(Handle h) noexcept { ucp_cleanup(h); }
};
using ContextOwner = core::UniqueHandle<ContextTraits>;

struct WorkerTraits {
    using Handle = ucp_worker_h;
    static Handle invalid() noexcept { return nullptr; }
    static void close(Handle h) noexcept { ucp_worker_destroy(h); }
};
using WorkerOwner = core::UniqueHandle<WorkerTraits>;

struct RkeyTraits {
    using Handle = ucp_rkey_h;
    static Handle invalid() noexcept { return nullptr; }
    static void close(Handle h) noexcept { ucp_rkey_destroy(h); }
};
using RkeyOwner = core::UniqueHandle<RkeyTraits>;

struct RkeyBufferTraits {
    using Handle = void*;
    static Handle invalid() noexcept { return nullptr; }
    static void close(Handle h) noexcept { ucp_rkey_buffer_release(h); }
};
using RkeyBufferOwner = core::UniqueHandle<RkeyBufferTraits>;

// A registration needs its context to unmap. The context must outlive it.
class MemOwner {
public:
    MemOwner() noexcept = default;
    MemOwner(ucp_context_h ctx, ucp_mem_h mem) noexcept : ctx_(ctx), mem_(mem) {}
    MemOwner(MemOwner&& o) noexcept
        : ctx_(std::exchange(o.ctx_, nullptr)), mem_(std::exchange(o.mem_, nullptr)) {}
    MemOwner& operator=(MemOwner&& o) noexcept {
        if (this != &o) {
            reset();
            ctx_ = std::exchange(o.ctx_, nullptr);
            mem_ = std::exchange(o.mem_, nullptr);
        }
        return *this;
    }
    MemOwner(const MemOwner&) = delete;
    MemOwner& operator=(const MemOwner&) = delete;
    ~MemOwner() { reset(); }

    ucp_mem_h get() const noexcept { return mem_; }
    void reset() noexcept {
        if (mem_ != nullptr) {
            const ucs_status_t st = ucp_mem_unmap(ctx_, mem_);
            if (st != UCS_OK) log().warn("ucp_mem_unmap: {}", ucs_status_string(st));
        }
        ctx_ = nullptr;
        mem_ = nullptr;
    }

private:
    ucp_context_h ctx_ = nullptr;
    ucp_mem_h mem_ = nullptr;
};

}  // namespace strata::comm::ucx

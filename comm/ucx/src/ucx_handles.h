// Move-only owners of UCX objects (private to comm/ucx): context and worker. Endpoints are closed
// by the transport, which must progress the worker while they close.
#pragma once

#include <ucp/api/ucp.h>

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

}  // namespace strata::comm::ucx

#include "strata/core/check.h"

#include <atomic>
#include <cstdlib>

#include "strata/core/log.h"

namespace strata::core {
namespace {
std::atomic<FatalHandler> g_handler{nullptr};
}  // namespace

void setFatalHandler(FatalHandler handler) noexcept { g_handler.store(handler); }

void fatal(const std::string& message) {
    logAlways("core", spdlog::level::critical, message);
    if (FatalHandler h = g_handler.load()) h(message);
    std::abort();
}

}  // namespace strata::core

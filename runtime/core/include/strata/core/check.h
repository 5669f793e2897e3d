// Broken invariants (bugs, never bad input): log and bring the whole job down.
// The fatal handler defaults to std::abort(); comm/ installs one that calls MPI_Abort so that a
// rank never exits alone and leaves its peers hung. Thread-safety: the handler is set once at
// start.
#pragma once

#include <fmt/format.h>

#include <string>

namespace strata::core {

using FatalHandler = void (*)(const std::string& message);

// Installs the handler run by fatal(); nullptr restores the default (std::abort).
void setFatalHandler(FatalHandler handler) noexcept;

// Logs the message (logger "core", level critical) and runs the fatal handler. Never returns.
[[noreturn]] void fatal(const std::string& message);

}  // namespace strata::core

#define STRATA_CHECK(cond, ...)                                                                  \
    do {                                                                                         \
        if (!(cond)) [[unlikely]] {                                                              \
            ::strata::core::fatal(::fmt::format("check failed: {} ({}:{}): {}", #cond, __FILE__, \
                                                __LINE__, ::fmt::format(__VA_ARGS__)));          \
        }                                                                                        \
    } while (0)

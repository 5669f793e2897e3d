// Logging: one spdlog logger per folder ("core", "kernels", "pools", "io", "comm", "controller",
// "runtime"), all sharing one sink whose pattern carries "[r<rank>]".
// Thread-safety: logger() and setRank() are safe from any thread; loggers are spdlog's (mt).
#pragma once

#include <spdlog/spdlog.h>

#include <string_view>

namespace strata::core {

// Returns the logger for a folder, creating it on first use. Never null.
spdlog::logger& logger(std::string_view folder);

// Sets the rank shown in every log line ("[r<rank>]"); -1 shows "[r-]". Call once after MPI init.
void setLogRank(int rank);

// Sets the level of every logger (e.g. from STRATA_LOG_LEVEL or --log-level).
void setLogLevel(spdlog::level::level_enum level);

// Parses "trace|debug|info|warn|error|off"; false when the name is unknown.
bool parseLogLevel(std::string_view name, spdlog::level::level_enum* level);

}  // namespace strata::core

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

// Logs `message` through logger `folder` at `level` whatever the level set by setLogLevel, even
// "off", and flushes: for the error that ends a process (a run that stops must say why).
void logAlways(std::string_view folder, spdlog::level::level_enum level, std::string_view message);

// Parses "trace|debug|info|warn|error|off"; false when the name is unknown.
bool parseLogLevel(std::string_view name, spdlog::level::level_enum* level);

}  // namespace strata::core

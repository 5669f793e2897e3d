// What strata-run says about itself and where it runs: version, commit, host name, time stamps.
// Thread-safety: pure functions (hostName() and utcTimestamp() call the C library).
#pragma once

#include <chrono>
#include <string>
#include <string_view>

namespace strata::app {

// The library's version ("0.1.0").
std::string_view versionString();
// The commit of the source tree it was built from ("1a2b3c4d5e6f", "-dirty" appended when the
// tracked files differed from it; "unknown" when built outside a git checkout).
std::string_view gitHash();
// "strata-run 0.1.0 (git 1a2b3c4d5e6f)": what --version prints.
std::string versionLine(std::string_view program = "strata-run");
// This machine's host name ("unknown" when it cannot be read).
std::string hostName();
// ISO 8601 in UTC, seconds: "2026-12-03T15:25:38Z".
std::string utcTimestamp(std::chrono::system_clock::time_point t);

}  // namespace strata::app

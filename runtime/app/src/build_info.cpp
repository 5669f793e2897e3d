#include "strata/app/build_info.h"

#include <fmt/format.h>
#include <unistd.h>

#include <ctime>

#include "git_hash.h"  // generated at build time (cmake/git_hash.cmake)
#include "strata/version.h"

namespace strata::app {

std::string_view versionString() { return STRATA_VERSION; }

std::string_view gitHash() { return STRATA_GIT_HASH; }

std::string versionLine(std::string_view program) {
    return fmt::format("{} {} (git {})", program, versionString(), gitHash());
}

std::string hostName() {
    char name[256] = {};
    if (::gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "unknown";
    return name;
}

std::string utcTimestamp(std::chrono::system_clock::time_point t) {
    const std::time_t seconds = std::chrono::system_clock::to_time_t(t);
    std::tm tm{};
    ::gmtime_r(&seconds, &tm);
    char text[32] = {};
    std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return text;
}

}  // namespace strata::app

#include "strata/core/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <mutex>
#include <string>

namespace strata::core {
namespace {

struct LogState {
    std::mutex mutex;
    spdlog::sink_ptr sink;
    int rank = -1;
    spdlog::level::level_enum level = spdlog::level::info;
};

LogState& state() {
    static LogState* s = [] {
        auto* st = new LogState();  // leaked on purpose: loggers are used during static teardown
        st->sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
        return st;
    }();
    return *s;
}

std::string patternFor(int rank) {
    std::string r = rank < 0 ? "-" : std::to_string(rank);
    return "[%H:%M:%S.%e] [r" + r + "] [%n] [%^%l%$] %v";
}

}  // namespace

spdlog::logger& logger(std::string_view folder) {
    std::string name(folder);
    if (auto existing = spdlog::get(name)) return *existing;
    auto& st = state();
    std::lock_guard lock(st.mutex);
    if (auto existing = spdlog::get(name)) return *existing;
    auto lg = std::make_shared<spdlog::logger>(name, st.sink);
    lg->set_pattern(patternFor(st.rank));
    lg->set_level(st.level);
    spdlog::register_logger(lg);
    return *lg;
}

void setLogRank(int rank) {
    auto& st = state();
    std::lock_guard lock(st.mutex);
    st.rank = rank;
    spdlog::apply_all(
        [&](const std::shared_ptr<spdlog::logger>& lg) { lg->set_pattern(patternFor(rank)); });
}

void setLogLevel(spdlog::level::level_enum level) {
    auto& st = state();
    std::lock_guard lock(st.mutex);
    st.level = level;
    spdlog::apply_all([&](const std::shared_ptr<spdlog::logger>& lg) { lg->set_level(level); });
}

void logAlways(std::string_view folder, spdlog::level::level_enum level, std::string_view message) {
    spdlog::logger& lg = logger(folder);
    if (lg.should_log(level)) {
        lg.log(level, "{}", message);
        lg.flush();
        return;
    }
    // Below the logger's level: straight to the shared sink, whose formatter is the loggers'
    // pattern (set_pattern sets it on the sink) and whose own level is left at trace.
    const spdlog::details::log_msg msg(spdlog::string_view_t(lg.name()), level,
                                       spdlog::string_view_t(message.data(), message.size()));
    auto& st = state();
    st.sink->log(msg);
    st.sink->flush();
}

bool parseLogLevel(std::string_view name, spdlog::level::level_enum* level) {
    static constexpr std::pair<std::string_view, spdlog::level::level_enum> kLevels[] = {
        {"trace", spdlog::level::trace}, {"debug", spdlog::level::debug},
        {"info", spdlog::level::info},   {"warn", spdlog::level::warn},
        {"error", spdlog::level::err},   {"off", spdlog::level::off},
    };
    for (const auto& [n, l] : kLevels) {
        if (n == name) {
            *level = l;
            return true;
        }
    }
    return false;
}

}  // namespace strata::core

#include "strata/comm/round_watchdog.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>

namespace strata::comm {
namespace {

RoundWatchdog::Clock::duration seconds(double s) {
    return std::chrono::duration_cast<RoundWatchdog::Clock::duration>(
        std::chrono::duration<double>(s));
}

}  // namespace

Status validateRoundWatchdogOptions(const RoundWatchdogOptions& options) {
    if (!std::isfinite(options.timeout_s) || options.timeout_s < 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "round timeout ({} s) must be a non-negative number (0 waits forever)",
                            options.timeout_s);
    }
    if (!std::isfinite(options.warn_interval_s) || options.warn_interval_s <= 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "round timeout warning interval ({} s) must be positive",
                            options.warn_interval_s);
    }
    return Status::ok();
}

double roundNoticeAfterSeconds(const RoundWatchdogOptions& options) noexcept {
    return std::min(1.0, options.timeout_s / 4.0);
}

RoundWatchdog::RoundWatchdog(const RoundWatchdogOptions& options, Clock::time_point start) noexcept
    : start_(start),
      notice_at_(start + seconds(roundNoticeAfterSeconds(options))),
      deadline_(start + seconds(options.timeout_s)),
      next_warn_(deadline_),
      warn_interval_s_(options.warn_interval_s),
      enabled_(options.timeout_s > 0),
      abort_(options.on_timeout == RoundTimeoutAction::kAbort) {}

RoundWatchdog::Event RoundWatchdog::poll(Clock::time_point now) noexcept {
    if (!enabled_) return Event::kNone;
    if (!noticed_) {
        if (now < notice_at_) return Event::kNone;
        noticed_ = true;
        return Event::kNotice;
    }
    if (now < deadline_) return Event::kNone;
    if (abort_) return Event::kTimeout;
    if (now < next_warn_) return Event::kNone;
    // The next warning counts from now: a waiter that was itself stopped for a while warns once,
    // not once per interval it missed.
    next_warn_ = now + seconds(warn_interval_s_);
    ++warnings_;
    return Event::kWarn;
}

double RoundWatchdog::elapsedSeconds(Clock::time_point now) const noexcept {
    return std::chrono::duration<double>(now - start_).count();
}

std::string roundTimeoutText(std::string_view what, double waited_s,
                             const RoundWatchdogOptions& options,
                             std::span<const std::string> missing,
                             std::span<const std::string> arrived) {
    std::string text = fmt::format("round watchdog: the {} has waited {:.1f} s (limit {:g} s)",
                                   what, waited_s, options.timeout_s);
    if (missing.empty()) {
        text += " although every rank it waits for reports waiting too";
    } else {
        text += fmt::format(" for {} that did not arrive: {}",
                            missing.size() == 1 ? "a rank" : "ranks", fmt::join(missing, "; "));
    }
    if (!arrived.empty()) text += fmt::format("; arrived: {}", fmt::join(arrived, "; "));
    return text;
}

}  // namespace strata::comm

// Round watchdog: a deadline on every collective of a decision group (the per-round agreement, the
// digest gather, the barrier), so that a rank that stops answering (SIGSTOP, a hung driver, a
// wedged node) is named and the job stopped, or waited for with a warning every few seconds,
// instead of hanging the job silently. This header holds the options and the pure deadline logic
// (RoundWatchdog, roundTimeoutText), shared by MpiDecisionGroup and the in-process test group.
// Thread-safety: RoundWatchdogOptions is a plain value; a RoundWatchdog is used by one thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "strata/core/enum_names.h"
#include "strata/core/status.h"

namespace strata::comm {

// What a rank does when a collective of its group has waited longer than the timeout.
enum class RoundTimeoutAction {
    kAbort,  // the collective fails with kTimeout naming the ranks that did not arrive; the
             // group is unusable afterwards and the caller must end the job (strata-run:
             // MPI_Abort)
    kWarn,   // log a warning naming them every warn_interval_s, and keep waiting
};

inline constexpr core::EnumNames<RoundTimeoutAction, 2> kRoundTimeoutActionNames{
    "round timeout action",
    {{{RoundTimeoutAction::kAbort, "abort"}, {RoundTimeoutAction::kWarn, "warn"}}}};
constexpr const auto& enumNames(RoundTimeoutAction) noexcept { return kRoundTimeoutActionNames; }
constexpr std::string_view roundTimeoutActionName(RoundTimeoutAction action) noexcept {
    return core::enumName(action);
}
// "abort" | "warn"; kInvalidArgument naming the text and the allowed ones otherwise.
inline Result<RoundTimeoutAction> parseRoundTimeoutAction(std::string_view text) {
    return core::parseEnum<RoundTimeoutAction>(text);
}

struct RoundWatchdogOptions {
    // Seconds a collective may wait for the other ranks; 0 waits forever (no watchdog). Generous
    // by default: a loaded 2-core machine never takes seconds per round.
    double timeout_s = 120.0;
    RoundTimeoutAction on_timeout = RoundTimeoutAction::kAbort;
    // kWarn: seconds between warnings once the timeout has passed (> 0).
    double warn_interval_s = 5.0;
    // Called with each warning's text (kWarn) after it was logged; may be empty. Runs on the
    // waiting thread, inside the collective: it must not call into the group.
    std::function<void(const std::string&)> on_warning;
};

// kInvalidArgument unless timeout_s >= 0 and warn_interval_s > 0 (both finite).
Status validateRoundWatchdogOptions(const RoundWatchdogOptions& options);

// Seconds after which a waiting rank tells its peers that it is waiting (so that a peer that times
// out can tell the ranks that arrived from those that did not): min(1, timeout_s / 4).
double roundNoticeAfterSeconds(const RoundWatchdogOptions& options) noexcept;

// The deadline logic of one wait, on the caller's clock (pure: no I/O, no sleeping).
class RoundWatchdog {
public:
    using Clock = std::chrono::steady_clock;
    enum class Event {
        kNone,     // keep waiting
        kNotice,   // once, after roundNoticeAfterSeconds(): tell the peers this rank waits
        kWarn,     // kWarn mode: once the timeout passed, then once per warn interval
        kTimeout,  // kAbort mode: the timeout passed (returned again on every later poll)
    };

    RoundWatchdog(const RoundWatchdogOptions& options, Clock::time_point start) noexcept;

    // The event due at `now` for a wait that is still incomplete; at most one per call, the
    // notice first. With timeout_s == 0 always kNone.
    Event poll(Clock::time_point now) noexcept;

    double elapsedSeconds(Clock::time_point now) const noexcept;
    std::uint32_t warnings() const noexcept { return warnings_; }

private:
    Clock::time_point start_;
    Clock::time_point notice_at_;
    Clock::time_point deadline_;
    Clock::time_point next_warn_;
    double warn_interval_s_;
    bool enabled_;
    bool abort_;
    bool noticed_ = false;
    std::uint32_t warnings_ = 0;
};

// Pure: the text of a watchdog warning or timeout, e.g. "round watchdog: the agreement of round 7
// has waited 2.0 s (limit 2 s) for world rank 2 (tp 0, cp 1, pp 0, dp 0) on host h;
// arrived: world ranks 0, 1, 3". `missing` / `arrived` are descriptions of ranks; an empty
// `missing` says every awaited rank reports waiting too.
std::string roundTimeoutText(std::string_view what, double waited_s,
                             const RoundWatchdogOptions& options,
                             std::span<const std::string> missing,
                             std::span<const std::string> arrived);

}  // namespace strata::comm

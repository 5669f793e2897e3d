#include "strata/core/status.h"

#include <fmt/format.h>

namespace strata {

std::string_view statusCodeName(StatusCode code) noexcept {
    switch (code) {
        case StatusCode::kOk:
            return "ok";
        case StatusCode::kInvalidArgument:
            return "invalid argument";
        case StatusCode::kNotFound:
            return "not found";
        case StatusCode::kResourceExhausted:
            return "resource exhausted";
        case StatusCode::kFailedPrecondition:
            return "failed precondition";
        case StatusCode::kIoError:
            return "i/o error";
        case StatusCode::kDataLoss:
            return "data loss";
        case StatusCode::kUnavailable:
            return "unavailable";
        case StatusCode::kTimeout:
            return "timeout";
        case StatusCode::kNotSupported:
            return "not supported";
        case StatusCode::kInternal:
            return "internal";
    }
    return "unknown";
}

Status::Status(StatusCode code, std::string message) {
    if (code != StatusCode::kOk) {
        rep_ = std::make_shared<const Rep>(Rep{code, std::move(message)});
    }
}

const std::string& Status::message() const noexcept {
    static const std::string kEmpty;
    return rep_ ? rep_->message : kEmpty;
}

std::string Status::toString() const {
    if (isOk()) return "ok";
    return fmt::format("{}: {}", statusCodeName(code()), message());
}

Status Status::withContext(std::string_view context) const {
    if (isOk()) return *this;
    return Status(code(), fmt::format("{}: {}", context, message()));
}

Status makeError(StatusCode code, const char* file, int line, std::string message) {
    std::string_view path(file);
    auto slash = path.rfind('/');
    if (slash != std::string_view::npos) path.remove_prefix(slash + 1);
    return Status(code, fmt::format("{} ({}:{})", message, path, line));
}

}  // namespace strata

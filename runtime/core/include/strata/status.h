// Status and Result<T>: the one error model at every library boundary, the engine's API
// included. A Status is a code plus a message (with file:line where Strata made it); OK costs one
// null pointer. Public header, installed: no dependency but the standard library.
// Thread-safety: values, safe to copy/move between threads; no shared state.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "strata/export.h"

namespace strata {

// Closed set of codes. Add one only when a caller branches on it.
enum class StatusCode : int {
    kOk = 0,
    kInvalidArgument,    // bad configuration, option, trace line or parameter
    kNotFound,           // a key, file or preset that does not exist
    kResourceExhausted,  // a pool, slot allocator or budget is full
    kFailedPrecondition,
    kIoError,      // file system, HDF5 or transport failure
    kDataLoss,     // checksum mismatch, torn or corrupt data
    kUnavailable,  // a peer or device is not reachable
    kTimeout,
    kNotSupported,  // the back end cannot do this (capability missing)
    kInternal,      // a broken invariant (a bug)
};

STRATA_API std::string_view statusCodeName(StatusCode code) noexcept;

class [[nodiscard]] STRATA_API Status {
public:
    Status() noexcept = default;
    Status(StatusCode code, std::string message);

    static Status ok() noexcept { return Status(); }

    bool isOk() const noexcept { return rep_ == nullptr; }
    explicit operator bool() const noexcept { return isOk(); }
    StatusCode code() const noexcept { return rep_ ? rep_->code : StatusCode::kOk; }
    const std::string& message() const noexcept;
    // "<code name>: <message>", or "ok".
    std::string toString() const;

    // Returns a copy with "context: " prepended to the message (code unchanged).
    Status withContext(std::string_view context) const;

private:
    struct Rep {
        StatusCode code;
        std::string message;
    };
    std::shared_ptr<const Rep> rep_;
};

template <typename T>
class [[nodiscard]] Result {
public:
    Result(T value) : value_(std::move(value)) {}         // NOLINT(google-explicit-constructor)
    Result(Status status) : status_(std::move(status)) {  // NOLINT(google-explicit-constructor)
        if (status_.isOk()) {
            status_ = Status(StatusCode::kInternal, "Result constructed from an OK status");
        }
    }

    bool isOk() const noexcept { return value_.has_value(); }
    explicit operator bool() const noexcept { return isOk(); }
    const Status& status() const noexcept { return status_; }

    T& value() & { return *value_; }
    const T& value() const& { return *value_; }
    T&& value() && { return std::move(*value_); }
    T* operator->() { return &*value_; }
    const T* operator->() const { return &*value_; }
    T& operator*() & { return *value_; }
    const T& operator*() const& { return *value_; }

private:
    std::optional<T> value_;
    Status status_;
};

}  // namespace strata

// The internal side of Status (status.h, public): makeError and the macros that build and pass
// errors (STRATA_ERROR formats its message with fmt).
#pragma once

#include <fmt/format.h>

#include <string>

#include "strata/status.h"

namespace strata {

// Builds a Status whose message starts with "file:line: ". Prefer the STRATA_ERROR macro.
Status makeError(StatusCode code, const char* file, int line, std::string message);

}  // namespace strata

#define STRATA_ERROR(code, ...) \
    ::strata::makeError((code), __FILE__, __LINE__, ::fmt::format(__VA_ARGS__))

#define STRATA_CONCAT_INNER_(a, b) a##b
#define STRATA_CONCAT_(a, b) STRATA_CONCAT_INNER_(a, b)

#define STRATA_RETURN_IF_ERROR(expr)                       \
    do {                                                   \
        ::strata::Status strata_status_ = (expr);          \
        if (!strata_status_.isOk()) return strata_status_; \
    } while (0)

#define STRATA_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
    auto tmp = (expr);                                \
    if (!tmp.isOk()) return tmp.status();             \
    lhs = std::move(tmp).value()

#define STRATA_ASSIGN_OR_RETURN(lhs, expr) \
    STRATA_ASSIGN_OR_RETURN_IMPL_(STRATA_CONCAT_(strata_result_, __LINE__), lhs, expr)

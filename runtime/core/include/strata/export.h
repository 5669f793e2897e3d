// STRATA_API marks what libstrata exports: the library is built with hidden symbols
// (-fvisibility=hidden), so only classes and functions carrying this macro are visible to the
// programs that link it. Placed after `class` (`class [[nodiscard]] STRATA_API Status`) or before
// a function's declaration. Public header, installed; valid C and C++.
#pragma once

#if defined(__GNUC__) || defined(__clang__)
#ifdef __cplusplus
#define STRATA_API [[gnu::visibility("default")]]
#else
#define STRATA_API __attribute__((visibility("default")))  // C (strata/strata.h)
#endif
#else
#define STRATA_API
#endif

#include "strata/app/user_input.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <regex>

namespace strata::app {
namespace {

struct Suffix {
    std::string_view text;
    std::uint64_t multiplier;
};

// Longest first, so that "Ki" is not read as "K" after a stray "i".
constexpr Suffix kSuffixes[] = {
    {"Ki", 1ull << 10},    {"Mi", 1ull << 20},   {"Gi", 1ull << 30},
    {"Ti", 1ull << 40},    {"k", 1000},          {"K", 1000},
    {"M", 1000 * 1000ull}, {"G", 1000000000ull}, {"T", 1000000000000ull},
};

// Splits "32Ki" into "32" and 1024; a text without a suffix has multiplier 1.
std::string_view splitSuffix(std::string_view text, std::uint64_t* multiplier) {
    *multiplier = 1;
    for (const Suffix& s : kSuffixes) {
        if (text.size() > s.text.size() && text.ends_with(s.text)) {
            *multiplier = s.multiplier;
            return text.substr(0, text.size() - s.text.size());
        }
    }
    return text;
}

bool allDigits(std::string_view s) {
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The mantissa as a double: digits with an optional sign, fraction and exponent, nothing else.
bool parseMantissa(std::string_view body, double* out) {
    if (!body.empty() && body.front() == '+') body.remove_prefix(1);
    if (body.empty()) return false;
    // Only digits, one '.', an exponent and signs: no "inf", "nan" or hexadecimal.
    for (char c : body) {
        if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'))
            return false;
    }
    double value = 0;
    auto [ptr, ec] = std::from_chars(body.data(), body.data() + body.size(), value);
    if (ec != std::errc() || ptr != body.data() + body.size() || !std::isfinite(value))
        return false;
    *out = value;
    return true;
}

}  // namespace

std::string parseNumber(std::string_view text, double* out) {
    std::uint64_t multiplier = 1;
    const std::string_view m = splitSuffix(text, &multiplier);
    double value = 0;
    if (!parseMantissa(m, &value)) return "is not a number";
    value *= static_cast<double>(multiplier);
    if (!std::isfinite(value)) return "is out of range";
    *out = value;
    return {};
}

std::string parseWholeNumber(std::string_view text, std::uint64_t max, std::uint64_t* out) {
    std::uint64_t multiplier = 1;
    std::string_view m = splitSuffix(text, &multiplier);
    if (!m.empty() && m.front() == '+') m.remove_prefix(1);
    if (allDigits(m)) {  // exact: no detour through double
        std::uint64_t value = 0;
        auto [ptr, ec] = std::from_chars(m.data(), m.data() + m.size(), value);
        if (ec == std::errc::result_out_of_range || ptr != m.data() + m.size() ||
            value > max / multiplier) {
            return fmt::format("is out of range (max {})", max);
        }
        *out = value * multiplier;
        return {};
    }
    double value = 0;
    if (std::string p = parseNumber(text, &value); !p.empty()) return p;
    if (value < 0) return "must be non-negative";
    if (value != std::floor(value)) return "must be a whole number";
    // 2^64 is exactly representable; anything at or above it is out of range for every max.
    if (value >= 18446744073709551616.0 || static_cast<std::uint64_t>(value) > max) {
        return fmt::format("is out of range (max {})", max);
    }
    *out = static_cast<std::uint64_t>(value);
    return {};
}

Result<std::uint64_t> parseWholeNumber(std::string_view what, std::string_view text,
                                       std::uint64_t max) {
    std::uint64_t value = 0;
    if (std::string p = parseWholeNumber(text, max, &value); !p.empty()) {
        return Status(StatusCode::kInvalidArgument,
                      fmt::format("{}='{}' {} (numbers: 4096, 1e6, 32k, 16Gi)", what, text, p));
    }
    return value;
}

std::size_t editDistance(std::string_view a, std::string_view b) {
    // Optimal string alignment: Levenshtein plus the swap of two adjacent characters.
    const std::size_t n = a.size(), m = b.size();
    std::vector<std::vector<std::size_t>> d(n + 1, std::vector<std::size_t>(m + 1));
    for (std::size_t i = 0; i <= n; ++i) d[i][0] = i;
    for (std::size_t j = 0; j <= m; ++j) d[0][j] = j;
    for (std::size_t i = 1; i <= n; ++i) {
        for (std::size_t j = 1; j <= m; ++j) {
            const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
                d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
            }
        }
    }
    return d[n][m];
}

std::string closestName(std::string_view given, const std::vector<std::string>& names) {
    const std::size_t limit = std::min<std::size_t>(3, std::max<std::size_t>(1, given.size() / 3));
    std::string best;
    std::size_t best_distance = std::numeric_limits<std::size_t>::max();
    for (const std::string& name : names) {
        const std::size_t d = editDistance(given, name);
        if (d < best_distance) {
            best_distance = d;
            best = name;
        }
    }
    return best_distance <= limit ? best : std::string();
}

std::string didYouMean(std::string_view given, const std::vector<std::string>& names) {
    const std::string best = closestName(given, names);
    return best.empty() ? std::string() : fmt::format(" (did you mean '{}'?)", best);
}

std::string userMessage(const Status& status) {
    if (status.code() == StatusCode::kInternal) return status.toString();
    static const std::regex kLocation(R"( \([A-Za-z0-9_.+-]+\.(cpp|cc|cu|h|hpp):[0-9]+\))");
    return std::regex_replace(status.message(), kLocation, "");
}

}  // namespace strata::app

// Names of enum values from one table per enum: enumName(value) and parseEnum<E>(text).
// An enum opts in with a constexpr table next to its declaration and an enumNames() overload in
// the enum's namespace (found by argument-dependent lookup):
//   inline constexpr core::EnumNames<WritePolicy, 3> kWritePolicyNames{"write policy", {{
//       {WritePolicy::kWriteThrough, "write_through"}, ...}}};
//   constexpr const auto& enumNames(WritePolicy) noexcept { return kWritePolicyNames; }
// The table's order is the order errors list the allowed names in.
// Thread-safety: pure functions over constant tables.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <string_view>

#include "strata/core/status.h"

namespace strata::core {

template <typename E>
struct EnumEntry {
    E value;
    std::string_view name;
};

template <typename E, std::size_t N>
struct EnumNames {
    std::string_view what;  // what the values are, for errors: "write policy"
    std::array<EnumEntry<E>, N> entries;
};

// The name of `value`; "unknown" for a value outside the table.
template <typename E>
constexpr std::string_view enumName(E value) noexcept {
    for (const auto& e : enumNames(value).entries) {
        if (e.value == value) return e.name;
    }
    return "unknown";
}

// Every name of the table, in order, separated by ", ".
template <typename E>
std::string enumNameList() {
    std::string out;
    for (const auto& e : enumNames(E{}).entries) {
        if (!out.empty()) out += ", ";
        out += e.name;
    }
    return out;
}

// The value named exactly `text`. kInvalidArgument "<what> '<text>' must be one of <names>"
// otherwise.
template <typename E>
Result<E> parseEnum(std::string_view text) {
    const auto& names = enumNames(E{});
    for (const auto& e : names.entries) {
        if (e.name == text) return e.value;
    }
    return STRATA_ERROR(StatusCode::kInvalidArgument, "{} '{}' must be one of {}", names.what, text,
                        enumNameList<E>());
}

}  // namespace strata::core

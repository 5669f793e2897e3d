#include "strata/core/enum_names.h"

#include <gtest/gtest.h>

#include <string>

namespace strata::core {
namespace {

enum class Colour : int { kRed, kGreen, kDarkBlue, kUnnamed };
// Table order differs from declaration order: errors list the names in table order.
inline constexpr EnumNames<Colour, 3> kColourNames{
    "colour",
    {{{Colour::kGreen, "green"}, {Colour::kRed, "red"}, {Colour::kDarkBlue, "dark_blue"}}}};
constexpr const auto& enumNames(Colour) noexcept { return kColourNames; }

TEST(EnumNames, NamesAndParsesEveryValueOfTheTable) {
    for (const auto& e : kColourNames.entries) {
        EXPECT_EQ(enumName(e.value), e.name);
        Result<Colour> parsed = parseEnum<Colour>(e.name);
        ASSERT_TRUE(parsed.isOk()) << parsed.status().message();
        EXPECT_EQ(*parsed, e.value);
    }
    static_assert(enumName(Colour::kDarkBlue) == "dark_blue");
    EXPECT_EQ(enumName(Colour::kUnnamed), "unknown");
    EXPECT_EQ(enumNameList<Colour>(), "green, red, dark_blue");
}

TEST(EnumNames, ABadNameIsRejectedNamingItAndTheAllowedOnes) {
    for (const char* bad : {"blue", "", "Red", "red ", "dark"}) {
        Result<Colour> parsed = parseEnum<Colour>(bad);
        ASSERT_FALSE(parsed.isOk()) << bad;
        EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument);
        EXPECT_NE(parsed.status().message().find(std::string("colour '") + bad +
                                                 "' must be one of green, red, dark_blue"),
                  std::string::npos)
            << parsed.status().message();
    }
}

}  // namespace
}  // namespace strata::core

#include "strata/app/user_input.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>

namespace strata::app {
namespace {

std::uint64_t whole(const std::string& text, std::uint64_t max = ~std::uint64_t{0}) {
    std::uint64_t v = 0;
    const std::string problem = parseWholeNumber(text, max, &v);
    EXPECT_EQ(problem, "") << text;
    return v;
}

std::string wholeProblem(const std::string& text, std::uint64_t max = ~std::uint64_t{0}) {
    std::uint64_t v = 12345;
    std::string problem = parseWholeNumber(text, max, &v);
    EXPECT_EQ(v, 12345u) << text << ": the output changed on failure";
    return problem;
}

TEST(UserInput, WholeNumbers) {
    EXPECT_EQ(whole("4096"), 4096u);
    EXPECT_EQ(whole("+7"), 7u);
    EXPECT_EQ(whole("1e6"), 1000000u);
    EXPECT_EQ(whole("1.5e6"), 1500000u);
    EXPECT_EQ(whole("2.5E3"), 2500u);
    EXPECT_EQ(whole("32k"), 32000u);
    EXPECT_EQ(whole("32K"), 32000u);
    EXPECT_EQ(whole("2M"), 2000000u);
    EXPECT_EQ(whole("3G"), 3000000000u);
    EXPECT_EQ(whole("1T"), 1000000000000u);
    EXPECT_EQ(whole("32Ki"), 32768u);
    EXPECT_EQ(whole("16Mi"), 16u << 20);
    EXPECT_EQ(whole("16Gi"), std::uint64_t{16} << 30);
    EXPECT_EQ(whole("2Ti"), std::uint64_t{2} << 40);
    EXPECT_EQ(whole("1.5k"), 1500u);
    EXPECT_EQ(whole("0.5Ki"), 512u);
    // Exact beyond a double's 53 bits when written as digits.
    EXPECT_EQ(whole("18446744073709551615"), std::numeric_limits<std::uint64_t>::max());
    EXPECT_EQ(whole("9007199254740993"), 9007199254740993ull);
}

TEST(UserInput, WholeNumberProblems) {
    EXPECT_EQ(wholeProblem(""), "is not a number");
    EXPECT_EQ(wholeProblem("abc"), "is not a number");
    EXPECT_EQ(wholeProblem("12abc"), "is not a number");
    EXPECT_EQ(wholeProblem("1e6x"), "is not a number");
    EXPECT_EQ(wholeProblem("k"), "is not a number");
    EXPECT_EQ(wholeProblem("32 k"), "is not a number");
    EXPECT_EQ(wholeProblem("32m"), "is not a number");  // milli is not a count
    EXPECT_EQ(wholeProblem("inf"), "is not a number");
    EXPECT_EQ(wholeProblem("nan"), "is not a number");
    EXPECT_EQ(wholeProblem("0x10"), "is not a number");
    EXPECT_EQ(wholeProblem("1,000"), "is not a number");
    EXPECT_EQ(wholeProblem("-5"), "must be non-negative");
    EXPECT_EQ(wholeProblem("-1e3"), "must be non-negative");
    EXPECT_EQ(wholeProblem("1.5"), "must be a whole number");
    EXPECT_EQ(wholeProblem("1e-3"), "must be a whole number");
    EXPECT_EQ(wholeProblem("4294967296", 4294967295u), "is out of range (max 4294967295)");
    EXPECT_EQ(wholeProblem("5Gi", 4294967295u), "is out of range (max 4294967295)");
    EXPECT_EQ(wholeProblem("1e10", 4294967295u), "is out of range (max 4294967295)");
    EXPECT_EQ(wholeProblem("18446744073709551616"), "is out of range (max 18446744073709551615)");
    EXPECT_EQ(wholeProblem("1e300"), "is out of range (max 18446744073709551615)");
    EXPECT_EQ(wholeProblem("20000000Ti"), "is out of range (max 18446744073709551615)");
}

TEST(UserInput, Numbers) {
    double v = 0;
    EXPECT_EQ(parseNumber("0.25", &v), "");
    EXPECT_DOUBLE_EQ(v, 0.25);
    EXPECT_EQ(parseNumber("1.5e1", &v), "");
    EXPECT_DOUBLE_EQ(v, 15.0);
    EXPECT_EQ(parseNumber("2k", &v), "");
    EXPECT_DOUBLE_EQ(v, 2000.0);
    EXPECT_EQ(parseNumber("-3", &v), "");  // the option's own range check rejects negatives
    EXPECT_DOUBLE_EQ(v, -3.0);
    EXPECT_EQ(parseNumber("x2", &v), "is not a number");
    EXPECT_EQ(parseNumber("1e999", &v), "is not a number");
}

TEST(UserInput, ResultNamesTheOptionAndTheValue) {
    auto ok = parseWholeNumber("--capacities", "3e6", 1000000000);
    ASSERT_TRUE(ok.isOk());
    EXPECT_EQ(*ok, 3000000u);
    auto bad = parseWholeNumber("--capacities", "3x", 1000000000);
    ASSERT_FALSE(bad.isOk());
    EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(bad.status().message(),
              "--capacities='3x' is not a number (numbers: 4096, 1e6, 32k, 16Gi)");
}

TEST(UserInput, EditDistance) {
    EXPECT_EQ(editDistance("", ""), 0u);
    EXPECT_EQ(editDistance("abc", ""), 3u);
    EXPECT_EQ(editDistance("kitten", "sitting"), 3u);
    EXPECT_EQ(editDistance("--devce-tokens", "--device-tokens"), 1u);
    EXPECT_EQ(editDistance("polcy", "plocy"), 1u);  // adjacent swap
}

TEST(UserInput, ClosestName) {
    const std::vector<std::string> names = {"--device-tokens", "--host-tokens", "--write-policy",
                                            "sweep"};
    EXPECT_EQ(closestName("--devce-tokens", names), "--device-tokens");
    EXPECT_EQ(closestName("--hots-tokens", names), "--host-tokens");
    EXPECT_EQ(closestName("--write-polcy", names), "--write-policy");
    EXPECT_EQ(closestName("swep", names), "sweep");
    EXPECT_EQ(closestName("--zzzzzz", names), "");
    EXPECT_EQ(closestName("x", names), "");
    EXPECT_EQ(didYouMean("swep", names), " (did you mean 'sweep'?)");
    EXPECT_EQ(didYouMean("--zzzzzz", names), "");
}

TEST(UserInput, UserMessageDropsSourceLocations) {
    const Status user =
        STRATA_ERROR(StatusCode::kInvalidArgument, "page_size must be at least {}", 1);
    EXPECT_NE(user.message().find("user_input_test.cpp:"), std::string::npos);
    EXPECT_EQ(userMessage(user), "page_size must be at least 1");
    const Status nested = user.withContext("loading the trace");
    EXPECT_EQ(userMessage(nested), "loading the trace: page_size must be at least 1");
    const Status two = Status(StatusCode::kIoError, "a (x.cpp:1): b (y_z.h:22)");
    EXPECT_EQ(userMessage(two), "a: b");
    // An internal error is a bug: it keeps its locations.
    const Status bug = STRATA_ERROR(StatusCode::kInternal, "broken invariant");
    EXPECT_NE(userMessage(bug).find("user_input_test.cpp:"), std::string::npos);
}

}  // namespace
}  // namespace strata::app

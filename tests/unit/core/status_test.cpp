#include "strata/core/status.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

namespace strata {
namespace {

Result<int> parsePositive(int v) {
    if (v <= 0) return STRATA_ERROR(StatusCode::kInvalidArgument, "value {} is not positive", v);
    return v;
}

Status useTwice(int v, int* out) {
    STRATA_ASSIGN_OR_RETURN(int a, parsePositive(v));
    STRATA_RETURN_IF_ERROR(parsePositive(a - 1).status());
    *out = a;
    return Status::ok();
}

TEST(Status, OkIsCheapAndTrue) {
    Status s;
    EXPECT_TRUE(s.isOk());
    EXPECT_EQ(s.code(), StatusCode::kOk);
    EXPECT_EQ(s.toString(), "ok");
}

TEST(Status, ErrorCarriesCodeMessageAndLocation) {
    Result<int> r = parsePositive(-3);
    ASSERT_FALSE(r.isOk());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("value -3 is not positive"), std::string::npos);
    EXPECT_NE(r.status().message().find("status_test.cpp:"), std::string::npos);
}

TEST(Status, MacrosPropagateAndLeaveOutputUnsetOnFailure) {
    int out = 7;
    EXPECT_TRUE(useTwice(5, &out).isOk());
    EXPECT_EQ(out, 5);
    out = 7;
    Status s = useTwice(1, &out);  // second check fails on 0
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(out, 7);
}

TEST(Status, ResultFromOkStatusIsAnInternalError) {
    Result<int> r{Status::ok()};
    EXPECT_FALSE(r.isOk());
    EXPECT_EQ(r.status().code(), StatusCode::kInternal);
}

TEST(Status, WithContextPrefixesMessage) {
    Status s = Status(StatusCode::kIoError, "disk full").withContext("writing page 3");
    EXPECT_EQ(s.code(), StatusCode::kIoError);
    EXPECT_EQ(s.message(), "writing page 3: disk full");
}

}  // namespace
}  // namespace strata

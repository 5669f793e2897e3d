// Unit tests of control-message authentication: seal/verify, forgery, tampering, replay window.
#include <gtest/gtest.h>

#include "strata/comm/ucx/message_auth.h"

namespace strata::comm::ucx {
namespace {

std::vector<std::byte> payload(std::size_t n, int fill) {
    return std::vector<std::byte>(n, static_cast<std::byte>(fill));
}

TEST(MessageAuth, SealedMessagesVerifyAndCarryTheirFields) {
    auto secret = JobSecret::generate();
    ASSERT_TRUE(secret.isOk());
    MessageVerifier v(*secret, 4);
    const auto p = payload(100, 3);
    const auto m = sealMessage(*secret, 7, 2, 1, p);
    MessageHeader h;
    std::span<const std::byte> body;
    ASSERT_EQ(v.verify(m, &h, &body), Verdict::kAccepted);
    EXPECT_EQ(h.channel, 7);
    EXPECT_EQ(h.src_rank, 2);
    EXPECT_EQ(std::vector<std::byte>(body.begin(), body.end()), p);
}

TEST(MessageAuth, ForgedTamperedAndMalformedAreRejected) {
    auto secret = JobSecret::generate();
    auto other = JobSecret::generate();
    ASSERT_TRUE(secret.isOk() && other.isOk());
    MessageVerifier v(*secret, 4);
    MessageHeader h;
    std::span<const std::byte> body;
    EXPECT_EQ(v.verify(sealMessage(*other, 1, 0, 1, payload(8, 1)), &h, &body), Verdict::kForged);
    for (std::size_t at : {std::size_t{4}, std::size_t{8}, std::size_t{16}, std::size_t{50}}) {
        auto m = sealMessage(*secret, 1, 0, 10 + at, payload(8, 1));
        m[at] ^= std::byte{0x10};
        EXPECT_NE(v.verify(m, &h, &body), Verdict::kAccepted) << "byte " << at;
    }
    EXPECT_EQ(v.verify(payload(10, 0), &h, &body), Verdict::kMalformed);
    auto truncated = sealMessage(*secret, 1, 0, 100, payload(8, 1));
    truncated.pop_back();
    EXPECT_EQ(v.verify(truncated, &h, &body), Verdict::kMalformed);
    EXPECT_EQ(v.verify(sealMessage(*secret, 1, 4, 1, {}), &h, &body), Verdict::kMalformed);
    EXPECT_EQ(JobSecret::fromBytes(payload(10, 0)).status().code(), StatusCode::kInvalidArgument);
}

TEST(MessageAuth, ReplaysAreRejectedAndReorderingWithinTheWindowIsAccepted) {
    auto secret = JobSecret::generate();
    ASSERT_TRUE(secret.isOk());
    MessageVerifier v(*secret, 2);
    MessageHeader h;
    std::span<const std::byte> body;
    const auto m5 = sealMessage(*secret, 0, 1, 5, {});
    const auto m3 = sealMessage(*secret, 0, 1, 3, {});
    EXPECT_EQ(v.verify(m5, &h, &body), Verdict::kAccepted);
    EXPECT_EQ(v.verify(m3, &h, &body), Verdict::kAccepted);  // late but new
    EXPECT_EQ(v.verify(m5, &h, &body), Verdict::kReplayed);
    EXPECT_EQ(v.verify(m3, &h, &body), Verdict::kReplayed);
    EXPECT_EQ(v.verify(sealMessage(*secret, 0, 1, 500, {}), &h, &body), Verdict::kAccepted);
    EXPECT_EQ(v.verify(sealMessage(*secret, 0, 1, 400, {}), &h, &body), Verdict::kReplayed);
    // Sequence numbers are per sender.
    EXPECT_EQ(v.verify(sealMessage(*secret, 0, 0, 5, {}), &h, &body), Verdict::kAccepted);
}

}  // namespace
}  // namespace strata::comm::ucx

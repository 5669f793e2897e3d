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
    ASSERT_EQ(v.verify(m, Stream::kControl, &h, &body), Verdict::kAccepted);
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
    EXPECT_EQ(v.verify(sealMessage(*other, 1, 0, 1, payload(8, 1)), Stream::kControl, &h, &body),
              Verdict::kForged);
    for (std::size_t at : {std::size_t{4}, std::size_t{8}, std::size_t{16}, std::size_t{50}}) {
        auto m = sealMessage(*secret, 1, 0, 10 + at, payload(8, 1));
        m[at] ^= std::byte{0x10};
        EXPECT_NE(v.verify(m, Stream::kControl, &h, &body), Verdict::kAccepted) << "byte " << at;
    }
    EXPECT_EQ(v.verify(payload(10, 0), Stream::kControl, &h, &body), Verdict::kMalformed);
    auto truncated = sealMessage(*secret, 1, 0, 100, payload(8, 1));
    truncated.pop_back();
    EXPECT_EQ(v.verify(truncated, Stream::kControl, &h, &body), Verdict::kMalformed);
    EXPECT_EQ(v.verify(sealMessage(*secret, 1, 4, 1, {}), Stream::kControl, &h, &body),
              Verdict::kMalformed);
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
    EXPECT_EQ(v.verify(m5, Stream::kControl, &h, &body), Verdict::kAccepted);
    EXPECT_EQ(v.verify(m3, Stream::kControl, &h, &body), Verdict::kAccepted);  // late but new
    EXPECT_EQ(v.verify(m5, Stream::kControl, &h, &body), Verdict::kReplayed);
    EXPECT_EQ(v.verify(m3, Stream::kControl, &h, &body), Verdict::kReplayed);
    EXPECT_EQ(v.verify(sealMessage(*secret, 0, 1, 5000, {}), Stream::kControl, &h, &body),
              Verdict::kAccepted);
    EXPECT_EQ(v.verify(sealMessage(*secret, 0, 1, 400, {}), Stream::kControl, &h, &body),
              Verdict::kReplayed);
    // Sequence numbers are per sender.
    EXPECT_EQ(v.verify(sealMessage(*secret, 0, 0, 5, {}), Stream::kControl, &h, &body),
              Verdict::kAccepted);
}

// Regression (issue 15): a holder answered a 2,048-op read while its scheduler thread published to
// the reader; with one sequence space and a 64-message window the reader rejected the publish as a
// replay. Each stream now has its own numbers, and read replies no replay window at all.
TEST(MessageAuth, AReadReplyBurstNeverMakesALateControlMessageAReplay) {
    auto secret = JobSecret::generate();
    ASSERT_TRUE(secret.isOk());
    MessageVerifier v(*secret, 2);
    MessageHeader h;
    std::span<const std::byte> body;
    const auto late_control = sealMessage(*secret, 3, 1, 1, payload(16, 7));
    for (std::uint64_t seq = 1; seq <= 5000; ++seq) {
        ASSERT_EQ(v.verify(sealMessage(*secret, 0xfffe, 1, seq, payload(24, 1)), Stream::kReadReply,
                           &h, &body),
                  Verdict::kAccepted);
    }
    EXPECT_EQ(v.verify(late_control, Stream::kControl, &h, &body), Verdict::kAccepted);
    EXPECT_EQ(h.src_rank, 1);
}

// Control messages sent from several threads reorder by a few; anything inside the window is
// accepted once, a replay is rejected with its real sender known.
TEST(MessageAuth, ControlMessagesLateByLessThanTheWindowAreAcceptedOnce) {
    auto secret = JobSecret::generate();
    ASSERT_TRUE(secret.isOk());
    MessageVerifier v(*secret, 3);
    MessageHeader h;
    std::span<const std::byte> body;
    const std::uint64_t late = 10;
    for (std::uint64_t seq = 1; seq < late + MessageVerifier::kWindow; ++seq) {
        if (seq == late) continue;
        ASSERT_EQ(v.verify(sealMessage(*secret, 0, 2, seq, {}), Stream::kControl, &h, &body),
                  Verdict::kAccepted)
            << seq;
    }
    const auto m = sealMessage(*secret, 0, 2, late, {});
    EXPECT_EQ(v.verify(m, Stream::kControl, &h, &body), Verdict::kAccepted);
    EXPECT_EQ(v.verify(m, Stream::kControl, &h, &body), Verdict::kReplayed);
    EXPECT_EQ(h.src_rank, 2);  // the log names the sender of a replay
    // One more step pushes sequence `late` out of the window: too old to tell.
    ASSERT_EQ(v.verify(sealMessage(*secret, 0, 2, late + MessageVerifier::kWindow, {}),
                       Stream::kControl, &h, &body),
              Verdict::kAccepted);
    EXPECT_EQ(v.verify(m, Stream::kControl, &h, &body), Verdict::kReplayed);
    // Read requests have a window of their own.
    EXPECT_EQ(v.verify(sealMessage(*secret, 0xffff, 2, late, {}), Stream::kReadRequest, &h, &body),
              Verdict::kAccepted);
}

}  // namespace
}  // namespace strata::comm::ucx

// Unit tests of control-message authentication: seal/verify, forgery, tampering, replay window.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>
#include <string>

#include "strata/comm/ucx/message_auth.h"

namespace strata::comm::ucx {
namespace {

std::vector<std::byte> payload(std::size_t n, int fill) {
    return std::vector<std::byte>(n, static_cast<std::byte>(fill));
}

std::span<const std::byte> bytesOf(const std::string& s) { return std::as_bytes(std::span(s)); }

std::string hex(std::span<const std::byte> b) {
    static const char* kDigits = "0123456789abcdef";
    std::string out;
    for (const std::byte x : b) {
        out += kDigits[static_cast<unsigned>(x) >> 4];
        out += kDigits[static_cast<unsigned>(x) & 15];
    }
    return out;
}

// RFC 4231 section 4: HMAC-SHA-256 test cases 1, 2, 4, 6 and 7 (short and long keys, a key longer
// than the 64-byte block that must be hashed first), the data fed whole and in pieces.
TEST(MessageAuth, HmacSha256MatchesTheRfc4231Vectors) {
    struct Case {
        std::string key, data, mac;
    };
    std::string key4;
    for (int i = 1; i <= 25; ++i) key4 += static_cast<char>(i);
    const Case cases[] = {
        {std::string(20, '\x0b'), "Hi There",
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
        {"Jefe", "what do ya want for nothing?",
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
        {key4, std::string(50, '\xcd'),
         "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
        {std::string(131, '\xaa'), "Test Using Larger Than Block-Size Key - Hash Key First",
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
        {std::string(131, '\xaa'),
         "This is a test using a larger than block-size key and a larger than block-size data. "
         "The key needs to be hashed before being used by the HMAC algorithm.",
         "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
    };
    for (const Case& c : cases) {
        EXPECT_EQ(hex(hmacSha256(bytesOf(c.key), {bytesOf(c.data)})), c.mac) << c.data;
        const auto d = bytesOf(c.data);
        EXPECT_EQ(hex(hmacSha256(bytesOf(c.key), {d.first(3), {}, d.subspan(3)})), c.mac)
            << "in pieces: " << c.data;
    }
}

// The tag of a sealed message is the first 16 bytes of HMAC-SHA-256(job secret, header with the
// MAC zeroed || payload), pinned to a value computed independently (Python's hmac module).
TEST(MessageAuth, TheWireTagIsTheTruncatedHmacOfHeaderAndPayload) {
    std::vector<std::byte> key(JobSecret::kBytes, std::byte{0x0b});
    auto secret = JobSecret::fromBytes(key);
    ASSERT_TRUE(secret.isOk());
    const auto p = payload(40, 9);
    const auto m = sealMessage(*secret, 5, 3, 77, p);
    ASSERT_EQ(m.size(), sizeof(MessageHeader) + p.size());
    MessageHeader h;
    std::memcpy(&h, m.data(), sizeof(h));
    EXPECT_EQ(h.version, 2);
    MessageHeader zeroed = h;
    zeroed.mac_lo = zeroed.mac_hi = 0;
    const auto full = hmacSha256(key, {std::as_bytes(std::span(&zeroed, 1)), p});
    const auto wire = std::span(m).subspan(offsetof(MessageHeader, mac_lo), 16);
    EXPECT_EQ(hex(wire), hex(std::span(full).first(16)));
    // Python: hmac.new(b"\x0b" * 32, struct.pack("<IHHiIQQQQ", 0x58525453, 2, 5, 3, 40, 77, 0, 0,
    // 0) + b"\x09" * 40, hashlib.sha256).hexdigest()[:32]
    EXPECT_EQ(hex(wire), "b79d4bb141a9e5b1a51748b93b350322");
    // And the verifier accepts exactly that tag: one flipped bit of it is a forgery.
    MessageVerifier v(*secret, 4);
    std::span<const std::byte> body;
    auto bad = m;
    bad[offsetof(MessageHeader, mac_hi) + 7] ^= std::byte{0x80};
    EXPECT_EQ(v.verify(bad, Stream::kControl, &h, &body), Verdict::kForged);
    EXPECT_EQ(v.verify(m, Stream::kControl, &h, &body), Verdict::kAccepted);
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
    // A number more than the window behind the highest seen is too old to tell: a replay.
    const std::uint64_t far = MessageVerifier::kWindow + 1000;
    EXPECT_EQ(v.verify(sealMessage(*secret, 0, 1, far, {}), Stream::kControl, &h, &body),
              Verdict::kAccepted);
    EXPECT_EQ(v.verify(sealMessage(*secret, 0, 1, 400, {}), Stream::kControl, &h, &body),
              Verdict::kReplayed);
    EXPECT_EQ(v.verify(sealMessage(*secret, 0, 1, far - MessageVerifier::kWindow + 1, {}),
                       Stream::kControl, &h, &body),
              Verdict::kAccepted);  // the oldest number still inside the window
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

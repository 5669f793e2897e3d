#include "strata/comm/ucx/message_auth.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <sys/random.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <memory>

#include "strata/core/check.h"

namespace strata::comm::ucx {

static_assert(std::endian::native == std::endian::little, "the wire header is little-endian");
static_assert(JobSecret::kBytes >= kHmacSha256Bytes,
              "RFC 2104: a key at least as long as the hash");
static_assert(sizeof(MessageHeader::mac_lo) + sizeof(MessageHeader::mac_hi) <= kHmacSha256Bytes);
static_assert(offsetof(MessageHeader, mac_hi) == offsetof(MessageHeader, mac_lo) + 8,
              "the tag's 16 bytes are contiguous on the wire");

Result<JobSecret> JobSecret::generate() {
    JobSecret s;
    std::size_t got = 0;
    while (got < kBytes) {
        const ssize_t n = ::getrandom(s.bytes_.data() + got, kBytes - got, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return STRATA_ERROR(StatusCode::kIoError, "getrandom: {}", std::strerror(errno));
        }
        got += static_cast<std::size_t>(n);
    }
    return s;
}

Result<JobSecret> JobSecret::fromBytes(std::span<const std::byte> bytes) {
    if (bytes.size() != kBytes) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "job secret of {} bytes, expected {}",
                            bytes.size(), kBytes);
    }
    JobSecret s;
    std::memcpy(s.bytes_.data(), bytes.data(), kBytes);
    return s;
}

namespace {

// OpenSSL's HMAC implementation, fetched once (thread-safe static initialisation) and kept for the
// life of the process.
EVP_MAC* hmacAlgorithm() {
    static EVP_MAC* const mac = EVP_MAC_fetch(nullptr, OSSL_MAC_NAME_HMAC, nullptr);
    STRATA_CHECK(mac != nullptr, "OpenSSL has no HMAC (EVP_MAC_fetch failed)");
    return mac;
}

struct MacCtxFree {
    void operator()(EVP_MAC_CTX* c) const noexcept { EVP_MAC_CTX_free(c); }
};

using Tag = std::array<std::byte, kHmacSha256Bytes>;

Tag macOf(const JobSecret& secret, const MessageHeader& h, std::span<const std::byte> payload) {
    MessageHeader covered = h;
    covered.mac_lo = covered.mac_hi = 0;
    return hmacSha256(secret.bytes(), {std::as_bytes(std::span(&covered, 1)), payload});
}

}  // namespace

std::array<std::byte, kHmacSha256Bytes> hmacSha256(
    std::span<const std::byte> key, std::initializer_list<std::span<const std::byte>> parts) {
    // Failures here are allocation failures or a broken libcrypto, not input: a checked invariant.
    const std::unique_ptr<EVP_MAC_CTX, MacCtxFree> ctx(EVP_MAC_CTX_new(hmacAlgorithm()));
    STRATA_CHECK(ctx != nullptr, "EVP_MAC_CTX_new failed");
    char digest[] = "SHA256";
    const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                                 OSSL_PARAM_construct_end()};
    static const unsigned char kNoKey = 0;  // a valid pointer for an empty key
    const auto* key_bytes =
        key.empty() ? &kNoKey : reinterpret_cast<const unsigned char*>(key.data());
    STRATA_CHECK(EVP_MAC_init(ctx.get(), key_bytes, key.size(), params) == 1,
                 "EVP_MAC_init (HMAC-SHA-256) failed");
    for (const auto part : parts) {
        if (part.empty()) continue;
        STRATA_CHECK(EVP_MAC_update(ctx.get(), reinterpret_cast<const unsigned char*>(part.data()),
                                    part.size()) == 1,
                     "EVP_MAC_update failed");
    }
    Tag tag{};
    std::size_t length = 0;
    STRATA_CHECK(EVP_MAC_final(ctx.get(), reinterpret_cast<unsigned char*>(tag.data()), &length,
                               tag.size()) == 1 &&
                     length == tag.size(),
                 "EVP_MAC_final failed ({} bytes)", length);
    return tag;
}

std::vector<std::byte> sealMessage(const JobSecret& secret, std::uint16_t channel, int src_rank,
                                   std::uint64_t seq, std::span<const std::byte> payload) {
    MessageHeader h;
    h.channel = channel;
    h.src_rank = src_rank;
    h.payload_bytes = static_cast<std::uint32_t>(payload.size());
    h.seq = seq;
    const Tag mac = macOf(secret, h, payload);
    std::memcpy(&h.mac_lo, mac.data(), sizeof(h.mac_lo));
    std::memcpy(&h.mac_hi, mac.data() + sizeof(h.mac_lo), sizeof(h.mac_hi));
    std::vector<std::byte> out(sizeof(h) + payload.size());
    std::memcpy(out.data(), &h, sizeof(h));
    if (!payload.empty()) std::memcpy(out.data() + sizeof(h), payload.data(), payload.size());
    return out;
}

MessageVerifier::MessageVerifier(const JobSecret& secret, int world_size)
    : secret_(secret), windows_(static_cast<std::size_t>(world_size) * kStreams) {}

bool MessageVerifier::Window::accept(std::uint64_t seq) {
    constexpr std::uint64_t kWordBits = 64;
    if (seen.empty()) seen.assign(kWindow / kWordBits, 0);
    auto bit = [&](std::uint64_t s) -> std::uint64_t& { return seen[(s % kWindow) / kWordBits]; };
    auto mask = [](std::uint64_t s) { return std::uint64_t{1} << (s % kWordBits); };
    if (seq > highest) {
        // Forget the numbers that leave the window: those that share a bit with the new ones.
        if (seq - highest >= kWindow) {
            std::fill(seen.begin(), seen.end(), 0);
        } else {
            for (std::uint64_t s = highest + 1; s < seq; ++s) bit(s) &= ~mask(s);
        }
        highest = seq;
        bit(seq) |= mask(seq);
        return true;
    }
    if (highest - seq >= kWindow) return false;  // too old to tell: treated as a replay
    if ((bit(seq) & mask(seq)) != 0) return false;
    bit(seq) |= mask(seq);
    return true;
}

Verdict MessageVerifier::verify(std::span<const std::byte> message, Stream stream,
                                MessageHeader* header, std::span<const std::byte>* payload) {
    MessageHeader h;
    if (message.size() < sizeof(h)) return Verdict::kMalformed;
    std::memcpy(&h, message.data(), sizeof(h));
    *header = h;
    const auto stream_index = static_cast<std::size_t>(stream);
    if (h.magic != MessageHeader::kMagic || h.version != MessageHeader::kVersion ||
        h.payload_bytes != message.size() - sizeof(h) || h.src_rank < 0 ||
        static_cast<std::size_t>(h.src_rank) * kStreams >= windows_.size() || h.seq == 0 ||
        stream_index >= kStreams) {
        return Verdict::kMalformed;
    }
    const auto body = message.subspan(sizeof(h));
    const Tag mac = macOf(secret_, h, body);
    // Constant-time comparison (CRYPTO_memcmp): no early exit that would time the first
    // differing byte. The wire carries the first 16 bytes of the tag.
    const auto* wire_mac = message.data() + offsetof(MessageHeader, mac_lo);
    if (CRYPTO_memcmp(mac.data(), wire_mac, sizeof(h.mac_lo) + sizeof(h.mac_hi)) != 0) {
        return Verdict::kForged;
    }
    if (stream != Stream::kReadReply &&
        !windows_[static_cast<std::size_t>(h.src_rank) * kStreams + stream_index].accept(h.seq)) {
        return Verdict::kReplayed;
    }
    *payload = body;
    return Verdict::kAccepted;
}

}  // namespace strata::comm::ucx

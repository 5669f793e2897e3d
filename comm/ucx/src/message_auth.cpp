#include "strata/comm/ucx/message_auth.h"

#define XXH_INLINE_ALL
#include <sys/random.h>
#include <xxhash.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>

namespace strata::comm::ucx {

static_assert(std::endian::native == std::endian::little, "the wire header is little-endian");
static_assert(JobSecret::kBytes >= XXH3_SECRET_SIZE_MIN);

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

XXH128_hash_t macOf(const JobSecret& secret, const MessageHeader& h,
                    std::span<const std::byte> payload) {
    MessageHeader covered = h;
    covered.mac_lo = covered.mac_hi = 0;
    XXH3_state_t state;
    XXH3_128bits_reset_withSecret(&state, secret.bytes().data(), secret.bytes().size());
    XXH3_128bits_update(&state, &covered, sizeof(covered));
    XXH3_128bits_update(&state, payload.data(), payload.size());
    return XXH3_128bits_digest(&state);
}

}  // namespace

std::vector<std::byte> sealMessage(const JobSecret& secret, std::uint16_t channel, int src_rank,
                                   std::uint64_t seq, std::span<const std::byte> payload) {
    MessageHeader h;
    h.channel = channel;
    h.src_rank = src_rank;
    h.payload_bytes = static_cast<std::uint32_t>(payload.size());
    h.seq = seq;
    const XXH128_hash_t mac = macOf(secret, h, payload);
    h.mac_lo = mac.low64;
    h.mac_hi = mac.high64;
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
    const XXH128_hash_t mac = macOf(secret_, h, body);
    // Constant-time comparison: no early exit that would time the first differing word.
    if (((mac.low64 ^ h.mac_lo) | (mac.high64 ^ h.mac_hi)) != 0) return Verdict::kForged;
    if (stream != Stream::kReadReply &&
        !windows_[static_cast<std::size_t>(h.src_rank) * kStreams + stream_index].accept(h.seq)) {
        return Verdict::kReplayed;
    }
    *payload = body;
    return Verdict::kAccepted;
}

}  // namespace strata::comm::ucx

// Authentication of control messages between the ranks of one job: a per-job secret of 32 bytes
// (made by rank 0 from the kernel's random source, shared over MPI) keys an HMAC-SHA-256 (OpenSSL's
// libcrypto) over the message header (sender, channel, sequence number, length) and payload.
// The tag on the wire is the HMAC's first 16 bytes (RFC 2104 section 5 and NIST SP 800-107 allow
// truncating to half the output and no fewer than 80 bits): a forgery succeeds with probability
// 2^-128 per try, every one of which is dropped and counted, and the tag fits the 48-byte header's
// two words. Receivers drop, and count, anything malformed, unauthenticated, or replayed.
// Sequence numbers: a sender numbers each stream (control messages, read requests, read replies)
// towards each peer on its own, so that a burst on one stream (thousands of read replies) never
// pushes another stream's late message out of the receiver's window. The window remembers the
// last kWindow sequence numbers of each sender and stream: messages sent from several threads may
// arrive out of order by far less than that; one older than the window is treated as a replay.
// No UCX types here.
// Thread-safety: JobSecret and sealMessage are immutable/pure; MessageVerifier is not thread-safe
// (the transport calls it under its receive lock).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <vector>

#include "strata/core/status.h"

namespace strata::comm::ucx {

// The UCX active-message id that carries every control message of Strata.
inline constexpr std::uint16_t kControlAmId = 0x5a;

// The HMAC-SHA-256 key of a job: 32 random bytes (RFC 2104: a key as long as the hash output;
// longer adds no strength).
class JobSecret {
public:
    static constexpr std::size_t kBytes = 32;

    // Bytes from getrandom(2); kIoError with the errno text when the kernel cannot provide them.
    static Result<JobSecret> generate();
    // kInvalidArgument unless exactly kBytes bytes.
    static Result<JobSecret> fromBytes(std::span<const std::byte> bytes);

    std::span<const std::byte> bytes() const noexcept { return bytes_; }

private:
    JobSecret() = default;
    std::array<std::byte, kBytes> bytes_{};
};

// Wire header of every control message; the payload follows it. Little-endian, 48 bytes.
struct MessageHeader {
    static constexpr std::uint32_t kMagic = 0x58525453;  // "STRX"
    static constexpr std::uint16_t kVersion = 2;         // 1: keyed XXH3-128; 2: HMAC-SHA-256/128
    std::uint32_t magic = kMagic;
    std::uint16_t version = kVersion;
    std::uint16_t channel = 0;
    std::int32_t src_rank = 0;
    std::uint32_t payload_bytes = 0;
    std::uint64_t seq = 0;
    std::uint64_t reserved = 0;
    std::uint64_t mac_lo = 0, mac_hi = 0;  // bytes 0..15 of the HMAC, in wire order
};
static_assert(sizeof(MessageHeader) == 48);

inline constexpr std::size_t kHmacSha256Bytes = 32;

// HMAC-SHA-256 (RFC 2104, FIPS 198-1) under `key` of the concatenation of `parts`. Pure; safe
// from any thread.
std::array<std::byte, kHmacSha256Bytes> hmacSha256(
    std::span<const std::byte> key, std::initializer_list<std::span<const std::byte>> parts);

// Header + payload, ready to send. The MAC is hmacSha256(secret, header with mac_lo = mac_hi = 0,
// payload), its first 16 bytes stored in mac_lo and mac_hi: it covers every header field and the
// payload.
std::vector<std::byte> sealMessage(const JobSecret& secret, std::uint16_t channel, int src_rank,
                                   std::uint64_t seq, std::span<const std::byte> payload);

enum class Verdict { kAccepted, kMalformed, kForged, kReplayed };

// The sequence spaces of a sender towards one peer. Read replies are not checked for replays: a
// reply lands only in the live batch (and op) it names, once, so a replayed one is dropped as late
// or already landed; keeping them out of the window also keeps a reader from rejecting the
// replies of a holder that answers from several threads.
enum class Stream : std::uint8_t { kControl = 0, kReadRequest = 1, kReadReply = 2 };
inline constexpr std::size_t kStreams = 3;

// Checks messages from the ranks of one job (ranks 0..world_size-1).
class MessageVerifier {
public:
    // Sequence numbers remembered per sender and stream (a bitmap of kWindow / 8 bytes, made on a
    // sender's first message). Two threads sending to one peer take their numbers before they
    // send: one descheduled between the two on a loaded machine while the other sends on fell
    // more than 4,096 numbers behind (a legitimate message dropped as a replay, seen once under a
    // load of 13 on 2 cores). At 65,536 the other thread would have to send for about half a
    // second; a message that late still only costs a miss.
    static constexpr std::uint64_t kWindow = 65536;

    MessageVerifier(const JobSecret& secret, int world_size);

    // On kAccepted, *header and *payload describe the message (payload points into `message`).
    // On kReplayed, *header is the authentic header (its sender is known); on kForged and on
    // kMalformed with a whole header, *header holds what the message claims (for logging only).
    Verdict verify(std::span<const std::byte> message, Stream stream, MessageHeader* header,
                   std::span<const std::byte>* payload);

private:
    // The last kWindow sequence numbers of one sender's stream: bit (seq % kWindow) of `seen` is
    // set when seq was accepted, for seq in (highest - kWindow, highest].
    struct Window {
        std::uint64_t highest = 0;        // highest accepted sequence number (0: none yet)
        std::vector<std::uint64_t> seen;  // kWindow bits, allocated on the first message
        bool accept(std::uint64_t seq);   // false: replayed, or too old to tell
    };
    JobSecret secret_;
    std::vector<Window> windows_;  // [sender * kStreams + stream]
};

}  // namespace strata::comm::ucx

// Wire formats of the UCX transport: the region descriptor exchanged over MPI, and the read
// request and read reply that travel as sealed active messages, with the functions that decode
// and check them (what a holder and a reader accept from a peer). No UCX types: the decoders are
// built with or without UCX, and tests/fuzz drives them with arbitrary bytes (fuzz_ucx_messages).
// Reads are served by the holder, never done by UCX on its own: the context has no RMA feature,
// so UCX installs no handler that writes or reads memory for a peer (its software RMA emulation
// would write to any address a peer names, registered or not). A reader sends a sealed read
// request; the holder replies per op with a sealed descriptor as the AM header and the bytes as
// its data, sent from the exposed memory. Both travel on AM ids of their own, sealed like control
// messages on a channel above every user channel.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "strata/comm/ucx/message_auth.h"

namespace strata::comm::ucx {

// Region descriptor exchanged over MPI: header, then info.
struct RegionWire {
    std::int32_t rank = -1;
    std::uint32_t region = 0;  // the member's local id of the region
    std::uint64_t size = 0;
    std::uint32_t info_bytes = 0;
    std::uint32_t pad = 0;
};

inline constexpr std::uint16_t kReadRequestAmId = kControlAmId + 1;
inline constexpr std::uint16_t kReadReplyAmId = kControlAmId + 2;
inline constexpr std::uint16_t kReadRequestChannel = 0xffff;
inline constexpr std::uint16_t kReadReplyChannel = 0xfffe;
inline constexpr std::size_t kMaxOpsPerRequest = 2048;  // keeps each request eager (32 KiB of ops)
inline constexpr std::uint32_t kWholeBatch = 0xffffffff;

// A read request's payload: this head, then num_ops ReadOpWire.
struct ReadRequestHead {
    std::uint64_t batch = 0;
    std::uint32_t region = 0;
    std::uint32_t first_op = 0;
    std::uint32_t num_ops = 0;
    std::uint32_t pad = 0;
};
struct ReadOpWire {
    std::uint64_t offset = 0, bytes = 0;
};
enum class Refusal : std::int32_t { kNone = 0, kNoRegion = 1, kNotReader = 2, kOutOfRange = 3 };
// A read reply's sealed AM header payload; the op's bytes are the AM data.
struct ReadReplyDesc {
    std::uint64_t batch = 0;
    std::uint32_t op = 0;  // kWholeBatch: the request was refused
    std::int32_t refusal = 0;
    std::uint64_t bytes = 0;
};

// A read request, decoded: its head and exactly head.num_ops ops.
struct ReadRequest {
    ReadRequestHead head;
    std::vector<ReadOpWire> ops;
};

// The read request in an accepted sealed message's payload; nullopt (malformed) unless `channel`
// is kReadRequestChannel, num_ops <= kMaxOpsPerRequest and the payload holds the head and exactly
// num_ops ops.
std::optional<ReadRequest> decodeReadRequest(std::uint16_t channel,
                                             std::span<const std::byte> payload);

// kOutOfRange when an op reaches past region_bytes (offset + bytes, without overflow), else kNone.
Refusal checkReadOps(std::span<const ReadOpWire> ops, std::uint64_t region_bytes);

// The reply descriptor in an accepted sealed header's payload; nullopt (malformed) unless
// `channel` is kReadReplyChannel and the payload is exactly one ReadReplyDesc.
std::optional<ReadReplyDesc> decodeReadReply(std::uint16_t channel,
                                             std::span<const std::byte> payload);

// A member's region descriptor (from exposeRegion's all-gather), decoded.
struct RegionMemberWire {
    RegionWire head;
    std::vector<std::byte> info;
};
// nullopt unless the blob holds a RegionWire whose rank is in [0, world_size) followed by exactly
// info_bytes bytes.
std::optional<RegionMemberWire> decodeRegionDescriptor(std::span<const std::byte> blob,
                                                       int world_size);

inline const char* refusalText(Refusal r) {
    switch (r) {
        case Refusal::kNone:
            return "none";
        case Refusal::kNoRegion:
            return "the region is not exposed there (any more)";
        case Refusal::kNotReader:
            return "this rank is not a member of the region's group";
        case Refusal::kOutOfRange:
            return "an op lies outside the exposed memory";
    }
    return "unknown";
}

}  // namespace strata::comm::ucx

// Decoders of the transport's wire formats (wire.h): every length and count a peer declares is
// checked against the bytes that arrived before anything is copied or sized by it.
#include "strata/comm/ucx/wire.h"

#include <cstring>

namespace strata::comm::ucx {

std::optional<ReadRequest> decodeReadRequest(std::uint16_t channel,
                                             std::span<const std::byte> payload) {
    ReadRequest r;
    if (channel != kReadRequestChannel || payload.size() < sizeof(r.head)) return std::nullopt;
    std::memcpy(&r.head, payload.data(), sizeof(r.head));
    if (r.head.num_ops > kMaxOpsPerRequest ||
        payload.size() != sizeof(r.head) + std::size_t{r.head.num_ops} * sizeof(ReadOpWire)) {
        return std::nullopt;
    }
    r.ops.resize(r.head.num_ops);
    if (!r.ops.empty()) {
        std::memcpy(r.ops.data(), payload.data() + sizeof(r.head),
                    r.ops.size() * sizeof(ReadOpWire));
    }
    return r;
}

Refusal checkReadOps(std::span<const ReadOpWire> ops, std::uint64_t region_bytes) {
    for (const auto& op : ops) {
        if (op.offset > region_bytes || op.bytes > region_bytes - op.offset) {
            return Refusal::kOutOfRange;
        }
    }
    return Refusal::kNone;
}

std::optional<ReadReplyDesc> decodeReadReply(std::uint16_t channel,
                                             std::span<const std::byte> payload) {
    ReadReplyDesc d;
    if (channel != kReadReplyChannel || payload.size() != sizeof(d)) return std::nullopt;
    std::memcpy(&d, payload.data(), sizeof(d));
    return d;
}

std::optional<RegionMemberWire> decodeRegionDescriptor(std::span<const std::byte> blob,
                                                       int world_size) {
    RegionMemberWire m;
    if (blob.size() < sizeof(m.head)) return std::nullopt;
    std::memcpy(&m.head, blob.data(), sizeof(m.head));
    if (m.head.rank < 0 || m.head.rank >= world_size ||
        blob.size() - sizeof(m.head) != m.head.info_bytes) {
        return std::nullopt;
    }
    m.info.assign(blob.begin() + sizeof(m.head), blob.end());
    return m;
}

}  // namespace strata::comm::ucx

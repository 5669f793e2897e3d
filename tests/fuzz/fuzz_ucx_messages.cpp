// Fuzz target: what the remote tier's transport (comm/ucx) accepts from a peer. Every input is
// checked twice:
// - as raw bytes off the wire: MessageVerifier::verify on each stream. Without the job secret
//   nothing can be accepted unless it is byte for byte the seal of what it claims (the MAC covers
//   every header field and the payload), and a second delivery of an accepted message is a replay.
// - as the payload of a message an authentic peer sealed: accepted once, then a replay; and the
//   decoders of the read request, the read reply and the region descriptor (wire.h), whose
//   results must agree with the bytes (sizes, ops in range of the region when accepted).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "strata/comm/ucx/message_auth.h"
#include "strata/comm/ucx/wire.h"
#include "strata/core/log.h"

using namespace strata;
using namespace strata::comm::ucx;

namespace {

constexpr int kWorld = 4;

const JobSecret& secret() {
    static const JobSecret s = [] {
        std::vector<std::byte> bytes(JobSecret::kBytes);
        for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = std::byte(i * 37 + 11);
        return std::move(JobSecret::fromBytes(bytes)).value();
    }();
    return s;
}

void checkRaw(std::span<const std::byte> message) {
    for (auto stream : {Stream::kControl, Stream::kReadRequest, Stream::kReadReply}) {
        MessageVerifier verifier(secret(), kWorld);
        MessageHeader h;
        std::span<const std::byte> payload;
        const Verdict v = verifier.verify(message, stream, &h, &payload);
        if (v != Verdict::kAccepted) continue;
        STRATA_FUZZ_CHECK(payload.size() + sizeof(MessageHeader) == message.size());
        const auto resealed = sealMessage(secret(), h.channel, h.src_rank, h.seq, payload);
        STRATA_FUZZ_CHECK(resealed.size() == message.size() &&
                          std::equal(resealed.begin(), resealed.end(), message.begin()));
        MessageHeader h2;
        std::span<const std::byte> p2;
        const Verdict again = verifier.verify(message, stream, &h2, &p2);
        STRATA_FUZZ_CHECK(again ==
                          (stream == Stream::kReadReply ? Verdict::kAccepted : Verdict::kReplayed));
    }
}

void checkDecoders(std::span<const std::byte> payload) {
    if (auto q = decodeReadRequest(kReadRequestChannel, payload)) {
        STRATA_FUZZ_CHECK(q->ops.size() == q->head.num_ops);
        STRATA_FUZZ_CHECK(q->ops.size() <= kMaxOpsPerRequest);
        STRATA_FUZZ_CHECK(payload.size() ==
                          sizeof(ReadRequestHead) + q->ops.size() * sizeof(ReadOpWire));
        for (std::uint64_t region : {std::uint64_t{0}, std::uint64_t{4096}, ~std::uint64_t{0}}) {
            if (checkReadOps(q->ops, region) != Refusal::kNone) continue;
            for (const auto& op : q->ops) {
                STRATA_FUZZ_CHECK(op.offset <= region && op.bytes <= region - op.offset);
            }
        }
    }
    STRATA_FUZZ_CHECK(!decodeReadRequest(kReadReplyChannel, payload));
    if (auto d = decodeReadReply(kReadReplyChannel, payload)) {
        STRATA_FUZZ_CHECK(payload.size() == sizeof(ReadReplyDesc));
    }
    STRATA_FUZZ_CHECK(!decodeReadReply(kReadRequestChannel, payload));
    if (auto m = decodeRegionDescriptor(payload, kWorld)) {
        STRATA_FUZZ_CHECK(m->head.rank >= 0 && m->head.rank < kWorld);
        STRATA_FUZZ_CHECK(m->info.size() == m->head.info_bytes);
        STRATA_FUZZ_CHECK(payload.size() == sizeof(RegionWire) + m->info.size());
    }
}

void checkSealed(std::span<const std::byte> payload, std::uint16_t channel, int src,
                 std::uint64_t seq) {
    const auto message = sealMessage(secret(), channel, src, seq, payload);
    MessageVerifier verifier(secret(), kWorld);
    MessageHeader h;
    std::span<const std::byte> got;
    const Verdict v = verifier.verify(message, Stream::kControl, &h, &got);
    if (seq == 0) {
        STRATA_FUZZ_CHECK(v == Verdict::kMalformed);  // sequence numbers start at 1
        return;
    }
    STRATA_FUZZ_CHECK(v == Verdict::kAccepted);
    STRATA_FUZZ_CHECK(h.channel == channel && h.src_rank == src && h.seq == seq);
    STRATA_FUZZ_CHECK(got.size() == payload.size() &&
                      std::equal(got.begin(), got.end(), payload.begin()));
    STRATA_FUZZ_CHECK(verifier.verify(message, Stream::kControl, &h, &got) == Verdict::kReplayed);
    // One flipped bit anywhere is never accepted.
    auto flipped = message;
    flipped[(seq ^ payload.size()) % flipped.size()] ^= std::byte{0x10};
    MessageVerifier fresh(secret(), kWorld);
    STRATA_FUZZ_CHECK(fresh.verify(flipped, Stream::kControl, &h, &got) != Verdict::kAccepted);
    checkDecoders(got);
}

template <typename T>
void append(std::vector<std::byte>* out, const T& v) {
    const std::size_t at = out->size();
    out->resize(at + sizeof(v));
    std::memcpy(out->data() + at, &v, sizeof(v));
}

// The 11-byte prefix of a sealed-payload input: channel, sender, sequence number.
std::vector<std::byte> prefix(std::uint16_t channel, std::uint8_t src, std::uint64_t seq) {
    std::vector<std::byte> out;
    append(&out, channel);
    append(&out, src);
    append(&out, seq);
    return out;
}

void writeFile(const std::string& path, const std::vector<std::byte>& bytes) {
    fuzz::writeFile(path, reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
    std::printf("seed: %s (%zu bytes)\n", path.c_str(), bytes.size());
}

// The seed corpus: an authentic control message, and a read request, a read reply and a region
// descriptor as authentic payloads.
void writeSeeds(const std::string& dir) {
    const std::vector<std::byte> hello{std::byte{'h'}, std::byte{'i'}};
    writeFile(dir + "/sealed_control.bin", sealMessage(secret(), 3, 1, 7, hello));

    auto request = prefix(kReadRequestChannel, 2, 1);
    ReadRequestHead head;
    head.batch = 5;
    head.region = 1;
    head.num_ops = 2;
    append(&request, head);
    append(&request, ReadOpWire{0, 1536});
    append(&request, ReadOpWire{3072, 1536});
    writeFile(dir + "/read_request.bin", request);

    auto reply = prefix(kReadReplyChannel, 1, 9);
    ReadReplyDesc desc;
    desc.batch = 5;
    desc.op = 1;
    desc.bytes = 1536;
    append(&reply, desc);
    writeFile(dir + "/read_reply.bin", reply);

    auto region = prefix(0, 0, 2);
    RegionWire w;
    w.rank = 3;
    w.region = 1;
    w.size = 1 << 20;
    w.info_bytes = 4;
    append(&region, w);
    append(&region, std::uint32_t{0xabcd});
    writeFile(dir + "/region_descriptor.bin", region);
}

}  // namespace

// STRATA_FUZZ_WRITE_SEED=DIR: writes the seed corpus into DIR and exits.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
    core::setLogLevel(spdlog::level::off);
    if (const char* dir = std::getenv("STRATA_FUZZ_WRITE_SEED"); dir != nullptr && *dir) {
        writeSeeds(dir);
        std::exit(0);
    }
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
    checkRaw(bytes);
    // The first 11 bytes choose the sealed message's channel, sender and sequence number; the
    // rest is its payload.
    if (size < 11) return 0;
    std::uint16_t channel = 0;
    std::uint64_t seq = 0;
    std::memcpy(&channel, data, 2);
    std::memcpy(&seq, data + 3, 8);
    checkSealed(bytes.subspan(11), channel, data[2] % kWorld, seq);
    return 0;
}

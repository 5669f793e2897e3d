// Unit tests of the UCX transport's wire decoders (comm/ucx wire.h): what a holder and a reader
// accept from a peer. tests/fuzz/fuzz_ucx_messages drives the same functions with arbitrary bytes.
#include <gtest/gtest.h>

#include <cstring>
#include <limits>

#include "strata/comm/ucx/wire.h"

namespace strata::comm::ucx {
namespace {

template <typename T>
void append(std::vector<std::byte>* out, const T& v) {
    const std::size_t at = out->size();
    out->resize(at + sizeof(v));
    std::memcpy(out->data() + at, &v, sizeof(v));
}

std::vector<std::byte> readRequest(std::uint32_t declared_ops, std::size_t actual_ops) {
    std::vector<std::byte> out;
    ReadRequestHead head;
    head.batch = 9;
    head.region = 2;
    head.first_op = 4;
    head.num_ops = declared_ops;
    append(&out, head);
    for (std::size_t i = 0; i < actual_ops; ++i) append(&out, ReadOpWire{i * 100, 100});
    return out;
}

TEST(UcxWire, AReadRequestDecodesWithExactlyItsDeclaredOps) {
    const auto bytes = readRequest(3, 3);
    const auto r = decodeReadRequest(kReadRequestChannel, bytes);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->head.batch, 9u);
    EXPECT_EQ(r->head.region, 2u);
    EXPECT_EQ(r->head.first_op, 4u);
    ASSERT_EQ(r->ops.size(), 3u);
    EXPECT_EQ(r->ops[2].offset, 200u);
    EXPECT_EQ(r->ops[2].bytes, 100u);
    EXPECT_TRUE(decodeReadRequest(kReadRequestChannel, readRequest(0, 0)).has_value());
}

TEST(UcxWire, MalformedReadRequestsAreRefused) {
    EXPECT_FALSE(decodeReadRequest(kReadReplyChannel, readRequest(3, 3)));    // wrong channel
    EXPECT_FALSE(decodeReadRequest(kReadRequestChannel, readRequest(3, 2)));  // ops missing
    EXPECT_FALSE(decodeReadRequest(kReadRequestChannel, readRequest(2, 3)));  // ops extra
    auto odd = readRequest(1, 1);
    odd.push_back(std::byte{0});
    EXPECT_FALSE(decodeReadRequest(kReadRequestChannel, odd));  // a trailing byte
    const auto head_only = readRequest(0, 0);
    EXPECT_FALSE(
        decodeReadRequest(kReadRequestChannel, std::span(head_only).first(head_only.size() - 1)));
    // A count past the limit is refused before anything is sized by it, even if the bytes match.
    const auto many = static_cast<std::uint32_t>(kMaxOpsPerRequest + 1);
    EXPECT_FALSE(decodeReadRequest(kReadRequestChannel, readRequest(many, many)));
    EXPECT_FALSE(decodeReadRequest(kReadRequestChannel, readRequest(0xffffffffu, 0)));
}

TEST(UcxWire, ReadOpsMustLieInsideTheRegionWithoutOverflow) {
    const std::vector<ReadOpWire> inside{{0, 4096}, {4000, 96}, {4096, 0}};
    EXPECT_EQ(checkReadOps(inside, 4096), Refusal::kNone);
    const std::uint64_t max = std::numeric_limits<std::uint64_t>::max();
    for (const ReadOpWire op :
         {ReadOpWire{4000, 97}, ReadOpWire{4097, 0}, ReadOpWire{1, max}, ReadOpWire{max, 2}}) {
        const std::vector<ReadOpWire> ops{{0, 16}, op};
        EXPECT_EQ(checkReadOps(ops, 4096), Refusal::kOutOfRange)
            << "offset " << op.offset << " bytes " << op.bytes;
    }
}

TEST(UcxWire, AReadReplyIsExactlyOneDescriptorOnItsChannel) {
    ReadReplyDesc d;
    d.batch = 3;
    d.op = 1;
    d.bytes = 512;
    std::vector<std::byte> bytes;
    append(&bytes, d);
    const auto r = decodeReadReply(kReadReplyChannel, bytes);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->batch, 3u);
    EXPECT_EQ(r->op, 1u);
    EXPECT_EQ(r->bytes, 512u);
    EXPECT_FALSE(decodeReadReply(kReadRequestChannel, bytes));
    bytes.push_back(std::byte{0});
    EXPECT_FALSE(decodeReadReply(kReadReplyChannel, bytes));
    EXPECT_FALSE(decodeReadReply(kReadReplyChannel, std::span(bytes).first(sizeof(d) - 1)));
}

TEST(UcxWire, ARegionDescriptorNamesARankOfTheJobAndCarriesItsInfo) {
    auto descriptor = [](int rank, std::uint32_t declared, std::size_t actual) {
        RegionWire w;
        w.rank = rank;
        w.region = 7;
        w.size = 1 << 20;
        w.info_bytes = declared;
        std::vector<std::byte> out;
        append(&out, w);
        out.resize(out.size() + actual, std::byte{0x5a});
        return out;
    };
    const auto m = decodeRegionDescriptor(descriptor(3, 5, 5), 4);
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->head.rank, 3);
    EXPECT_EQ(m->head.region, 7u);
    EXPECT_EQ(m->info, std::vector<std::byte>(5, std::byte{0x5a}));
    EXPECT_FALSE(decodeRegionDescriptor(descriptor(4, 5, 5), 4));   // rank outside the job
    EXPECT_FALSE(decodeRegionDescriptor(descriptor(-1, 5, 5), 4));  // negative rank
    EXPECT_FALSE(decodeRegionDescriptor(descriptor(0, 5, 4), 4));   // info short
    EXPECT_FALSE(decodeRegionDescriptor(descriptor(0, 5, 6), 4));   // info long
    const auto whole = descriptor(0, 0, 0);
    EXPECT_FALSE(decodeRegionDescriptor(std::span(whole).first(10), 4));  // a short header
}

}  // namespace
}  // namespace strata::comm::ucx

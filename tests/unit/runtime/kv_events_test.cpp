// KV events on the wire: the msgpack of a batch decodes (with a decoder written here from the
// msgpack specification) to vLLM's structs in both layouts, every integer and length in its
// shortest form; the publisher's messages carry the topic, a big-endian sequence number and the
// batch, the first one an AllBlocksCleared, stored pages the tokens of their request.
#include <gtest/gtest.h>

#include <bit>
#include <chrono>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <variant>
#include <vector>
#include <zmq.hpp>

#include "strata/runtime/kv_events.h"

namespace strata::runtime {
namespace {

// A decoded msgpack value.
struct Value {
    using Array = std::vector<Value>;
    using Map = std::vector<std::pair<Value, Value>>;
    std::variant<std::nullptr_t, std::uint64_t, std::int64_t, double, std::string, Array, Map> v;

    bool isNil() const { return std::holds_alternative<std::nullptr_t>(v); }
    std::uint64_t u() const { return std::get<std::uint64_t>(v); }
    std::int64_t i() const {
        if (auto* p = std::get_if<std::uint64_t>(&v)) return static_cast<std::int64_t>(*p);
        return std::get<std::int64_t>(v);
    }
    const std::string& s() const { return std::get<std::string>(v); }
    const Array& a() const { return std::get<Array>(v); }
    const Map& m() const { return std::get<Map>(v); }
    // The value under a string key of a map; fails the test when absent.
    const Value& at(const std::string& key) const {
        for (const auto& [k, val] : m()) {
            if (k.s() == key) return val;
        }
        ADD_FAILURE() << "no key " << key;
        static const Value nil;
        return nil;
    }
};

class Decoder {
public:
    explicit Decoder(std::string_view bytes) : b_(bytes) {}
    Value value() {
        const std::uint8_t t = byte();
        if (t <= 0x7f) return {std::uint64_t{t}};
        if (t >= 0xe0) return {std::int64_t{static_cast<std::int8_t>(t)}};
        if ((t & 0xe0) == 0xa0) return {str(t & 0x1f)};
        if ((t & 0xf0) == 0x90) return array(t & 0x0f);
        if ((t & 0xf0) == 0x80) return map(t & 0x0f);
        switch (t) {
            case 0xc0:
                return {nullptr};
            case 0xcc:
                return {be(1)};
            case 0xcd:
                return {be(2)};
            case 0xce:
                return {be(4)};
            case 0xcf:
                return {be(8)};
            case 0xd0:
                return {std::int64_t{static_cast<std::int8_t>(be(1))}};
            case 0xd1:
                return {std::int64_t{static_cast<std::int16_t>(be(2))}};
            case 0xd2:
                return {std::int64_t{static_cast<std::int32_t>(be(4))}};
            case 0xd3:
                return {static_cast<std::int64_t>(be(8))};
            case 0xcb:
                return {std::bit_cast<double>(be(8))};
            case 0xd9:
                return {str(be(1))};
            case 0xda:
                return {str(be(2))};
            case 0xdb:
                return {str(be(4))};
            case 0xdc:
                return array(be(2));
            case 0xdd:
                return array(be(4));
            case 0xde:
                return map(be(2));
            case 0xdf:
                return map(be(4));
        }
        ADD_FAILURE() << "unexpected msgpack type byte " << int{t};
        return {nullptr};
    }
    bool done() const { return pos_ == b_.size(); }
    // The type byte of the next value (to check the encoder chose the shortest form).
    std::uint8_t peek() const { return static_cast<std::uint8_t>(b_.at(pos_)); }

private:
    std::uint8_t byte() { return static_cast<std::uint8_t>(b_.at(pos_++)); }
    std::uint64_t be(int n) {
        std::uint64_t v = 0;
        for (int k = 0; k < n; ++k) v = (v << 8) | byte();
        return v;
    }
    std::string str(std::size_t n) {
        std::string s(b_.substr(pos_, n));
        EXPECT_EQ(s.size(), n) << "string runs past the end";
        pos_ += n;
        return s;
    }
    Value array(std::size_t n) {
        Value::Array a;
        for (std::size_t k = 0; k < n; ++k) a.push_back(value());
        return {std::move(a)};
    }
    Value map(std::size_t n) {
        Value::Map m;
        for (std::size_t k = 0; k < n; ++k) {
            Value key = value();
            m.emplace_back(std::move(key), value());
        }
        return {std::move(m)};
    }
    std::string_view b_;
    std::size_t pos_ = 0;
};

Value decode(const std::string& bytes) {
    Decoder d(bytes);
    Value v = d.value();
    EXPECT_TRUE(d.done()) << "bytes after the batch";
    return v;
}

std::vector<std::string> keysOf(const Value& map) {
    std::vector<std::string> out;
    for (const auto& [k, v] : map.m()) out.push_back(k.s());
    return out;
}

KvWireBatch sampleBatch() {
    KvWireBatch b;
    b.ts = 1700000000.25;
    b.data_parallel_rank = 3;
    KvWireEvent cleared;
    cleared.type = KvWireEvent::Type::kAllBlocksCleared;
    KvWireEvent stored;
    stored.block_hashes = {0,
                           127,
                           128,
                           255,
                           256,
                           65535,
                           65536,
                           0xffffffffull,
                           0x100000000ull,
                           std::numeric_limits<std::uint64_t>::max()};
    stored.parent_block_hash = 0x8000000000000001ull;
    stored.token_ids = {0,
                        5,
                        -1,
                        -32,
                        -33,
                        -128,
                        -129,
                        -32768,
                        -32769,
                        70000,
                        std::numeric_limits<std::int32_t>::min()};
    for (int t = 0; t < 30; ++t) stored.token_ids.push_back(t * 1000);
    stored.block_size = 64;
    stored.medium = "GPU";
    KvWireEvent removed;
    removed.type = KvWireEvent::Type::kBlockRemoved;
    removed.block_hashes = {42};
    removed.medium = "CPU";
    KvWireEvent root;  // a prompt's first page: no parent, tokens unknown
    root.block_hashes = {7};
    root.block_size = 64;
    root.medium = "DISK";
    b.events = {cleared, stored, removed, root};
    return b;
}

TEST(KvEventEncoder, MapLayoutIsVllmsStructs) {
    const KvWireBatch b = sampleBatch();
    const Value v = decode(encodeKvBatch(b, KvWireLayout::kMap));
    EXPECT_EQ(keysOf(v), (std::vector<std::string>{"ts", "events", "data_parallel_rank"}));
    EXPECT_EQ(std::get<double>(v.at("ts").v), 1700000000.25);
    EXPECT_EQ(v.at("data_parallel_rank").u(), 3u);
    const auto& ev = v.at("events").a();
    ASSERT_EQ(ev.size(), 4u);
    EXPECT_EQ(keysOf(ev[0]), std::vector<std::string>{"type"});
    EXPECT_EQ(ev[0].at("type").s(), "AllBlocksCleared");
    EXPECT_EQ(keysOf(ev[1]),
              (std::vector<std::string>{"type", "block_hashes", "parent_block_hash", "token_ids",
                                        "block_size", "lora_id", "medium", "lora_name"}));
    EXPECT_EQ(ev[1].at("type").s(), "BlockStored");
    const auto& hashes = ev[1].at("block_hashes").a();
    ASSERT_EQ(hashes.size(), b.events[1].block_hashes.size());
    for (std::size_t k = 0; k < hashes.size(); ++k) {
        EXPECT_EQ(hashes[k].u(), b.events[1].block_hashes[k]);
    }
    EXPECT_EQ(ev[1].at("parent_block_hash").u(), 0x8000000000000001ull);
    const auto& tokens = ev[1].at("token_ids").a();
    ASSERT_EQ(tokens.size(), b.events[1].token_ids.size());
    for (std::size_t k = 0; k < tokens.size(); ++k) {
        EXPECT_EQ(tokens[k].i(), b.events[1].token_ids[k]) << "token " << k;
    }
    EXPECT_EQ(ev[1].at("block_size").u(), 64u);
    EXPECT_TRUE(ev[1].at("lora_id").isNil());
    EXPECT_EQ(ev[1].at("medium").s(), "GPU");
    EXPECT_TRUE(ev[1].at("lora_name").isNil());
    EXPECT_EQ(keysOf(ev[2]), (std::vector<std::string>{"type", "block_hashes", "medium"}));
    EXPECT_EQ(ev[2].at("type").s(), "BlockRemoved");
    EXPECT_EQ(ev[2].at("block_hashes").a().at(0).u(), 42u);
    EXPECT_EQ(ev[2].at("medium").s(), "CPU");
    EXPECT_TRUE(ev[3].at("parent_block_hash").isNil());
    EXPECT_TRUE(ev[3].at("token_ids").a().empty());
    EXPECT_EQ(ev[3].at("medium").s(), "DISK");
}

TEST(KvEventEncoder, ArrayLayoutIsTheArrayLikeStructs) {
    KvWireBatch b = sampleBatch();
    const Value v = decode(encodeKvBatch(b, KvWireLayout::kArray));
    ASSERT_EQ(v.a().size(), 3u);
    EXPECT_EQ(v.a()[2].u(), 3u);
    const auto& ev = v.a()[1].a();
    ASSERT_EQ(ev.size(), 4u);
    ASSERT_EQ(ev[0].a().size(), 1u);
    EXPECT_EQ(ev[0].a()[0].s(), "AllBlocksCleared");
    const auto& st = ev[1].a();
    ASSERT_EQ(st.size(), 8u);
    EXPECT_EQ(st[0].s(), "BlockStored");
    EXPECT_EQ(st[1].a().back().u(), std::numeric_limits<std::uint64_t>::max());
    EXPECT_EQ(st[2].u(), 0x8000000000000001ull);
    EXPECT_EQ(st[3].a().at(10).i(), std::numeric_limits<std::int32_t>::min());
    EXPECT_EQ(st[4].u(), 64u);
    EXPECT_TRUE(st[5].isNil());
    EXPECT_EQ(st[6].s(), "GPU");
    EXPECT_TRUE(st[7].isNil());
    const auto& rm = ev[2].a();
    ASSERT_EQ(rm.size(), 3u);
    EXPECT_EQ(rm[0].s(), "BlockRemoved");
    EXPECT_EQ(rm[2].s(), "CPU");
    // Without a DP rank the batch has two elements (a trailing default is left out).
    b.data_parallel_rank.reset();
    EXPECT_EQ(decode(encodeKvBatch(b, KvWireLayout::kArray)).a().size(), 2u);
    EXPECT_EQ(keysOf(decode(encodeKvBatch(b, KvWireLayout::kMap))),
              (std::vector<std::string>{"ts", "events"}));
}

TEST(KvEventEncoder, ExactBytesOfASmallBatch) {
    KvWireBatch b;
    b.ts = 1.5;
    b.data_parallel_rank = 0;
    KvWireEvent cleared;
    cleared.type = KvWireEvent::Type::kAllBlocksCleared;
    b.events = {cleared};
    // [1.5, [["AllBlocksCleared"]], 0]: fixarray 3, float64 1.5 (0x3ff8...), fixarray 1,
    // fixarray 1, fixstr 16, the name, positive fixint 0.
    std::string want = "\x93\xcb\x3f\xf8";
    want.append(6, '\0');
    want += "\x91\x91\xb0";
    want += "AllBlocksCleared";
    want.push_back('\0');
    EXPECT_EQ(encodeKvBatch(b, KvWireLayout::kArray), want);
}

TEST(KvEventEncoder, LongStringsAndArraysUseTheirWideHeaders) {
    KvWireBatch b;
    KvWireEvent e;
    e.block_hashes.assign(70000, 9);  // array 32
    e.token_ids.assign(300, 1);       // array 16
    e.medium = std::string(40, 'm');  // str 8
    e.block_size = 64;
    b.events = {e};
    const std::string bytes = encodeKvBatch(b, KvWireLayout::kArray);
    const Value v = decode(bytes);
    const auto& st = v.a()[1].a()[0].a();
    EXPECT_EQ(st[1].a().size(), 70000u);
    EXPECT_EQ(st[3].a().size(), 300u);
    EXPECT_EQ(st[6].s(), std::string(40, 'm'));
    // Shortest forms: the hashes array's header is array32 (0xdd), the tokens' array16 (0xdc).
    EXPECT_NE(bytes.find("\xdd\x00\x01\x11\x70", 0, 5), std::string::npos);
    EXPECT_NE(bytes.find("\xdc\x01\x2c", 0, 3), std::string::npos);
    EXPECT_NE(bytes.find("\xd9\x28", 0, 2), std::string::npos);
}

TEST(KvEventEndpoint, DpReplicasOffsetThePortAsVllmDoes) {
    EXPECT_EQ(*kvEventsEndpointFor("tcp://*:5557", 0), "tcp://*:5557");
    EXPECT_EQ(*kvEventsEndpointFor("tcp://*:5557", 2), "tcp://*:5559");
    EXPECT_EQ(*kvEventsEndpointFor("tcp://10.0.0.1:7000", 1), "tcp://10.0.0.1:7001");
    EXPECT_EQ(*kvEventsEndpointFor("tcp://127.0.0.1:*", 3), "tcp://127.0.0.1:*");
    EXPECT_EQ(*kvEventsEndpointFor("inproc://cache", 1), "inproc://cache_dp1");
    EXPECT_EQ(*kvEventsEndpointFor("ipc:///tmp/kv", 1), "ipc:///tmp/kv");
    auto bad = kvEventsEndpointFor("tcp://host:port", 1);
    ASSERT_FALSE(bad.isOk());
    EXPECT_NE(bad.status().message().find("tcp://host:port"), std::string::npos);
}

TEST(KvEventPublisher, RejectsAMalformedEndpoint) {
    KvEventOptions o;
    o.endpoint = "localhost:5557";
    auto p = KvEventPublisher::create(o);
    ASSERT_FALSE(p.isOk());
    EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(p.status().message().find("localhost:5557"), std::string::npos);
}

std::vector<zmq::message_t> receive(zmq::socket_t& sub) {
    std::vector<zmq::message_t> parts;
    do {
        zmq::message_t m;
        EXPECT_TRUE(sub.recv(m).has_value());
        parts.push_back(std::move(m));
    } while (parts.back().more());
    return parts;
}

std::uint64_t sequenceOf(const zmq::message_t& m) {
    EXPECT_EQ(m.size(), 8u);
    std::uint64_t v = 0;
    for (std::size_t k = 0; k < 8; ++k) v = (v << 8) | m.data<unsigned char>()[k];
    return v;
}

TEST(KvEventPublisher, PublishesBatchesToASubscriber) {
    KvEventOptions o;
    o.endpoint = "tcp://127.0.0.1:*";  // a wildcard: the publisher binds, on a free port
    o.topic = "kv";
    o.data_parallel_rank = 1;
    o.block_size = 2;
    o.wait_subscriber = std::chrono::milliseconds(60000);
    auto created = KvEventPublisher::create(o);
    ASSERT_TRUE(created.isOk()) << created.status().toString();
    KvEventPublisher& pub = **created;
    ASSERT_TRUE(pub.endpoint().starts_with("tcp://127.0.0.1:")) << pub.endpoint();
    ASSERT_NE(pub.endpoint(), o.endpoint);
    zmq::context_t ctx;
    zmq::socket_t sub(ctx, zmq::socket_type::sub);
    sub.set(zmq::sockopt::subscribe, "");
    sub.set(zmq::sockopt::rcvtimeo, 60000);  // a bound on a hang; normally milliseconds
    sub.connect(pub.endpoint());

    const std::vector<std::int32_t> tokens = {10, 11, 12, 13, 14};
    const std::vector<core::PageKey> keys = {{0x1111, 0xa}, {0x2222, 0xb}};
    pub.noteRequest(5, tokens);
    controller::KvEventSink sink = pub.sink();
    controller::KvEvent stored;
    stored.keys = std::span(keys).subspan(1);
    stored.parent = keys[0];
    stored.request = 5;
    stored.first_page = 1;
    sink(stored);
    ASSERT_TRUE(pub.flush().isOk());
    ASSERT_TRUE(pub.flush().isOk());  // nothing queued: nothing sent
    controller::KvEvent removed;
    removed.kind = controller::KvEventKind::kRemoved;
    removed.tier = controller::KvTier::kHost;
    removed.keys = keys;
    sink(removed);
    ASSERT_TRUE(pub.flush().isOk());

    auto first = receive(sub);
    ASSERT_EQ(first.size(), 3u);
    EXPECT_EQ(first[0].to_string(), "kv");
    EXPECT_EQ(sequenceOf(first[1]), 0u);
    const Value b0 = decode(first[2].to_string());
    EXPECT_EQ(b0.at("data_parallel_rank").u(), 1u);
    const auto& ev0 = b0.at("events").a();
    ASSERT_EQ(ev0.size(), 2u);
    EXPECT_EQ(ev0[0].at("type").s(), "AllBlocksCleared");
    EXPECT_EQ(ev0[1].at("type").s(), "BlockStored");
    EXPECT_EQ(ev0[1].at("block_hashes").a().at(0).u(), 0x2222u);
    EXPECT_EQ(ev0[1].at("parent_block_hash").u(), 0x1111u);
    const auto& tok = ev0[1].at("token_ids").a();  // page 1 of size 2: tokens 12, 13
    ASSERT_EQ(tok.size(), 2u);
    EXPECT_EQ(tok[0].i(), 12);
    EXPECT_EQ(tok[1].i(), 13);
    EXPECT_EQ(ev0[1].at("medium").s(), "GPU");

    auto second = receive(sub);
    ASSERT_EQ(second.size(), 3u);
    EXPECT_EQ(sequenceOf(second[1]), 1u);
    const Value b1 = decode(second[2].to_string());
    const auto& ev1 = b1.at("events").a();
    ASSERT_EQ(ev1.size(), 1u);
    EXPECT_EQ(ev1[0].at("type").s(), "BlockRemoved");
    EXPECT_EQ(ev1[0].at("block_hashes").a().size(), 2u);
    EXPECT_EQ(ev1[0].at("medium").s(), "CPU");

    const KvEventCounts& c = pub.counts();
    EXPECT_EQ(c.batches, 2u);
    EXPECT_EQ(c.events, 3u);
    EXPECT_EQ(c.cleared, 1u);
    EXPECT_EQ(c.stored.at("GPU"), 1u);
    EXPECT_EQ(c.removed.at("CPU"), 2u);
    EXPECT_EQ(c.dropped_batches, 0u);
}

TEST(KvEventPublisher, ASubscriberThatDoesNotReadNeverBlocksIt) {
    KvEventOptions o;
    o.endpoint = "tcp://127.0.0.1:*";
    o.send_hwm = 1;
    o.wait_subscriber = std::chrono::milliseconds(60000);
    auto created = KvEventPublisher::create(o);
    ASSERT_TRUE(created.isOk()) << created.status().toString();
    KvEventPublisher& pub = **created;
    zmq::context_t ctx;
    zmq::socket_t sub(ctx, zmq::socket_type::sub);
    sub.set(zmq::sockopt::subscribe, "");
    sub.set(zmq::sockopt::rcvhwm, 1);
    sub.set(zmq::sockopt::rcvbuf, 4096);
    sub.connect(pub.endpoint());
    std::vector<core::PageKey> keys(5000, core::PageKey{3, 4});
    controller::KvEvent e;
    e.keys = keys;
    // 45 MB into a subscriber that reads nothing, with queues of one message: the publisher
    // must come back at once every time, dropping (and counting) what does not fit.
    const auto start = std::chrono::steady_clock::now();
    for (int k = 0; k < 1000; ++k) {
        pub.add(e);
        ASSERT_TRUE(pub.flush().isOk());
    }
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(60));
    const KvEventCounts& c = pub.counts();
    EXPECT_GT(c.dropped_batches, 0u);
    EXPECT_EQ(c.batches + c.dropped_batches, 1000u);
    EXPECT_EQ(c.events + c.dropped_events, 1001u);  // and the first batch's AllBlocksCleared
    EXPECT_EQ(c.stored.at("GPU"), c.stored_events.at("GPU") * keys.size());
}

}  // namespace
}  // namespace strata::runtime

// The msgpack encoding of KV event batches (kv_events.h). A small writer of the few msgpack types
// the batches use (nil, unsigned and signed integers, float64, str, array, map), each value in its
// shortest form as msgpack's specification asks; then the batch in either layout of msgspec's
// structs (tagged: the class name under "type", or first in an array_like event).
#include <bit>
#include <cstring>

#include "strata/runtime/kv_events.h"

namespace strata::runtime {

namespace {

class MsgpackWriter {
public:
    void nil() { out_.push_back(static_cast<char>(0xc0)); }

    void uint(std::uint64_t v) {
        if (v < 0x80) {
            byte(v);
        } else if (v <= 0xff) {
            byte(0xcc);
            be(v, 1);
        } else if (v <= 0xffff) {
            byte(0xcd);
            be(v, 2);
        } else if (v <= 0xffffffffu) {
            byte(0xce);
            be(v, 4);
        } else {
            byte(0xcf);
            be(v, 8);
        }
    }

    void integer(std::int64_t v) {
        if (v >= 0) return uint(static_cast<std::uint64_t>(v));
        const auto u = static_cast<std::uint64_t>(v);
        if (v >= -32) {
            byte(u & 0xff);  // negative fixint
        } else if (v >= -128) {
            byte(0xd0);
            be(u, 1);
        } else if (v >= -32768) {
            byte(0xd1);
            be(u, 2);
        } else if (v >= -2147483648LL) {
            byte(0xd2);
            be(u, 4);
        } else {
            byte(0xd3);
            be(u, 8);
        }
    }

    void float64(double v) {
        byte(0xcb);
        be(std::bit_cast<std::uint64_t>(v), 8);
    }

    void str(std::string_view s) {
        const std::size_t n = s.size();
        if (n < 32) {
            byte(0xa0 | n);
        } else if (n <= 0xff) {
            byte(0xd9);
            be(n, 1);
        } else if (n <= 0xffff) {
            byte(0xda);
            be(n, 2);
        } else {
            byte(0xdb);
            be(n, 4);
        }
        out_.append(s);
    }

    void array(std::size_t n) { header(n, 0x90, 0xdc, 0xdd); }
    void map(std::size_t n) { header(n, 0x80, 0xde, 0xdf); }

    std::string take() { return std::move(out_); }

private:
    void byte(std::uint64_t b) { out_.push_back(static_cast<char>(static_cast<unsigned char>(b))); }
    void be(std::uint64_t v, int bytes) {
        for (int i = bytes - 1; i >= 0; --i) byte((v >> (8 * i)) & 0xff);
    }
    void header(std::size_t n, std::uint8_t fix, std::uint8_t h16, std::uint8_t h32) {
        if (n < 16) {
            byte(fix | n);
        } else if (n <= 0xffff) {
            byte(h16);
            be(n, 2);
        } else {
            byte(h32);
            be(n, 4);
        }
    }
    std::string out_;
};

// Writes a msgspec struct: a map of name -> value, or an array of values, the tag first.
class StructWriter {
public:
    StructWriter(MsgpackWriter& w, KvWireLayout layout)
        : w_(w), map_(layout == KvWireLayout::kMap) {}
    void begin(std::size_t fields) { map_ ? w_.map(fields) : w_.array(fields); }
    MsgpackWriter& field(std::string_view name) {
        if (map_) w_.str(name);
        return w_;
    }

private:
    MsgpackWriter& w_;
    bool map_;
};

void writeHashes(MsgpackWriter& w, const std::vector<std::uint64_t>& hashes) {
    w.array(hashes.size());
    for (auto h : hashes) w.uint(h);
}

void writeEvent(MsgpackWriter& w, KvWireLayout layout, const KvWireEvent& e) {
    StructWriter s(w, layout);
    switch (e.type) {
        case KvWireEvent::Type::kBlockStored: {
            s.begin(8);
            s.field("type").str("BlockStored");
            writeHashes(s.field("block_hashes"), e.block_hashes);
            if (e.parent_block_hash) {
                s.field("parent_block_hash").uint(*e.parent_block_hash);
            } else {
                s.field("parent_block_hash").nil();
            }
            s.field("token_ids").array(e.token_ids.size());
            for (auto t : e.token_ids) w.integer(t);
            s.field("block_size").uint(e.block_size);
            s.field("lora_id").nil();
            s.field("medium").str(e.medium);
            s.field("lora_name").nil();
            break;
        }
        case KvWireEvent::Type::kBlockRemoved:
            s.begin(3);
            s.field("type").str("BlockRemoved");
            writeHashes(s.field("block_hashes"), e.block_hashes);
            s.field("medium").str(e.medium);
            break;
        case KvWireEvent::Type::kAllBlocksCleared:
            s.begin(1);
            s.field("type").str("AllBlocksCleared");
            break;
    }
}

}  // namespace

std::string_view kvMediumOf(controller::KvTier tier) noexcept {
    switch (tier) {
        case controller::KvTier::kDevice:
            return "GPU";
        case controller::KvTier::kHost:
            return "CPU";
        case controller::KvTier::kStorage:
            return "DISK";
    }
    return "GPU";
}

std::string encodeKvBatch(const KvWireBatch& batch, KvWireLayout layout) {
    MsgpackWriter w;
    StructWriter s(w, layout);
    s.begin(batch.data_parallel_rank ? 3 : 2);
    s.field("ts").float64(batch.ts);
    s.field("events").array(batch.events.size());
    for (const auto& e : batch.events) writeEvent(w, layout, e);
    if (batch.data_parallel_rank) s.field("data_parallel_rank").integer(*batch.data_parallel_rank);
    return w.take();
}

}  // namespace strata::runtime

// KV events for routers: what a replica's tiers store and remove, published on a ZeroMQ PUB socket
// in the wire format of vLLM's ZmqEventPublisher (vllm/distributed/kv_events.py), so that a router
// that consumes an engine's events consumes Strata's. A message is three frames: topic, sequence
// number (8 bytes, big-endian, +1 per batch, dropped batches included) and a msgpack KVEventBatch
// of BlockStored / BlockRemoved / AllBlocksCleared events. Not in libstrata (strata_kv_events,
// linked by strata-run). Ownership: KvEventPublisher owns its ZeroMQ context and socket.
// Thread-safety: one thread (the one that runs the controller) calls a publisher and its sink.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "strata/controller/kv_events.h"
#include "strata/core/enum_names.h"
#include "strata/core/status.h"

namespace strata::runtime {

// How a batch is laid out in msgpack. kMap: vLLM's current structs (msgspec without array_like):
// the batch is a map {"ts", "events", "data_parallel_rank"} and each event a map whose first key
// "type" is the event's name, fields without a default always present (nil when unset). kArray:
// the array_like layout of earlier vLLM releases and of SGLang: [ts, events, dp_rank], each event
// [name, field, ...] in declaration order, trailing defaults left out.
enum class KvWireLayout : std::uint8_t { kMap, kArray };
inline constexpr core::EnumNames<KvWireLayout, 2> kKvWireLayoutNames{
    "kv events layout", {{{KvWireLayout::kMap, "map"}, {KvWireLayout::kArray, "array"}}}};
constexpr const auto& enumNames(KvWireLayout) noexcept { return kKvWireLayoutNames; }
inline Result<KvWireLayout> parseKvWireLayout(std::string_view name) {
    return core::parseEnum<KvWireLayout>(name);
}

// The medium field of a tier: device "GPU", host "CPU", storage "DISK".
std::string_view kvMediumOf(controller::KvTier tier) noexcept;

// One event as it goes on the wire. Block hashes are the low 64 bits of the page keys
// (core::PageKey::lo), unsigned, as vLLM's integer block hashes.
struct KvWireEvent {
    enum class Type : std::uint8_t { kBlockStored, kBlockRemoved, kAllBlocksCleared };
    Type type = Type::kBlockStored;
    std::vector<std::uint64_t> block_hashes;
    std::optional<std::uint64_t> parent_block_hash;  // BlockStored only; nil at a prompt's start
    std::vector<std::int32_t> token_ids;             // BlockStored only; empty when unknown
    std::uint32_t block_size = 0;                    // BlockStored only
    std::string medium;                              // not AllBlocksCleared
};

struct KvWireBatch {
    double ts = 0;  // seconds since the epoch
    std::vector<KvWireEvent> events;
    std::optional<std::int64_t> data_parallel_rank;
};

// The msgpack bytes of a batch (lora_id and lora_name nil; defaulted fields left out).
std::string encodeKvBatch(const KvWireBatch& batch, KvWireLayout layout);

// The endpoint of DP replica `dp_rank`, as vLLM derives it: tcp:// gets its port raised by
// dp_rank (a wildcard port "*" is kept: each replica binds a free one), inproc:// the suffix
// "_dp<rank>", anything else is kept; replica 0 keeps the endpoint.
// kInvalidArgument names an endpoint whose tcp port is not a number.
Result<std::string> kvEventsEndpointFor(const std::string& endpoint, std::int64_t dp_rank);

struct KvEventOptions {
    // tcp://HOST:PORT (or ipc://, inproc://). As vLLM: bound when it contains "*" or "::" or is
    // ipc:// or inproc://, connected otherwise (to a subscriber that binds).
    std::string endpoint;
    std::string topic;  // the first frame of every message ("" as vLLM's default)
    std::int64_t data_parallel_rank = 0;
    std::uint32_t block_size = 64;  // the page size
    KvWireLayout layout = KvWireLayout::kMap;
    int send_hwm = 100000;  // messages queued per subscriber before batches are dropped
    // Before the first batch, wait up to this long for a subscriber (ZeroMQ drops what a PUB
    // socket sends before a subscription arrives); 0: do not wait.
    std::chrono::milliseconds wait_subscriber{0};
    std::chrono::milliseconds linger{2000};  // at close, to deliver what is queued
};

// What a publisher sent (a dropped batch counts in dropped_batches and dropped_events only).
struct KvEventCounts {
    std::uint64_t batches = 0, events = 0;
    std::uint64_t dropped_batches = 0, dropped_events = 0;
    std::uint64_t cleared = 0;                                           // AllBlocksCleared events
    std::map<std::string, std::uint64_t> stored;                         // pages, by medium
    std::map<std::string, std::uint64_t> removed;                        // pages, by medium
    std::map<std::string, std::uint64_t> stored_events, removed_events;  // events, by medium
};

class KvEventPublisher {
public:
    // Opens the socket (kInvalidArgument for a malformed endpoint, kUnavailable when it cannot be
    // bound or connected, both naming the endpoint) and queues an AllBlocksCleared, which tells
    // subscribers to forget what they knew of this publisher.
    static Result<std::unique_ptr<KvEventPublisher>> create(const KvEventOptions& options);
    ~KvEventPublisher();
    KvEventPublisher(const KvEventPublisher&) = delete;
    KvEventPublisher& operator=(const KvEventPublisher&) = delete;

    // The sink to give CacheController::setEventSink; the publisher must outlive its use.
    controller::KvEventSink sink();
    // Queues one event of the controller (the sink calls it).
    void add(const controller::KvEvent& event);
    // The tokens of request `id` (copied), attached to its stored pages until forgetRequest(id).
    void noteRequest(std::uint64_t id, std::span<const std::int32_t> tokens);
    void forgetRequest(std::uint64_t id);

    // Sends the queued events as one batch (nothing when none are queued). Never blocks on a slow
    // or absent subscriber: a batch the socket cannot take now is dropped and counted. The first
    // call waits for a subscriber as the options say. OK unless the socket fails (kUnavailable).
    Status flush();

    // The endpoint in use: a bound one with its port resolved (tcp://127.0.0.1:* becomes
    // tcp://127.0.0.1:PORT), a connected one as given.
    const std::string& endpoint() const noexcept { return endpoint_; }
    const KvEventCounts& counts() const noexcept { return counts_; }
    std::size_t queuedEvents() const noexcept { return queued_.size(); }

private:
    struct Socket;  // the ZeroMQ context and socket
    explicit KvEventPublisher(const KvEventOptions& options);
    KvEventOptions options_;
    std::string endpoint_;
    std::unique_ptr<Socket> socket_;
    std::vector<KvWireEvent> queued_;
    std::unordered_map<std::uint64_t, std::vector<std::int32_t>> tokens_;
    std::uint64_t sequence_ = 0;
    bool waited_ = false;
    KvEventCounts counts_;
};

}  // namespace strata::runtime

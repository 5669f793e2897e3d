// KV events of a CacheController: what it stores in, and removes from, each tier, told to an
// optional sink (runtime/'s KvEventPublisher turns them into vLLM's wire format). The sink only
// observes: it is called synchronously on the thread that runs the controller, at the points where
// the controller changes what a tier holds, and must not call the controller back. Without a sink
// the controller pays one branch per change. Thread-safety: values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>

#include "strata/core/enum_names.h"
#include "strata/core/page_key.h"

namespace strata::controller {

// The tier an event is about: the device pools, the host pools, the storage tier. The remote tier
// (peers' host pools) has no events of its own: each replica publishes its own host tier.
enum class KvTier : std::uint8_t { kDevice, kHost, kStorage };
inline constexpr core::EnumNames<KvTier, 3> kKvTierNames{
    "kv tier",
    {{{KvTier::kDevice, "device"}, {KvTier::kHost, "host"}, {KvTier::kStorage, "storage"}}}};
constexpr const auto& enumNames(KvTier) noexcept { return kKvTierNames; }

enum class KvEventKind : std::uint8_t { kStored, kRemoved };

// One change: the pages `keys` (a run of consecutive pages of one prefix, parent first) were
// stored in, or removed from, `tier`. Stored events carry `parent`, the key of the page before
// keys[0] (none when keys[0] is a prompt's first page). When the pages are a request's own pages
// (insert() adopting them), `request` names it and keys[0] is its prompt page `first_page`, so a
// sink that knows the request's tokens can attach them. The spans live for the call only.
struct KvEvent {
    KvEventKind kind = KvEventKind::kStored;
    KvTier tier = KvTier::kDevice;
    std::span<const core::PageKey> keys;
    std::optional<core::PageKey> parent;
    std::optional<std::uint64_t> request;
    std::size_t first_page = 0;
};

using KvEventSink = std::function<void(const KvEvent&)>;

}  // namespace strata::controller

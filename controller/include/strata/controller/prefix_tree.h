// PrefixTree: the radix tree of cached prefixes across the device and host tiers of one rank.
// A node holds a page-aligned span (one key per page), its device pages and/or host pages, lock
// counts and access data. A node is device-only, device+host or host-only; never neither.
// Every decision is a deterministic function of the call sequence (logical clock, ordered children,
// ties broken by node id), so ranks that make the same calls hold identical trees.
// Ownership: owns its nodes; Node pointers stay valid until the node is removed (a split keeps the
// original object as the lower fragment). Thread-safety: not thread-safe (scheduler thread only).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <tuple>
#include <vector>

#include "strata/core/enum_names.h"
#include "strata/core/page_key.h"
#include "strata/core/status.h"

namespace strata::controller {

using core::PageKey;

// The page index of a slot space that a page does not have (a hole of a trailing-window space).
inline constexpr std::uint32_t kNoPage = 0xFFFFFFFFu;

// Which evictable leaf goes first (ties: least recently used, then the older node id).
// kLru: least recently used. kLfu: fewest hits. kPriority: lowest Node::priority (raised along a
// path by raisePriority: a page is worth what its most important user makes it). kOptimal: the
// farthest Node::next_use, set by a caller that knows the future (setNextUse; Belady's offline
// optimum, for the analysis of a recorded trace, never for a live cache).
enum class EvictionPolicy : std::uint8_t { kLru, kLfu, kPriority, kOptimal };
inline constexpr core::EnumNames<EvictionPolicy, 4> kEvictionPolicyNames{
    "eviction policy",
    {{{EvictionPolicy::kLru, "lru"},
      {EvictionPolicy::kLfu, "lfu"},
      {EvictionPolicy::kPriority, "priority"},
      {EvictionPolicy::kOptimal, "opt"}}}};
constexpr const auto& enumNames(EvictionPolicy) noexcept { return kEvictionPolicyNames; }

struct Node {
    std::uint64_t id = 0;
    Node* parent = nullptr;
    std::map<PageKey, std::unique_ptr<Node>> children;  // keyed by the child's first page key

    std::vector<PageKey> keys;                // one per page
    std::vector<std::uint32_t> device_pages;  // empty: not on device
    std::vector<std::uint32_t> host_pages;    // empty: not on host
    // Hybrid models: the pages of the other slot spaces (a sliding window, a Mamba state), one
    // vector per extra space, like device_pages and host_pages: empty when the node is not in
    // that tier, else one entry per page, kNoPage where the space holds nothing for that page.
    // Every tier that holds the node holds the same pages of every space (its pattern).
    std::vector<std::vector<std::uint32_t>> ext_device, ext_host;

    // Path locks: a lock on a node is counted on it and on every ancestor.
    std::int64_t device_locks = 0;  // > 0: device pages may not be evicted
    std::int64_t host_locks = 0;    // > 0: host pages may not be evicted

    std::uint64_t hit_count = 0;
    std::uint64_t last_access = 0;  // logical clock
    std::uint32_t priority = 0;     // kPriority: highest priority of the requests that used it
    std::uint64_t next_use = 0;     // kOptimal: when the node's deepest page is next referenced
    std::uint64_t backup_op = 0;    // != 0: a device->host copy of this node is in flight
    std::uint64_t load_op = 0;      // != 0: a host->device copy into this node is in flight
    bool from_storage = false;      // host pages fetched from the storage tier, not yet loaded
    bool from_remote = false;       // host pages pulled from the remote tier, not yet loaded

    std::size_t numPages() const noexcept { return keys.size(); }
    bool onDevice() const noexcept { return !device_pages.empty(); }
    bool onHost() const noexcept { return !host_pages.empty(); }
    // Host copy complete (host pages present and no backup in flight).
    bool backedUp() const noexcept { return onHost() && backup_op == 0; }
    bool isRoot() const noexcept { return parent == nullptr; }
    // Whether extra space s holds page i of the node (in whichever tier holds the node).
    bool hasExt(std::size_t s, std::size_t i) const noexcept {
        const auto& v = onDevice() ? ext_device : ext_host;
        return s < v.size() && i < v[s].size() && v[s][i] != kNoPage;
    }

    // Where the node sits in the tree's evictable sets (maintained by PrefixTree::refresh).
    using EvictKey = std::tuple<std::uint64_t, std::uint64_t, std::uint64_t>;
    std::optional<EvictKey> device_evict_key;
    std::optional<EvictKey> host_evict_key;
};

struct MatchResult {
    std::size_t device_pages = 0;  // leading pages resident on device
    std::size_t host_pages = 0;    // following pages resident on host only
    Node* device_last = nullptr;   // deepest node of the device-resident prefix (root if none)
    Node* host_last = nullptr;     // deepest matched node (== device_last when no host hit)
    std::vector<std::uint32_t> device_page_list;  // device pages of the device-resident prefix
    std::vector<Node*> host_chain;                // host-only nodes below device_last, parent first
};

class PrefixTree {
public:
    explicit PrefixTree(EvictionPolicy policy = EvictionPolicy::kLru);
    ~PrefixTree();
    PrefixTree(const PrefixTree&) = delete;
    PrefixTree& operator=(const PrefixTree&) = delete;

    Node* root() noexcept { return root_.get(); }
    const Node* root() const noexcept { return root_.get(); }

    // Longest cached prefix of `keys`. Splits a node where the match ends inside it (the original
    // node object keeps the lower part). Touches the matched path (access clock, not hit count).
    MatchResult match(std::span<const PageKey> keys);

    // Splits `node` so that it keeps its last (numPages - upper_pages) pages and a new parent node
    // takes the first upper_pages. Returns the new upper node. 0 < upper_pages < numPages.
    Node* split(Node* node, std::size_t upper_pages);

    // Adds a new child of `parent` holding `keys` and `device_pages` (one per key). The first key
    // must not already be a child of parent.
    Node* addChild(Node* parent, std::vector<PageKey> keys,
                   std::vector<std::uint32_t> device_pages);
    // Adds a host-only child (pages fetched from a lower tier).
    Node* addHostChild(Node* parent, std::vector<PageKey> keys,
                       std::vector<std::uint32_t> host_pages);

    // Removes a leaf node (no children, no locks, no pending ops). Its pages must already be freed.
    void removeLeaf(Node* node);

    void lockDevice(Node* node, std::int64_t delta);  // path lock; delta +1 or -1
    void lockHost(Node* node, std::int64_t delta);
    void touch(Node* node);   // updates access clock on the path
    void addHit(Node* node);  // hit count + touch
    // Raises the priority of node and its ancestors to at least `priority` (kPriority).
    void raisePriority(Node* node, std::uint32_t priority);
    // Sets node's next use (kOptimal). A split copies it to the upper part: the caller sets the
    // upper part's own value when it matters.
    void setNextUse(Node* node, std::uint64_t next_use);

    // Must be called after any change to a node's pages, locks, pending ops or children, so the
    // evictable sets stay exact (also call for its parent when children change).
    void refresh(Node* node);

    // Device-evictable leaves in eviction order (least valuable first): nodes with device pages,
    // no device locks, no pending ops and no child on device. Returns the first one whose id is not
    // in `skip`, or null.
    Node* nextDeviceVictim(const std::set<std::uint64_t>& skip = {}) const;
    // Host-evictable leaves in eviction order: host-only nodes without children, host locks or
    // pending ops. Null when there is none.
    Node* nextHostVictim() const;

    std::size_t nodeCount() const noexcept { return node_count_; }
    std::uint64_t clock() const noexcept { return clock_; }

    // Visits every node except the root in a deterministic order (pre-order, children by key).
    void forEach(const std::function<void(const Node&)>& fn) const;
    // Digest of the whole tree state (structure, pages, locks, clocks), for cross-rank checks.
    std::uint64_t digest() const;
    // Checks structural invariants (no dead nodes, device-resident set root-contiguous, lock counts
    // consistent with children, evictable sets exact); kInternal describes the first violation.
    Status checkInvariants() const;

private:
    Node::EvictKey evictKey(const Node& n) const noexcept;
    Node* attach(Node* parent, std::vector<PageKey> keys, std::vector<std::uint32_t> device_pages,
                 std::vector<std::uint32_t> host_pages);
    bool deviceEvictable(const Node& n) const noexcept;
    bool hostEvictable(const Node& n) const noexcept;

    EvictionPolicy policy_;
    std::unique_ptr<Node> root_;
    std::uint64_t next_id_ = 1;
    std::uint64_t clock_ = 0;
    std::size_t node_count_ = 0;
    // Ordered so that begin() is the next victim.
    std::map<Node::EvictKey, Node*> device_evictable_;
    std::map<Node::EvictKey, Node*> host_evictable_;
};

}  // namespace strata::controller

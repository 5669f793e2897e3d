#include "strata/controller/prefix_tree.h"

#include <fmt/format.h>

#include <algorithm>

#include "strata/core/check.h"
#include "strata/core/hash.h"

namespace strata::controller {

PrefixTree::PrefixTree(EvictionPolicy policy) : policy_(policy), root_(std::make_unique<Node>()) {
    root_->id = 0;
}

PrefixTree::~PrefixTree() {
    // Iterative teardown: a deep chain of unique_ptr children would recurse once per node.
    std::vector<std::unique_ptr<Node>> stack;
    for (auto& [k, c] : root_->children) stack.push_back(std::move(c));
    root_->children.clear();
    while (!stack.empty()) {
        std::unique_ptr<Node> n = std::move(stack.back());
        stack.pop_back();
        for (auto& [k, c] : n->children) stack.push_back(std::move(c));
        n->children.clear();
    }
}

MatchResult PrefixTree::match(std::span<const PageKey> keys) {
    MatchResult r;
    r.device_last = root_.get();
    r.host_last = root_.get();
    Node* node = root_.get();
    std::size_t pos = 0;
    bool on_device_prefix = true;
    while (pos < keys.size()) {
        auto it = node->children.find(keys[pos]);
        if (it == node->children.end()) break;
        Node* child = it->second.get();
        std::size_t n = 1;
        while (n < child->numPages() && pos + n < keys.size() && child->keys[n] == keys[pos + n]) {
            ++n;
        }
        if (n < child->numPages()) {
            // The match ends inside child: split so that a node boundary falls there.
            child = split(child, n);
        }
        pos += n;
        node = child;
        if (on_device_prefix && child->onDevice()) {
            r.device_pages += n;
            r.device_page_list.insert(r.device_page_list.end(), child->device_pages.begin(),
                                      child->device_pages.end());
            r.device_last = child;
        } else {
            // Device residency is root-contiguous, so everything below is host-only.
            STRATA_CHECK(child->onHost(), "node {} is on neither tier", child->id);
            on_device_prefix = false;
            r.host_pages += n;
            r.host_chain.push_back(child);
        }
        r.host_last = child;
    }
    touch(r.host_last);
    return r;
}

Node* PrefixTree::split(Node* node, std::size_t upper_pages) {
    STRATA_CHECK(upper_pages > 0 && upper_pages < node->numPages(),
                 "split of node {} at {} of {} pages", node->id, upper_pages, node->numPages());
    Node* parent = node->parent;
    auto upper = std::make_unique<Node>();
    Node* u = upper.get();
    u->id = next_id_++;
    u->parent = parent;
    u->keys.assign(node->keys.begin(), node->keys.begin() + upper_pages);
    node->keys.erase(node->keys.begin(), node->keys.begin() + upper_pages);
    auto split_pages = [&](std::vector<std::uint32_t>& from, std::vector<std::uint32_t>& to) {
        if (from.empty()) return;
        to.assign(from.begin(), from.begin() + upper_pages);
        from.erase(from.begin(), from.begin() + upper_pages);
    };
    split_pages(node->device_pages, u->device_pages);
    split_pages(node->host_pages, u->host_pages);
    u->ext_device.resize(node->ext_device.size());
    u->ext_host.resize(node->ext_host.size());
    for (std::size_t s = 0; s < node->ext_device.size(); ++s) {
        split_pages(node->ext_device[s], u->ext_device[s]);
    }
    for (std::size_t s = 0; s < node->ext_host.size(); ++s) {
        split_pages(node->ext_host[s], u->ext_host[s]);
    }
    // Path locks counted on node came from node or its descendants: they pass through u too.
    u->device_locks = node->device_locks;
    u->host_locks = node->host_locks;
    u->hit_count = node->hit_count;
    u->last_access = node->last_access;
    u->priority = node->priority;
    u->next_use = node->next_use;
    u->backup_op = node->backup_op;
    u->load_op = node->load_op;
    u->from_storage = node->from_storage;
    u->from_remote = node->from_remote;

    auto it = parent->children.find(u->keys.front());
    STRATA_CHECK(it != parent->children.end() && it->second.get() == node,
                 "split: node {} not found under its parent", node->id);
    std::unique_ptr<Node> lower = std::move(it->second);
    parent->children.erase(it);
    lower->parent = u;
    u->children.emplace(lower->keys.front(), std::move(lower));
    parent->children.emplace(u->keys.front(), std::move(upper));
    ++node_count_;
    refresh(u);
    refresh(node);
    return u;
}

Node* PrefixTree::attach(Node* parent, std::vector<PageKey> keys,
                         std::vector<std::uint32_t> device_pages,
                         std::vector<std::uint32_t> host_pages) {
    STRATA_CHECK(!keys.empty() && (device_pages.empty() || device_pages.size() == keys.size()) &&
                     (host_pages.empty() || host_pages.size() == keys.size()) &&
                     !(device_pages.empty() && host_pages.empty()),
                 "attach with {} keys, {} device and {} host pages", keys.size(),
                 device_pages.size(), host_pages.size());
    STRATA_CHECK(!parent->children.contains(keys.front()), "attach: key already a child of {}",
                 parent->id);
    auto child = std::make_unique<Node>();
    Node* c = child.get();
    c->id = next_id_++;
    c->parent = parent;
    c->keys = std::move(keys);
    c->device_pages = std::move(device_pages);
    c->host_pages = std::move(host_pages);
    c->last_access = ++clock_;
    parent->children.emplace(c->keys.front(), std::move(child));
    ++node_count_;
    refresh(c);
    refresh(parent);
    return c;
}

Node* PrefixTree::addChild(Node* parent, std::vector<PageKey> keys,
                           std::vector<std::uint32_t> device_pages) {
    STRATA_CHECK(keys.size() == device_pages.size(), "addChild with {} keys and {} pages",
                 keys.size(), device_pages.size());
    return attach(parent, std::move(keys), std::move(device_pages), {});
}

Node* PrefixTree::addHostChild(Node* parent, std::vector<PageKey> keys,
                               std::vector<std::uint32_t> host_pages) {
    STRATA_CHECK(keys.size() == host_pages.size(), "addHostChild with {} keys and {} pages",
                 keys.size(), host_pages.size());
    return attach(parent, std::move(keys), {}, std::move(host_pages));
}

void PrefixTree::removeLeaf(Node* node) {
    STRATA_CHECK(!node->isRoot() && node->children.empty() && node->device_locks == 0 &&
                     node->host_locks == 0 && node->backup_op == 0 && node->load_op == 0 &&
                     node->device_pages.empty() && node->host_pages.empty() &&
                     std::all_of(node->ext_device.begin(), node->ext_device.end(),
                                 [](const auto& e) { return e.empty(); }) &&
                     std::all_of(node->ext_host.begin(), node->ext_host.end(),
                                 [](const auto& e) { return e.empty(); }),
                 "removeLeaf of node {} that is not a free leaf", node->id);
    if (node->device_evict_key) device_evictable_.erase(*node->device_evict_key);
    if (node->host_evict_key) host_evictable_.erase(*node->host_evict_key);
    Node* parent = node->parent;
    parent->children.erase(node->keys.front());
    --node_count_;
    refresh(parent);
}

void PrefixTree::lockDevice(Node* node, std::int64_t delta) {
    for (Node* n = node; n != nullptr && !n->isRoot(); n = n->parent) {
        n->device_locks += delta;
        STRATA_CHECK(n->device_locks >= 0, "device lock underflow on node {}", n->id);
        refresh(n);
    }
}

void PrefixTree::lockHost(Node* node, std::int64_t delta) {
    for (Node* n = node; n != nullptr && !n->isRoot(); n = n->parent) {
        n->host_locks += delta;
        STRATA_CHECK(n->host_locks >= 0, "host lock underflow on node {}", n->id);
        refresh(n);
    }
}

void PrefixTree::touch(Node* node) {
    std::uint64_t now = ++clock_;
    for (Node* n = node; n != nullptr && !n->isRoot(); n = n->parent) {
        n->last_access = now;
        refresh(n);
    }
}

void PrefixTree::addHit(Node* node) {
    if (node->isRoot()) return;
    ++node->hit_count;
    touch(node);
}

void PrefixTree::raisePriority(Node* node, std::uint32_t priority) {
    for (Node* n = node; n != nullptr && !n->isRoot(); n = n->parent) {
        if (n->priority >= priority) continue;
        n->priority = priority;
        refresh(n);
    }
}

void PrefixTree::setNextUse(Node* node, std::uint64_t next_use) {
    if (node->isRoot() || node->next_use == next_use) return;
    node->next_use = next_use;
    refresh(node);
}

Node::EvictKey PrefixTree::evictKey(const Node& n) const noexcept {
    switch (policy_) {
        case EvictionPolicy::kLfu:
            return {n.hit_count, n.last_access, n.id};
        case EvictionPolicy::kPriority:
            return {n.priority, n.last_access, n.id};
        case EvictionPolicy::kOptimal:
            return {~n.next_use, n.last_access, n.id};
        case EvictionPolicy::kLru:
            break;
    }
    return {n.last_access, 0, n.id};
}

bool PrefixTree::deviceEvictable(const Node& n) const noexcept {
    if (n.isRoot() || !n.onDevice() || n.device_locks > 0 || n.backup_op != 0 || n.load_op != 0) {
        return false;
    }
    return std::none_of(n.children.begin(), n.children.end(),
                        [](const auto& kv) { return kv.second->onDevice(); });
}

bool PrefixTree::hostEvictable(const Node& n) const noexcept {
    return !n.isRoot() && n.onHost() && !n.onDevice() && n.children.empty() && n.host_locks == 0 &&
           n.backup_op == 0 && n.load_op == 0;
}

void PrefixTree::refresh(Node* node) {
    if (node == nullptr) return;
    auto update = [&](bool member, std::optional<Node::EvictKey>& slot,
                      std::map<Node::EvictKey, Node*>& set) {
        if (slot) {
            set.erase(*slot);
            slot.reset();
        }
        if (member) {
            slot = evictKey(*node);
            set.emplace(*slot, node);
        }
    };
    update(deviceEvictable(*node), node->device_evict_key, device_evictable_);
    update(hostEvictable(*node), node->host_evict_key, host_evictable_);
}

Node* PrefixTree::nextDeviceVictim(const std::set<std::uint64_t>& skip) const {
    for (const auto& [k, n] : device_evictable_) {
        if (!skip.contains(n->id)) return n;
    }
    return nullptr;
}

Node* PrefixTree::nextHostVictim() const {
    return host_evictable_.empty() ? nullptr : host_evictable_.begin()->second;
}

void PrefixTree::forEach(const std::function<void(const Node&)>& fn) const {
    std::vector<const Node*> stack;
    for (auto it = root_->children.rbegin(); it != root_->children.rend(); ++it) {
        stack.push_back(it->second.get());
    }
    while (!stack.empty()) {
        const Node* n = stack.back();
        stack.pop_back();
        fn(*n);
        for (auto it = n->children.rbegin(); it != n->children.rend(); ++it) {
            stack.push_back(it->second.get());
        }
    }
}

std::uint64_t PrefixTree::digest() const {
    std::uint64_t d = core::foldDigest(0, node_count_);
    d = core::foldDigest(d, clock_);
    forEach([&](const Node& n) {
        d = core::foldDigest(d, n.id);
        d = core::foldDigest(d, n.parent->id);
        d = core::foldDigest(d, n.keys.front().lo);
        d = core::foldDigest(d, n.keys.size());
        for (auto p : n.device_pages) d = core::foldDigest(d, p);
        for (const auto& e : n.ext_device) {
            for (auto p : e) d = core::foldDigest(d, p);
        }
        for (const auto& e : n.ext_host) {
            for (auto p : e) d = core::foldDigest(d, p);
        }
        d = core::foldDigest(d, 0xD0D0);
        for (auto p : n.host_pages) d = core::foldDigest(d, p);
        d = core::foldDigest(d, static_cast<std::uint64_t>(n.device_locks));
        d = core::foldDigest(d, static_cast<std::uint64_t>(n.host_locks));
        d = core::foldDigest(d, n.hit_count);
        d = core::foldDigest(d, n.last_access);
        d = core::foldDigest(d, n.priority);
        d = core::foldDigest(d, n.next_use);
        d = core::foldDigest(d, n.backup_op);
        d = core::foldDigest(d, n.load_op);
        d = core::foldDigest(d, n.from_storage);
        d = core::foldDigest(d, n.from_remote);
    });
    return d;
}

Status PrefixTree::checkInvariants() const {
    std::size_t count = 0;
    std::size_t dev_evictable = 0, host_evictable = 0;
    Status bad;
    auto fail = [&](std::string msg) {
        if (bad.isOk()) bad = Status(StatusCode::kInternal, std::move(msg));
    };
    forEach([&](const Node& n) {
        ++count;
        if (n.keys.empty()) fail(fmt::format("node {} has no pages", n.id));
        if (!n.onDevice() && !n.onHost()) fail(fmt::format("node {} is on neither tier", n.id));
        if (n.onDevice() && n.device_pages.size() != n.keys.size()) {
            fail(fmt::format("node {} has {} device pages for {} keys", n.id, n.device_pages.size(),
                             n.keys.size()));
        }
        for (std::size_t e = 0; e < std::max(n.ext_device.size(), n.ext_host.size()); ++e) {
            const std::size_t dev = e < n.ext_device.size() ? n.ext_device[e].size() : 0;
            const std::size_t host = e < n.ext_host.size() ? n.ext_host[e].size() : 0;
            if (dev != (n.onDevice() ? n.keys.size() : 0) ||
                host != (n.onHost() ? n.keys.size() : 0)) {
                fail(
                    fmt::format("node {} holds {}/{} device/host entries of extra space {} for {} "
                                "keys",
                                n.id, dev, host, e, n.keys.size()));
            } else if (dev != 0 && host != 0) {
                for (std::size_t i = 0; i < dev; ++i) {
                    if ((n.ext_device[e][i] == kNoPage) != (n.ext_host[e][i] == kNoPage)) {
                        fail(
                            fmt::format("node {}: device and host copies of extra space {} "
                                        "differ at page {}",
                                        n.id, e, i));
                        break;
                    }
                }
            }
        }
        if (n.onHost() && n.host_pages.size() != n.keys.size()) {
            fail(fmt::format("node {} has {} host pages for {} keys", n.id, n.host_pages.size(),
                             n.keys.size()));
        }
        if (n.onDevice() && !n.parent->isRoot() && !n.parent->onDevice()) {
            fail(fmt::format("node {} is on device below host-only node {}", n.id, n.parent->id));
        }
        std::int64_t child_dev = 0, child_host = 0;
        for (const auto& [k, c] : n.children) {
            if (k != c->keys.front()) fail(fmt::format("node {} filed under a wrong key", c->id));
            if (c->parent != &n) fail(fmt::format("node {} has a wrong parent", c->id));
            child_dev += c->device_locks;
            child_host += c->host_locks;
        }
        if (n.device_locks < child_dev || n.host_locks < child_host) {
            fail(fmt::format("node {} holds fewer locks than its children", n.id));
        }
        if (n.device_evict_key && *n.device_evict_key != evictKey(n)) {
            fail(fmt::format("node {} is filed under a stale eviction rank", n.id));
        }
        if (deviceEvictable(n) != n.device_evict_key.has_value()) {
            fail(fmt::format("node {} device-evictable set membership is stale", n.id));
        }
        if (hostEvictable(n) != n.host_evict_key.has_value()) {
            fail(fmt::format("node {} host-evictable set membership is stale", n.id));
        }
        dev_evictable += n.device_evict_key.has_value();
        host_evictable += n.host_evict_key.has_value();
    });
    if (count != node_count_)
        fail(fmt::format("{} nodes reachable, {} counted", count, node_count_));
    if (dev_evictable != device_evictable_.size() || host_evictable != host_evictable_.size()) {
        fail("evictable sets hold nodes that are no longer in the tree");
    }
    return bad;
}

}  // namespace strata::controller

// The slot spaces of CacheController (hybrid models): a node's pattern (which pages of each extra
// space it holds), allocating and freeing a node's pages in every space, the usable length of a
// matched prefix under each space's hit policy, and the copies of every pool of every space.
// A non-hybrid model has one space and none of this changes what it does.
#include <fmt/format.h>

#include <algorithm>
#include <numeric>
#include <optional>

#include "controller_ops.h"
#include "strata/core/check.h"
#include "strata/pools/hybrid_layout.h"

namespace strata::controller {

Result<pools::HostPoolGroup> slotGroupOf(const std::vector<SlotSpace>& spaces,
                                         const std::vector<PoolPair>& pools,
                                         const std::vector<std::size_t>& device_pages,
                                         const std::vector<std::size_t>& host_pages,
                                         std::uint32_t page_size) {
    std::vector<pools::GroupEntry> entries;
    for (std::size_t s = 0; s < spaces.size(); ++s) {
        std::string root;  // the entry that owns the space's slots
        for (const PoolPair& p : pools) {
            if (p.space != s) continue;
            const pools::PoolSpec& spec = p.host->spec();
            if (root.empty() && s == 0 && spec.tokens_per_row != 1) {
                pools::GroupEntry anchor;
                anchor.name = spaces[s].name;
                anchor.logical_pages = host_pages[s];
                anchor.device_pages = device_pages[s];
                root = anchor.name;
                entries.push_back(std::move(anchor));
            }
            pools::GroupEntry e;
            e.name = spec.name;
            e.host = p.host;
            e.device = p.device;
            e.layer_map = p.layer_map;
            if (e.layer_map.empty()) {
                e.layer_map.resize(spec.num_layers);
                std::iota(e.layer_map.begin(), e.layer_map.end(), 0u);
            }
            if (root.empty()) {
                e.role = s == 0 ? pools::PoolRole::kAnchor : pools::PoolRole::kIndependent;
                e.hit_policy = spaces[s].hit_policy;
                e.trailing_pages = spaces[s].trailing_pages;
                e.host_pages = host_pages[s];
                e.device_pages = device_pages[s];
                root = e.name;
            } else {
                e.role = pools::PoolRole::kSidecar;
                e.indices_from = root;
                e.ratio = spec.tokens_per_row;
            }
            entries.push_back(std::move(e));
        }
    }
    return pools::HostPoolGroup::create(std::move(entries), page_size);
}

std::vector<std::size_t> CacheController::patternCounts(const Node* node) const {
    std::vector<std::size_t> counts(numSpaces(), 0);
    counts[0] = node->numPages();
    const auto& ext = node->onDevice() ? node->ext_device : node->ext_host;
    for (std::size_t e = 0; e < ext.size(); ++e) {
        counts[e + 1] = static_cast<std::size_t>(
            std::count_if(ext[e].begin(), ext[e].end(), [](auto p) { return p != kNoPage; }));
    }
    return counts;
}

bool CacheController::allocateNodeHost(Node* node) {
    auto pages = allocateHostSpaces(patternCounts(node));
    if (!pages.isOk()) return false;
    SpacePages got = std::move(pages).value();
    node->host_pages = std::move(got[0]);
    node->ext_host.assign(numSpaces() - 1, {});
    for (std::size_t e = 0; e + 1 < numSpaces(); ++e) {
        const auto& pattern = node->ext_device[e];
        auto& out = node->ext_host[e];
        out.assign(pattern.size(), kNoPage);
        std::size_t cursor = 0;
        for (std::size_t i = 0; i < pattern.size(); ++i) {
            if (pattern[i] != kNoPage) out[i] = got[e + 1][cursor++];
        }
    }
    return true;
}

void CacheController::nodeCopies(const Node* node, SpaceCopies* copies) const {
    copies->resize(numSpaces());
    for (std::size_t i = 0; i < node->numPages(); ++i) {
        (*copies)[0].push_back({node->device_pages[i], node->host_pages[i]});
    }
    for (std::size_t e = 0; e + 1 < numSpaces(); ++e) {
        for (std::size_t i = 0; i < node->numPages(); ++i) {
            if (node->ext_device[e][i] == kNoPage) continue;
            (*copies)[e + 1].push_back({node->ext_device[e][i], node->ext_host[e][i]});
        }
    }
}

namespace {

std::vector<std::uint32_t> present(const std::vector<std::uint32_t>& pages) {
    std::vector<std::uint32_t> out;
    for (auto p : pages) {
        if (p != kNoPage) out.push_back(p);
    }
    return out;
}

}  // namespace

void CacheController::emit(KvEventKind kind, KvTier tier, const Node* node, const Request* req,
                           std::size_t pos) const {
    if (!sink_ || node->keys.empty()) return;
    KvEvent ev;
    ev.kind = kind;
    ev.tier = tier;
    ev.keys = node->keys;
    ev.first_page = pos;
    if (kind == KvEventKind::kStored && node->parent != nullptr && !node->parent->isRoot()) {
        ev.parent = node->parent->keys.back();
    }
    if (req != nullptr) ev.request = req->id;
    sink_(ev);
}

void CacheController::freeNodeDevice(Node* node) {
    if (!node->device_pages.empty()) {
        emit(KvEventKind::kRemoved, KvTier::kDevice, node);
        freeDevicePages(node->device_pages);
    }
    node->device_pages.clear();
    for (std::size_t e = 0; e < node->ext_device.size(); ++e) {
        freeSlots(pools::SlotTier::kDevice, e + 1, present(node->ext_device[e]));
        node->ext_device[e].clear();
    }
}

void CacheController::freeNodeHost(Node* node) {
    if (!node->host_pages.empty()) {
        emit(KvEventKind::kRemoved, KvTier::kHost, node);
        freeHostPages(node->host_pages);
    }
    node->host_pages.clear();
    for (std::size_t e = 0; e < node->ext_host.size(); ++e) {
        freeSlots(pools::SlotTier::kHost, e + 1, present(node->ext_host[e]));
        node->ext_host[e].clear();
    }
}

void CacheController::fillPatternHoles(Node* last, Request& req) {
    const std::size_t extra = numSpaces() - 1;
    std::vector<Node*> path;
    for (Node* n = last; n != nullptr && !n->isRoot(); n = n->parent) path.push_back(n);
    std::reverse(path.begin(), path.end());
    std::vector<std::size_t> ends;
    std::size_t pos = 0;
    for (const Node* n : path) ends.push_back(pos += n->numPages());
    auto owned = [&](std::size_t e, std::uint32_t page) {
        return page != kNoPage && std::find(req.ext_owned[e].begin(), req.ext_owned[e].end(),
                                            page) != req.ext_owned[e].end();
    };
    auto in_window = [&](std::size_t e, std::size_t i) {
        const SlotSpace& sp = spaces_[e + 1];
        if (sp.hit_policy == pools::HitPolicy::kAllPages) return true;
        return std::any_of(ends.begin(), ends.end(),
                           [&](std::size_t c) { return i < c && i + sp.trailing_pages >= c; });
    };
    const std::size_t full = req.keys.size();
    std::size_t a = 0;
    for (std::size_t k = 0; k < path.size(); a = ends[k], ++k) {
        Node* node = path[k];
        const std::size_t b = ends[k];
        if (b <= req.reused_pages) continue;  // the tree's own prefix
        // A node whose host copy is being written by an earlier batch is left as it is.
        if (node->onHost() && node->backup_op != 0 &&
            (!open_backup_ || node->backup_op != open_backup_->id)) {
            continue;
        }
        std::vector<std::vector<std::pair<std::size_t, std::uint32_t>>> fills(extra);
        std::vector<std::size_t> counts(numSpaces(), 0);
        bool any = false;
        for (std::size_t e = 0; e < extra; ++e) {
            if (spaces_[e + 1].request_state) {
                std::uint32_t page = kNoPage;
                if (b == full) page = req.state_page[e];
                if (b == req.branch_pages) page = req.branch_state[e];
                if (owned(e, page) && !node->hasExt(e, b - a - 1)) {
                    fills[e].emplace_back(b - a - 1, page);
                }
            } else {
                for (std::size_t i = std::max(a, req.reused_pages); i < b; ++i) {
                    if (!node->hasExt(e, i - a) && in_window(e, i) &&
                        owned(e, req.ext_pages[e][i])) {
                        fills[e].emplace_back(i - a, req.ext_pages[e][i]);
                    }
                }
            }
            counts[e + 1] = fills[e].size();
            any |= !fills[e].empty();
        }
        if (!any) continue;
        SpacePages host;
        if (node->onHost()) {
            auto got = allocateHostSpaces(counts);
            if (!got.isOk()) continue;
            host = std::move(got).value();
        }
        for (std::size_t e = 0; e < extra; ++e) {
            for (std::size_t j = 0; j < fills[e].size(); ++j) {
                const auto [index, page] = fills[e][j];
                node->ext_device[e][index] = page;
                req.ext_owned[e].erase(
                    std::find(req.ext_owned[e].begin(), req.ext_owned[e].end(), page));
                if (!node->onHost()) continue;
                node->ext_host[e][index] = host[e + 1][j];
                if (!open_backup_) {
                    open_backup_ = std::make_unique<BackupBatch>();
                    open_backup_->id = next_op_id_++;
                }
                open_backup_->pages.resize(numSpaces());
                open_backup_->pages[e + 1].push_back({page, host[e + 1][j]});
            }
        }
        if (node->onHost()) {
            // Written back like a backup: the node's device pages stay until the copy is reaped.
            node->backup_op = open_backup_->id;
            open_backup_->nodes.push_back(node);
            tree_.lockDevice(node, +1);
        }
    }
}

std::vector<const Node*> CacheController::pathTo(const Node* last) {
    std::vector<const Node*> path;
    for (const Node* n = last; n != nullptr && !n->isRoot(); n = n->parent) path.push_back(n);
    std::reverse(path.begin(), path.end());
    return path;
}

std::vector<std::vector<bool>> CacheController::pathPattern(const std::vector<const Node*>& path,
                                                            std::size_t limit) const {
    std::vector<std::vector<bool>> pattern(numSpaces() - 1, std::vector<bool>(limit, false));
    std::size_t pos = 0;
    for (const Node* n : path) {
        for (std::size_t i = 0; i < n->numPages() && pos + i < limit; ++i) {
            for (std::size_t e = 0; e + 1 < numSpaces(); ++e) pattern[e][pos + i] = n->hasExt(e, i);
        }
        pos += n->numPages();
        if (pos >= limit) break;
    }
    return pattern;
}

std::size_t CacheController::usableFromPattern(const std::vector<std::vector<bool>>& pattern,
                                               std::size_t limit) const {
    std::vector<pools::HitRule> rules;
    std::vector<std::vector<bool>> present;
    for (std::size_t e = 0; e + 1 < numSpaces(); ++e) {
        rules.push_back({spaces_[e + 1].hit_policy, spaces_[e + 1].trailing_pages});
        present.emplace_back(pattern[e].begin(), pattern[e].begin() + static_cast<long>(limit));
    }
    auto u = pools::usablePrefixPages(rules, present, limit);
    STRATA_CHECK(u.isOk(), "usable prefix: {}", u.status().toString());
    return *u;
}

std::size_t CacheController::usablePages(const std::vector<const Node*>& path,
                                         std::size_t limit) const {
    if (!hybrid()) return limit;
    return usableFromPattern(pathPattern(path, limit), limit);
}

Result<CacheController::SpacePages> CacheController::allocateDeviceSpaces(
    const std::vector<std::size_t>& counts) {
    bool short_of_pages = false;
    for (std::size_t s = 0; s < counts.size(); ++s) {
        short_of_pages |= deviceAlloc(s).freePages() < counts[s];
    }
    if (short_of_pages) evictDevice(counts);
    auto r = slots_.allocateSlots(pools::SlotTier::kDevice, counts);
    noteAllocation(0xA110CD, counts, r);
    return r;
}

Result<CacheController::SpacePages> CacheController::allocateHostSpaces(
    const std::vector<std::size_t>& counts) {
    // Each space evicts host leaves before it allocates: the anchor as many pages as it lacks,
    // an extra space whole leaves until it fits (its pages are not counted by evictHost).
    if (++host_allocations_ == config_.fail_host_allocation) {
        Status s = slots_.injectFailure(slots_.spaceEntry(0).name);
        STRATA_CHECK(s.isOk(), "fault injection: {}", s.toString());
    }
    auto r = slots_.allocateSlots(pools::SlotTier::kHost, counts,
                                  [&](std::size_t s, std::size_t short_by) {
                                      if (s == 0) {
                                          evictHost(short_by, {});
                                          return;
                                      }
                                      while (hostAlloc(s).freePages() < counts[s]) {
                                          if (evictHost(1, {}) == 0) break;
                                      }
                                  });
    noteAllocation(0xA110C4, counts, r);
    return r;
}

void CacheController::noteAllocation(std::uint64_t what, const std::vector<std::size_t>& counts,
                                     const Result<SpacePages>& r) {
    if (!r.isOk()) {
        note(what, 0);
        return;
    }
    for (std::size_t s = 0; s < counts.size(); ++s) {
        note(what + s, counts[s] == 0 ? 1 : (*r)[s].front() + 2);
    }
}

}  // namespace strata::controller

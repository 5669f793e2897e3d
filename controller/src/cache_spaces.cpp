// The slot spaces of CacheController (hybrid models): a node's pattern (which pages of each extra
// space it holds), allocating and freeing a node's pages in every space, the usable length of a
// matched prefix under each space's hit policy, and the copies of every pool of every space.
// A non-hybrid model has one space and none of this changes what it does.
#include <fmt/format.h>

#include <algorithm>
#include <optional>

#include "controller_ops.h"
#include "strata/core/check.h"

namespace strata::controller {

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

void CacheController::freeNodeDevice(Node* node) {
    if (!node->device_pages.empty()) freeDevicePages(node->device_pages);
    node->device_pages.clear();
    for (std::size_t e = 0; e < node->ext_device.size(); ++e) {
        auto pages = present(node->ext_device[e]);
        Status s = ext_device_alloc_[e].free(pages);
        STRATA_CHECK(s.isOk(), "device page accounting of space '{}' broken: {}",
                     spaces_[e + 1].name, s.toString());
        node->ext_device[e].clear();
    }
}

void CacheController::freeNodeHost(Node* node) {
    if (!node->host_pages.empty()) freeHostPages(node->host_pages);
    node->host_pages.clear();
    for (std::size_t e = 0; e < node->ext_host.size(); ++e) {
        auto pages = present(node->ext_host[e]);
        Status s = ext_host_alloc_[e].free(pages);
        STRATA_CHECK(s.isOk(), "host page accounting of space '{}' broken: {}", spaces_[e + 1].name,
                     s.toString());
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
    for (std::size_t e = 0; e + 1 < numSpaces(); ++e) {
        if (spaces_[e + 1].hit_policy != pools::HitPolicy::kAllPages) continue;
        const auto& v = pattern[e];
        limit = std::min<std::size_t>(limit,
                                      std::find(v.begin(), v.begin() + limit, false) - v.begin());
    }
    for (std::size_t u = limit; u > 0; --u) {
        bool ok = true;
        for (std::size_t e = 0; e + 1 < numSpaces() && ok; ++e) {
            const SlotSpace& sp = spaces_[e + 1];
            if (sp.hit_policy != pools::HitPolicy::kTrailingPages) continue;
            const std::size_t from = u > sp.trailing_pages ? u - sp.trailing_pages : 0;
            for (std::size_t q = from; q < u && ok; ++q) ok = pattern[e][q];
        }
        if (ok) return u;
    }
    return 0;
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
    SpacePages out(counts.size());
    for (std::size_t s = 0; s < counts.size(); ++s) {
        auto r = deviceAlloc(s).allocate(counts[s]);
        note(0xA110CD + s, r.isOk() ? (counts[s] == 0 ? 1 : r->front() + 2) : 0);
        if (!r.isOk()) {
            for (std::size_t t = 0; t < s; ++t) {
                Status f = deviceAlloc(t).free(out[t]);
                STRATA_CHECK(f.isOk(), "device rollback failed: {}", f.toString());
            }
            return STRATA_ERROR(StatusCode::kResourceExhausted,
                                "space '{}' needs {} device pages, {} free after eviction",
                                spaces_[s].name, counts[s], deviceAlloc(s).freePages());
        }
        out[s] = std::move(r).value();
    }
    return out;
}

Result<CacheController::SpacePages> CacheController::allocateHostSpaces(
    const std::vector<std::size_t>& counts) {
    // The anchor's pages first, through allocateHost (eviction, fault injection); extra spaces
    // evict whole host-only leaves until they fit too.
    STRATA_ASSIGN_OR_RETURN(auto anchor, allocateHost(counts[0]));
    SpacePages out(counts.size());
    out[0] = std::move(anchor);
    for (std::size_t s = 1; s < counts.size(); ++s) {
        while (hostAlloc(s).freePages() < counts[s]) {
            if (evictHost(1, {}) == 0) break;
        }
        auto r = hostAlloc(s).allocate(counts[s]);
        note(0xA110C4 + s, r.isOk() ? (counts[s] == 0 ? 1 : r->front() + 2) : 0);
        if (!r.isOk()) {
            for (std::size_t t = 0; t < s; ++t) {
                Status f = hostAlloc(t).free(out[t]);
                STRATA_CHECK(f.isOk(), "host rollback failed: {}", f.toString());
            }
            return STRATA_ERROR(StatusCode::kResourceExhausted,
                                "space '{}' needs {} host pages, {} free after eviction",
                                spaces_[s].name, counts[s], hostAlloc(s).freePages());
        }
        out[s] = std::move(r).value();
    }
    return out;
}

std::pair<std::uint32_t, std::uint32_t> CacheController::poolLayers(const PoolPair& p,
                                                                    std::uint32_t begin,
                                                                    std::uint32_t end) const {
    const std::uint32_t n = p.device->spec().num_layers;
    if (p.layer_map.empty()) return {std::min(begin, n), std::min(end, n)};
    const auto first = std::lower_bound(p.layer_map.begin(), p.layer_map.end(), begin);
    const auto last = std::lower_bound(p.layer_map.begin(), p.layer_map.end(), end);
    return {static_cast<std::uint32_t>(first - p.layer_map.begin()),
            static_cast<std::uint32_t>(last - p.layer_map.begin())};
}

bool CacheController::striped(const PoolPair& p) const noexcept {
    // Replicated across the decision group: the same bytes on every rank of TP x CP.
    return striped_ != nullptr && !p.device->spec().sharded_across_tp;
}

std::optional<kernels::CopyJob> CacheController::poolJob(const PoolPair& p,
                                                         const SpaceCopies& pages,
                                                         std::uint32_t layer_begin,
                                                         std::uint32_t layer_end,
                                                         kernels::Direction dir) const {
    if (p.space >= pages.size() || pages[p.space].empty()) return std::nullopt;
    const auto [first, last] = poolLayers(p, layer_begin, layer_end);
    if (first >= last) return std::nullopt;
    kernels::CopyJob job;
    job.geometry = p.device->geometry();
    job.device = p.device->view();
    job.host = p.host->view();
    job.pages = pages[p.space];
    job.layer_begin = first;
    job.layer_end = last;
    job.direction = dir;
    return job;
}

Status CacheController::enqueueCopies(kernels::Stream& stream, const SpaceCopies& pages,
                                      std::uint32_t layer_begin, std::uint32_t layer_end,
                                      kernels::Direction dir, bool with_striped) {
    for (const PoolPair& p : pools_) {
        if (!with_striped && striped(p)) continue;
        auto job = poolJob(p, pages, layer_begin, layer_end, dir);
        if (job) STRATA_RETURN_IF_ERROR(stream.enqueueCopy(std::move(*job)));
    }
    return Status::ok();
}

Status CacheController::enqueueStriped(const SpaceCopies& pages, std::uint32_t layer) {
    // Every rank walks the same pools in the same order with the same lists (see launchLoads), so
    // the collective calls match across the group.
    for (const PoolPair& p : pools_) {
        if (!striped(p)) continue;
        const auto job = poolJob(p, pages, layer, layer + 1, kernels::Direction::kHostToDevice);
        if (!job) continue;
        STRATA_ASSIGN_OR_RETURN(kernels::EventPtr done, striped_->load(*job));
        STRATA_RETURN_IF_ERROR(h2d_stream_->waitFor(done));
    }
    return Status::ok();
}

Status CacheController::enqueueMoves(kernels::Stream& stream,
                                     const std::vector<std::vector<kernels::DevicePageMove>>& moves,
                                     std::uint32_t layer_begin, std::uint32_t layer_end) {
    for (const PoolPair& p : pools_) {
        if (p.space >= moves.size() || moves[p.space].empty()) continue;
        const auto [first, last] = poolLayers(p, layer_begin, layer_end);
        if (first >= last) continue;
        STRATA_RETURN_IF_ERROR(stream.enqueueDeviceCopy(p.device->geometry(), p.device->view(),
                                                        moves[p.space], first, last));
    }
    return Status::ok();
}

std::uint64_t CacheController::spaceBytes(const SpaceCopies& pages) const {
    std::uint64_t bytes = 0;
    for (const PoolPair& p : pools_) {
        if (p.space < pages.size())
            bytes += pages[p.space].size() * p.device->geometry().bytesPerPage();
    }
    return bytes;
}

}  // namespace strata::controller

// The storage tier of CacheController: write-through backups of host pages to the page stores,
// storing host pages before write-back frees them, and prefetch (existence query, agreed hit, host
// pages at the agreed point, read, agreed usable length, graft). Store calls run on the storage
// worker; every transition of shared state happens in step(), in counts agreed by the group.
#include <fmt/format.h>

#include <algorithm>

#include "controller_ops.h"
#include "storage_worker.h"
#include "strata/core/check.h"
#include "strata/core/hash.h"
#include "strata/core/log.h"

namespace strata::controller {

bool writesStoragePage(const PageKey& key, const pools::PoolSpec& spec,
                       const StorageConfig& s) noexcept {
    // The ranks holding the same bytes differ only along the axes the pool is replicated on.
    const int tp_n = spec.sharded_across_tp ? 1 : s.tp_size;
    const int cp_n = spec.sharded_across_cp ? 1 : s.cp_size;
    const int mine =
        (spec.sharded_across_cp ? 0 : s.cp_rank) * tp_n + (spec.sharded_across_tp ? 0 : s.tp_rank);
    return static_cast<int>(key.lo % static_cast<std::uint64_t>(tp_n * cp_n)) == mine;
}

PageKey storageKeyOf(const PageKey& key, const pools::PoolSpec& spec, const StorageConfig& s) {
    return core::storageKey(key, spec.name + s.stage_suffix,
                            spec.sharded_across_tp ? s.tp_rank : -1,
                            spec.sharded_across_cp ? s.cp_rank : -1);
}

struct CacheController::PoolBatch {
    io::PageStore* store = nullptr;
    const pools::HostPool* host = nullptr;
    std::vector<PageKey> keys;         // storage keys
    std::vector<std::uint32_t> pages;  // host pages, one per key
    io::PageStore* remote = nullptr;   // the pool's remote tier (prefetch)
    std::uint32_t space = 0;           // the pool's slot space
    bool host_writer = true;           // PoolPair::host_writer: false skips fetches into it
};

namespace {

// Runs fn(offset, count) over [0, n) in chunks of `batch`, stopping when fn returns fewer.
template <typename Fn>
std::size_t batched(std::size_t n, std::size_t batch, Fn&& fn) {
    std::size_t done = 0;
    while (done < n) {
        std::size_t count = std::min(batch, n - done);
        std::size_t ok = fn(done, count);
        done += ok;
        if (ok < count) break;
    }
    return done;
}

}  // namespace

// The pages of `nodes` that this rank writes, per pool: storage keys and host pages.
std::vector<CacheController::PoolBatch> CacheController::writeBatches(
    const std::vector<Node*>& nodes) {
    std::vector<PoolBatch> batches;
    for (const PoolPair& p : pools_) {
        PoolBatch b{p.store, p.host, {}, {}, nullptr};
        for (Node* n : nodes) {
            // An extra space's pool stores only the pages of the node's pattern.
            const std::vector<std::uint32_t>& host =
                p.space == 0 ? n->host_pages : n->ext_host[p.space - 1];
            for (std::size_t i = 0; i < n->numPages(); ++i) {
                if (host[i] == kNoPage || !writesPage(n->keys[i], p.host->spec())) continue;
                b.keys.push_back(storageKeyOf(n->keys[i], p.host->spec()));
                b.pages.push_back(host[i]);
            }
        }
        stats_.storage_backup_pages += b.keys.size();
        batches.push_back(std::move(b));
    }
    return batches;
}

void CacheController::publishRemote(const std::vector<Node*>& nodes) {
    // Peers may pull these pages from now on: the host pool holds their bytes (copies reaped).
    if (!hasRemote() || nodes.empty()) return;
    for (const PoolPair& p : pools_) {
        if (!p.host_writer) continue;  // a shared host pool: its writer publishes it
        std::vector<PageKey> keys;
        std::vector<std::uint32_t> pages;
        for (const Node* n : nodes) {
            for (std::size_t i = 0; i < n->host_pages.size(); ++i) {
                keys.push_back(storageKeyOf(n->keys[i], p.host->spec()));
                pages.push_back(n->host_pages[i]);
            }
        }
        Status s = p.remote->publish(keys, *p.host, pages);
        if (!s.isOk()) core::logger("controller").warn("remote publish: {}", s.toString());
    }
    for (const Node* n : nodes) stats_.remote_published_pages += n->host_pages.size();
}

void CacheController::retractRemote(const Node* node) {
    // Before the node's host slots are freed (a late pull of a reused slot fails its checksum).
    if (!hasRemote() || node->host_pages.empty()) return;
    for (const PoolPair& p : pools_) {
        if (!p.host_writer) continue;
        std::vector<PageKey> keys;
        for (std::size_t i = 0; i < node->host_pages.size(); ++i) {
            keys.push_back(storageKeyOf(node->keys[i], p.host->spec()));
        }
        Status s = p.remote->retract(keys);
        if (!s.isOk()) core::logger("controller").warn("remote retract: {}", s.toString());
    }
    stats_.remote_retracted_pages += node->host_pages.size();
}

void CacheController::queueStorageBackup(std::vector<Node*> nodes) {
    if (!hasStore() || nodes.empty()) return;
    auto backup = std::make_unique<StorageBackup>();
    std::vector<PoolBatch> batches = writeBatches(nodes);
    for (Node* n : nodes) tree_.lockHost(n, +1);  // the host pages stay until the write is agreed
    if (sink_) {
        for (const Node* n : nodes) {
            std::optional<PageKey> parent;
            if (n->parent != nullptr && !n->parent->isRoot()) parent = n->parent->keys.back();
            backup->stored.emplace_back(parent, n->keys);
        }
    }
    backup->nodes = std::move(nodes);
    const std::size_t batch_pages = config_.storage.batch_pages;
    worker_->submit(false, [batches = std::move(batches), done = backup->done, batch_pages] {
        for (const PoolBatch& b : batches) {
            batched(b.keys.size(), batch_pages, [&](std::size_t off, std::size_t n) {
                auto r = b.store->set(std::span(b.keys).subspan(off, n), *b.host,
                                      std::span(b.pages).subspan(off, n));
                if (!r.isOk()) {
                    core::logger("controller")
                        .error("storage backup failed: {}", r.status().toString());
                    return std::size_t{0};
                }
                return *r;
            });
        }
        done->store(true);
    });
    storage_backups_.push_back(std::move(backup));
}

void CacheController::storeSync(Node* node) {
    // Write-back: the host copy is the last one; store it before its pages are freed.
    std::vector<PoolBatch> batches = writeBatches({node});
    emit(KvEventKind::kStored, KvTier::kStorage, node);
    worker_->runAndWait([&] {
        for (const PoolBatch& b : batches) {
            if (b.keys.empty()) continue;
            auto r = b.store->set(b.keys, *b.host, b.pages);
            if (!r.isOk()) {
                core::logger("controller")
                    .error("storage write-back failed: {}", r.status().toString());
            }
        }
    });
}

Status CacheController::prefetch(RequestId id, std::span<const PageKey> keys,
                                 std::size_t prompt_tokens) {
    if (!hasStorage() || prefetch_by_id_.contains(id)) return Status::ok();
    const std::uint32_t P = config_.page_size;
    if (prompt_tokens == 0 || keys.size() != prompt_tokens / P) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "prefetch of request {}: {} keys for {} tokens", id, keys.size(),
                            prompt_tokens);
    }
    const std::size_t matchable = (prompt_tokens - 1) / P;
    MatchResult m = tree_.match(keys.first(matchable));
    const std::size_t cached = m.device_pages + m.host_pages;
    note(0x9F37C4, id);
    note(cached, matchable);
    if ((matchable - cached) * P <
        std::max<std::size_t>(config_.storage.prefetch_threshold_tokens, P)) {
        return Status::ok();
    }
    // The fetched pages will hang below the deepest cached node. Under the write-through family it
    // must have a host copy (or be the root) so that the backed-up set stays root-contiguous.
    // Under write_back host-only nodes below device-only ones are the rule (a demoted leaf), so any
    // anchor will do: refusing a device-only one left the storage tier unused whenever a prefix
    // was cached on the device (issue 19: 0 storage hits where the replay found 184,320 tokens).
    // The anchor's host lock keeps it from being dropped (dropSubtree) while the fetch runs.
    Node* anchor = m.host_last;
    if (config_.write_policy != WritePolicy::kWriteBack && !anchor->isRoot() && !anchor->onHost()) {
        return Status::ok();
    }
    auto op = std::make_unique<PrefetchOp>();
    op->id = id;
    op->keys.assign(keys.begin() + static_cast<long>(cached),
                    keys.begin() + static_cast<long>(matchable));
    op->anchor = anchor;
    op->started = Clock::now();
    const StorageConfig& sc = config_.storage;
    op->timeout = std::chrono::milliseconds(std::min<std::uint64_t>(
        sc.timeout_max_ms,
        sc.timeout_base_ms + sc.timeout_per_1k_tokens_ms * op->keys.size() * P / 1000));
    tree_.lockHost(anchor, +1);
    ++stats_.prefetches;

    std::vector<PoolBatch> batches;
    for (const PoolPair& p : pools_) {
        PoolBatch b{p.store, p.host, {}, {}, p.remote, p.space, p.host_writer};
        for (const PageKey& k : op->keys) b.keys.push_back(storageKeyOf(k, p.host->spec()));
        batches.push_back(std::move(b));
    }
    const std::size_t batch_pages = sc.batch_pages;
    worker_->submit(true, [batches = std::move(batches), out = op->query_pages,
                           remote_out = op->remote_query, ext_out = op->ext_query, batch_pages,
                           extra = numSpaces() - 1] {
        const std::size_t n_keys = batches.front().keys.size();
        // The remote tier first: the leading run that peers hold in every pool.
        std::size_t remote = batches.front().remote != nullptr ? n_keys : 0;
        for (const PoolBatch& b : batches) {
            if (b.remote == nullptr) break;
            std::size_t present = batched(remote, batch_pages, [&](std::size_t off, std::size_t n) {
                auto r = b.remote->exists(std::span(b.keys).subspan(off, n));
                return r.isOk() ? *r : std::size_t{0};
            });
            remote = std::min(remote, present);  // usable only as far as every pool has the page
        }
        // Then the storage tier for what follows.
        std::size_t stored = batches.front().store != nullptr ? n_keys - remote : 0;
        for (const PoolBatch& b : batches) {
            if (b.store == nullptr || b.space != 0) continue;
            std::size_t present = batched(stored, batch_pages, [&](std::size_t off, std::size_t n) {
                auto r = b.store->exists(std::span(b.keys).subspan(remote + off, n));
                return r.isOk() ? *r : std::size_t{0};
            });
            stored = std::min(stored, present);
        }
        // Extra spaces (hybrid models, no remote tier): which pages of that run each holds in
        // every one of its pools (a sliding window or a state exists only at some pages).
        ext_out->assign(extra, std::vector<std::int64_t>(n_keys, 0));
        for (std::size_t e = 0; e < extra; ++e) {
            for (std::size_t i = 0; i < stored; ++i) (*ext_out)[e][i] = 1;
        }
        for (const PoolBatch& b : batches) {
            if (b.store == nullptr || b.space == 0) continue;
            auto& bits = (*ext_out)[b.space - 1];
            for (std::size_t i = 0; i < stored; ++i) {
                if (bits[i] == 0) continue;
                auto r = b.store->exists(std::span(b.keys).subspan(i, 1));
                bits[i] = r.isOk() && *r == 1 ? 1 : 0;
            }
        }
        remote_out->store(static_cast<std::int64_t>(remote));
        out->store(static_cast<std::int64_t>(remote + stored));
    });
    prefetch_by_id_[id] = op.get();
    prefetches_.push_back(std::move(op));
    return Status::ok();
}

bool CacheController::prefetchSettled(RequestId id) const {
    auto it = prefetch_by_id_.find(id);
    if (it == prefetch_by_id_.end()) return true;
    switch (config_.storage.prefetch_policy) {
        case PrefetchPolicy::kBestEffort:
            return true;
        case PrefetchPolicy::kWaitComplete:
            return false;
        case PrefetchPolicy::kTimeout:
            return it->second->timed_out;
    }
    return true;
}

void CacheController::addTierDecisions(comm::DecisionVector& v, TierSlots* slots) {
    std::int64_t done = 0;
    for (const auto& b : storage_backups_) {
        if (!b->done->load()) break;
        ++done;
    }
    slots->backups = v.addMin(done);
    const auto now = Clock::now();
    for (const auto& op : prefetches_) {
        // -1 until this rank's worker is done, so the MIN is -1 until every rank is.
        const auto& value =
            op->state == PrefetchOp::State::kQuerying ? op->query_pages : op->fetched_pages;
        const auto& remote =
            op->state == PrefetchOp::State::kQuerying ? op->remote_query : op->remote_fetched;
        const std::int64_t progress = value->load();  // then the remote part, written before it
        slots->progress.emplace_back(op.get(), v.addMin(progress));
        slots->remote.push_back(v.addMin(progress < 0 ? -1 : remote->load()));
        if (hybrid()) {
            // Each page's presence in each extra space, agreed as a MIN (every rank has it);
            // meaningful only once every rank's worker is done (the progress slot says so).
            const auto& bits =
                op->state == PrefetchOp::State::kQuerying ? op->ext_query : op->ext_fetched;
            std::vector<std::vector<std::size_t>> ext(numSpaces() - 1);
            for (std::size_t e = 0; e < ext.size(); ++e) {
                for (std::size_t i = 0; i < op->keys.size(); ++i) {
                    // The worker sized each space's bits to its hit count, not to every key.
                    const bool have = progress >= 0 && e < bits->size() && i < (*bits)[e].size() &&
                                      (*bits)[e][i] != 0;
                    ext[e].push_back(v.addMin(have ? 1 : 0));
                }
            }
            slots->ext.push_back(std::move(ext));
        }
        if (config_.storage.prefetch_policy == PrefetchPolicy::kTimeout && !op->timed_out &&
            !config_.deterministic) {
            // Any rank past the timeout stops the wait everywhere (MAX).
            slots->timeouts.emplace_back(op.get(), v.addMax(now - op->started > op->timeout));
        }
    }
}

void CacheController::setEventSink(KvEventSink sink) {
    sink_ = std::move(sink);
    if (hasStore()) pools_.front().store->recordEvictions(static_cast<bool>(sink_));
    if (!sink_) disk_names_.clear();
}

void CacheController::emitStorageEvictions() {
    // The store's evictions so far, by page key, of the pages whose storing the sink was told of
    // (others were stored by an earlier job; a page the store evicts before the round that agrees
    // its write is not named: with a capacity below one round's writes it stays listed).
    if (!hasStore()) return;
    std::vector<PageKey> named_now;
    for (const PageKey& sk : pools_.front().store->takeEvicted()) {
        auto it = disk_names_.find(sk);
        if (it == disk_names_.end()) continue;
        named_now.push_back(it->second);
        disk_names_.erase(it);
    }
    if (named_now.empty()) return;
    KvEvent ev;
    ev.kind = KvEventKind::kRemoved;
    ev.tier = KvTier::kStorage;
    ev.keys = named_now;
    sink_(ev);
}

Status CacheController::applyTierDecisions(const comm::DecisionVector& v, const TierSlots& slots) {
    const auto n = static_cast<std::size_t>(v.get(slots.backups));
    for (std::size_t i = 0; i < n; ++i) {
        for (Node* node : storage_backups_.front()->nodes) tree_.lockHost(node, -1);
        for (const auto& [parent, keys] : storage_backups_.front()->stored) {
            if (!sink_) continue;
            KvEvent ev;
            ev.tier = KvTier::kStorage;
            ev.keys = keys;
            ev.parent = parent;
            sink_(ev);
            for (const PageKey& k : keys)
                disk_names_[storageKeyOf(k, pools_.front().host->spec())] = k;
        }
        storage_backups_.pop_front();
    }
    if (sink_) emitStorageEvictions();
    for (const auto& [op, slot] : slots.timeouts) {
        if (v.get(slot) != 0) {
            op->timed_out = true;
            ++stats_.prefetch_timeouts;
        }
    }
    std::vector<PrefetchOp*> finished;
    for (std::size_t k = 0; k < slots.progress.size(); ++k) {
        const auto& [op, slot] = slots.progress[k];
        const std::int64_t agreed = v.get(slot);
        if (agreed < 0) continue;  // some rank's worker is not done yet
        const auto agreed_remote =
            std::min(static_cast<std::size_t>(std::max<std::int64_t>(v.get(slots.remote[k]), 0)),
                     static_cast<std::size_t>(agreed));
        if (op->state == PrefetchOp::State::kQuerying) {
            auto hit = static_cast<std::size_t>(agreed);
            std::vector<std::vector<bool>> ext;
            if (hybrid()) {
                // Only as far as every extra space can serve the prefix, given what the tree
                // holds above the op.
                ext = agreedExt(v, slots.ext[k], hit);
                hit = usableBelow(*op, ext, hit);
            }
            note(0x9F37C5, hit);
            note(agreed_remote);
            if (hit * config_.page_size < config_.storage.prefetch_threshold_tokens) {
                finished.push_back(op);
                continue;
            }
            std::vector<std::size_t> counts(numSpaces(), 0);
            counts[0] = hit;
            for (std::size_t e = 0; e < ext.size(); ++e) {
                counts[e + 1] = static_cast<std::size_t>(
                    std::count(ext[e].begin(), ext[e].begin() + static_cast<long>(hit), true));
            }
            auto host = allocateHostSpaces(counts);
            if (!host.isOk()) {
                finished.push_back(op);
                continue;
            }
            SpacePages got = std::move(host).value();
            op->host_pages = std::move(got[0]);
            op->ext_host_pages.assign(ext.size(), std::vector<std::uint32_t>(hit, kNoPage));
            for (std::size_t e = 0; e < ext.size(); ++e) {
                std::size_t cursor = 0;
                for (std::size_t i = 0; i < hit; ++i) {
                    if (ext[e][i]) op->ext_host_pages[e][i] = got[e + 1][cursor++];
                }
            }
            op->state = PrefetchOp::State::kFetching;
            op->remote_pages = agreed_remote;
            std::vector<PoolBatch> batches;
            for (const PoolPair& p : pools_) {
                PoolBatch b{p.store, p.host, {}, {}, p.remote, p.space, p.host_writer};
                b.pages = p.space == 0 ? op->host_pages : op->ext_host_pages[p.space - 1];
                for (std::size_t i = 0; i < hit; ++i) {
                    b.keys.push_back(storageKeyOf(op->keys[i], p.host->spec()));
                }
                batches.push_back(std::move(b));
            }
            const std::size_t batch_pages = config_.storage.batch_pages;
            worker_->submit(
                true, [batches = std::move(batches), out = op->fetched_pages,
                       remote_out = op->remote_fetched, ext_out = op->ext_fetched, batch_pages, hit,
                       remote = agreed_remote, extra = numSpaces() - 1] {
                    // Pull the agreed remote part; what a peer could not serve (gone, slow, a
                    // checksum miss) and the rest come from the storage tier when it has them.
                    std::size_t pulled = remote;
                    for (const PoolBatch& b : batches) {
                        if (b.remote == nullptr || pulled == 0) break;
                        if (!b.host_writer) continue;  // its writer pulls into the shared pool
                        std::size_t got =
                            batched(pulled, batch_pages, [&](std::size_t off, std::size_t n) {
                                auto r = b.remote->get(std::span(b.keys).subspan(off, n), *b.host,
                                                       std::span(b.pages).subspan(off, n));
                                return r.isOk() ? *r : std::size_t{0};
                            });
                        pulled = std::min(pulled, got);
                    }
                    std::size_t read = batches.front().store != nullptr ? hit - pulled : 0;
                    // Extra spaces' pages one at a time (only where the space has one).
                    ext_out->assign(extra, std::vector<std::int64_t>(hit, 1));
                    for (const PoolBatch& b : batches) {
                        if (b.space == 0 || !b.host_writer) continue;
                        auto& bits = (*ext_out)[b.space - 1];
                        for (std::size_t i = 0; i < hit; ++i) {
                            if (bits[i] == 0) continue;
                            if (b.pages[i] == kNoPage || b.store == nullptr) {
                                bits[i] = 0;
                                continue;
                            }
                            auto r = b.store->get(std::span(b.keys).subspan(i, 1), *b.host,
                                                  std::span(b.pages).subspan(i, 1));
                            bits[i] = r.isOk() && *r == 1 ? 1 : 0;
                        }
                    }
                    for (const PoolBatch& b : batches) {
                        if (b.space != 0 || !b.host_writer) continue;
                        if (b.store == nullptr || read == 0) break;
                        std::size_t got =
                            batched(read, batch_pages, [&](std::size_t off, std::size_t n) {
                                auto r = b.store->get(std::span(b.keys).subspan(pulled + off, n),
                                                      *b.host,
                                                      std::span(b.pages).subspan(pulled + off, n));
                                return r.isOk() ? *r : std::size_t{0};
                            });
                        read = std::min(read, got);
                    }
                    remote_out->store(static_cast<std::int64_t>(pulled));
                    out->store(static_cast<std::int64_t>(pulled + read));
                });
        } else {
            auto usable = static_cast<std::size_t>(agreed);
            if (hybrid()) {
                std::vector<std::vector<bool>> ext = agreedExt(v, slots.ext[k], usable);
                usable = usableBelow(*op, ext, usable);
                // Pages of the extra spaces that did not arrive everywhere are not grafted.
                for (std::size_t e = 0; e < ext.size(); ++e) {
                    for (std::size_t i = 0; i < op->ext_host_pages[e].size(); ++i) {
                        std::uint32_t& page = op->ext_host_pages[e][i];
                        if (page == kNoPage || (i < usable && ext[e][i])) continue;
                        freeSlots(pools::SlotTier::kHost, e + 1, {&page, 1});
                        page = kNoPage;
                    }
                }
            }
            note(0x9F37C6, usable);
            note(agreed_remote);
            graft(*op, usable, agreed_remote);
            stats_.prefetch_pages += usable;
            stats_.remote_prefetch_pages += agreed_remote;
            finished.push_back(op);
        }
    }
    for (PrefetchOp* op : finished) {
        tree_.lockHost(op->anchor, -1);
        prefetch_by_id_.erase(op->id);
        auto it = std::find_if(prefetches_.begin(), prefetches_.end(),
                               [&](const auto& p) { return p.get() == op; });
        prefetches_.erase(it);
    }
    return Status::ok();
}

std::vector<std::vector<bool>> CacheController::agreedExt(
    const comm::DecisionVector& v, const std::vector<std::vector<std::size_t>>& slots,
    std::size_t pages) const {
    std::vector<std::vector<bool>> ext(slots.size());
    for (std::size_t e = 0; e < slots.size(); ++e) {
        for (std::size_t i = 0; i < pages && i < slots[e].size(); ++i) {
            ext[e].push_back(v.get(slots[e][i]) > 0);
        }
        ext[e].resize(pages, false);
    }
    return ext;
}

std::size_t CacheController::usableBelow(const PrefetchOp& op,
                                         const std::vector<std::vector<bool>>& ext,
                                         std::size_t pages) const {
    const auto path = pathTo(op.anchor);
    std::size_t cached = 0;
    for (const Node* n : path) cached += n->numPages();
    auto pattern = pathPattern(path, cached);
    for (std::size_t e = 0; e < pattern.size(); ++e) {
        pattern[e].insert(pattern[e].end(), ext[e].begin(),
                          ext[e].begin() + static_cast<long>(pages));
    }
    const std::size_t u = usableFromPattern(pattern, cached + pages);
    return u > cached ? u - cached : 0;
}

void CacheController::graft(PrefetchOp& op, std::size_t usable, std::size_t remote_pages) {
    // Walk below the anchor: pages the tree gained meanwhile keep their copy (ours is freed);
    // device-only nodes adopt ours as their host copy; the rest becomes one host-only node (two
    // when it straddles the end of the remote part, so hits are counted per tier). Hybrid models:
    // a node takes our pages of each extra space where its pattern has one; a device-only node
    // whose pattern has a page we lack stops the graft (its host copy would be incomplete).
    const std::size_t extra = numSpaces() - 1;
    std::vector<Node*> adopted;
    std::vector<std::uint32_t> unused(op.host_pages.begin() + static_cast<long>(usable),
                                      op.host_pages.end());
    std::vector<std::vector<bool>> taken(extra);
    for (std::size_t e = 0; e < extra; ++e) taken[e].assign(op.ext_host_pages[e].size(), false);
    auto ext_range = [&](std::size_t e, std::size_t from, std::size_t to) {
        std::vector<std::uint32_t> out(op.ext_host_pages[e].begin() + static_cast<long>(from),
                                       op.ext_host_pages[e].begin() + static_cast<long>(to));
        for (std::size_t i = from; i < to; ++i) taken[e][i] = true;
        return out;
    };
    Node* node = op.anchor;
    std::size_t pos = 0;
    while (pos < usable) {
        auto it = node->children.find(op.keys[pos]);
        if (it == node->children.end()) {
            Node* c = tree_.addHostChild(
                node,
                std::vector<PageKey>(op.keys.begin() + static_cast<long>(pos),
                                     op.keys.begin() + static_cast<long>(usable)),
                std::vector<std::uint32_t>(op.host_pages.begin() + static_cast<long>(pos),
                                           op.host_pages.begin() + static_cast<long>(usable)));
            if (extra > 0) {
                c->ext_device.assign(extra, {});
                c->ext_host.assign(extra, {});
                for (std::size_t e = 0; e < extra; ++e) c->ext_host[e] = ext_range(e, pos, usable);
            }
            if (remote_pages > pos && remote_pages < usable) {
                Node* upper = tree_.split(c, remote_pages - pos);
                upper->from_remote = true;
                c->from_storage = true;
                adopted.push_back(upper);
            } else {
                (remote_pages >= usable ? c->from_remote : c->from_storage) = true;
            }
            adopted.push_back(c);
            pos = usable;
            break;
        }
        Node* child = it->second.get();
        std::size_t n = 1;
        while (n < child->numPages() && pos + n < usable && child->keys[n] == op.keys[pos + n]) ++n;
        bool complete = true;  // we hold every extra page of the child's pattern in [pos, pos+n)
        for (std::size_t e = 0; e < extra && complete; ++e) {
            for (std::size_t k = 0; k < n && complete; ++k) {
                complete = !child->hasExt(e, k) || op.ext_host_pages[e][pos + k] != kNoPage;
            }
        }
        if (!child->onHost() && !complete) break;
        if (n < child->numPages()) child = tree_.split(child, n);
        if (child->onHost()) {
            unused.insert(unused.end(), op.host_pages.begin() + static_cast<long>(pos),
                          op.host_pages.begin() + static_cast<long>(pos + n));
        } else {
            child->host_pages.assign(op.host_pages.begin() + static_cast<long>(pos),
                                     op.host_pages.begin() + static_cast<long>(pos + n));
            if (extra > 0) {
                child->ext_host.assign(extra, std::vector<std::uint32_t>(n, kNoPage));
                for (std::size_t e = 0; e < extra; ++e) {
                    for (std::size_t k = 0; k < n; ++k) {
                        if (child->ext_device[e][k] == kNoPage) continue;
                        child->ext_host[e][k] = op.ext_host_pages[e][pos + k];
                        taken[e][pos + k] = true;
                    }
                }
            }
            tree_.refresh(child);
            adopted.push_back(child);
        }
        node = child;
        pos += n;
    }
    // A graft stopped early leaves the rest of the anchor's pages unused.
    unused.insert(
        unused.end(), op.host_pages.begin() + static_cast<long>(pos),
        op.host_pages.begin() + static_cast<long>(std::min(usable, op.host_pages.size())));
    if (!unused.empty()) freeHostPages(unused);
    for (std::size_t e = 0; e < extra; ++e) {
        std::vector<std::uint32_t> spare;
        for (std::size_t i = 0; i < taken[e].size(); ++i) {
            if (!taken[e][i] && op.ext_host_pages[e][i] != kNoPage) {
                spare.push_back(op.ext_host_pages[e][i]);
            }
        }
        freeSlots(pools::SlotTier::kHost, e + 1, spare);
    }
    op.host_pages.clear();
    op.ext_host_pages.clear();
    for (const Node* n : adopted) emit(KvEventKind::kStored, KvTier::kHost, n);
    publishRemote(adopted);
}

}  // namespace strata::controller

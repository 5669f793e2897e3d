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

std::string_view prefetchPolicyName(PrefetchPolicy p) noexcept {
    switch (p) {
        case PrefetchPolicy::kBestEffort:
            return "best_effort";
        case PrefetchPolicy::kWaitComplete:
            return "wait_complete";
        case PrefetchPolicy::kTimeout:
            return "timeout";
    }
    return "unknown";
}

Result<PrefetchPolicy> parsePrefetchPolicy(std::string_view name) {
    for (auto p :
         {PrefetchPolicy::kBestEffort, PrefetchPolicy::kWaitComplete, PrefetchPolicy::kTimeout}) {
        if (prefetchPolicyName(p) == name) return p;
    }
    return STRATA_ERROR(StatusCode::kInvalidArgument,
                        "unknown prefetch policy '{}' (expected best_effort, wait_complete or "
                        "timeout)",
                        name);
}

bool CacheController::writesPage(const PageKey& key, const pools::PoolSpec& spec) const noexcept {
    // Exactly one rank of the decision group writes each page of a pool: for a replicated pool one
    // of all TP x CP ranks, for a TP-sharded pool one of the CP ranks holding that shard.
    const StorageConfig& s = config_.storage;
    if (spec.sharded_across_tp) {
        return static_cast<int>(key.lo % static_cast<std::uint64_t>(s.cp_size)) == s.cp_rank;
    }
    const auto group = static_cast<std::uint64_t>(s.tp_size * s.cp_size);
    return static_cast<int>(key.lo % group) == s.cp_rank * s.tp_size + s.tp_rank;
}

PageKey CacheController::storageKeyOf(const PageKey& key, const pools::PoolSpec& spec) const {
    return core::storageKey(key, spec.name + config_.storage.stage_suffix,
                            spec.sharded_across_tp ? config_.storage.tp_rank : -1);
}

struct CacheController::PoolBatch {
    io::PageStore* store = nullptr;
    const pools::HostPool* host = nullptr;
    std::vector<PageKey> keys;         // storage keys
    std::vector<std::uint32_t> pages;  // host pages, one per key
    RemoteTier* remote = nullptr;      // the pool's remote tier (prefetch)
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
            for (std::size_t i = 0; i < n->numPages(); ++i) {
                if (!writesPage(n->keys[i], p.host->spec())) continue;
                b.keys.push_back(storageKeyOf(n->keys[i], p.host->spec()));
                b.pages.push_back(n->host_pages[i]);
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
        std::vector<PageKey> keys;
        std::vector<std::uint32_t> pages;
        for (const Node* n : nodes) {
            for (std::size_t i = 0; i < n->host_pages.size(); ++i) {
                keys.push_back(storageKeyOf(n->keys[i], p.host->spec()));
                pages.push_back(n->host_pages[i]);
            }
        }
        Status s = p.remote->publish(keys, pages);
        if (!s.isOk()) core::logger("controller").warn("remote publish: {}", s.toString());
    }
    for (const Node* n : nodes) stats_.remote_published_pages += n->host_pages.size();
}

void CacheController::retractRemote(const Node* node) {
    // Before the node's host slots are freed (a late pull of a reused slot fails its checksum).
    if (!hasRemote() || node->host_pages.empty()) return;
    for (const PoolPair& p : pools_) {
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
    // The fetched pages will hang below the deepest cached node; it must have a host copy (or be
    // the root) so that the backed-up set stays root-contiguous.
    Node* anchor = m.host_last;
    if (!anchor->isRoot() && !anchor->onHost()) return Status::ok();
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
        PoolBatch b{p.store, p.host, {}, {}, p.remote};
        for (const PageKey& k : op->keys) b.keys.push_back(storageKeyOf(k, p.host->spec()));
        batches.push_back(std::move(b));
    }
    const std::size_t batch_pages = sc.batch_pages;
    worker_->submit(true, [batches = std::move(batches), out = op->query_pages,
                           remote_out = op->remote_query, batch_pages] {
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
            if (b.store == nullptr) break;
            std::size_t present = batched(stored, batch_pages, [&](std::size_t off, std::size_t n) {
                auto r = b.store->exists(std::span(b.keys).subspan(remote + off, n));
                return r.isOk() ? *r : std::size_t{0};
            });
            stored = std::min(stored, present);
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

void CacheController::addStorageDecisions(comm::DecisionVector& v, StorageSlots* slots) {
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
        if (config_.storage.prefetch_policy == PrefetchPolicy::kTimeout && !op->timed_out) {
            // Any rank past the timeout stops the wait everywhere (MAX).
            slots->timeouts.emplace_back(op.get(), v.addMax(now - op->started > op->timeout));
        }
    }
}

Status CacheController::applyStorageDecisions(const comm::DecisionVector& v,
                                              const StorageSlots& slots) {
    const auto n = static_cast<std::size_t>(v.get(slots.backups));
    for (std::size_t i = 0; i < n; ++i) {
        for (Node* node : storage_backups_.front()->nodes) tree_.lockHost(node, -1);
        storage_backups_.pop_front();
    }
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
            const auto hit = static_cast<std::size_t>(agreed);
            note(0x9F37C5, hit);
            note(agreed_remote);
            if (hit * config_.page_size < config_.storage.prefetch_threshold_tokens) {
                finished.push_back(op);
                continue;
            }
            auto host = allocateHost(hit);
            if (!host.isOk()) {
                finished.push_back(op);
                continue;
            }
            op->host_pages = std::move(host).value();
            op->state = PrefetchOp::State::kFetching;
            op->remote_pages = agreed_remote;
            std::vector<PoolBatch> batches;
            for (const PoolPair& p : pools_) {
                PoolBatch b{p.store, p.host, {}, op->host_pages, p.remote};
                for (std::size_t i = 0; i < hit; ++i) {
                    b.keys.push_back(storageKeyOf(op->keys[i], p.host->spec()));
                }
                batches.push_back(std::move(b));
            }
            const std::size_t batch_pages = config_.storage.batch_pages;
            worker_->submit(
                true, [batches = std::move(batches), out = op->fetched_pages,
                       remote_out = op->remote_fetched, batch_pages, hit, remote = agreed_remote] {
                    // Pull the agreed remote part; what a peer could not serve (gone, slow, a
                    // checksum miss) and the rest come from the storage tier when it has them.
                    std::size_t pulled = remote;
                    for (const PoolBatch& b : batches) {
                        if (b.remote == nullptr || pulled == 0) break;
                        std::size_t got =
                            batched(pulled, batch_pages, [&](std::size_t off, std::size_t n) {
                                auto r = b.remote->get(std::span(b.keys).subspan(off, n),
                                                       std::span(b.pages).subspan(off, n));
                                return r.isOk() ? *r : std::size_t{0};
                            });
                        pulled = std::min(pulled, got);
                    }
                    std::size_t read = batches.front().store != nullptr ? hit - pulled : 0;
                    for (const PoolBatch& b : batches) {
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
            const auto usable = static_cast<std::size_t>(agreed);
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

void CacheController::graft(PrefetchOp& op, std::size_t usable, std::size_t remote_pages) {
    // Walk below the anchor: pages the tree gained meanwhile keep their copy (ours is freed);
    // device-only nodes adopt ours as their host copy; the rest becomes one host-only node (two
    // when it straddles the end of the remote part, so hits are counted per tier).
    std::vector<Node*> adopted;
    std::vector<std::uint32_t> unused(op.host_pages.begin() + static_cast<long>(usable),
                                      op.host_pages.end());
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
            if (remote_pages > pos && remote_pages < usable) {
                Node* upper = tree_.split(c, remote_pages - pos);
                upper->from_remote = true;
                c->from_storage = true;
                adopted.push_back(upper);
            } else {
                (remote_pages >= usable ? c->from_remote : c->from_storage) = true;
            }
            adopted.push_back(c);
            break;
        }
        Node* child = it->second.get();
        std::size_t n = 1;
        while (n < child->numPages() && pos + n < usable && child->keys[n] == op.keys[pos + n]) ++n;
        if (n < child->numPages()) child = tree_.split(child, n);
        if (child->onHost()) {
            unused.insert(unused.end(), op.host_pages.begin() + static_cast<long>(pos),
                          op.host_pages.begin() + static_cast<long>(pos + n));
        } else {
            child->host_pages.assign(op.host_pages.begin() + static_cast<long>(pos),
                                     op.host_pages.begin() + static_cast<long>(pos + n));
            tree_.refresh(child);
            adopted.push_back(child);
        }
        node = child;
        pos += n;
    }
    if (!unused.empty()) freeHostPages(unused);
    op.host_pages.clear();
    publishRemote(adopted);
}

}  // namespace strata::controller

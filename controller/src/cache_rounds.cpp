// The operations in flight of CacheController and the per-round agreement: loads launched layer by
// layer (waitLayer), backups launched at step(), and step() itself, which packs every part's counts
// into the one decision vector of the round (the copies that finished, from the mover's events; the
// lower tiers' progress, cache_storage.cpp), agrees on it with the group in one collective, and
// reaps exactly the agreed counts on every rank.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>

#include "controller_ops.h"
#include "mover.h"
#include "storage_worker.h"
#include "strata/core/check.h"
#include "strata/core/hash.h"
#include "strata/core/log.h"

namespace strata::controller {

Status CacheController::launchLoads() {
    if (!open_load_) return Status::ok();
    std::shared_ptr<LoadBatch> batch = std::move(open_load_);
    open_load_.reset();
    batch->launched_at = Clock::now();
    // Striped loads are collective: the batch's replicated pages (slot numbers included) go into
    // the decision digest, so that ranks that launched different batches fail at the next step()
    // instead of diverging further (the lists are equal by construction: identical decisions on
    // identical allocators).
    const Mover::StripedShare striped = mover_->stripedShare(batch->id, batch->pages);
    if (striped.pages > 0) note(0x5791BED, striped.digest);
    STRATA_ASSIGN_OR_RETURN(
        batch->layer_events,
        mover_->launchLoad(batch->pages, batch->moves, striped.pages > 0, batch->started));
    batch->launched = true;
    stats_.striped_pages += striped.pages;
    stats_.striped_bytes += striped.bytes;
    ++stats_.load_ops;
    stats_.load_pages += batch->pages[0].size();
    stats_.load_bytes += mover_->bytes(batch->pages, kernels::Direction::kHostToDevice);
    inflight_loads_.push_back(std::move(batch));
    return Status::ok();
}

Status CacheController::waitLayer(RequestId id, std::uint32_t layer, void* native_stream) {
    auto it = requests_.find(id);
    if (it == requests_.end()) {
        return STRATA_ERROR(StatusCode::kNotFound, "waitLayer: request {} is not admitted", id);
    }
    if (layer >= num_layers_) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "waitLayer: layer {} of {}", layer,
                            num_layers_);
    }
    for (const auto& batch : it->second->waits) {
        if (!batch->launched) STRATA_RETURN_IF_ERROR(launchLoads());
        const auto& ev = batch->layer_events[layer];
        STRATA_RETURN_IF_ERROR(native_stream ? ev->blockStream(native_stream) : ev->wait());
    }
    return Status::ok();
}

Status CacheController::waitAllLayers(RequestId id) {
    for (std::uint32_t l = 0; l < num_layers_; ++l) STRATA_RETURN_IF_ERROR(waitLayer(id, l));
    return Status::ok();
}

Status CacheController::launchBackups() {
    if (!open_backup_) return Status::ok();
    std::unique_ptr<BackupBatch> batch = std::move(open_backup_);
    batch->launched_at = Clock::now();
    STRATA_ASSIGN_OR_RETURN(batch->done, mover_->launchBackup(batch->pages, batch->started));
    ++stats_.backup_ops;
    stats_.backup_pages += batch->pages[0].size();
    stats_.backup_bytes += mover_->bytes(batch->pages, kernels::Direction::kDeviceToHost);
    inflight_backups_.push_back(std::move(batch));
    return Status::ok();
}

void CacheController::clearOpFlags(Node* node, std::uint64_t Node::*field, std::uint64_t op_id) {
    // A split leaves fragments of one node as consecutive ancestors carrying the same op id.
    for (Node* n = node; n != nullptr && !n->isRoot() && n->*field == op_id; n = n->parent) {
        n->*field = 0;
        tree_.refresh(n);
        tree_.refresh(n->parent);
    }
}

double CacheController::busySeconds(const kernels::EventPtr& started,
                                    const kernels::EventPtr& done) {
    if (!started || !done) return 0;
    Result<double> s = done->secondsSince(*started);
    if (s.isOk()) return *s;
    // Both are complete when a batch is reaped: a failure here is a back end's error, which costs
    // this batch's figure, not the run.
    core::logger("controller")
        .warn("copy stream busy time not measured: {}", s.status().toString());
    return 0;
}

void CacheController::reapBackup(BackupBatch& batch) {
    std::vector<Node*> published;  // the nodes and the split fragments the copy covered
    for (Node* n : batch.nodes) {
        for (Node* f = n; f != nullptr && !f->isRoot() && f->backup_op == batch.id; f = f->parent) {
            published.push_back(f);
        }
        clearOpFlags(n, &Node::backup_op, batch.id);
        tree_.lockDevice(n, -1);
    }
    // Parents first, so that each stored event's parent was told before it.
    for (auto it = published.rbegin(); it != published.rend(); ++it) {
        emit(KvEventKind::kStored, KvTier::kHost, *it);
    }
    publishRemote(published);
    queueStorageBackup(std::move(published));
    stats_.backup_seconds +=
        std::chrono::duration<double>(batch.seen_done_at.value_or(Clock::now()) - batch.launched_at)
            .count();
    stats_.backup_busy_seconds += busySeconds(batch.started, batch.done);
}

void CacheController::reapLoad(LoadBatch& batch) {
    for (Node* n : batch.nodes) clearOpFlags(n, &Node::load_op, batch.id);
    for (Node* n : batch.host_locked) tree_.lockHost(n, -1);
    stats_.load_seconds +=
        std::chrono::duration<double>(batch.seen_done_at.value_or(Clock::now()) - batch.launched_at)
            .count();
    if (!batch.layer_events.empty()) {
        stats_.load_busy_seconds += busySeconds(batch.started, batch.layer_events.back());
    }
}

void CacheController::addCopyDecisions(comm::DecisionVector& v, CopySlots* slots) {
    // Copy time per op runs from launch to the first round that sees it finished.
    const auto now = Clock::now();
    auto finished_prefix = [&](const auto& queue, auto done) {
        std::int64_t n = 0;
        for (const auto& op : queue) {
            if (!done(*op)) break;
            if (!op->seen_done_at) op->seen_done_at = now;
            ++n;
        }
        return n;
    };
    slots->backups = v.addMin(
        finished_prefix(inflight_backups_, [](BackupBatch& b) { return b.done->query(); }));
    slots->loads = v.addMin(finished_prefix(
        inflight_loads_, [](LoadBatch& b) { return b.layer_events.back()->query(); }));
}

Status CacheController::applyCopyDecisions(const comm::DecisionVector& v, const CopySlots& slots) {
    // Reap exactly the agreed counts, in FIFO order, on every rank. A rank that was not yet done
    // (a later pipeline stage) waits here for the copies the group already counted as finished.
    const auto n_backups = static_cast<std::size_t>(v.get(slots.backups));
    for (std::size_t i = 0; i < n_backups; ++i) {
        STRATA_RETURN_IF_ERROR(inflight_backups_[i]->done->wait());
        reapBackup(*inflight_backups_[i]);
    }
    inflight_backups_.erase(inflight_backups_.begin(), inflight_backups_.begin() + n_backups);
    const auto n_loads = static_cast<std::size_t>(v.get(slots.loads));
    for (std::size_t i = 0; i < n_loads; ++i) {
        STRATA_RETURN_IF_ERROR(inflight_loads_[i]->layer_events.back()->wait());
        reapLoad(*inflight_loads_[i]);
    }
    inflight_loads_.erase(inflight_loads_.begin(), inflight_loads_.begin() + n_loads);
    return Status::ok();
}

Status CacheController::settle() {
    STRATA_RETURN_IF_ERROR(launchLoads());
    STRATA_RETURN_IF_ERROR(mover_->synchronize());
    if (worker_) worker_->waitIdle();
    return Status::ok();
}

Status CacheController::step(std::int64_t* flag) {
    STRATA_RETURN_IF_ERROR(launchLoads());
    if (config_.deterministic) STRATA_RETURN_IF_ERROR(settle());
    // One decision vector per round: the copies' counts, the decision digest, the lower tiers'
    // progress (the allocator and the evictor act only at these agreed points and add nothing).
    comm::DecisionVector v;
    CopySlots copy_slots;
    addCopyDecisions(v, &copy_slots);
    // The decision digest rides along as a (MIN, MAX) pair: equal on every rank or not at all.
    const auto digest = static_cast<std::int64_t>(decision_digest_ >> 2);
    std::size_t digest_min = v.addMin(digest);
    std::size_t digest_max = v.addMax(digest);
    TierSlots tier_slots;
    if (hasStorage()) addTierDecisions(v, &tier_slots);
    const std::size_t flag_slot = flag != nullptr ? v.addMax(*flag) : 0;
    STRATA_RETURN_IF_ERROR(v.agree(group_));
    if (flag != nullptr) *flag = v.get(flag_slot);
    if (v.get(digest_min) != v.get(digest_max) || v.get(digest_min) != digest) {
        return STRATA_ERROR(StatusCode::kInternal,
                            "ranks took different cache decisions before round {} (decision "
                            "digests range over [{:x}, {:x}], this rank {:x}): stopping rather "
                            "than diverging",
                            stats_.rounds + 1, v.get(digest_min), v.get(digest_max), digest);
    }

    if (hasStorage()) STRATA_RETURN_IF_ERROR(applyTierDecisions(v, tier_slots));
    STRATA_RETURN_IF_ERROR(applyCopyDecisions(v, copy_slots));

    STRATA_RETURN_IF_ERROR(launchBackups());
    ++stats_.rounds;

    if (checker_) {
        STRATA_RETURN_IF_ERROR(checker_->check(stateDigest(), "controller step"));
        ++stats_.consistency_checks;
    }
    return Status::ok();
}

Status CacheController::drain() {
    while (inflightOps() > 0) {
        STRATA_RETURN_IF_ERROR(launchBackups());
        STRATA_RETURN_IF_ERROR(settle());
        STRATA_RETURN_IF_ERROR(step());
    }
    return Status::ok();
}

Status CacheController::waitForProgress() {
    STRATA_RETURN_IF_ERROR(launchLoads());
    kernels::Event* oldest = nullptr;
    if (!inflight_backups_.empty()) oldest = inflight_backups_.front()->done.get();
    if (oldest == nullptr || oldest->query()) {
        if (!inflight_loads_.empty()) oldest = inflight_loads_.front()->layer_events.back().get();
    }
    if (oldest != nullptr && !oldest->query()) return oldest->wait();
    if (worker_ && !worker_->idle()) worker_->waitForCompletion(std::chrono::milliseconds(100));
    return Status::ok();
}

}  // namespace strata::controller

// Allocation and eviction for CacheController: device and host page allocation with eviction,
// write-back at device eviction (copied and waited for before the pages are freed), and dropping
// subtrees that cannot be kept. Split from cache_controller.cpp to keep each file one idea.
#include <fmt/format.h>

#include <algorithm>

#include "controller_ops.h"
#include "mover.h"
#include "strata/core/check.h"
#include "strata/core/hash.h"

namespace strata::controller {

void CacheController::note(std::uint64_t a, std::uint64_t b) {
    decision_digest_ = core::foldDigest(core::foldDigest(decision_digest_, a), b);
}

void CacheController::freeSlots(pools::SlotTier tier, std::size_t s,
                                std::span<const std::uint32_t> pages) {
    Status f = slots_.freeSlots(tier, s, pages);
    STRATA_CHECK(f.isOk(), "{} page accounting of space '{}' broken: {}",
                 tier == pools::SlotTier::kHost ? "host" : "device", spaces_[s].name, f.toString());
}

void CacheController::freeDevicePages(std::span<const std::uint32_t> pages) {
    freeSlots(pools::SlotTier::kDevice, 0, pages);
}

void CacheController::freeHostPages(std::span<const std::uint32_t> pages) {
    freeSlots(pools::SlotTier::kHost, 0, pages);
}

std::size_t CacheController::evictHost(std::size_t pages, const std::set<std::uint64_t>& protect) {
    std::size_t freed = 0;
    while (freed < pages) {
        Node* v = tree_.nextHostVictim();
        if (v == nullptr || protect.contains(v->id)) break;
        // Write-back keeps no other copy: the storage tier gets it before the host pages go.
        if (config_.write_policy == WritePolicy::kWriteBack && hasStore()) storeSync(v);
        retractRemote(v);
        freed += v->host_pages.size();
        stats_.host_evicted_pages += v->host_pages.size();
        freeNodeHost(v);
        tree_.removeLeaf(v);
    }
    return freed;
}

bool CacheController::dropSubtree(Node* node) {
    // Only host-only descendants can hang below a device leaf; drop them only if none is pinned,
    // nor the node itself held by a host lock (a prefetch anchored on it under write_back).
    bool pinned = false;
    std::vector<Node*> stack{node};
    std::vector<Node*> order;
    while (!stack.empty()) {
        Node* n = stack.back();
        stack.pop_back();
        order.push_back(n);
        if (n->host_locks > 0 || (n != node && (n->backup_op != 0 || n->load_op != 0))) {
            pinned = true;
        }
        for (auto& [k, c] : n->children) stack.push_back(c.get());
    }
    if (pinned) return false;
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
        Node* n = *it;
        freeNodeDevice(n);
        if (!n->host_pages.empty()) {
            retractRemote(n);
            stats_.dropped_pages += n->host_pages.size();
        }
        freeNodeHost(n);
        tree_.removeLeaf(n);
    }
    return true;
}

std::size_t CacheController::writeBackSync(std::vector<Node*>& victims,
                                           std::set<std::uint64_t>* stuck) {
    // Write-back: copy every victim to the host and wait for the copy before its device pages are
    // freed, so no later writer can overwrite bytes that are still being read.
    SpaceCopies copies(numSpaces());
    std::vector<Node*> copied;
    std::size_t freed = 0;
    for (Node* v : victims) {
        if (!allocateNodeHost(v)) {
            std::size_t n = v->numPages();
            if (dropSubtree(v)) {
                stats_.dropped_pages += n;
                freed += n;
            } else {
                stuck->insert(v->id);  // neither copied nor dropped: not a victim again this time
            }
            continue;
        }
        nodeCopies(v, &copies);
        copied.push_back(v);
    }
    if (!copied.empty()) {
        const auto started = Clock::now();
        kernels::EventPtr stream_started;
        auto ev = mover_->launchBackup(copies, stream_started);
        Status s = ev.isOk() ? (*ev)->wait() : ev.status();
        STRATA_CHECK(s.isOk(), "write-back copy failed: {}", s.toString());
        stats_.backup_seconds += std::chrono::duration<double>(Clock::now() - started).count();
        stats_.backup_busy_seconds += busySeconds(stream_started, *ev);
        ++stats_.backup_ops;
        stats_.write_back_pages += copies[0].size();
        stats_.backup_pages += copies[0].size();
        stats_.backup_bytes += mover_->bytes(copies, kernels::Direction::kDeviceToHost);
    }
    for (Node* v : copied) emit(KvEventKind::kStored, KvTier::kHost, v);
    publishRemote(copied);  // their host copies are complete now
    for (Node* v : copied) freed += demote(v);
    victims.clear();
    return freed;
}

std::size_t CacheController::demote(Node* node) {
    // The host copy stays, the device pages go.
    const std::size_t n = node->device_pages.size();
    stats_.device_evicted_pages += n;
    freeNodeDevice(node);
    tree_.refresh(node);
    tree_.refresh(node->parent);
    return n;
}

std::size_t CacheController::evictDevice(const std::vector<std::size_t>& targets) {
    // Evicts until every space s has targets[s] free pages (or nothing more can go). A victim
    // frees its pages of every space; the count returned is of anchor pages.
    auto satisfied = [&](const std::vector<std::size_t>& pending) {
        for (std::size_t s = 0; s < targets.size(); ++s) {
            if (deviceAlloc(s).freePages() + pending[s] < targets[s]) return false;
        }
        return true;
    };
    const std::vector<std::size_t> none(numSpaces(), 0);
    std::size_t freed = 0;
    std::set<std::uint64_t> skip;
    // Write-back victims that could neither move to the host nor be dropped (a host lock, a pinned
    // descendant): skipped from then on, so that the loop ends.
    std::set<std::uint64_t> stuck;
    std::vector<Node*> write_back;
    std::vector<std::size_t> pending(numSpaces(), 0);
    while (!satisfied(none)) {
        Node* v = tree_.nextDeviceVictim(skip);
        if (v == nullptr) {
            if (write_back.empty()) break;
            // The write-back victims free their pages; their parents may become victims.
            freed += writeBackSync(write_back, &stuck);
            write_back.clear();
            pending.assign(numSpaces(), 0);
            skip = stuck;
            continue;
        }
        if (v->backedUp()) {
            freed += demote(v);
        } else if (config_.write_policy == WritePolicy::kWriteBack) {
            skip.insert(v->id);
            write_back.push_back(v);
            const auto pc = patternCounts(v);
            for (std::size_t s = 0; s < pc.size(); ++s) pending[s] += pc[s];
            if (satisfied(pending)) {
                freed += writeBackSync(write_back, &stuck);
                write_back.clear();
                pending.assign(numSpaces(), 0);
                skip = stuck;
            }
        } else {
            std::size_t n = v->device_pages.size();
            stats_.device_evicted_pages += n;
            if (dropSubtree(v)) {
                freed += n;
            } else {
                skip.insert(v->id);
            }
        }
    }
    if (!write_back.empty()) freed += writeBackSync(write_back, &stuck);
    return freed;
}

}  // namespace strata::controller

// Insertion into the tree for CacheController: a request's full pages join the tree (new nodes,
// split nodes, host-only nodes adopting the request's device pages), the pages of extra slot spaces
// that the tree keeps, and the write policy (backups queued for the next step()).
#include <fmt/format.h>

#include <algorithm>

#include "controller_ops.h"
#include "mover.h"
#include "strata/core/check.h"

namespace strata::controller {

void CacheController::backupChain(Node* node) {
    // Back up the not-yet-backed-up ancestors first, so the backed-up set stays root-contiguous.
    std::vector<Node*> chain;
    for (Node* n = node; n != nullptr && !n->isRoot() && !n->onHost(); n = n->parent) {
        chain.push_back(n);
    }
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
        Node* n = *it;
        STRATA_CHECK(n->onDevice(), "backup of node {} that is not on device", n->id);
        if (!allocateNodeHost(n)) {
            ++stats_.backup_alloc_failures;
            return;
        }
        if (!open_backup_) {
            open_backup_ = std::make_unique<BackupBatch>();
            open_backup_->id = next_op_id_++;
        }
        n->backup_op = open_backup_->id;
        nodeCopies(n, &open_backup_->pages);
        open_backup_->nodes.push_back(n);
        tree_.lockDevice(n, +1);
    }
}

Status CacheController::insertAfter(RequestId id, void* native_stream) {
    if (requests_.find(id) == requests_.end()) {
        return STRATA_ERROR(StatusCode::kNotFound, "insert: request {} is not admitted", id);
    }
    // Before insert: the write policy may queue the request's backups, which must read what the
    // engine's stream writes.
    STRATA_RETURN_IF_ERROR(mover_->backupsAfter(native_stream));
    return insert(id);
}

Status CacheController::insert(RequestId id) {
    auto it = requests_.find(id);
    if (it == requests_.end()) {
        return STRATA_ERROR(StatusCode::kNotFound, "insert: request {} is not admitted", id);
    }
    Request& req = *it->second;
    if (req.inserted) {
        return STRATA_ERROR(StatusCode::kFailedPrecondition, "request {} inserted twice", id);
    }
    req.inserted = true;
    note(0x125E27, id);
    Node* node = insertPath(req);
    if (hybrid()) fillPatternHoles(node, req);
    tree_.touch(node);
    tree_.raisePriority(node, req.priority);
    // The request's lock moves to the deepest node it now covers.
    tree_.lockDevice(node, +1);
    tree_.lockDevice(req.locked, -1);
    req.locked = node;
    applyWritePolicy(node);
    return Status::ok();
}

void CacheController::takeOwned(Request& req, std::size_t from, std::size_t to) {
    // Pages [from, to) of the request now belong to the tree.
    for (std::size_t i = from; i < to; ++i) {
        auto o = std::find(req.owned.begin(), req.owned.end(), req.device_pages[i]);
        if (o != req.owned.end()) req.owned.erase(o);
    }
}

bool CacheController::keepsExt(const Request& req, std::size_t e, std::size_t i) const {
    // Inside the trailing window of the last full page; a state only at that page.
    const std::size_t full = req.keys.size();
    const SlotSpace& sp = spaces_[e + 1];
    if (sp.request_state) return i + 1 == full;
    return sp.hit_policy == pools::HitPolicy::kAllPages || i + sp.trailing_pages >= full;
}

std::uint32_t CacheController::takeExt(Request& req, std::size_t e, std::size_t i) {
    const std::uint32_t page =
        spaces_[e + 1].request_state ? req.state_page[e] : req.ext_pages[e][i];
    auto o = std::find(req.ext_owned[e].begin(), req.ext_owned[e].end(), page);
    if (page == kNoPage || o == req.ext_owned[e].end()) return kNoPage;
    req.ext_owned[e].erase(o);
    return page;
}

Node* CacheController::insertPath(Request& req) {
    // Walks the request's full pages down the tree: shared nodes are split where the request
    // leaves them, host-only nodes adopt its pages, and the rest becomes one new leaf.
    Node* node = tree_.root();
    std::size_t pos = 0;
    const std::size_t full = req.keys.size();
    while (pos < full) {
        auto child_it = node->children.find(req.keys[pos]);
        if (child_it == node->children.end()) {
            node = addRequestLeaf(node, req, pos);
            break;
        }
        Node* child = child_it->second.get();
        std::size_t n = 1;
        while (n < child->numPages() && pos + n < full && child->keys[n] == req.keys[pos + n]) ++n;
        if (n < child->numPages()) child = tree_.split(child, n);
        if (!child->onDevice()) adoptRequestPages(child, req, pos);
        ++child->hit_count;
        node = child;
        pos += n;
    }
    return node;
}

Node* CacheController::addRequestLeaf(Node* parent, Request& req, std::size_t pos) {
    const std::size_t full = req.keys.size();
    const std::size_t extra = numSpaces() - 1;
    std::vector<PageKey> keys(req.keys.begin() + static_cast<long>(pos), req.keys.end());
    std::vector<std::uint32_t> pages(req.device_pages.begin() + static_cast<long>(pos),
                                     req.device_pages.begin() + static_cast<long>(full));
    Node* c = tree_.addChild(parent, std::move(keys), std::move(pages));
    c->hit_count = 1;
    takeOwned(req, pos, full);
    emit(KvEventKind::kStored, KvTier::kDevice, c, &req, pos);
    if (hybrid()) {
        c->ext_device.assign(extra, std::vector<std::uint32_t>(full - pos, kNoPage));
        c->ext_host.assign(extra, {});
        for (std::size_t e = 0; e < extra; ++e) {
            for (std::size_t i = pos; i < full; ++i) {
                if (keepsExt(req, e, i)) c->ext_device[e][i - pos] = takeExt(req, e, i);
            }
        }
    }
    return c;
}

void CacheController::adoptRequestPages(Node* child, Request& req, std::size_t pos) {
    // Host-only node: adopt the request's freshly computed pages ("unevict"). Its pages of the
    // extra spaces come from the request too; a state the request did not keep (one before its
    // last full page) is dropped from the host copy, so both tiers hold the same pattern.
    const std::size_t n = child->numPages();
    const std::size_t extra = numSpaces() - 1;
    child->device_pages.assign(req.device_pages.begin() + static_cast<long>(pos),
                               req.device_pages.begin() + static_cast<long>(pos + n));
    takeOwned(req, pos, pos + n);
    emit(KvEventKind::kStored, KvTier::kDevice, child, &req, pos);
    if (hybrid()) {
        child->ext_device.assign(extra, std::vector<std::uint32_t>(n, kNoPage));
        for (std::size_t e = 0; e < extra; ++e) {
            for (std::size_t k = 0; k < n; ++k) {
                if (child->ext_host[e][k] == kNoPage) continue;
                const std::uint32_t page = takeExt(req, e, pos + k);
                if (page != kNoPage) {
                    child->ext_device[e][k] = page;
                    continue;
                }
                freeSlots(pools::SlotTier::kHost, e + 1, {&child->ext_host[e][k], 1});
                child->ext_host[e][k] = kNoPage;
            }
        }
    }
    tree_.refresh(child);
    tree_.refresh(child->parent);
}

void CacheController::applyWritePolicy(Node* node) {
    switch (config_.write_policy) {
        case WritePolicy::kWriteThrough:
            backupChain(node);
            break;
        case WritePolicy::kWriteThroughSelective: {
            Node* deepest = nullptr;
            for (Node* n = node; n != nullptr && !n->isRoot(); n = n->parent) {
                if (n->hit_count >= 2) {
                    deepest = n;
                    break;
                }
            }
            if (deepest != nullptr) backupChain(deepest);
            break;
        }
        case WritePolicy::kWriteBack:
            break;
    }
}

}  // namespace strata::controller

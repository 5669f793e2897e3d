#include "strata/controller/cache_controller.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <unordered_set>

#include "controller_ops.h"
#include "storage_worker.h"
#include "strata/core/check.h"
#include "strata/core/hash.h"
#include "strata/core/log.h"

namespace strata::controller {
std::string_view writePolicyName(WritePolicy p) noexcept {
    switch (p) {
        case WritePolicy::kWriteThrough:
            return "write_through";
        case WritePolicy::kWriteThroughSelective:
            return "write_through_selective";
        case WritePolicy::kWriteBack:
            return "write_back";
    }
    return "unknown";
}

Result<WritePolicy> parseWritePolicy(std::string_view name) {
    for (auto p : {WritePolicy::kWriteThrough, WritePolicy::kWriteThroughSelective,
                   WritePolicy::kWriteBack}) {
        if (writePolicyName(p) == name) return p;
    }
    return STRATA_ERROR(StatusCode::kInvalidArgument,
                        "unknown write policy '{}' (expected write_through, "
                        "write_through_selective or write_back)",
                        name);
}

Result<EvictionPolicy> parseEvictionPolicy(std::string_view name) {
    if (name == "lru") return EvictionPolicy::kLru;
    if (name == "lfu") return EvictionPolicy::kLfu;
    if (name == "priority") return EvictionPolicy::kPriority;
    if (name == "opt") return EvictionPolicy::kOptimal;
    return STRATA_ERROR(StatusCode::kInvalidArgument,
                        "unknown eviction policy '{}' (expected lru, lfu, priority or opt)", name);
}

Result<std::unique_ptr<CacheController>> CacheController::create(const ControllerConfig& config,
                                                                 kernels::Backend& backend,
                                                                 std::vector<PoolPair> pools,
                                                                 comm::DecisionGroup& group) {
    if (pools.empty()) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "the controller needs at least one pool");
    }
    if (config.page_size == 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "page_size must be positive");
    }
    if (config.eviction_policy == EvictionPolicy::kOptimal) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "eviction policy opt needs the future and is an offline analysis of a "
                            "trace (strata-run --data none), not a policy of a live cache");
    }
    std::vector<SlotSpace> spaces = config.spaces;
    if (spaces.empty()) spaces.push_back({"kv", pools::HitPolicy::kAllPages, 0, false});
    if (spaces.front().hit_policy != pools::HitPolicy::kAllPages || spaces.front().request_state) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "slot space 0 ('{}') is the anchor: it must hold every page of a "
                            "prefix",
                            spaces.front().name);
    }
    for (const SlotSpace& sp : spaces) {
        if (sp.hit_policy == pools::HitPolicy::kTrailingPages && sp.trailing_pages == 0) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "slot space '{}' keeps trailing pages but 0 of them", sp.name);
        }
        if (sp.request_state &&
            (sp.hit_policy != pools::HitPolicy::kTrailingPages || sp.trailing_pages != 1)) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "slot space '{}' holds a per-request state: its hit policy must be "
                                "the last page only",
                                sp.name);
        }
    }
    // Per space: the page counts of its pools (equal within a space).
    std::vector<std::size_t> device_pages(spaces.size(), 0), host_pages(spaces.size(), 0);
    std::vector<bool> seen(spaces.size(), false);
    for (std::size_t i = 0; i < pools.size(); ++i) {
        const PoolPair& p = pools[i];
        if (p.device == nullptr || p.host == nullptr) {
            return STRATA_ERROR(StatusCode::kInvalidArgument, "pool {} lacks a device or host tier",
                                i);
        }
        const std::string& name = p.device->spec().name;
        if (p.space >= spaces.size()) {
            return STRATA_ERROR(StatusCode::kInvalidArgument, "pool '{}' is in slot space {} of {}",
                                name, p.space, spaces.size());
        }
        if (p.device->pageSize() != config.page_size || p.host->pageSize() != config.page_size) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "pool '{}' has page size {}/{} but the cache uses {}", name,
                                p.device->pageSize(), p.host->pageSize(), config.page_size);
        }
        if (p.device->spec().bytesPerToken() != p.host->spec().bytesPerToken() ||
            p.device->spec().num_layers != p.host->spec().num_layers) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "pool '{}': device and host tiers have different shapes", name);
        }
        if (!p.layer_map.empty()) {
            bool ascending = std::adjacent_find(p.layer_map.begin(), p.layer_map.end(),
                                                std::greater_equal<>()) == p.layer_map.end();
            if (p.layer_map.size() != p.device->spec().num_layers || !ascending) {
                return STRATA_ERROR(StatusCode::kInvalidArgument,
                                    "pool '{}': its layer map must list {} ascending model layers",
                                    name, p.device->spec().num_layers);
            }
        }
        if (!seen[p.space]) {
            seen[p.space] = true;
            device_pages[p.space] = p.device->numPages();
            host_pages[p.space] = p.host->numPages();
        } else if (p.device->numPages() != device_pages[p.space] ||
                   p.host->numPages() != host_pages[p.space]) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "pool '{}' has {}/{} device/host pages, another pool of space '{}' "
                                "{}/{}",
                                name, p.device->numPages(), p.host->numPages(),
                                spaces[p.space].name, device_pages[p.space], host_pages[p.space]);
        }
    }
    for (std::size_t s = 0; s < spaces.size(); ++s) {
        if (!seen[s]) {
            return STRATA_ERROR(StatusCode::kInvalidArgument, "slot space '{}' has no pool",
                                spaces[s].name);
        }
    }
    // Ranks may have been given different memory (per-node budgets, PP stages with different bytes
    // per token): they all use the smallest page counts of the replica, so allocators stay equal.
    for (auto* counts : {&device_pages, &host_pages}) {
        for (std::size_t& pages : *counts) {
            std::vector<std::uint64_t> all;
            STRATA_RETURN_IF_ERROR(group.gatherDigests(pages, &all));
            for (std::uint64_t p : all) pages = std::min<std::size_t>(pages, p);
        }
    }
    STRATA_ASSIGN_OR_RETURN(auto dev_alloc,
                            pools::SlotAllocator::create(device_pages[0], config.page_size));
    STRATA_ASSIGN_OR_RETURN(auto host_alloc,
                            pools::SlotAllocator::create(host_pages[0], config.page_size));
    std::unique_ptr<CacheController> c(new CacheController(
        config, backend, std::move(pools), group, std::move(dev_alloc), std::move(host_alloc)));
    c->spaces_ = spaces;
    for (std::size_t s = 1; s < spaces.size(); ++s) {
        STRATA_ASSIGN_OR_RETURN(auto d,
                                pools::SlotAllocator::create(device_pages[s], config.page_size));
        STRATA_ASSIGN_OR_RETURN(auto h,
                                pools::SlotAllocator::create(host_pages[s], config.page_size));
        c->ext_device_alloc_.push_back(std::move(d));
        c->ext_host_alloc_.push_back(std::move(h));
    }
    c->num_layers_ = 0;
    for (const PoolPair& p : c->pools_) {
        c->num_layers_ = std::max(c->num_layers_, p.layer_map.empty() ? p.device->spec().num_layers
                                                                      : p.layer_map.back() + 1);
    }
    std::size_t with_store = 0, with_remote = 0;
    for (const PoolPair& p : c->pools_) {
        with_store += p.store != nullptr;
        with_remote += p.remote != nullptr;
    }
    if (with_store != 0 && with_store != c->pools_.size()) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "{} of {} pools have a storage tier: all or none must", with_store,
                            c->pools_.size());
    }
    if (with_remote != 0 && c->hybrid()) {
        return STRATA_ERROR(StatusCode::kNotSupported,
                            "the remote tier does not serve hybrid models (slot spaces beyond "
                            "'{}') yet",
                            c->spaces_.front().name);
    }
    if (with_remote != 0 && with_remote != c->pools_.size()) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "{} of {} pools have a remote tier: all or none must", with_remote,
                            c->pools_.size());
    }
    if (comm::nccl::StripedLoader* loader = config.striped_loader; loader != nullptr) {
        if (loader->size() != group.size() || loader->rank() != group.rank()) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "the striped loader is rank {} of {} but this rank is {} of {} in "
                                "its decision group: they must be the same group",
                                loader->rank(), loader->size(), group.rank(), group.size());
        }
        // A group of one has nothing to stripe: the ordinary load path is the same thing.
        if (group.size() > 1) c->striped_ = loader;
    }
    if (with_store != 0 || with_remote != 0) c->worker_ = std::make_unique<StorageWorker>();
    STRATA_ASSIGN_OR_RETURN(c->d2h_stream_, backend.createStream());
    STRATA_ASSIGN_OR_RETURN(c->h2d_stream_, backend.createStream());
    return c;
}

CacheController::CacheController(const ControllerConfig& config, kernels::Backend& backend,
                                 std::vector<PoolPair> pools, comm::DecisionGroup& group,
                                 pools::SlotAllocator device_alloc, pools::SlotAllocator host_alloc)
    : config_(config),
      backend_(backend),
      pools_(std::move(pools)),
      group_(group),
      device_alloc_(std::move(device_alloc)),
      host_alloc_(std::move(host_alloc)),
      tree_(config.eviction_policy) {
    if (config_.check_consistency) checker_.emplace(group_);
}

CacheController::~CacheController() {
    // The storage worker finishes its reads and writes of host pages first.
    worker_.reset();
    // Streams drain their queued copies before the pools they touch can go away.
    if (d2h_stream_) (void)d2h_stream_->synchronize();
    if (h2d_stream_) (void)h2d_stream_->synchronize();
}

std::size_t CacheController::inflightOps() const noexcept {
    return inflight_loads_.size() + inflight_backups_.size() + (open_load_ ? 1 : 0) +
           (open_backup_ ? 1 : 0) + storage_backups_.size() + prefetches_.size();
}

MatchResult CacheController::match(std::span<const PageKey> keys) { return tree_.match(keys); }

// ---------------------------------------------------------------------------------------------
// Requests

Result<Admission> CacheController::admit(RequestId id, std::span<const PageKey> keys,
                                         std::size_t prompt_tokens, std::uint32_t priority) {
    const std::uint32_t P = config_.page_size;
    if (requests_.contains(id)) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "request {} is already admitted", id);
    }
    if (keys.size() != prompt_tokens / P) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "request {}: {} page keys for {} tokens at page size {}", id,
                            keys.size(), prompt_tokens, P);
    }
    if (prompt_tokens == 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "request {} has an empty prompt", id);
    }
    // At least the last token is always computed (its logits are needed), so match at most the
    // pages that end before it.
    std::size_t matchable = (prompt_tokens - 1) / P;
    MatchResult m = tree_.match(keys.first(matchable));
    const std::size_t matched_pages = m.device_pages + m.host_pages;
    if (hybrid()) {
        // Usable only as far as every slot space can serve the prefix (a sliding window, a Mamba
        // state at its end); a host part below the load threshold leaves the device part only.
        std::size_t u = usablePages(pathTo(m.host_last), m.device_pages + m.host_pages);
        if (u > m.device_pages && (u - m.device_pages) * P < config_.load_back_threshold_tokens) {
            u = usablePages(pathTo(m.device_last), m.device_pages);
        }
        if (u != m.device_pages + m.host_pages) m = tree_.match(keys.first(u));
    }
    std::size_t host_pages = m.host_pages;
    if (host_pages * P < config_.load_back_threshold_tokens) host_pages = 0;
    const std::size_t total_pages = (prompt_tokens + P - 1) / P;
    const std::size_t reused_pages = m.device_pages + host_pages;
    const std::size_t extra = numSpaces() - 1;
    std::vector<std::size_t> counts(numSpaces(), 0);
    counts[0] = total_pages - m.device_pages;
    // A state at the end of the matched prefix, where the tree has none, is worth keeping.
    const std::size_t full_pages = prompt_tokens / P;
    const std::size_t branch_pages =
        hybrid() && matched_pages > reused_pages && matched_pages < full_pages ? matched_pages : 0;
    for (std::size_t e = 0; e < extra; ++e) {
        counts[e + 1] =
            spaces_[e + 1].request_state ? (branch_pages > 0 ? 2 : 1) : total_pages - reused_pages;
    }
    if (host_pages > 0 && hybrid()) {
        for (const Node* n : m.host_chain) {
            const auto pc = patternCounts(n);
            for (std::size_t e = 0; e < extra; ++e) counts[e + 1] += pc[e + 1];
        }
    }
    note(0xAD1117, id);
    note(m.device_pages, host_pages);

    tree_.lockDevice(m.device_last, +1);
    if (host_pages > 0) tree_.lockHost(m.host_last, +1);
    auto fresh = allocateDeviceSpaces(counts);
    if (!fresh.isOk()) {
        tree_.lockDevice(m.device_last, -1);
        if (host_pages > 0) tree_.lockHost(m.host_last, -1);
        ++stats_.rejected_admissions;
        return STRATA_ERROR(StatusCode::kResourceExhausted, "request {}: {}", id,
                            fresh.status().message());
    }
    SpacePages got = std::move(fresh).value();
    std::vector<std::uint32_t> pages = std::move(got[0]);
    std::vector<std::size_t> ext_cursor(extra, 0);

    auto req = std::make_unique<Request>();
    req->id = id;
    req->prompt_tokens = prompt_tokens;
    req->priority = priority;
    req->keys.assign(keys.begin(), keys.end());
    req->locked = m.device_last;

    // Any in-flight load into the pages this request reuses must finish before it reads them.
    std::unordered_set<std::uint64_t> dep_ops;
    for (Node* n = m.device_last; n != nullptr && !n->isRoot(); n = n->parent) {
        if (n->load_op != 0) dep_ops.insert(n->load_op);
    }
    auto add_dep = [&](const std::shared_ptr<LoadBatch>& b) {
        if (b && dep_ops.contains(b->id)) req->waits.push_back(b);
    };
    add_dep(open_load_);
    for (const auto& b : inflight_loads_) add_dep(b);
    auto open_batch = [&]() -> LoadBatch& {
        if (!open_load_) {
            open_load_ = std::make_shared<LoadBatch>();
            open_load_->id = next_op_id_++;
            open_load_->pages.resize(numSpaces());
            open_load_->moves.resize(numSpaces());
        }
        if (std::find(req->waits.begin(), req->waits.end(), open_load_) == req->waits.end()) {
            req->waits.push_back(open_load_);
        }
        return *open_load_;
    };

    std::size_t cursor = 0;
    std::size_t storage_hit_pages = 0, remote_hit_pages = 0;
    if (host_pages > 0) {
        LoadBatch& batch = open_batch();
        for (Node* n : m.host_chain) {
            if (n->from_storage) storage_hit_pages += n->numPages();
            if (n->from_remote) remote_hit_pages += n->numPages();
            n->from_storage = n->from_remote = false;
            n->device_pages.assign(pages.begin() + cursor, pages.begin() + cursor + n->numPages());
            for (std::size_t i = 0; i < n->numPages(); ++i) {
                batch.pages[0].push_back({n->device_pages[i], n->host_pages[i]});
            }
            n->ext_device.assign(extra, {});
            for (std::size_t e = 0; e < extra; ++e) {
                n->ext_device[e].assign(n->numPages(), kNoPage);
                for (std::size_t i = 0; i < n->numPages(); ++i) {
                    if (n->ext_host[e][i] == kNoPage) continue;
                    n->ext_device[e][i] = got[e + 1][ext_cursor[e]++];
                    batch.pages[e + 1].push_back({n->ext_device[e][i], n->ext_host[e][i]});
                }
            }
            cursor += n->numPages();
            n->load_op = batch.id;
            batch.nodes.push_back(n);
            tree_.refresh(n);
            tree_.refresh(n->parent);
        }
        batch.host_locked.push_back(m.host_last);  // the host lock taken above
        tree_.lockDevice(m.host_last, +1);
        tree_.lockDevice(m.device_last, -1);
        req->locked = m.host_last;
    }
    req->device_pages = m.device_page_list;
    req->device_pages.insert(req->device_pages.end(), pages.begin(), pages.end());
    req->owned.assign(pages.begin() + cursor, pages.end());
    if (hybrid()) {
        // The prefix's pages of each extra space are the tree's (on device, or arriving with this
        // round's loads); the request owns one for each page it computes, or its working state.
        req->ext_pages.assign(extra, std::vector<std::uint32_t>(total_pages, kNoPage));
        req->ext_owned.assign(extra, {});
        req->state_page.assign(extra, kNoPage);
        req->branch_state.assign(extra, kNoPage);
        req->reused_pages = reused_pages;
        req->branch_pages = branch_pages;
        const auto path = pathTo(req->locked);
        for (std::size_t e = 0; e < extra; ++e) {
            std::vector<std::uint32_t>& own = req->ext_pages[e];
            if (spaces_[e + 1].request_state) {
                const std::uint32_t working = got[e + 1][ext_cursor[e]++];
                req->state_page[e] = working;
                req->ext_owned[e].push_back(working);
                if (branch_pages > 0) {
                    req->branch_state[e] = got[e + 1][ext_cursor[e]++];
                    req->ext_owned[e].push_back(req->branch_state[e]);
                }
                if (reused_pages > 0) {
                    const Node* last = path.back();
                    const std::uint32_t checkpoint = last->ext_device[e].back();
                    STRATA_CHECK(checkpoint != kNoPage,
                                 "request {}: no state of space '{}' at the end of its prefix", id,
                                 spaces_[e + 1].name);
                    open_batch().moves[e + 1].push_back({checkpoint, working});
                }
                continue;
            }
            std::size_t pos = 0;
            for (const Node* n : path) {
                for (std::size_t i = 0; i < n->numPages(); ++i) own[pos + i] = n->ext_device[e][i];
                pos += n->numPages();
            }
            for (std::size_t p = reused_pages; p < total_pages; ++p) {
                own[p] = got[e + 1][ext_cursor[e]++];
                req->ext_owned[e].push_back(own[p]);
            }
        }
    }

    Admission a;
    a.prompt_tokens = prompt_tokens;
    a.device_hit_tokens = m.device_pages * P;
    a.host_hit_tokens = host_pages * P;
    a.storage_hit_tokens = storage_hit_pages * P;
    a.remote_hit_tokens = remote_hit_pages * P;
    a.computed_tokens = prompt_tokens - a.reusedTokens();
    a.device_pages = req->device_pages;
    a.spaces.resize(numSpaces());
    a.spaces[0].pages = req->device_pages;
    for (std::size_t e = 0; e < extra; ++e) {
        a.spaces[e + 1].pages = req->ext_pages[e];
        a.spaces[e + 1].state_page = req->state_page[e];
        a.spaces[e + 1].branch_state_page = req->branch_state[e];
        a.spaces[e + 1].branch_pages = req->branch_state[e] != kNoPage ? branch_pages : 0;
    }
    requests_.emplace(id, std::move(req));
    return a;
}

Status CacheController::launchLoads() {
    if (!open_load_) return Status::ok();
    std::shared_ptr<LoadBatch> batch = std::move(open_load_);
    open_load_.reset();
    batch->launched_at = Clock::now();
    batch->layer_events.reserve(num_layers_);
    // Striped loads are collective: the batch's replicated pages (slot numbers included) go into
    // the decision digest, so that ranks that launched different batches fail at the next step()
    // instead of diverging further (the lists are equal by construction: identical decisions on
    // identical allocators).
    std::uint64_t striped_pages = 0, striped_bytes = 0;
    if (striped_ != nullptr) {
        std::uint64_t d = batch->id;
        for (const PoolPair& p : pools_) {
            if (!striped(p)) continue;
            const auto& list = batch->pages[p.space];
            striped_pages += list.size();
            striped_bytes += list.size() * p.device->geometry().bytesPerPage();
            for (const kernels::PageCopy& pc : list) {
                d = core::foldDigest(d, (std::uint64_t{pc.device_page} << 32) | pc.host_page);
            }
        }
        if (striped_pages > 0) note(0x5791BED, d);
    }
    for (std::uint32_t l = 0; l < num_layers_; ++l) {
        // The load stream's copies of layer l first, so that they overlap the striped loads of
        // the same layer, which the stream then waits for: the layer's event covers every pool.
        STRATA_RETURN_IF_ERROR(enqueueCopies(*h2d_stream_, batch->pages, l, l + 1,
                                             kernels::Direction::kHostToDevice,
                                             /*with_striped=*/false));
        if (striped_pages > 0) STRATA_RETURN_IF_ERROR(enqueueStriped(batch->pages, l));
        // Private copies of shared pages (Mamba checkpoints) after the layer's loads, which may
        // bring their sources.
        STRATA_RETURN_IF_ERROR(enqueueMoves(*h2d_stream_, batch->moves, l, l + 1));
        STRATA_ASSIGN_OR_RETURN(auto ev, h2d_stream_->record());
        batch->layer_events.push_back(std::move(ev));
    }
    batch->launched = true;
    stats_.striped_pages += striped_pages;
    stats_.striped_bytes += striped_bytes;
    ++stats_.load_ops;
    stats_.load_pages += batch->pages[0].size();
    stats_.load_bytes += spaceBytes(batch->pages);
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
    auto take_owned = [&](std::size_t from, std::size_t to) {
        // Pages [from, to) of the request now belong to the tree.
        for (std::size_t i = from; i < to; ++i) {
            auto o = std::find(req.owned.begin(), req.owned.end(), req.device_pages[i]);
            if (o != req.owned.end()) req.owned.erase(o);
        }
    };
    Node* node = tree_.root();
    std::size_t pos = 0;
    const std::size_t full = req.keys.size();
    const std::size_t extra = numSpaces() - 1;
    // Extra spaces: whether the tree keeps the request's page of space e at prompt page i (inside
    // the trailing window of the last full page; a state only at that page), and taking it.
    auto keeps = [&](std::size_t e, std::size_t i) {
        const SlotSpace& sp = spaces_[e + 1];
        if (sp.request_state) return i + 1 == full;
        return sp.hit_policy == pools::HitPolicy::kAllPages || i + sp.trailing_pages >= full;
    };
    auto take_ext = [&](std::size_t e, std::size_t i) -> std::uint32_t {
        const std::uint32_t page =
            spaces_[e + 1].request_state ? req.state_page[e] : req.ext_pages[e][i];
        auto o = std::find(req.ext_owned[e].begin(), req.ext_owned[e].end(), page);
        if (page == kNoPage || o == req.ext_owned[e].end()) return kNoPage;
        req.ext_owned[e].erase(o);
        return page;
    };
    while (pos < full) {
        auto child_it = node->children.find(req.keys[pos]);
        if (child_it == node->children.end()) {
            std::vector<PageKey> keys(req.keys.begin() + pos, req.keys.end());
            std::vector<std::uint32_t> pages(req.device_pages.begin() + pos,
                                             req.device_pages.begin() + full);
            Node* c = tree_.addChild(node, std::move(keys), std::move(pages));
            c->hit_count = 1;
            take_owned(pos, full);
            if (hybrid()) {
                c->ext_device.assign(extra, std::vector<std::uint32_t>(full - pos, kNoPage));
                c->ext_host.assign(extra, {});
                for (std::size_t e = 0; e < extra; ++e) {
                    for (std::size_t i = pos; i < full; ++i) {
                        if (keeps(e, i)) c->ext_device[e][i - pos] = take_ext(e, i);
                    }
                }
            }
            node = c;
            pos = full;
            break;
        }
        Node* child = child_it->second.get();
        std::size_t n = 1;
        while (n < child->numPages() && pos + n < full && child->keys[n] == req.keys[pos + n]) ++n;
        if (n < child->numPages()) child = tree_.split(child, n);
        if (!child->onDevice()) {
            // Host-only node: adopt the request's freshly computed pages ("unevict"). Its pages of
            // the extra spaces come from the request too; a state the request did not keep (one
            // before its last full page) is dropped from the host copy, so both tiers hold the
            // same pattern.
            child->device_pages.assign(req.device_pages.begin() + pos,
                                       req.device_pages.begin() + pos + n);
            take_owned(pos, pos + n);
            if (hybrid()) {
                child->ext_device.assign(extra, std::vector<std::uint32_t>(n, kNoPage));
                for (std::size_t e = 0; e < extra; ++e) {
                    for (std::size_t k = 0; k < n; ++k) {
                        if (child->ext_host[e][k] == kNoPage) continue;
                        const std::uint32_t page = take_ext(e, pos + k);
                        if (page != kNoPage) {
                            child->ext_device[e][k] = page;
                            continue;
                        }
                        Status f = ext_host_alloc_[e].free({&child->ext_host[e][k], 1});
                        STRATA_CHECK(f.isOk(), "host accounting of space '{}' broken: {}",
                                     spaces_[e + 1].name, f.toString());
                        child->ext_host[e][k] = kNoPage;
                    }
                }
            }
            tree_.refresh(child);
            tree_.refresh(child->parent);
        }
        ++child->hit_count;
        node = child;
        pos += n;
    }
    if (hybrid()) fillPatternHoles(node, req);
    tree_.touch(node);
    tree_.raisePriority(node, req.priority);
    // The request's lock moves to the deepest node it now covers.
    tree_.lockDevice(node, +1);
    tree_.lockDevice(req.locked, -1);
    req.locked = node;

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
    return Status::ok();
}

Status CacheController::release(RequestId id) {
    auto it = requests_.find(id);
    if (it == requests_.end()) {
        return STRATA_ERROR(StatusCode::kNotFound, "release: request {} is not admitted", id);
    }
    Request& req = *it->second;
    note(0x2E1EA5E, id);
    tree_.lockDevice(req.locked, -1);
    if (!req.owned.empty()) freeDevicePages(req.owned);
    for (std::size_t e = 0; e < req.ext_owned.size(); ++e) {
        Status f = ext_device_alloc_[e].free(req.ext_owned[e]);
        STRATA_CHECK(f.isOk(), "device accounting of space '{}' broken: {}", spaces_[e + 1].name,
                     f.toString());
    }
    requests_.erase(it);
    return Status::ok();
}

Status CacheController::abort(RequestId id) {
    auto it = requests_.find(id);
    if (it == requests_.end()) {
        return STRATA_ERROR(StatusCode::kNotFound, "abort: request {} is not admitted", id);
    }
    for (const auto& batch : it->second->waits) {
        if (!batch->launched) STRATA_RETURN_IF_ERROR(launchLoads());
        STRATA_RETURN_IF_ERROR(batch->layer_events.back()->wait());
    }
    STRATA_RETURN_IF_ERROR(group_.barrier());
    return release(id);
}

// ---------------------------------------------------------------------------------------------
// Rounds

Status CacheController::launchBackups() {
    if (!open_backup_) return Status::ok();
    std::unique_ptr<BackupBatch> batch = std::move(open_backup_);
    batch->launched_at = Clock::now();
    STRATA_RETURN_IF_ERROR(enqueueCopies(*d2h_stream_, batch->pages, 0, num_layers_,
                                         kernels::Direction::kDeviceToHost));
    STRATA_ASSIGN_OR_RETURN(batch->done, d2h_stream_->record());
    ++stats_.backup_ops;
    stats_.backup_pages += batch->pages[0].size();
    stats_.backup_bytes += spaceBytes(batch->pages);
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

void CacheController::reapBackup(BackupBatch& batch) {
    std::vector<Node*> published;  // the nodes and the split fragments the copy covered
    for (Node* n : batch.nodes) {
        for (Node* f = n; f != nullptr && !f->isRoot() && f->backup_op == batch.id; f = f->parent) {
            published.push_back(f);
        }
        clearOpFlags(n, &Node::backup_op, batch.id);
        tree_.lockDevice(n, -1);
    }
    publishRemote(published);
    queueStorageBackup(std::move(published));
    stats_.backup_seconds +=
        std::chrono::duration<double>(batch.seen_done_at.value_or(Clock::now()) - batch.launched_at)
            .count();
}

void CacheController::reapLoad(LoadBatch& batch) {
    for (Node* n : batch.nodes) clearOpFlags(n, &Node::load_op, batch.id);
    for (Node* n : batch.host_locked) tree_.lockHost(n, -1);
    stats_.load_seconds +=
        std::chrono::duration<double>(batch.seen_done_at.value_or(Clock::now()) - batch.launched_at)
            .count();
}

Status CacheController::step() {
    STRATA_RETURN_IF_ERROR(launchLoads());
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
    comm::DecisionVector v;
    std::size_t backups_slot = v.addMin(
        finished_prefix(inflight_backups_, [](BackupBatch& b) { return b.done->query(); }));
    std::size_t loads_slot = v.addMin(finished_prefix(
        inflight_loads_, [](LoadBatch& b) { return b.layer_events.back()->query(); }));
    // The decision digest rides along as a (MIN, MAX) pair: equal on every rank or not at all.
    const auto digest = static_cast<std::int64_t>(decision_digest_ >> 2);
    std::size_t digest_min = v.addMin(digest);
    std::size_t digest_max = v.addMax(digest);
    StorageSlots storage_slots;
    if (hasStorage()) addStorageDecisions(v, &storage_slots);
    STRATA_RETURN_IF_ERROR(v.agree(group_));
    if (v.get(digest_min) != v.get(digest_max) || v.get(digest_min) != digest) {
        return STRATA_ERROR(StatusCode::kInternal,
                            "ranks took different cache decisions before round {} (decision "
                            "digests range over [{:x}, {:x}], this rank {:x}): stopping rather "
                            "than diverging",
                            stats_.rounds + 1, v.get(digest_min), v.get(digest_max), digest);
    }

    if (hasStorage()) STRATA_RETURN_IF_ERROR(applyStorageDecisions(v, storage_slots));
    // Reap exactly the agreed counts, in FIFO order, on every rank. A rank that was not yet done
    // (a later pipeline stage) waits here for the copies the group already counted as finished.
    const auto n_backups = static_cast<std::size_t>(v.get(backups_slot));
    for (std::size_t i = 0; i < n_backups; ++i) {
        STRATA_RETURN_IF_ERROR(inflight_backups_[i]->done->wait());
        reapBackup(*inflight_backups_[i]);
    }
    inflight_backups_.erase(inflight_backups_.begin(), inflight_backups_.begin() + n_backups);
    const auto n_loads = static_cast<std::size_t>(v.get(loads_slot));
    for (std::size_t i = 0; i < n_loads; ++i) {
        STRATA_RETURN_IF_ERROR(inflight_loads_[i]->layer_events.back()->wait());
        reapLoad(*inflight_loads_[i]);
    }
    inflight_loads_.erase(inflight_loads_.begin(), inflight_loads_.begin() + n_loads);

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
        STRATA_RETURN_IF_ERROR(launchLoads());
        STRATA_RETURN_IF_ERROR(launchBackups());
        STRATA_RETURN_IF_ERROR(d2h_stream_->synchronize());
        STRATA_RETURN_IF_ERROR(h2d_stream_->synchronize());
        if (worker_) worker_->waitIdle();
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

std::uint64_t CacheController::stateDigest() const {
    std::uint64_t d = tree_.digest();
    d = core::foldDigest(d, device_alloc_.digest());
    d = core::foldDigest(d, host_alloc_.digest());
    for (std::size_t e = 0; e < ext_device_alloc_.size(); ++e) {
        d = core::foldDigest(d, ext_device_alloc_[e].digest());
        d = core::foldDigest(d, ext_host_alloc_[e].digest());
    }
    d = core::foldDigest(d, inflight_loads_.size());
    d = core::foldDigest(d, inflight_backups_.size());
    d = core::foldDigest(d, requests_.size());
    for (const auto& [id, r] : requests_) {
        d = core::foldDigest(d, id);
        for (auto p : r->device_pages) d = core::foldDigest(d, p);
        for (const auto& e : r->ext_pages) {
            for (auto p : e) d = core::foldDigest(d, p);
        }
        for (auto p : r->state_page) d = core::foldDigest(d, p);
    }
    return d;
}

Status CacheController::checkInvariants() const {
    STRATA_RETURN_IF_ERROR(tree_.checkInvariants());
    const std::size_t spaces = numSpaces();
    auto dev_alloc = [&](std::size_t s) -> const pools::SlotAllocator& {
        return s == 0 ? device_alloc_ : ext_device_alloc_[s - 1];
    };
    auto host_alloc = [&](std::size_t s) -> const pools::SlotAllocator& {
        return s == 0 ? host_alloc_ : ext_host_alloc_[s - 1];
    };
    std::vector<std::vector<int>> dev_refs(spaces), host_refs(spaces);
    for (std::size_t s = 0; s < spaces; ++s) {
        dev_refs[s].assign(dev_alloc(s).numPages(), 0);
        host_refs[s].assign(host_alloc(s).numPages(), 0);
    }
    Status bad;
    auto count = [&](std::vector<int>& refs, std::uint32_t p, const char* what, std::size_t space,
                     std::uint64_t who) {
        if (p == kNoPage) return;
        if (p >= refs.size()) {
            if (bad.isOk()) {
                bad = Status(StatusCode::kInternal,
                             fmt::format("{} page {} of space '{}' out of range", what, p,
                                         spaces_[space].name));
            }
            return;
        }
        if (++refs[p] > 1 && bad.isOk()) {
            bad = Status(StatusCode::kInternal,
                         fmt::format("{} page {} of space '{}' referenced twice (last by {})", what,
                                     p, spaces_[space].name, who));
        }
    };
    bool backup_break = false;
    tree_.forEach([&](const Node& n) {
        for (auto p : n.device_pages) count(dev_refs[0], p, "device", 0, n.id);
        for (auto p : n.host_pages) count(host_refs[0], p, "host", 0, n.id);
        for (std::size_t e = 0; e < n.ext_device.size() && e + 1 < spaces; ++e) {
            for (auto p : n.ext_device[e]) count(dev_refs[e + 1], p, "device", e + 1, n.id);
        }
        for (std::size_t e = 0; e < n.ext_host.size() && e + 1 < spaces; ++e) {
            for (auto p : n.ext_host[e]) count(host_refs[e + 1], p, "host", e + 1, n.id);
        }
        if (config_.write_policy != WritePolicy::kWriteBack && n.onHost() && !n.parent->isRoot() &&
            !n.parent->onHost()) {
            backup_break = true;
        }
    });
    for (const auto& [id, r] : requests_) {
        for (auto p : r->owned) count(dev_refs[0], p, "device", 0, id);
        for (std::size_t e = 0; e < r->ext_owned.size(); ++e) {
            for (auto p : r->ext_owned[e]) count(dev_refs[e + 1], p, "device", e + 1, id);
        }
    }
    STRATA_RETURN_IF_ERROR(bad);
    if (backup_break) {
        return STRATA_ERROR(StatusCode::kInternal,
                            "backed-up nodes are not root-contiguous under write-through");
    }
    for (std::size_t s = 0; s < spaces; ++s) {
        for (std::uint32_t p = 0; p < dev_refs[s].size(); ++p) {
            if ((dev_refs[s][p] > 0) != dev_alloc(s).isAllocated(p)) {
                return STRATA_ERROR(StatusCode::kInternal,
                                    "device page {} of space '{}' is {} but referenced {} times", p,
                                    spaces_[s].name,
                                    dev_alloc(s).isAllocated(p) ? "allocated" : "free",
                                    dev_refs[s][p]);
            }
        }
        for (std::uint32_t p = 0; p < host_refs[s].size(); ++p) {
            if ((host_refs[s][p] > 0) != host_alloc(s).isAllocated(p)) {
                return STRATA_ERROR(
                    StatusCode::kInternal,
                    "host page {} of space '{}' is {} but referenced {} times", p, spaces_[s].name,
                    host_alloc(s).isAllocated(p) ? "allocated" : "free", host_refs[s][p]);
            }
        }
    }
    return Status::ok();
}

}  // namespace strata::controller

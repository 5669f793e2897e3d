#include "strata/controller/cache_controller.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <unordered_set>

#include "controller_ops.h"
#include "mover.h"
#include "storage_worker.h"
#include "strata/core/check.h"
#include "strata/core/hash.h"
#include "strata/core/log.h"

namespace strata::controller {

Status remoteTierServes(std::string_view model, bool hybrid) {
    if (!hybrid) return Status::ok();
    const std::string who =
        model.empty() ? std::string("this model") : fmt::format("model '{}'", model);
    return STRATA_ERROR(StatusCode::kNotSupported,
                        "{} is a hybrid model (slot spaces beyond the anchor's): the remote tier "
                        "does not serve hybrid models; run it with --remote off",
                        who);
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
    STRATA_ASSIGN_OR_RETURN(auto slots,
                            slotGroupOf(spaces, pools, device_pages, host_pages, config.page_size));
    std::unique_ptr<CacheController> c(
        new CacheController(config, backend, std::move(pools), group, std::move(slots)));
    c->spaces_ = spaces;
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
    if (with_remote != 0) STRATA_RETURN_IF_ERROR(remoteTierServes("", c->hybrid()));
    for (const PoolPair& p : c->pools_) {
        if (p.remote != nullptr && !p.remote->capabilities().publish_retract) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "pool '{}': its remote tier cannot publish and retract host pages "
                                "(a store without the publish_retract capability)",
                                p.device->spec().name);
        }
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
    }
    if (with_store != 0 || with_remote != 0) c->worker_ = std::make_unique<StorageWorker>();
    STRATA_ASSIGN_OR_RETURN(c->mover_, Mover::create(backend, c->pools_, config.striped_loader));
    c->num_layers_ = c->mover_->numLayers();
    return c;
}

CacheController::CacheController(const ControllerConfig& config, kernels::Backend& backend,
                                 std::vector<PoolPair> pools, comm::DecisionGroup& group,
                                 pools::HostPoolGroup slots)
    : config_(config),
      backend_(backend),
      pools_(std::move(pools)),
      group_(group),
      slots_(std::move(slots)),
      tree_(config.eviction_policy) {
    if (config_.check_consistency) checker_.emplace(group_);
}

CacheController::~CacheController() {
    // The storage worker finishes its reads and writes of host pages first.
    worker_.reset();
    // Streams drain their queued copies before the pools they touch can go away.
    mover_.reset();
}

std::size_t CacheController::inflightOps() const noexcept {
    return inflight_loads_.size() + inflight_backups_.size() + (open_load_ ? 1 : 0) +
           (open_backup_ ? 1 : 0) + storage_backups_.size() + prefetches_.size();
}

CacheController::QueueDepths CacheController::queueDepths() const noexcept {
    QueueDepths q;
    q.loads = inflight_loads_.size() + (open_load_ ? 1 : 0);
    q.backups = inflight_backups_.size() + (open_backup_ ? 1 : 0);
    q.storage_backups = storage_backups_.size();
    q.prefetches = prefetches_.size();
    return q;
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
    const AdmitPlan plan = planAdmission(keys, prompt_tokens);
    const MatchResult& m = plan.match;
    note(0xAD1117, id);
    note(m.device_pages, plan.host_pages);

    tree_.lockDevice(m.device_last, +1);
    if (plan.host_pages > 0) tree_.lockHost(m.host_last, +1);
    auto fresh = allocateDeviceSpaces(plan.counts);
    if (!fresh.isOk()) {
        tree_.lockDevice(m.device_last, -1);
        if (plan.host_pages > 0) tree_.lockHost(m.host_last, -1);
        ++stats_.rejected_admissions;
        return STRATA_ERROR(StatusCode::kResourceExhausted, "request {}: {}", id,
                            fresh.status().message());
    }
    SpacePages got = std::move(fresh).value();
    std::vector<std::size_t> ext_cursor(numSpaces() - 1, 0);

    auto req = std::make_unique<Request>();
    req->id = id;
    req->prompt_tokens = prompt_tokens;
    req->priority = priority;
    req->keys.assign(keys.begin(), keys.end());
    req->locked = m.device_last;
    addLoadDependencies(*req, m.device_last);
    const HitPages hits = queueHostLoad(plan, got, ext_cursor, *req);
    req->device_pages = m.device_page_list;
    req->device_pages.insert(req->device_pages.end(), got[0].begin(), got[0].end());
    req->owned.assign(got[0].begin() + static_cast<long>(hits.loaded), got[0].end());
    if (hybrid()) assignExtraSpaces(plan, got, ext_cursor, *req);
    Admission a = admissionOf(*req, plan, hits);
    requests_.emplace(id, std::move(req));
    return a;
}

CacheController::AdmitPlan CacheController::planAdmission(std::span<const PageKey> keys,
                                                          std::size_t prompt_tokens) {
    const std::uint32_t P = config_.page_size;
    AdmitPlan plan;
    // At least the last token is always computed (its logits are needed), so match at most the
    // pages that end before it.
    const std::size_t matchable = (prompt_tokens - 1) / P;
    MatchResult& m = plan.match;
    m = tree_.match(keys.first(matchable));
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
    plan.host_pages = m.host_pages;
    if (plan.host_pages * P < config_.load_back_threshold_tokens) plan.host_pages = 0;
    plan.total_pages = (prompt_tokens + P - 1) / P;
    plan.reused_pages = m.device_pages + plan.host_pages;
    // A state at the end of the matched prefix, where the tree has none, is worth keeping.
    const std::size_t full_pages = prompt_tokens / P;
    plan.branch_pages = hybrid() && matched_pages > plan.reused_pages && matched_pages < full_pages
                            ? matched_pages
                            : 0;
    // Device pages of each space: the anchor's for every page not on the device; an extra
    // space's for every page computed (or the working state, and the branch state), plus what
    // the loaded host nodes hold.
    plan.counts.assign(numSpaces(), 0);
    plan.counts[0] = plan.total_pages - m.device_pages;
    for (std::size_t e = 0; e + 1 < numSpaces(); ++e) {
        plan.counts[e + 1] = spaces_[e + 1].request_state ? (plan.branch_pages > 0 ? 2 : 1)
                                                          : plan.total_pages - plan.reused_pages;
    }
    if (plan.host_pages > 0 && hybrid()) {
        for (const Node* n : m.host_chain) {
            const auto pc = patternCounts(n);
            for (std::size_t s = 1; s < numSpaces(); ++s) plan.counts[s] += pc[s];
        }
    }
    return plan;
}

void CacheController::addLoadDependencies(Request& req, const Node* device_last) {
    // Any in-flight load into the pages this request reuses must finish before it reads them.
    std::unordered_set<std::uint64_t> dep_ops;
    for (const Node* n = device_last; n != nullptr && !n->isRoot(); n = n->parent) {
        if (n->load_op != 0) dep_ops.insert(n->load_op);
    }
    auto add_dep = [&](const std::shared_ptr<LoadBatch>& b) {
        if (b && dep_ops.contains(b->id)) req.waits.push_back(b);
    };
    add_dep(open_load_);
    for (const auto& b : inflight_loads_) add_dep(b);
}

CacheController::LoadBatch& CacheController::openLoadBatch(Request& req) {
    if (!open_load_) {
        open_load_ = std::make_shared<LoadBatch>();
        open_load_->id = next_op_id_++;
        open_load_->pages.resize(numSpaces());
        open_load_->moves.resize(numSpaces());
    }
    if (std::find(req.waits.begin(), req.waits.end(), open_load_) == req.waits.end()) {
        req.waits.push_back(open_load_);
    }
    return *open_load_;
}

CacheController::HitPages CacheController::queueHostLoad(const AdmitPlan& plan,
                                                         const SpacePages& got,
                                                         std::vector<std::size_t>& ext_cursor,
                                                         Request& req) {
    // The host-resident part of the prefix gets the first fresh device pages of every space and
    // joins this round's load batch; the request's lock moves to its end.
    HitPages hits;
    if (plan.host_pages == 0) return hits;
    const MatchResult& m = plan.match;
    const std::size_t extra = numSpaces() - 1;
    LoadBatch& batch = openLoadBatch(req);
    std::size_t& cursor = hits.loaded;
    for (Node* n : m.host_chain) {
        if (n->from_storage) hits.storage += n->numPages();
        if (n->from_remote) hits.remote += n->numPages();
        n->from_storage = n->from_remote = false;
        n->device_pages.assign(got[0].begin() + static_cast<long>(cursor),
                               got[0].begin() + static_cast<long>(cursor + n->numPages()));
        for (std::size_t i = 0; i < n->numPages(); ++i) {
            batch.pages[0].push_back({n->device_pages[i], n->host_pages[i]});
        }
        emit(KvEventKind::kStored, KvTier::kDevice, n);
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
    batch.host_locked.push_back(m.host_last);  // the host lock admit() took
    tree_.lockDevice(m.host_last, +1);
    tree_.lockDevice(m.device_last, -1);
    req.locked = m.host_last;
    return hits;
}

void CacheController::assignExtraSpaces(const AdmitPlan& plan, const SpacePages& got,
                                        std::vector<std::size_t>& ext_cursor, Request& req) {
    // The prefix's pages of each extra space are the tree's (on device, or arriving with this
    // round's loads); the request owns one for each page it computes, or its working state.
    const std::size_t extra = numSpaces() - 1;
    req.ext_pages.assign(extra, std::vector<std::uint32_t>(plan.total_pages, kNoPage));
    req.ext_owned.assign(extra, {});
    req.state_page.assign(extra, kNoPage);
    req.branch_state.assign(extra, kNoPage);
    req.reused_pages = plan.reused_pages;
    req.branch_pages = plan.branch_pages;
    const auto path = pathTo(req.locked);
    for (std::size_t e = 0; e < extra; ++e) {
        std::vector<std::uint32_t>& own = req.ext_pages[e];
        if (spaces_[e + 1].request_state) {
            const std::uint32_t working = got[e + 1][ext_cursor[e]++];
            req.state_page[e] = working;
            req.ext_owned[e].push_back(working);
            if (plan.branch_pages > 0) {
                req.branch_state[e] = got[e + 1][ext_cursor[e]++];
                req.ext_owned[e].push_back(req.branch_state[e]);
            }
            if (plan.reused_pages > 0) {
                const Node* last = path.back();
                const std::uint32_t checkpoint = last->ext_device[e].back();
                STRATA_CHECK(checkpoint != kNoPage,
                             "request {}: no state of space '{}' at the end of its prefix", req.id,
                             spaces_[e + 1].name);
                openLoadBatch(req).moves[e + 1].push_back({checkpoint, working});
            }
            continue;
        }
        std::size_t pos = 0;
        for (const Node* n : path) {
            for (std::size_t i = 0; i < n->numPages(); ++i) own[pos + i] = n->ext_device[e][i];
            pos += n->numPages();
        }
        for (std::size_t p = plan.reused_pages; p < plan.total_pages; ++p) {
            own[p] = got[e + 1][ext_cursor[e]++];
            req.ext_owned[e].push_back(own[p]);
        }
    }
}

Admission CacheController::admissionOf(const Request& req, const AdmitPlan& plan,
                                       const HitPages& hits) const {
    const std::uint32_t P = config_.page_size;
    Admission a;
    a.prompt_tokens = req.prompt_tokens;
    a.device_hit_tokens = plan.match.device_pages * P;
    a.host_hit_tokens = plan.host_pages * P;
    a.storage_hit_tokens = hits.storage * P;
    a.remote_hit_tokens = hits.remote * P;
    a.computed_tokens = req.prompt_tokens - a.reusedTokens();
    a.device_pages = req.device_pages;
    a.spaces.resize(numSpaces());
    a.spaces[0].pages = req.device_pages;
    for (std::size_t e = 0; e + 1 < numSpaces() && hybrid(); ++e) {
        a.spaces[e + 1].pages = req.ext_pages[e];
        a.spaces[e + 1].state_page = req.state_page[e];
        a.spaces[e + 1].branch_state_page = req.branch_state[e];
        a.spaces[e + 1].branch_pages = req.branch_state[e] != kNoPage ? plan.branch_pages : 0;
    }
    return a;
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
        freeSlots(pools::SlotTier::kDevice, e + 1, req.ext_owned[e]);
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

std::uint64_t CacheController::stateDigest() const {
    std::uint64_t d = tree_.digest();
    for (std::size_t s = 0; s < numSpaces(); ++s) {
        d = core::foldDigest(d, deviceAlloc(s).digest());
        d = core::foldDigest(d, hostAlloc(s).digest());
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
    auto dev_alloc = [&](std::size_t s) -> const pools::SlotAllocator& { return deviceAlloc(s); };
    auto host_alloc = [&](std::size_t s) -> const pools::SlotAllocator& { return hostAlloc(s); };
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

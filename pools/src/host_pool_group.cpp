#include "strata/pools/host_pool_group.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>
#include <utility>

namespace strata::pools {
namespace {

bool sameShape(const PoolSpec& a, const PoolSpec& b) {
    return a.name == b.name && a.kind == b.kind && a.num_layers == b.num_layers &&
           a.num_buffers == b.num_buffers && a.row_bytes == b.row_bytes &&
           a.tokens_per_row == b.tokens_per_row;
}

std::size_t poolPages(const GroupEntry& e) {
    return e.host != nullptr ? e.host->numPages() : e.logical_pages;
}

// Host slots of an entry: the pool's pages, or fewer when the entry says so.
std::size_t entryPages(const GroupEntry& e) {
    return e.role != PoolRole::kSidecar && e.host_pages != 0 ? e.host_pages : poolPages(e);
}

// Device slots of an owning entry; 0 without a device pool or device_pages.
std::size_t entryDevicePages(const GroupEntry& e) {
    if (e.device_pages != 0) return e.device_pages;
    return e.device != nullptr ? e.device->numPages() : 0;
}

Status checkEntry(const GroupEntry& e, std::uint32_t page_size) {
    if (e.host == nullptr) {
        if (e.role != PoolRole::kAnchor || e.logical_pages == 0) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "entry '{}' ({}) has no host pool: only a logical anchor may, "
                                "with logical_pages > 0",
                                e.name, poolRoleName(e.role));
        }
        if (e.device != nullptr) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "entry '{}' is a logical anchor but has a device pool", e.name);
        }
    } else {
        if (e.host->pageSize() != page_size) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "entry '{}': host pool has pages of {} tokens, the group {}",
                                e.name, e.host->pageSize(), page_size);
        }
        if (e.layer_map.size() != e.host->spec().num_layers) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "entry '{}': layer map has {} layers, its pool {}", e.name,
                                e.layer_map.size(), e.host->spec().num_layers);
        }
        if (e.device != nullptr &&
            (!sameShape(e.device->spec(), e.host->spec()) || e.device->pageSize() != page_size)) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "entry '{}': device pool '{}' ({}, {} x {} bytes, {} layers) does "
                                "not match host pool '{}' ({}, {} x {} bytes, {} layers)",
                                e.name, e.device->spec().name, poolKindName(e.device->spec().kind),
                                e.device->spec().num_buffers, e.device->spec().row_bytes,
                                e.device->spec().num_layers, e.host->spec().name,
                                poolKindName(e.host->spec().kind), e.host->spec().num_buffers,
                                e.host->spec().row_bytes, e.host->spec().num_layers);
        }
    }
    for (std::size_t i = 1; i < e.layer_map.size(); ++i) {
        if (e.layer_map[i] <= e.layer_map[i - 1]) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "entry '{}': layer map is not ascending at position {} ({} after "
                                "{})",
                                e.name, i, e.layer_map[i], e.layer_map[i - 1]);
        }
    }
    if (e.ratio == 0 || page_size % e.ratio != 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "entry '{}': ratio {} does not divide the page size {}", e.name,
                            e.ratio, page_size);
    }
    if (e.ratio != 1 && e.role != PoolRole::kSidecar) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "entry '{}': ratio {} is only for sidecars, not a {} entry", e.name,
                            e.ratio, poolRoleName(e.role));
    }
    if (e.host != nullptr && e.host->spec().tokens_per_row != e.ratio) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "entry '{}': ratio {} differs from its pool's tokens per row {}",
                            e.name, e.ratio, e.host->spec().tokens_per_row);
    }
    if (e.role != PoolRole::kSidecar && e.host_pages > poolPages(e)) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "entry '{}': {} host pages asked, its pool has {}", e.name,
                            e.host_pages, poolPages(e));
    }
    if (e.role != PoolRole::kSidecar && e.device != nullptr &&
        e.device_pages > e.device->numPages()) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "entry '{}': {} device pages asked, its device pool has {}", e.name,
                            e.device_pages, e.device->numPages());
    }
    if (e.role == PoolRole::kAnchor && e.hit_policy != HitPolicy::kAllPages) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "entry '{}': the anchor must hold all pages of a prefix", e.name);
    }
    if (e.role == PoolRole::kIndependent && e.hit_policy == HitPolicy::kTrailingPages &&
        e.trailing_pages == 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "entry '{}': trailing-pages policy with 0 pages", e.name);
    }
    return Status::ok();
}

}  // namespace

const EntryPages* GroupAllocation::find(std::string_view name) const noexcept {
    for (const EntryPages& e : entries) {
        if (e.name == name) return &e;
    }
    return nullptr;
}

Result<HostPoolGroup> HostPoolGroup::create(std::vector<GroupEntry> entries,
                                            std::uint32_t page_size) {
    if (page_size == 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "host pool group: page size is 0");
    }
    HostPoolGroup g;
    g.page_size_ = page_size;
    std::set<std::string, std::less<>> names;
    std::size_t anchors = 0;
    for (std::size_t i = 0; i < entries.size(); ++i) {
        const GroupEntry& e = entries[i];
        if (e.name.empty()) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "host pool group: entry {} has no name", i);
        }
        if (!names.insert(e.name).second) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "host pool group: entry name '{}' is repeated", e.name);
        }
        STRATA_RETURN_IF_ERROR(checkEntry(e, page_size));
        anchors += e.role == PoolRole::kAnchor ? 1 : 0;
        std::size_t source = entries.size();
        if (e.role == PoolRole::kSidecar) {
            for (std::size_t j = 0; j < i; ++j) {
                if (entries[j].name == e.indices_from) source = j;
            }
            if (source == entries.size()) {
                return STRATA_ERROR(StatusCode::kInvalidArgument,
                                    "sidecar '{}' takes its indices from '{}', which is not an "
                                    "earlier entry of the group",
                                    e.name, e.indices_from);
            }
            if (entries[source].role == PoolRole::kSidecar) {
                return STRATA_ERROR(StatusCode::kInvalidArgument,
                                    "sidecar '{}' takes its indices from '{}', itself a sidecar "
                                    "(derive from the anchor or an independent entry)",
                                    e.name, e.indices_from);
            }
            if (entryPages(e) < entryPages(entries[source])) {
                return STRATA_ERROR(StatusCode::kInvalidArgument,
                                    "sidecar '{}' has {} pages, fewer than the {} of its source "
                                    "'{}'",
                                    e.name, entryPages(e), entryPages(entries[source]),
                                    e.indices_from);
            }
            g.alloc_.emplace_back(std::nullopt);
            g.device_alloc_.emplace_back(std::nullopt);
        } else {
            STRATA_ASSIGN_OR_RETURN(SlotAllocator a,
                                    SlotAllocator::create(entryPages(e), page_size));
            g.alloc_.emplace_back(std::move(a));
            if (entryDevicePages(e) == 0) {
                g.device_alloc_.emplace_back(std::nullopt);
            } else {
                STRATA_ASSIGN_OR_RETURN(SlotAllocator d,
                                        SlotAllocator::create(entryDevicePages(e), page_size));
                g.device_alloc_.emplace_back(std::move(d));
            }
            if (e.role == PoolRole::kAnchor) {
                g.space_entry_.insert(g.space_entry_.begin(), i);
            } else {
                g.space_entry_.push_back(i);
            }
        }
        g.source_.push_back(source);
    }
    if (anchors != 1) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "host pool group has {} anchors, expected exactly one", anchors);
    }
    g.entries_ = std::move(entries);
    return g;
}

std::size_t HostPoolGroup::index(std::string_view name) const noexcept {
    for (std::size_t i = 0; i < entries_.size(); ++i) {
        if (entries_[i].name == name) return i;
    }
    return entries_.size();
}

Status HostPoolGroup::injectFailure(std::string_view name) {
    const std::size_t i = index(name);
    if (i == entries_.size()) {
        return STRATA_ERROR(StatusCode::kNotFound, "host pool group has no entry '{}'", name);
    }
    inject_ = i;
    return Status::ok();
}

Result<GroupAllocation> HostPoolGroup::allocate(std::size_t request_pages) {
    if (request_pages == 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "host pool group: allocate 0 pages");
    }
    const std::optional<std::size_t> inject = std::exchange(inject_, std::nullopt);
    GroupAllocation out;
    out.request_pages = request_pages;
    // On failure, give back what the earlier entries took, newest first (each allocator's free
    // list is LIFO, so the allocators end exactly as they began: same digest).
    auto rollback = [&](Status why) -> Status {
        for (std::size_t j = out.entries.size(); j-- > 0;) {
            if (!out.entries[j].owned) continue;
            Status s = alloc_[j]->free(out.entries[j].pages);
            if (!s.isOk()) return s.withContext("host pool group rollback (a bug)");
        }
        return why;
    };
    for (std::size_t i = 0; i < entries_.size(); ++i) {
        const GroupEntry& e = entries_[i];
        EntryPages part;
        part.name = e.name;
        if (inject == i) {
            return rollback(STRATA_ERROR(StatusCode::kResourceExhausted,
                                         "injected failure in entry '{}' of the host pool group "
                                         "(nothing allocated)",
                                         e.name));
        }
        if (e.role == PoolRole::kSidecar) {
            const EntryPages& src = out.entries[source_[i]];
            part.first_page = src.first_page;
            part.pages = src.pages;
        } else {
            std::size_t n = request_pages;
            if (e.hit_policy == HitPolicy::kTrailingPages) {
                n = std::min<std::size_t>(n, e.trailing_pages);
            }
            part.first_page = request_pages - n;
            auto pages = alloc_[i]->allocate(n);
            if (!pages.isOk()) {
                return rollback(pages.status().withContext(
                    fmt::format("host pool group entry '{}' (nothing allocated)", e.name)));
            }
            part.pages = std::move(*pages);
            part.owned = true;
        }
        out.entries.push_back(std::move(part));
    }
    return out;
}

Status HostPoolGroup::free(const GroupAllocation& allocation) {
    if (allocation.entries.size() != entries_.size()) {
        return STRATA_ERROR(StatusCode::kFailedPrecondition,
                            "host pool group free: {} entries given, the group has {}",
                            allocation.entries.size(), entries_.size());
    }
    // Check everything first, so that a bad allocation frees nothing in any entry.
    for (std::size_t i = 0; i < entries_.size(); ++i) {
        const EntryPages& part = allocation.entries[i];
        if (part.name != entries_[i].name || part.owned != alloc_[i].has_value()) {
            return STRATA_ERROR(StatusCode::kFailedPrecondition,
                                "host pool group free: entry {} is '{}', expected '{}' ({})", i,
                                part.name, entries_[i].name, poolRoleName(entries_[i].role));
        }
        if (!part.owned) continue;
        std::set<std::uint32_t> seen;
        for (std::uint32_t p : part.pages) {
            if (p >= alloc_[i]->numPages() || !alloc_[i]->isAllocated(p) ||
                !seen.insert(p).second) {
                return STRATA_ERROR(StatusCode::kFailedPrecondition,
                                    "host pool group free: page {} of entry '{}' is out of range, "
                                    "not allocated or listed twice (nothing freed)",
                                    p, part.name);
            }
        }
    }
    for (std::size_t i = 0; i < entries_.size(); ++i) {
        if (!allocation.entries[i].owned) continue;
        Status s = alloc_[i]->free(allocation.entries[i].pages);
        if (!s.isOk()) return s.withContext("host pool group free after validation (a bug)");
    }
    return Status::ok();
}

std::size_t HostPoolGroup::spaceOf(std::string_view name) const noexcept {
    std::size_t i = index(name);
    if (i == entries_.size()) return numSpaces();
    if (!alloc_[i].has_value()) i = source_[i];
    return static_cast<std::size_t>(std::find(space_entry_.begin(), space_entry_.end(), i) -
                                    space_entry_.begin());
}

const SlotAllocator* HostPoolGroup::allocator(SlotTier tier, std::size_t space) const noexcept {
    if (space >= numSpaces()) return nullptr;
    const auto& a = tier == SlotTier::kHost ? alloc_ : device_alloc_;
    const std::size_t i = space_entry_[space];
    return a[i].has_value() ? &*a[i] : nullptr;
}

Result<std::vector<std::vector<std::uint32_t>>> HostPoolGroup::allocateSlots(
    SlotTier tier, std::span<const std::size_t> counts, const MakeRoom& make_room) {
    const char* tier_name = tier == SlotTier::kHost ? "host" : "device";
    if (counts.size() != numSpaces()) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "host pool group: {} slot counts for {} spaces", counts.size(),
                            numSpaces());
    }
    // An injected failure applies to the host tier, in the space of the entry it names.
    std::optional<std::size_t> inject;
    if (tier == SlotTier::kHost && inject_.has_value()) {
        inject = spaceOf(entries_[*std::exchange(inject_, std::nullopt)].name);
    }
    auto& allocs = tier == SlotTier::kHost ? alloc_ : device_alloc_;
    std::vector<std::vector<std::uint32_t>> out(counts.size());
    // On failure, give back what the earlier spaces took, newest first (each allocator's free
    // list is LIFO, so the allocators end exactly as they were: same digest).
    auto rollback = [&](std::size_t failed, Status why) -> Status {
        for (std::size_t t = failed; t-- > 0;) {
            if (!allocs[space_entry_[t]].has_value()) continue;
            Status f = allocs[space_entry_[t]]->free(out[t]);
            if (!f.isOk()) return f.withContext("host pool group rollback (a bug)");
        }
        return why;
    };
    for (std::size_t s = 0; s < counts.size(); ++s) {
        const GroupEntry& e = entries_[space_entry_[s]];
        auto& a = allocs[space_entry_[s]];
        if (!a.has_value()) {
            if (counts[s] == 0) continue;
            return rollback(s, STRATA_ERROR(StatusCode::kInvalidArgument,
                                            "space '{}' has no {} slots", e.name, tier_name));
        }
        if (make_room && a->freePages() < counts[s]) make_room(s, counts[s] - a->freePages());
        if (inject == s) {
            return rollback(
                s, STRATA_ERROR(StatusCode::kResourceExhausted,
                                "injected {} allocation failure in space '{}'", tier_name, e.name));
        }
        auto r = a->allocate(counts[s]);
        if (!r.isOk()) {
            return rollback(s, STRATA_ERROR(StatusCode::kResourceExhausted,
                                            "space '{}' needs {} {} pages, {} free after eviction",
                                            e.name, counts[s], tier_name, a->freePages()));
        }
        out[s] = std::move(r).value();
    }
    return out;
}

Status HostPoolGroup::freeSlots(SlotTier tier, std::size_t space,
                                std::span<const std::uint32_t> pages) {
    const SlotAllocator* a = allocator(tier, space);
    if (a == nullptr) {
        if (pages.empty()) return Status::ok();
        return STRATA_ERROR(StatusCode::kFailedPrecondition,
                            "host pool group: space {} has no {} slots to free", space,
                            tier == SlotTier::kHost ? "host" : "device");
    }
    auto& allocs = tier == SlotTier::kHost ? alloc_ : device_alloc_;
    return allocs[space_entry_[space]]->free(pages);
}

const SlotAllocator* HostPoolGroup::allocator(std::string_view name) const noexcept {
    const std::size_t i = index(name);
    if (i == entries_.size() || !alloc_[i].has_value()) return nullptr;
    return &*alloc_[i];
}

std::size_t HostPoolGroup::freePages(std::string_view name) const noexcept {
    std::size_t i = index(name);
    if (i == entries_.size()) return 0;
    if (!alloc_[i].has_value()) i = source_[i];
    return alloc_[i]->freePages();
}

std::uint64_t HostPoolGroup::digest() const noexcept {
    std::uint64_t h = 1469598103934665603ull;
    for (const auto& a : alloc_) {
        const std::uint64_t d = a.has_value() ? a->digest() : 0;
        h = (h ^ d) * 1099511628211ull;
    }
    return h;
}

}  // namespace strata::pools

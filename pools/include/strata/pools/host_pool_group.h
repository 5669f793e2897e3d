// HostPoolGroup: the pools of one rank's model as one allocation unit, the one multi-pool slot
// allocator (the controller allocates through it). The anchor allocates the pages of a prefix (it
// may be logical: a slot space with no bytes); a sidecar takes the pages of another entry (KV or
// SWA); an independent entry allocates its own (SWA window, Mamba state). The anchor and the
// independent entries are the group's slot spaces, each with host slots and, where it has a
// device pool (or device_pages), device slots. Allocation is all or nothing across entries, with
// rollback. Pools are borrowed (they must outlive the group); the group owns the slot allocators.
// Thread-safety: not thread-safe (one owner thread), like SlotAllocator.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "strata/core/status.h"
#include "strata/pools/device_pool.h"
#include "strata/pools/host_pool.h"
#include "strata/pools/pool_spec.h"
#include "strata/pools/slot_allocator.h"

namespace strata::pools {

struct GroupEntry {
    std::string name;
    PoolRole role = PoolRole::kAnchor;
    const HostPool* host = nullptr;        // null only for a logical anchor; must outlive the group
    const DevicePool* device = nullptr;    // optional; its spec must match host's; must outlive
    std::vector<std::uint32_t> layer_map;  // model layer of each pool layer (ascending)
    std::string indices_from;              // sidecars: an earlier anchor or independent entry
    std::uint32_t ratio = 1;               // sidecars: host's tokens_per_row (4, 128) or 1
    HitPolicy hit_policy = HitPolicy::kAllPages;
    std::uint32_t trailing_pages = 0;  // kTrailingPages (independent entries): pages to allocate
    std::size_t logical_pages = 0;     // logical anchor: pages of its slot space
    // Owning entries (anchor, independent): the slots the group allocates in each tier, when fewer
    // than the pools have (the ranks of a replica agree on the smallest counts). 0: the host
    // pool's pages (logical_pages for a logical anchor); the device pool's pages (no device slots
    // without a device pool). Sidecars: ignored (they take their source's).
    std::size_t host_pages = 0;
    std::size_t device_pages = 0;
};

// The tier of a slot space's slots.
enum class SlotTier : std::uint8_t { kHost, kDevice };

// One entry's part of a GroupAllocation: pages in the entry's page space (the same page ids as
// its source for a sidecar), covering request pages [first_page, first_page + pages.size()).
struct EntryPages {
    std::string name;
    std::size_t first_page = 0;
    std::vector<std::uint32_t> pages;
    bool owned = false;  // allocated by this entry (anchor, independent); sidecars borrow
};

struct GroupAllocation {
    std::size_t request_pages = 0;
    std::vector<EntryPages> entries;  // in the group's entry order

    const EntryPages* find(std::string_view name) const noexcept;
};

class HostPoolGroup {
public:
    // Validates and builds the group for pages of page_size tokens. kInvalidArgument names the
    // entry and the problem: not exactly one anchor; empty or repeated names; a missing host pool
    // (only a logical anchor may have none, with logical_pages > 0); a sidecar whose source is
    // missing, later, or itself a sidecar; a ratio that does not divide page_size or differs from
    // the host pool's tokens_per_row; a sidecar with fewer pages than its source; a trailing policy
    // with 0 pages; a layer map that is not ascending or not one entry per pool layer; a host or
    // device pool of another page size, or a device pool whose spec differs from the host's.
    static Result<HostPoolGroup> create(std::vector<GroupEntry> entries, std::uint32_t page_size);

    // Host pages for a prefix of request_pages pages: the anchor and kAllPages entries take
    // request_pages, kTrailingPages entries the last min(request_pages, N), sidecars the pages of
    // their source. All or nothing: kResourceExhausted naming the entry (or an injected failure)
    // leaves every allocator as it was. kInvalidArgument for 0 pages.
    Result<GroupAllocation> allocate(std::size_t request_pages);
    // Frees the owned pages of an allocation. kFailedPrecondition (nothing freed) when it does not
    // match the group's entries or a page is not allocated (double free) or listed twice.
    Status free(const GroupAllocation& allocation);

    // Slot spaces: space 0 is the anchor's, then one per independent entry in entry order; a
    // sidecar is in its source's space.
    std::size_t numSpaces() const noexcept { return space_entry_.size(); }
    const GroupEntry& spaceEntry(std::size_t space) const { return entries_[space_entry_[space]]; }
    // Space of entry `name`; numSpaces() for an unknown name.
    std::size_t spaceOf(std::string_view name) const noexcept;
    // The allocator of a space in a tier; null when the space has no slots in that tier.
    const SlotAllocator* allocator(SlotTier tier, std::size_t space) const noexcept;

    // Called before space `space` allocates when it has `short_by` fewer free slots than asked:
    // may free slots (evict) to make room.
    using MakeRoom = std::function<void(std::size_t space, std::size_t short_by)>;
    // counts[s] slots of every space s in `tier` (any counts: the caller decides what each space
    // holds). Spaces allocate in order, each after make_room (when given and short). All or
    // nothing: kResourceExhausted naming the space (or an injected failure) gives back what earlier
    // spaces took, so the allocators end as they were after make_room. kInvalidArgument when
    // counts does not have numSpaces() entries or a space with counts has no slots in the tier.
    Result<std::vector<std::vector<std::uint32_t>>> allocateSlots(
        SlotTier tier, std::span<const std::size_t> counts, const MakeRoom& make_room = {});
    // Frees slots of one space. kFailedPrecondition (nothing freed) for an unknown space, or a
    // slot out of range, not allocated or listed twice.
    Status freeSlots(SlotTier tier, std::size_t space, std::span<const std::uint32_t> pages);

    // Test hook: the next allocate() (or host allocateSlots(), in the entry's space) fails in
    // entry `name` (after the entries before it have allocated, so that rollback is exercised).
    // kNotFound for an unknown entry.
    Status injectFailure(std::string_view name);

    const std::vector<GroupEntry>& entries() const noexcept { return entries_; }
    std::uint32_t pageSize() const noexcept { return page_size_; }
    // The allocator of an entry that owns one (anchor, independent); null for sidecars.
    const SlotAllocator* allocator(std::string_view name) const noexcept;
    // Free pages of an owning entry, or of a sidecar's source. 0 for an unknown name.
    std::size_t freePages(std::string_view name) const noexcept;
    // Digest over every host allocator, for cross-rank checks.
    std::uint64_t digest() const noexcept;

private:
    HostPoolGroup() = default;
    std::size_t index(std::string_view name) const noexcept;  // entries_.size() when unknown
    std::vector<GroupEntry> entries_;
    std::vector<std::size_t> source_;                         // sidecars: index of the source entry
    std::vector<std::optional<SlotAllocator>> alloc_;         // owning entries only (host slots)
    std::vector<std::optional<SlotAllocator>> device_alloc_;  // owning entries with device slots
    std::vector<std::size_t> space_entry_;                    // entry index of each space
    std::uint32_t page_size_ = 0;
    std::optional<std::size_t> inject_;
};

}  // namespace strata::pools

// Bench `tree`: the speed and the memory of the prefix tree, replaying a whole trace (default: the
// Mooncake conversation trace, 12,031 requests) metadata-only at one capacity (default 3M tokens)
// on one core, at page sizes 64 and 512. Strata: app::BlockReplayer (controller::PrefixTree
// plus its slot allocator, the rules of block_replay.h). Baseline `flat_lru`, same run, same keys,
// same rules: a flat hash table of pages (as vLLM's block hash table) with an intrusive list of
// the leaf pages in LRU order and a child count per page, no tree; it must reach exactly the same
// hit tokens (checked), so it is a fair floor for the cost of the bookkeeping.
// Time is measured per request around the cache operations only (lookup, touch, evict, insert);
// keys are built before the clock starts, for both. Metadata bytes: strata-bench counts the heap
// bytes each thread holds through operator new (malloc_usable_size of each block, so rounding is
// included, plus glibc's 8-byte chunk header); the figure is that count with the replay state
// alive after the whole trace minus the count before it was created, divided by the pages cached
// at the end. It covers tree nodes, key and slot vectors, child maps, evictable sets and the slot
// allocator (for the baseline: hash table nodes, buckets and list links).
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <unordered_map>
#include <vector>

#include "registry.h"
#include "strata/app/block_replay.h"
#include "strata/app/trace.h"

#ifndef STRATA_TRACES_DIR
#define STRATA_TRACES_DIR "../shared/traces"
#endif

namespace strata::bench {
namespace {
// Heap bytes held by this thread's operator new allocations (freed by the same thread), counted
// by the replaceable global operators below.
thread_local std::ptrdiff_t t_heap_bytes = 0;
constexpr std::size_t kChunkHeader = 8;
}  // namespace
}  // namespace strata::bench

void* operator new(std::size_t size) {
    void* p = std::malloc(size == 0 ? 1 : size);
    if (p == nullptr) throw std::bad_alloc();
    strata::bench::t_heap_bytes +=
        static_cast<std::ptrdiff_t>(::malloc_usable_size(p) + strata::bench::kChunkHeader);
    return p;
}
void* operator new[](std::size_t size) { return ::operator new(size); }
void operator delete(void* p) noexcept {
    if (p == nullptr) return;
    strata::bench::t_heap_bytes -=
        static_cast<std::ptrdiff_t>(::malloc_usable_size(p) + strata::bench::kChunkHeader);
    std::free(p);
}
void operator delete[](void* p) noexcept { ::operator delete(p); }
void operator delete(void* p, std::size_t) noexcept { ::operator delete(p); }
void operator delete[](void* p, std::size_t) noexcept { ::operator delete(p); }

namespace strata::bench {
namespace {

using Clock = std::chrono::steady_clock;
using core::PageKey;

std::ptrdiff_t heapBytes() { return t_heap_bytes; }

// The flat baseline. Leaves (pages none of whose children is cached) sit in one list, least
// recently used first: a touched leaf goes to the back; a page whose last child is evicted becomes
// a leaf older than every other leaf (it was last touched with that child, the oldest leaf), so
// it goes to the front; pages of the current request are never evicted while another leaf exists.
class FlatLruCache {
public:
    explicit FlatLruCache(std::size_t capacity_pages) : capacity_(capacity_pages) {
        map_.reserve(capacity_pages);
    }

    // Returns the leading pages found.
    std::size_t replay(const std::vector<PageKey>& keys) {
        ++now_;
        Entry* parent = nullptr;
        std::size_t hit = 0;
        while (hit < keys.size()) {
            auto it = map_.find(keys[hit]);
            if (it == map_.end()) break;
            parent = &it->second;
            parent->stamp = now_;
            ++hit;
        }
        if (parent != nullptr && parent->children == 0) {
            unlink(parent);
            pushBack(parent);
        }
        const std::size_t want = keys.size() - hit;
        while (map_.size() + want > capacity_ && head_ != nullptr && head_->stamp != now_) {
            evict(head_);
        }
        const std::size_t fit = std::min(want, capacity_ - map_.size());
        for (std::size_t j = hit; j < hit + fit; ++j) {
            Entry& e = map_[keys[j]];
            e.key = keys[j];
            e.parent = parent;
            e.stamp = now_;
            if (parent != nullptr && parent->children++ == 0) unlink(parent);
            parent = &e;
        }
        if (fit > 0) pushBack(parent);
        return hit;
    }
    std::size_t size() const noexcept { return map_.size(); }

private:
    struct Entry {
        PageKey key;
        Entry* parent = nullptr;
        Entry* prev = nullptr;  // leaf list links (leaves only)
        Entry* next = nullptr;
        std::uint64_t stamp = 0;  // the last request that touched it
        std::uint32_t children = 0;
        bool listed = false;
    };

    void pushBack(Entry* e) {
        e->prev = tail_;
        e->next = nullptr;
        (tail_ != nullptr ? tail_->next : head_) = e;
        tail_ = e;
        e->listed = true;
    }
    void pushFront(Entry* e) {
        e->next = head_;
        e->prev = nullptr;
        (head_ != nullptr ? head_->prev : tail_) = e;
        head_ = e;
        e->listed = true;
    }
    void unlink(Entry* e) {
        if (!e->listed) return;
        (e->prev != nullptr ? e->prev->next : head_) = e->next;
        (e->next != nullptr ? e->next->prev : tail_) = e->prev;
        e->prev = e->next = nullptr;
        e->listed = false;
    }
    void evict(Entry* e) {
        unlink(e);
        Entry* p = e->parent;
        map_.erase(e->key);
        if (p != nullptr && --p->children == 0) {
            // A page of the current request is the newest leaf; any other is the oldest.
            if (p->stamp == now_) {
                pushBack(p);
            } else {
                pushFront(p);
            }
        }
    }

    std::size_t capacity_;
    std::uint64_t now_ = 0;
    std::unordered_map<PageKey, Entry> map_;
    Entry* head_ = nullptr;
    Entry* tail_ = nullptr;
};

struct Run {
    double seconds = 0;  // sum of the per-request times
    double p99_us = 0;
    std::uint64_t hit_tokens = 0;
    std::size_t cached_pages = 0;
    double bytes_per_page = 0;
    std::size_t nodes = 0;
};

double p99(std::vector<double> us) {
    std::sort(us.begin(), us.end());
    return us.empty() ? 0.0 : us[std::min(us.size() - 1, us.size() * 99 / 100)];
}

Result<Run> runTree(const app::Trace& trace, std::uint64_t capacity, std::uint32_t page) {
    Run run;
    std::vector<double> us;
    us.reserve(trace.requests.size());
    const std::ptrdiff_t before = heapBytes();
    {
        STRATA_ASSIGN_OR_RETURN(
            app::BlockReplayer replayer,
            app::BlockReplayer::create(trace, {.capacity_tokens = capacity, .page_tokens = page}));
        for (const app::TraceRequest& r : trace.requests) {
            const app::BlockReplayer::Outcome o = replayer.replayNext();
            us.push_back(o.tree_us);
            run.seconds += o.tree_us * 1e-6;
            run.hit_tokens += app::hitTokens(r, o.device, o.pages, page);
        }
        run.cached_pages = replayer.devicePages();
        run.nodes = replayer.tree().nodeCount();
        const std::ptrdiff_t alive = heapBytes();
        run.bytes_per_page = static_cast<double>(alive - before) /
                             static_cast<double>(std::max<std::size_t>(run.cached_pages, 1));
    }
    run.p99_us = p99(std::move(us));
    return run;
}

Run runFlat(const app::Trace& trace, std::uint64_t capacity, std::uint32_t page) {
    Run run;
    std::vector<double> us;
    us.reserve(trace.requests.size());
    std::vector<PageKey> keys;
    const std::ptrdiff_t before = heapBytes();
    {
        FlatLruCache cache(capacity / page);
        for (const app::TraceRequest& r : trace.requests) {
            app::requestPageKeys(r, page, &keys);
            const auto t0 = Clock::now();
            const std::size_t hit = cache.replay(keys);
            const double t = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
            us.push_back(t);
            run.seconds += t * 1e-6;
            run.hit_tokens += app::hitTokens(r, hit, keys.size(), page);
        }
        run.cached_pages = cache.size();
        run.bytes_per_page = static_cast<double>(heapBytes() - before) /
                             static_cast<double>(std::max<std::size_t>(run.cached_pages, 1));
    }
    run.p99_us = p99(std::move(us));
    return run;
}

// The run with the median replay time of `runs`.
Run median(std::vector<Run> runs) {
    std::sort(runs.begin(), runs.end(),
              [](const Run& a, const Run& b) { return a.seconds < b.seconds; });
    return runs[runs.size() / 2];
}

class TreeBench final : public Bench {
public:
    void addOptions(CLI::App& app) override {
        app.add_option("--trace", trace_path_, "Mooncake JSONL trace to replay")
            ->capture_default_str();
        app.add_option("--capacity", capacity_, "cache capacity in tokens")->capture_default_str();
        app.add_option("--page-sizes", pages_, "page sizes in tokens")->capture_default_str();
        app.add_option("--repeats", repeats_, "replays per method (median reported)")
            ->capture_default_str();
    }

    Result<BenchReport> run(BenchContext&) override {
        STRATA_ASSIGN_OR_RETURN(app::Trace trace, app::loadMooncakeTrace(trace_path_));
        BenchReport report("tree", "cpu");
        const auto capacity = static_cast<std::uint64_t>(capacity_);
        for (std::uint32_t page : pages_) {
            STRATA_RETURN_IF_ERROR(app::validatePageSize(trace, page));
            std::vector<Run> tree_runs, flat_runs;
            for (int i = 0; i < std::max(1, repeats_); ++i) {
                STRATA_ASSIGN_OR_RETURN(Run t, runTree(trace, capacity, page));
                tree_runs.push_back(t);
                flat_runs.push_back(runFlat(trace, capacity, page));
            }
            const Run t = median(tree_runs);
            const Run f = median(flat_runs);
            std::uint64_t input = 0, refs = 0;
            std::vector<PageKey> keys;
            for (const auto& r : trace.requests) {
                input += r.input_tokens;
                app::requestPageKeys(r, page, &keys);
                refs += keys.size();
            }
            if (t.hit_tokens != f.hit_tokens) {
                return STRATA_ERROR(StatusCode::kInternal,
                                    "page {}: the flat baseline hits {} tokens, the tree {}: the "
                                    "two do not follow the same rules",
                                    page, f.hit_tokens, t.hit_tokens);
            }
            const double n = static_cast<double>(trace.requests.size());
            const double hit_rate = static_cast<double>(t.hit_tokens) / static_cast<double>(input);
            const std::string c = fmt::format("page{}_cap{:.0e}", page, capacity_);
            auto row = [&](const char* metric, const char* unit, bool higher, double strata,
                           double flat) {
                BenchRow r{c, metric, unit, higher, strata, {{"flat_lru", flat}}};
                r.extra = {{"requests", trace.requests.size()},
                           {"page_references", refs},
                           {"hit_rate", hit_rate},
                           {"cached_pages", t.cached_pages},
                           {"tree_nodes", t.nodes},
                           {"repeats", repeats_}};
                report.addRow(std::move(r));
            };
            row("tree_seconds", "s", false, t.seconds, f.seconds);
            row("requests_per_s", "req/s", true, n / t.seconds, n / f.seconds);
            row("block_ops_per_s", "ops/s", true, static_cast<double>(refs) / t.seconds,
                static_cast<double>(refs) / f.seconds);
            row("p99_request_us", "us", false, t.p99_us, f.p99_us);
            row("metadata_bytes_per_page", "B", false, t.bytes_per_page, f.bytes_per_page);
            report.addNote(fmt::format(
                "page {}: hit rate {:.4f} (tree and flat_lru agree), {} requests, {} page "
                "references, {} pages cached in {} tree nodes",
                page, hit_rate, trace.requests.size(), refs, t.cached_pages, t.nodes));
            if (page == 64) {
                auto verdict = [](bool ok) { return ok ? "met" : "NOT met"; };
                report.addNote(fmt::format(
                    "goals at page 64: tree time {:.3f} s < 0.2 s {}; p99 {:.1f} us < 50 us {}; "
                    "{:.1f} B/page <= 128 {}",
                    t.seconds, verdict(t.seconds < 0.2), t.p99_us, verdict(t.p99_us < 50),
                    t.bytes_per_page, verdict(t.bytes_per_page <= 128)));
            }
        }
        return report;
    }

private:
    std::string trace_path_ =
        STRATA_TRACES_DIR "/mooncake-FAST25-release/traces/conversation_trace.jsonl";
    double capacity_ = 3e6;
    std::vector<std::uint32_t> pages_ = {64, 512};
    int repeats_ = 3;
};

}  // namespace

std::unique_ptr<Bench> makeTreeBench() { return std::make_unique<TreeBench>(); }

}  // namespace strata::bench

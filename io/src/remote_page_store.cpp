#include "strata/io/remote_page_store.h"

#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "strata/comm/mpi_comm.h"
#include "strata/comm/ucx/transport.h"
#include "strata/core/log.h"

namespace strata::io {

namespace ucx = comm::ucx;
using ucx::Clock;

namespace {

spdlog::logger& log() { return core::logger("io"); }

// Directory messages (payload of an authenticated control message): a head, then entries.
enum class MsgType : std::uint8_t { kPublish = 1, kRetract = 2, kLookup = 3, kLookupReply = 4 };
struct MsgHead {
    std::uint8_t type = 0;
    std::uint8_t pad[3] = {};
    std::uint32_t count = 0;
    std::uint64_t request = 0;  // lookups and their replies
};
struct PublishEntry {
    std::uint64_t lo = 0, hi = 0;
    std::uint32_t slot = 0, pad = 0;
    std::uint64_t checksum = 0;
};
struct KeyEntry {
    std::uint64_t lo = 0, hi = 0;
};
struct ReplyEntry {
    std::int32_t holder = -1;  // transport rank, -1: unknown
    std::uint32_t slot = 0;
    std::uint64_t checksum = 0;
};
constexpr std::size_t kMaxEntries = 128;  // keeps every message small and eager

// Geometry of a member's pool, exchanged when the pool is exposed.
struct PoolInfo {
    std::uint32_t layout = 0, num_layers = 0, num_buffers = 0, page_size = 0;
    std::uint64_t row_bytes = 0, capacity_tokens = 0;
    bool sameShape(const PoolInfo& o) const {
        return layout == o.layout && num_layers == o.num_layers && num_buffers == o.num_buffers &&
               page_size == o.page_size && row_bytes == o.row_bytes;
    }
};

template <typename Entry>
std::vector<std::byte> encode(MsgType type, std::uint64_t request, std::span<const Entry> entries) {
    MsgHead h;
    h.type = static_cast<std::uint8_t>(type);
    h.count = static_cast<std::uint32_t>(entries.size());
    h.request = request;
    std::vector<std::byte> out(sizeof(h) + entries.size_bytes());
    std::memcpy(out.data(), &h, sizeof(h));
    if (!entries.empty()) std::memcpy(out.data() + sizeof(h), entries.data(), entries.size_bytes());
    return out;
}

template <typename Entry>
bool decode(std::span<const std::byte> payload, const MsgHead& h, std::vector<Entry>* out) {
    if (payload.size() != sizeof(MsgHead) + std::size_t{h.count} * sizeof(Entry)) return false;
    out->resize(h.count);
    if (h.count > 0)
        std::memcpy(out->data(), payload.data() + sizeof(MsgHead), h.count * sizeof(Entry));
    return true;
}

// One page as contiguous blocks of the pool: (offset, bytes) in pool order.
struct Block {
    std::size_t offset = 0, bytes = 0;
};
std::vector<Block> pageBlocks(const kernels::PoolGeometry& g, kernels::HostLayout layout,
                              std::size_t capacity_tokens, std::uint32_t page) {
    std::vector<Block> blocks;
    if (layout != kernels::HostLayout::kLayerFirst) {
        blocks.push_back({std::size_t{page} * g.bytesPerPage(), g.bytesPerPage()});
        return blocks;
    }
    const kernels::HostView view{nullptr, layout, capacity_tokens};
    const std::size_t block = std::size_t{g.page_size} * g.row_bytes;
    for (std::uint32_t b = 0; b < g.num_buffers; ++b) {
        for (std::uint32_t l = 0; l < g.num_layers; ++l) {
            blocks.push_back(
                {kernels::hostRowOffset(g, view, b, l, std::size_t{page} * g.page_size), block});
        }
    }
    return blocks;
}

}  // namespace

struct RemotePageStore::Impl {
    struct Holder {
        int rank = -1;
        std::uint32_t slot = 0;
        std::uint64_t checksum = 0;
    };
    struct Published {
        std::uint32_t slot = 0;
        std::uint64_t checksum = 0;
    };
    struct Pending {
        std::vector<ReplyEntry> replies;
        bool done = false;
    };

    std::shared_ptr<ucx::UcxTransport> transport;
    const pools::HostPool* pool = nullptr;  // borrowed: must outlive the store
    RemoteStoreOptions options;
    std::unique_ptr<ucx::RemoteRegion> region;
    std::vector<int> members;           // transport ranks of the group
    std::vector<PoolInfo> member_pool;  // by transport rank

    std::mutex mu;  // guards directory and published; never held across a transport call
    std::unordered_map<PageKey, std::vector<Holder>> directory;  // this rank's shard
    std::unordered_map<PageKey, Published> published;            // pages this rank holds

    std::mutex pending_mu;
    std::map<std::uint64_t, Pending> pending;
    std::uint64_t next_request = 1;

    struct Counters {
        std::atomic<std::uint64_t> published{0}, retracted{0}, lookups{0}, lookup_hits{0},
            pulled{0}, bytes{0}, checksum_failures{0}, timeouts{0}, unavailable{0}, bad{0};
        std::atomic<std::uint64_t> pull_ns{0};
    } counters;

    int me() const { return transport->rank(); }

    int ownerOf(const PageKey& key) const {
        std::uint64_t x = key.lo ^ (key.hi * 0x9E3779B97F4A7C15ull);
        x ^= x >> 31;
        return members[x % members.size()];
    }

    // ---- directory shard (this rank) ----

    void addHolder(const PageKey& key, int rank, std::uint32_t slot, std::uint64_t checksum) {
        auto& holders = directory[key];
        std::erase_if(holders, [&](const Holder& h) { return h.rank == rank; });
        holders.push_back({rank, slot, checksum});
    }
    void dropHolder(const PageKey& key, int rank) {
        auto it = directory.find(key);
        if (it == directory.end()) return;
        std::erase_if(it->second, [&](const Holder& h) { return h.rank == rank; });
        if (it->second.empty()) directory.erase(it);
    }
    ReplyEntry find(const PageKey& key, int requester) {
        auto it = directory.find(key);
        if (it == directory.end()) return {};
        // The most recent holder other than the requester.
        for (auto h = it->second.rbegin(); h != it->second.rend(); ++h) {
            if (h->rank != requester) return {h->rank, h->slot, h->checksum};
        }
        return {};
    }

    void onMessage(int src, std::span<const std::byte> payload) {
        MsgHead h;
        if (payload.size() < sizeof(h)) return bad(src, "short message");
        std::memcpy(&h, payload.data(), sizeof(h));
        switch (static_cast<MsgType>(h.type)) {
            case MsgType::kPublish: {
                std::vector<PublishEntry> e;
                if (!decode(payload, h, &e)) return bad(src, "publish size");
                std::lock_guard lk(mu);
                for (const auto& x : e) addHolder({x.lo, x.hi}, src, x.slot, x.checksum);
                return;
            }
            case MsgType::kRetract: {
                std::vector<KeyEntry> e;
                if (!decode(payload, h, &e)) return bad(src, "retract size");
                std::lock_guard lk(mu);
                for (const auto& x : e) dropHolder({x.lo, x.hi}, src);
                return;
            }
            case MsgType::kLookup: {
                std::vector<KeyEntry> e;
                if (!decode(payload, h, &e)) return bad(src, "lookup size");
                std::vector<ReplyEntry> r(e.size());
                {
                    std::lock_guard lk(mu);
                    for (std::size_t i = 0; i < e.size(); ++i) r[i] = find({e[i].lo, e[i].hi}, src);
                }
                const auto msg =
                    encode(MsgType::kLookupReply, h.request, std::span<const ReplyEntry>(r));
                // Never connects from inside a handler: a requester without an endpoint retries.
                (void)transport->send(src, options.channel, msg, /*connect=*/false);
                return;
            }
            case MsgType::kLookupReply: {
                std::vector<ReplyEntry> e;
                if (!decode(payload, h, &e)) return bad(src, "reply size");
                {
                    std::lock_guard lk(pending_mu);
                    auto it = pending.find(h.request);
                    if (it == pending.end() || it->second.done ||
                        it->second.replies.size() != e.size()) {
                        return;  // late (timed out) or not ours: ignored
                    }
                    it->second.replies = std::move(e);
                    it->second.done = true;
                }
                transport->notifyWaiters();
                return;
            }
        }
        bad(src, "unknown type");
    }

    void bad(int src, const char* why) {
        const auto n = ++counters.bad;
        if (n <= 5) log().warn("bad directory message from rank {}: {}", src, why);
    }

    // ---- requester side ----

    // Holder of each key (holder -1: unknown, unreachable or timed out).
    std::vector<ReplyEntry> lookup(std::span<const PageKey> keys, Clock::time_point deadline) {
        std::vector<ReplyEntry> out(keys.size());
        counters.lookups += keys.size();
        struct Ask {
            int owner;
            std::uint64_t request;
            std::vector<std::size_t> index;
        };
        std::vector<Ask> asks;
        std::map<int, std::vector<std::size_t>> by_owner;
        for (std::size_t i = 0; i < keys.size(); ++i) {
            const int owner = ownerOf(keys[i]);
            if (owner == me()) {
                std::lock_guard lk(mu);
                out[i] = find(keys[i], me());
            } else {
                by_owner[owner].push_back(i);
            }
        }
        for (auto& [owner, idx] : by_owner) {
            for (std::size_t off = 0; off < idx.size(); off += kMaxEntries) {
                Ask a{owner, 0, {}};
                a.index.assign(idx.begin() + off,
                               idx.begin() + std::min(idx.size(), off + kMaxEntries));
                std::vector<KeyEntry> e;
                for (std::size_t i : a.index) e.push_back({keys[i].lo, keys[i].hi});
                {
                    std::lock_guard lk(pending_mu);
                    a.request = next_request++;
                    pending[a.request].replies.resize(e.size());
                }
                const auto msg = encode(MsgType::kLookup, a.request, std::span<const KeyEntry>(e));
                Status st = transport->send(owner, options.channel, msg);
                if (!st.isOk()) {
                    counters.unavailable += a.index.size();
                    std::lock_guard lk(pending_mu);
                    pending.erase(a.request);
                    continue;
                }
                asks.push_back(std::move(a));
            }
        }
        if (!asks.empty()) {
            transport->waitUntil(
                [&] {
                    std::lock_guard lk(pending_mu);
                    for (const auto& a : asks) {
                        if (!pending[a.request].done) return false;
                    }
                    return true;
                },
                deadline);
        }
        std::vector<int> late;
        {
            std::lock_guard lk(pending_mu);
            for (const auto& a : asks) {
                auto it = pending.find(a.request);
                if (it->second.done) {
                    for (std::size_t j = 0; j < a.index.size(); ++j) {
                        out[a.index[j]] = it->second.replies[j];
                    }
                } else if (late.empty() || late.back() != a.owner) {
                    late.push_back(a.owner);
                }
                pending.erase(it);
            }
        }
        for (int owner : late) {
            counters.timeouts++;
            log().warn("directory lookup at rank {} timed out after {} ms", owner,
                       options.timeout.count());
            transport->backOff(owner);
        }
        for (auto& r : out) {
            // A holder outside the group, or a slot outside its pool, is not served.
            if (r.holder < 0) continue;
            const bool member =
                std::find(members.begin(), members.end(), r.holder) != members.end();
            if (!member || r.holder == me() ||
                std::size_t{r.slot} * pool->pageSize() >=
                    member_pool[static_cast<std::size_t>(r.holder)].capacity_tokens) {
                r.holder = -1;
            }
        }
        for (const auto& r : out) counters.lookup_hits += r.holder >= 0 ? 1 : 0;
        return out;
    }
};

RemotePageStore::RemotePageStore(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}

RemotePageStore::~RemotePageStore() {
    if (impl_ && impl_->transport) impl_->transport->clearHandler(impl_->options.channel);
}

Result<std::unique_ptr<RemotePageStore>> RemotePageStore::create(
    std::shared_ptr<ucx::UcxTransport> transport, const comm::MpiComm& group,
    const pools::HostPool& pool, const RemoteStoreOptions& options) {
    if (!transport) return STRATA_ERROR(StatusCode::kInvalidArgument, "no transport");
    if (options.channel >= ucx::UcxTransport::kMaxChannels || options.timeout.count() <= 0) {
        return STRATA_ERROR(
            StatusCode::kInvalidArgument, "remote store: channel {} (< {}) and timeout {} ms (> 0)",
            options.channel, ucx::UcxTransport::kMaxChannels, options.timeout.count());
    }
    auto impl = std::make_unique<Impl>();
    impl->transport = transport;
    impl->pool = &pool;
    impl->options = options;
    const auto g = pool.geometry();
    PoolInfo mine{static_cast<std::uint32_t>(pool.layout()),
                  g.num_layers,
                  g.num_buffers,
                  g.page_size,
                  g.row_bytes,
                  pool.capacityTokens()};
    STRATA_ASSIGN_OR_RETURN(
        auto region, transport->exposeRegion(group, {pool.data(), pool.sizeBytes()},
                                             std::as_bytes(std::span<const PoolInfo>(&mine, 1))));
    impl->region = std::make_unique<ucx::RemoteRegion>(std::move(region));
    impl->members = impl->region->members();
    impl->member_pool.resize(static_cast<std::size_t>(transport->size()));
    for (int r : impl->members) {
        const auto info = impl->region->info(r);
        PoolInfo p;
        if (info.size() != sizeof(p)) {
            return STRATA_ERROR(StatusCode::kInternal, "pool info of rank {}: {} bytes", r,
                                info.size());
        }
        std::memcpy(&p, info.data(), sizeof(p));
        if (!p.sameShape(mine)) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "remote store: rank {}'s pool '{}' differs in layout or geometry "
                                "from rank {}'s",
                                r, pool.spec().name, impl->members.front());
        }
        impl->member_pool[static_cast<std::size_t>(r)] = p;
    }
    Impl* raw = impl.get();
    STRATA_RETURN_IF_ERROR(transport->setHandler(
        options.channel, [raw](int src, std::span<const std::byte> p) { raw->onMessage(src, p); }));
    return std::unique_ptr<RemotePageStore>(new RemotePageStore(std::move(impl)));
}

Status RemotePageStore::publish(std::span<const PageKey> keys,
                                std::span<const std::uint32_t> host_pages) {
    Impl& s = *impl_;
    if (keys.size() != host_pages.size()) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "{} keys but {} pages", keys.size(),
                            host_pages.size());
    }
    for (std::uint32_t p : host_pages) {
        if (p >= s.pool->numPages()) {
            return STRATA_ERROR(StatusCode::kInvalidArgument, "host page {} >= {}", p,
                                s.pool->numPages());
        }
    }
    std::map<int, std::vector<PublishEntry>> by_owner;
    for (std::size_t i = 0; i < keys.size(); ++i) {
        const std::uint64_t sum = pools::pageChecksum(*s.pool, host_pages[i]);
        const int owner = s.ownerOf(keys[i]);
        std::lock_guard lk(s.mu);
        s.published[keys[i]] = {host_pages[i], sum};
        if (owner == s.me()) {
            s.addHolder(keys[i], s.me(), host_pages[i], sum);
        } else {
            by_owner[owner].push_back({keys[i].lo, keys[i].hi, host_pages[i], 0, sum});
        }
    }
    s.counters.published += keys.size();
    for (auto& [owner, e] : by_owner) {
        for (std::size_t off = 0; off < e.size(); off += kMaxEntries) {
            const auto part = std::span<const PublishEntry>(e).subspan(
                off, std::min(kMaxEntries, e.size() - off));
            // A peer that cannot be reached now simply does not list these pages.
            (void)s.transport->send(owner, s.options.channel, encode(MsgType::kPublish, 0, part));
        }
    }
    return Status::ok();
}

Status RemotePageStore::retract(std::span<const PageKey> keys) {
    Impl& s = *impl_;
    std::map<int, std::vector<KeyEntry>> by_owner;
    {
        std::lock_guard lk(s.mu);
        for (const auto& k : keys) {
            if (s.published.erase(k) == 0) continue;
            const int owner = s.ownerOf(k);
            if (owner == s.me()) {
                s.dropHolder(k, s.me());
            } else {
                by_owner[owner].push_back({k.lo, k.hi});
            }
            s.counters.retracted++;
        }
    }
    for (auto& [owner, e] : by_owner) {
        for (std::size_t off = 0; off < e.size(); off += kMaxEntries) {
            const auto part =
                std::span<const KeyEntry>(e).subspan(off, std::min(kMaxEntries, e.size() - off));
            (void)s.transport->send(owner, s.options.channel, encode(MsgType::kRetract, 0, part));
        }
    }
    return Status::ok();
}

Result<std::size_t> RemotePageStore::exists(std::span<const PageKey> keys) {
    const auto found = impl_->lookup(keys, Clock::now() + impl_->options.timeout);
    std::size_t n = 0;
    while (n < found.size() && found[n].holder >= 0) ++n;
    return n;
}

Result<std::size_t> RemotePageStore::get(std::span<const PageKey> keys, const pools::HostPool& pool,
                                         std::span<const std::uint32_t> host_pages) {
    Impl& s = *impl_;
    if (&pool != s.pool) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "remote store of pool '{}' asked to read into another pool",
                            s.pool->spec().name);
    }
    if (keys.size() != host_pages.size()) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "{} keys but {} pages", keys.size(),
                            host_pages.size());
    }
    for (std::uint32_t p : host_pages) {
        if (p >= pool.numPages()) {
            return STRATA_ERROR(StatusCode::kInvalidArgument, "host page {} >= {}", p,
                                pool.numPages());
        }
    }
    const auto start = Clock::now();
    const auto deadline = start + s.options.timeout;
    const auto found = s.lookup(keys, deadline);
    std::size_t run = 0;
    while (run < found.size() && found[run].holder >= 0) ++run;
    if (run == 0) return std::size_t{0};

    const auto g = pool.geometry();
    std::map<int, std::vector<ucx::GetOp>> ops;
    for (std::size_t i = 0; i < run; ++i) {
        const int holder = found[i].holder;
        const auto remote = pageBlocks(
            g, pool.layout(), s.member_pool[static_cast<std::size_t>(holder)].capacity_tokens,
            found[i].slot);
        const auto local = pageBlocks(g, pool.layout(), pool.capacityTokens(), host_pages[i]);
        for (std::size_t b = 0; b < remote.size(); ++b) {
            ops[holder].push_back(
                {remote[b].offset, pool.data() + local[b].offset, local[b].bytes});
        }
    }
    std::vector<ucx::PeerGets> gets;
    for (const auto& [peer, v] : ops) gets.push_back({peer, v});
    const auto statuses = s.transport->get(*s.region, gets, deadline);
    std::map<int, bool> peer_ok;
    for (std::size_t i = 0; i < gets.size(); ++i) {
        peer_ok[gets[i].peer] = statuses[i].isOk();
        if (statuses[i].code() == StatusCode::kTimeout) s.counters.timeouts++;
        if (statuses[i].code() == StatusCode::kUnavailable) s.counters.unavailable++;
    }
    std::size_t served = 0;
    while (served < run) {
        const auto& f = found[served];
        if (!peer_ok[f.holder]) break;
        if (pools::pageChecksum(pool, host_pages[served]) != f.checksum) {
            // Expected under churn (overwritten or torn slots): log the first few, then every
            // 1000th.
            const auto n = ++s.counters.checksum_failures;
            if (n <= 5 || n % 1000 == 0)
                log().warn(
                    "page {} pulled from rank {} slot {} failed its checksum: not served ({} so "
                    "far)",
                    keys[served].hex(), f.holder, f.slot, n);
            break;
        }
        ++served;
    }
    s.counters.pulled += served;
    s.counters.bytes += served * g.bytesPerPage();
    s.counters.pull_ns += static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count());
    return served;
}

Status RemotePageStore::publish(std::span<const PageKey> keys, const pools::HostPool& pool,
                                std::span<const std::uint32_t> host_pages) {
    if (&pool != impl_->pool) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "remote store of pool '{}' asked to publish another pool",
                            impl_->pool->spec().name);
    }
    return publish(keys, host_pages);
}

Result<std::size_t> RemotePageStore::set(std::span<const PageKey> keys, const pools::HostPool& pool,
                                         std::span<const std::uint32_t> host_pages) {
    STRATA_RETURN_IF_ERROR(publish(keys, pool, host_pages));
    return keys.size();
}

RemoteStoreStats RemotePageStore::remoteStats() const {
    const auto& c = impl_->counters;
    RemoteStoreStats r;
    r.pages_published = c.published;
    r.pages_retracted = c.retracted;
    r.lookups = c.lookups;
    r.lookup_hits = c.lookup_hits;
    r.pages_pulled = c.pulled;
    r.bytes_pulled = c.bytes;
    r.checksum_failures = c.checksum_failures;
    r.timeouts = c.timeouts;
    r.unavailable = c.unavailable;
    r.bad_messages = c.bad;
    r.rejected_messages = impl_->transport->stats().messages_rejected;
    r.pull_seconds = static_cast<double>(c.pull_ns.load()) * 1e-9;
    return r;
}

StoreStats RemotePageStore::stats() const {
    const auto r = remoteStats();
    StoreStats s;
    s.pages_read = r.pages_pulled;
    s.bytes_read = r.bytes_pulled;
    s.checksum_failures = r.checksum_failures;
    s.read_seconds = r.pull_seconds;
    return s;
}

int RemotePageStore::directoryOwner(const PageKey& key) const noexcept {
    return impl_->ownerOf(key);
}

}  // namespace strata::io

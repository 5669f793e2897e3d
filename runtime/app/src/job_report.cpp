#include "job_report.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "strata/app/build_info.h"
#include "strata/comm/job_collectives.h"

namespace strata::app {

Status gatherPerRank(const comm::Grid& grid, const RankPlace& place, RunReport* r) {
    // Host names: each rank's in turn (a job has few ranks; this runs once).
    const std::string mine = hostName();
    std::vector<std::string> hosts;
    for (int root = 0; root < place.world_size; ++root) {
        std::vector<std::byte> bytes;
        if (root == place.world_rank) {
            bytes.resize(mine.size());
            std::memcpy(bytes.data(), mine.data(), mine.size());
        }
        STRATA_RETURN_IF_ERROR(comm::broadcastBytes(grid.world(), &bytes, root));
        hosts.emplace_back(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    }
    // The figures, one all-gather each, in the order of RankFigures.
    const std::vector<double> own = {
        static_cast<double>(r->requests),
        static_cast<double>(r->prompt_tokens),
        static_cast<double>(r->computed_tokens),
        static_cast<double>(r->hit_tokens.device),
        static_cast<double>(r->hit_tokens.host),
        static_cast<double>(r->hit_tokens.remote),
        static_cast<double>(r->hit_tokens.storage),
        static_cast<double>(r->pages_verified),
        static_cast<double>(r->pages_mismatched),
        static_cast<double>(r->loads),
        static_cast<double>(r->backups),
        static_cast<double>(r->h2d.bytes),
        static_cast<double>(r->d2h.bytes),
        r->load_wait_seconds,
        r->elapsed_seconds,
    };
    std::vector<std::vector<double>> all(own.size());
    for (std::size_t k = 0; k < own.size(); ++k) {
        STRATA_RETURN_IF_ERROR(comm::allGather(grid.world(), own[k], &all[k]));
    }
    r->per_rank.clear();
    for (int rank = 0; rank < place.world_size; ++rank) {
        const auto i = static_cast<std::size_t>(rank);
        auto u = [&](std::size_t k) { return static_cast<std::uint64_t>(all[k][i]); };
        RankFigures f;
        f.rank = rank;
        f.host = hosts[i];
        f.requests = u(0);
        f.prompt_tokens = u(1);
        f.computed_tokens = u(2);
        f.hit_tokens = {u(3), u(4), u(5), u(6)};
        f.pages_verified = u(7);
        f.pages_mismatched = u(8);
        f.loads = u(9);
        f.backups = u(10);
        f.h2d_bytes = u(11);
        f.d2h_bytes = u(12);
        f.load_wait_seconds = all[13][i];
        f.elapsed_seconds = all[14][i];
        r->per_rank.push_back(std::move(f));
    }
    r->hosts.clear();
    for (const std::string& h : hosts) {
        if (std::find(r->hosts.begin(), r->hosts.end(), h) == r->hosts.end()) {
            r->hosts.push_back(h);
        }
    }
    return Status::ok();
}

// The media of KV events (runtime::kvMediumOf), in the order aggregate() sums them.
constexpr const char* kKvMedia[] = {"GPU", "CPU", "DISK"};

Status aggregate(const comm::Grid& grid, const RankPlace& place, RunReport* r) {
    const bool leader = place.replica_rank == 0;
    std::vector<std::uint64_t> u = {
        leader ? r->requests : 0,
        leader ? r->prompt_tokens : 0,
        leader ? r->computed_tokens : 0,
        leader ? r->hit_tokens.device : 0,
        leader ? r->hit_tokens.host : 0,
        leader ? r->hit_tokens.storage : 0,
        leader ? r->hit_tokens.remote : 0,
        r->remote.pages_pulled,
        r->remote.bytes,
        r->remote.pages_published,
        r->remote.checksum_failures,
        r->remote.rejected_messages,
        r->remote.timeouts,
        r->storage.pages_written,
        r->storage.pages_read,
        r->storage.checksum_failures,
        r->pages_verified,
        r->pages_mismatched,
        r->d2h.bytes,
        r->d2h.pages,
        r->h2d.bytes,
        r->h2d.pages,
        r->backups,
        r->loads,
        r->evictions.device_pages,
        r->evictions.host_pages,
        r->write_back_pages,
        r->dropped_pages,
        r->rejected_admissions,
        r->striped.pages,
        r->striped.bytes,
        r->kv_events.publishers,
        r->kv_events.batches,
        r->kv_events.events,
        r->kv_events.dropped_batches,
        r->kv_events.dropped_events,
        r->kv_events.cleared,
        leader ? r->requests_planned : 0,
        r->host.cross_replica_hit_pages,
        r->host.cross_replica_hit_bytes,
        r->host.pages_published,
        r->host.checksum_failures,
        r->host.retract_waits,
        r->host.expired_leases,
    };
    for (const char* medium : kKvMedia) {
        u.push_back(r->kv_events.stored_pages[medium]);
        u.push_back(r->kv_events.removed_pages[medium]);
        u.push_back(r->kv_events.stored_events[medium]);
        u.push_back(r->kv_events.removed_events[medium]);
    }
    for (const PoolVerification& p : r->pools) {
        u.push_back(p.pages_verified);
        u.push_back(p.pages_mismatched);
    }
    STRATA_RETURN_IF_ERROR(comm::allReduceSum(grid.world(), u));
    std::vector<double> sums = {r->d2h.seconds,
                                r->h2d.seconds,
                                r->remote.pull_seconds,
                                r->load_wait_seconds,
                                r->d2h.round_seconds,
                                r->h2d.round_seconds,
                                r->host.cross_replica_seconds};
    STRATA_RETURN_IF_ERROR(comm::allReduceSum(grid.world(), sums));
    std::vector<double> maxes = {r->elapsed_seconds,
                                 static_cast<double>(r->rounds),
                                 r->sync.mean_us,
                                 r->sync.p99_us,
                                 static_cast<double>(r->sync.rounds),
                                 static_cast<double>(r->interrupt_signal),
                                 static_cast<double>(r->host.bytes_per_node),
                                 static_cast<double>(r->host.bytes_per_node_unshared),
                                 r->host.copies_per_replicated_page};
    STRATA_RETURN_IF_ERROR(comm::allReduceMax(grid.world(), maxes));
    std::size_t i = 0;
    r->requests = u[i++];
    r->prompt_tokens = u[i++];
    r->computed_tokens = u[i++];
    r->hit_tokens.device = u[i++];
    r->hit_tokens.host = u[i++];
    r->hit_tokens.storage = u[i++];
    r->hit_tokens.remote = u[i++];
    r->remote.pages_pulled = u[i++];
    r->remote.bytes = u[i++];
    r->remote.pages_published = u[i++];
    r->remote.checksum_failures = u[i++];
    r->remote.rejected_messages = u[i++];
    r->remote.timeouts = u[i++];
    r->storage.pages_written = u[i++];
    r->storage.pages_read = u[i++];
    r->storage.checksum_failures = u[i++];
    r->pages_verified = u[i++];
    r->pages_mismatched = u[i++];
    r->d2h.bytes = u[i++];
    r->d2h.pages = u[i++];
    r->h2d.bytes = u[i++];
    r->h2d.pages = u[i++];
    r->backups = u[i++];
    r->loads = u[i++];
    r->evictions.device_pages = u[i++];
    r->evictions.host_pages = u[i++];
    r->write_back_pages = u[i++];
    r->dropped_pages = u[i++];
    r->rejected_admissions = u[i++];
    r->striped.pages = u[i++];
    r->striped.bytes = u[i++];
    r->kv_events.publishers = u[i++];
    r->kv_events.batches = u[i++];
    r->kv_events.events = u[i++];
    r->kv_events.dropped_batches = u[i++];
    r->kv_events.dropped_events = u[i++];
    r->kv_events.cleared = u[i++];
    r->requests_planned = u[i++];
    r->host.cross_replica_hit_pages = u[i++];
    r->host.cross_replica_hit_bytes = u[i++];
    r->host.pages_published = u[i++];
    r->host.checksum_failures = u[i++];
    r->host.retract_waits = u[i++];
    r->host.expired_leases = u[i++];
    for (const char* medium : kKvMedia) {
        r->kv_events.stored_pages[medium] = u[i++];
        r->kv_events.removed_pages[medium] = u[i++];
        r->kv_events.stored_events[medium] = u[i++];
        r->kv_events.removed_events[medium] = u[i++];
    }
    for (PoolVerification& p : r->pools) {
        p.pages_verified = u[i++];
        p.pages_mismatched = u[i++];
    }
    r->d2h.seconds = sums[0];
    r->h2d.seconds = sums[1];
    r->remote.pull_seconds = sums[2];
    r->load_wait_seconds = sums[3];
    r->d2h.round_seconds = sums[4];
    r->h2d.round_seconds = sums[5];
    r->host.cross_replica_seconds = sums[6];
    r->elapsed_seconds = maxes[0];
    r->rounds = static_cast<std::uint64_t>(maxes[1]);
    r->sync.mean_us = maxes[2];
    r->sync.p99_us = maxes[3];
    r->sync.rounds = static_cast<std::uint64_t>(maxes[4]);
    r->interrupt_signal = static_cast<int>(maxes[5]);
    r->host.bytes_per_node = static_cast<std::uint64_t>(maxes[6]);
    r->host.bytes_per_node_unshared = static_cast<std::uint64_t>(maxes[7]);
    r->host.copies_per_replicated_page = maxes[8];
    return Status::ok();
}

}  // namespace strata::app

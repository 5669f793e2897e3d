#include "mover.h"

#include <algorithm>

#include "strata/core/hash.h"

namespace strata::controller {

Mover::Mover(const std::vector<PoolPair>& pools, comm::nccl::StripedLoader* striped)
    : pools_(pools), striped_(striped) {
    for (const PoolPair& p : pools_) {
        num_layers_ = std::max(num_layers_, p.layer_map.empty() ? p.device->spec().num_layers
                                                                : p.layer_map.back() + 1);
    }
}

Result<std::unique_ptr<Mover>> Mover::create(kernels::Backend& backend,
                                             const std::vector<PoolPair>& pools,
                                             comm::nccl::StripedLoader* striped) {
    // A group of one has nothing to stripe: the ordinary load path is the same thing.
    if (striped != nullptr && striped->size() < 2) striped = nullptr;
    std::unique_ptr<Mover> m(new Mover(pools, striped));
    STRATA_ASSIGN_OR_RETURN(m->d2h_stream_, backend.createStream());
    STRATA_ASSIGN_OR_RETURN(m->h2d_stream_, backend.createStream());
    return m;
}

Mover::~Mover() {
    if (d2h_stream_) (void)d2h_stream_->synchronize();
    if (h2d_stream_) (void)h2d_stream_->synchronize();
}

Status Mover::synchronize() {
    STRATA_RETURN_IF_ERROR(d2h_stream_->synchronize());
    return h2d_stream_->synchronize();
}

Mover::StripedShare Mover::stripedShare(std::uint64_t seed, const SpaceCopies& pages) const {
    StripedShare share;
    if (striped_ == nullptr) return share;
    share.digest = seed;
    for (const PoolPair& p : pools_) {
        if (!striped(p)) continue;
        const auto& list = pages[p.space];
        share.pages += list.size();
        share.bytes += list.size() * p.device->geometry().bytesPerPage();
        for (const kernels::PageCopy& pc : list) {
            share.digest = core::foldDigest(share.digest,
                                            (std::uint64_t{pc.device_page} << 32) | pc.host_page);
        }
    }
    return share;
}

Result<std::vector<kernels::EventPtr>> Mover::launchLoad(const SpaceCopies& pages,
                                                         const SpaceMoves& moves, bool with_striped,
                                                         kernels::EventPtr& started) {
    std::vector<kernels::EventPtr> events;
    events.reserve(num_layers_);
    STRATA_ASSIGN_OR_RETURN(started, h2d_stream_->recordTimed());
    for (std::uint32_t l = 0; l < num_layers_; ++l) {
        // The load stream's copies of layer l first, so that they overlap the striped loads of
        // the same layer, which the stream then waits for: the layer's event covers every pool.
        STRATA_RETURN_IF_ERROR(enqueueCopies(*h2d_stream_, pages, l, l + 1,
                                             kernels::Direction::kHostToDevice,
                                             /*with_striped=*/false));
        if (with_striped) STRATA_RETURN_IF_ERROR(enqueueStriped(pages, l));
        // Private copies of shared pages (Mamba checkpoints) after the layer's loads, which may
        // bring their sources.
        STRATA_RETURN_IF_ERROR(enqueueMoves(*h2d_stream_, moves, l, l + 1));
        STRATA_ASSIGN_OR_RETURN(
            auto ev, l + 1 == num_layers_ ? h2d_stream_->recordTimed() : h2d_stream_->record());
        events.push_back(std::move(ev));
    }
    return events;
}

Result<kernels::EventPtr> Mover::launchBackup(const SpaceCopies& pages,
                                              kernels::EventPtr& started) {
    STRATA_ASSIGN_OR_RETURN(started, d2h_stream_->recordTimed());
    STRATA_RETURN_IF_ERROR(
        enqueueCopies(*d2h_stream_, pages, 0, num_layers_, kernels::Direction::kDeviceToHost));
    return d2h_stream_->recordTimed();
}

std::pair<std::uint32_t, std::uint32_t> Mover::poolLayers(const PoolPair& p, std::uint32_t begin,
                                                          std::uint32_t end) const {
    const std::uint32_t n = p.device->spec().num_layers;
    if (p.layer_map.empty()) return {std::min(begin, n), std::min(end, n)};
    const auto first = std::lower_bound(p.layer_map.begin(), p.layer_map.end(), begin);
    const auto last = std::lower_bound(p.layer_map.begin(), p.layer_map.end(), end);
    return {static_cast<std::uint32_t>(first - p.layer_map.begin()),
            static_cast<std::uint32_t>(last - p.layer_map.begin())};
}

bool Mover::striped(const PoolPair& p) const noexcept {
    // Replicated across the decision group: the same bytes on every rank of TP x CP.
    const pools::PoolSpec& spec = p.device->spec();
    return striped_ != nullptr && !spec.sharded_across_tp && !spec.sharded_across_cp;
}

std::optional<kernels::CopyJob> Mover::poolJob(const PoolPair& p, const SpaceCopies& pages,
                                               std::uint32_t layer_begin, std::uint32_t layer_end,
                                               kernels::Direction dir) const {
    if (p.space >= pages.size() || pages[p.space].empty()) return std::nullopt;
    // A shared host pool is written by its one writer (PoolPair::host_writer).
    if (dir == kernels::Direction::kDeviceToHost && !p.host_writer) return std::nullopt;
    const auto [first, last] = poolLayers(p, layer_begin, layer_end);
    if (first >= last) return std::nullopt;
    kernels::CopyJob job;
    job.geometry = p.device->geometry();
    job.device = p.device->view();
    job.host = p.host->view();
    job.pages = pages[p.space];
    job.layer_begin = first;
    job.layer_end = last;
    job.direction = dir;
    return job;
}

Status Mover::enqueueCopies(kernels::Stream& stream, const SpaceCopies& pages,
                            std::uint32_t layer_begin, std::uint32_t layer_end,
                            kernels::Direction dir, bool with_striped) {
    for (const PoolPair& p : pools_) {
        if (!with_striped && striped(p)) continue;
        auto job = poolJob(p, pages, layer_begin, layer_end, dir);
        if (job) STRATA_RETURN_IF_ERROR(stream.enqueueCopy(std::move(*job)));
    }
    return Status::ok();
}

Status Mover::enqueueStriped(const SpaceCopies& pages, std::uint32_t layer) {
    // Every rank walks the same pools in the same order with the same lists (see launchLoads), so
    // the collective calls match across the group.
    for (const PoolPair& p : pools_) {
        if (!striped(p)) continue;
        const auto job = poolJob(p, pages, layer, layer + 1, kernels::Direction::kHostToDevice);
        if (!job) continue;
        STRATA_ASSIGN_OR_RETURN(kernels::EventPtr done, striped_->load(*job));
        STRATA_RETURN_IF_ERROR(h2d_stream_->waitFor(done));
    }
    return Status::ok();
}

Status Mover::enqueueMoves(kernels::Stream& stream, const SpaceMoves& moves,
                           std::uint32_t layer_begin, std::uint32_t layer_end) {
    for (const PoolPair& p : pools_) {
        if (p.space >= moves.size() || moves[p.space].empty()) continue;
        const auto [first, last] = poolLayers(p, layer_begin, layer_end);
        if (first >= last) continue;
        STRATA_RETURN_IF_ERROR(stream.enqueueDeviceCopy(p.device->geometry(), p.device->view(),
                                                        moves[p.space], first, last));
    }
    return Status::ok();
}

std::uint64_t Mover::bytes(const SpaceCopies& pages, kernels::Direction dir) const {
    std::uint64_t bytes = 0;
    for (const PoolPair& p : pools_) {
        // A shared host pool's backups are its writer's (PoolPair::host_writer).
        if (dir == kernels::Direction::kDeviceToHost && !p.host_writer) continue;
        if (p.space < pages.size())
            bytes += pages[p.space].size() * p.device->geometry().bytesPerPage();
    }
    return bytes;
}

}  // namespace strata::controller

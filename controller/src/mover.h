// Private to controller/: the Mover, CacheController's copy side. It builds each pool's copy job
// for the pages of every slot space, owns the device->host (backup) and host->device (load) streams
// and the events they record, and runs the striped loads of replicated pools. It knows pools, slot
// spaces and pages, not the tree: what to copy is the controller's decision. Its part of the
// per-round decision vector (how many launched copies have finished) is counted over the
// controller's in-flight batches, whose events it records.
// Ownership: borrows the pools and the striped loader (they must outlive it); owns the streams.
// Thread-safety: one thread (the controller's scheduler thread).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "strata/controller/cache_controller.h"

namespace strata::controller {

// Page copies of every slot space ([s]: pairs of space s), and device-to-device moves likewise.
using SpaceCopies = std::vector<std::vector<kernels::PageCopy>>;
using SpaceMoves = std::vector<std::vector<kernels::DevicePageMove>>;

class Mover {
public:
    // Two streams of `backend`. `striped` (may be null: none) loads the pools sharded across
    // neither TP nor CP; it is used only when its group has two or more ranks.
    static Result<std::unique_ptr<Mover>> create(kernels::Backend& backend,
                                                 const std::vector<PoolPair>& pools,
                                                 comm::nccl::StripedLoader* striped);
    // Drains both streams before the pools they touch can go away.
    ~Mover();
    Mover(const Mover&) = delete;
    Mover& operator=(const Mover&) = delete;

    // Model layers: the most of any pool (through its layer map).
    std::uint32_t numLayers() const noexcept { return num_layers_; }

    // The part of a load that goes through the striped loader: pages (summed over the striped
    // pools), their bytes on this GPU and a digest of the list from `seed` (slot numbers
    // included), which the controller folds into its decision digest. Zero without striping.
    struct StripedShare {
        std::uint64_t pages = 0, bytes = 0, digest = 0;
    };
    StripedShare stripedShare(std::uint64_t seed, const SpaceCopies& pages) const;

    // Queues a load model layer by model layer on the load stream: the layer's copies of every
    // pool not striped, then (with_striped) the striped loads of the layer (one collective call
    // per striped pool with pages, which the stream waits for), then the layer's device moves
    // (copies of shared pages into a request's own: they may need that layer's loads). Returns
    // one event per model layer, each covering every pool's copies of that layer. `started` gets
    // a timed event recorded before the first copy; the last layer's event is timed too, so that
    // last->secondsSince(*started) is the time the load stream was busy with this load.
    Result<std::vector<kernels::EventPtr>> launchLoad(const SpaceCopies& pages,
                                                      const SpaceMoves& moves, bool with_striped,
                                                      kernels::EventPtr& started);
    // Queues the device->host copy of every layer of every pool with pages; returns its event,
    // timed, and sets `started` to a timed event recorded before it (as launchLoad).
    Result<kernels::EventPtr> launchBackup(const SpaceCopies& pages, kernels::EventPtr& started);
    // Bytes of the pages over every pool of their spaces that this rank copies in direction
    // `dir` (device->host: not the shared host pools it does not write).
    std::uint64_t bytes(const SpaceCopies& pages, kernels::Direction dir) const;
    // Waits for everything queued on both streams.
    Status synchronize();
    // Backups queued from now on wait for the work queued so far on an engine's stream.
    Status backupsAfter(void* native_stream) { return d2h_stream_->waitForNative(native_stream); }

private:
    Mover(const std::vector<PoolPair>& pools, comm::nccl::StripedLoader* striped);
    // Pool layers [first, second) of pool p that lie in model layers [begin, end).
    std::pair<std::uint32_t, std::uint32_t> poolLayers(const PoolPair& p, std::uint32_t begin,
                                                       std::uint32_t end) const;
    bool striped(const PoolPair& p) const noexcept;
    // The copy job of pool `p` for its pages in `pages` and its layers among [begin, end); none
    // when the pool has no such pages or layers.
    std::optional<kernels::CopyJob> poolJob(const PoolPair& p, const SpaceCopies& pages,
                                            std::uint32_t layer_begin, std::uint32_t layer_end,
                                            kernels::Direction dir) const;
    // Copies of every pool with pages (with_striped false: not of the striped pools).
    Status enqueueCopies(kernels::Stream& stream, const SpaceCopies& pages,
                         std::uint32_t layer_begin, std::uint32_t layer_end, kernels::Direction dir,
                         bool with_striped = true);
    Status enqueueStriped(const SpaceCopies& pages, std::uint32_t layer);
    Status enqueueMoves(kernels::Stream& stream, const SpaceMoves& moves, std::uint32_t layer_begin,
                        std::uint32_t layer_end);

    const std::vector<PoolPair>& pools_;            // the controller's; must outlive the mover
    comm::nccl::StripedLoader* striped_ = nullptr;  // borrowed; null: no striped loads
    std::uint32_t num_layers_ = 0;
    std::unique_ptr<kernels::Stream> d2h_stream_;
    std::unique_ptr<kernels::Stream> h2d_stream_;
};

}  // namespace strata::controller

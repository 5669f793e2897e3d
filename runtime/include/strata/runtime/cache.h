// Cache: the C++ API a model worker calls, one per rank. It owns the back end, the device and host
// pools of the model, and the controller; it computes page keys from tokens. Scheduler loop:
//   step(); for each new request: admit(); launchLoads(); per layer: waitLayer(), compute;
//   insert(); release();
// With striped loads (CacheOptions::striped_loads), launchLoads(), waitLayer() and abort() are
// collective over the decision group: every rank calls them at the same points.
// Ownership: borrows the decision group (must outlive the Cache). Thread-safety: one thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "strata/comm/decision_group.h"
#include "strata/controller/cache_controller.h"
#include "strata/core/enum_names.h"
#include "strata/core/page_key.h"
#include "strata/core/status.h"
#include "strata/io/node_page_store.h"
#include "strata/io/remote_page_store.h"
#include "strata/kernels/backend.h"
#include "strata/pool_decl.h"
#include "strata/pools/device_pool.h"
#include "strata/pools/host_pool.h"
#include "strata/pools/hybrid_layout.h"
#include "strata/pools/pool_spec.h"

namespace strata::comm {
class MpiComm;
}
namespace strata::comm::ucx {
class UcxTransport;
}

namespace strata::runtime {

class NodeHostTier;  // private (src/node_host_tier.h)
using controller::Admission;
using controller::RequestId;

// Striped loads of replicated pools over NCCL (comm::nccl::StripedLoader): off, on (an error when
// impossible, naming why), or auto (on when the back end is CUDA, the build has NCCL and the
// decision group has two or more ranks, each on its own GPU).
enum class StripedLoads : std::uint8_t { kOff, kOn, kAuto };
inline constexpr core::EnumNames<StripedLoads, 3> kStripedLoadsNames{
    "striped loads",
    {{{StripedLoads::kOn, "on"}, {StripedLoads::kOff, "off"}, {StripedLoads::kAuto, "auto"}}}};
constexpr const auto& enumNames(StripedLoads) noexcept { return kStripedLoadsNames; }
// Parses "on" | "off" | "auto".
inline Result<StripedLoads> parseStripedLoads(std::string_view name) {
    return core::parseEnum<StripedLoads>(name);
}

// The host tier's memory on a node: per-rank host pools (off), or one MPI shared window over the
// node's ranks (node: the node-wide host tier).
enum class HostSharing : std::uint8_t { kOff, kNode };
inline constexpr core::EnumNames<HostSharing, 2> kHostSharingNames{
    "host sharing", {{{HostSharing::kNode, "node"}, {HostSharing::kOff, "off"}}}};
constexpr const auto& enumNames(HostSharing) noexcept { return kHostSharingNames; }
// Parses "node" | "off".
inline Result<HostSharing> parseHostSharing(std::string_view name) {
    return core::parseEnum<HostSharing>(name);
}

// What the host tier holds on this node (Cache::hostFootprint): with node sharing, pools
// replicated across the ranks of a replica on the node are allocated once.
struct HostFootprint {
    bool node_sharing = false;
    std::uint32_t node_ranks = 1;               // ranks of the job on this node
    std::uint64_t bytes_this_rank = 0;          // host bytes this rank allocated
    std::uint64_t bytes_per_node = 0;           // host bytes of every rank of this node
    std::uint64_t bytes_per_node_unshared = 0;  // the same with per-rank pools
    // Copies on this node of a page of a pool replicated across TP or CP (1 with node sharing;
    // the ranks of the replica on the node without; 1 when no pool is replicated).
    double copies_per_replicated_page = 1;
};

struct CacheOptions {
    // A preset of pools::modelPresets() when `pools` is empty; otherwise the model's name (part
    // of the cache's namespace) for the pools the engine declares.
    std::string model = "llama3-8b";
    // The engine's own pools (pool_decl.h), over its memory or memory Strata allocates; empty:
    // the preset's. With declared pools, `layers` is the model's layer count (0: one more than the
    // highest layer a pool declares).
    std::vector<PoolDecl> pools;
    std::uint32_t layers = 0;  // 0: the model's own layer count
    std::uint32_t page_size = 64;
    std::size_t device_tokens = 32768;
    // Device slots of a per-request state space (Mamba): one working slot per admitted request
    // plus the checkpoints the device keeps; 0: defaultStateSlots(device_tokens, page_size). Its
    // host pool gets slots in the host/device ratio of the main KV. Unused by other models.
    std::size_t state_slots = 0;
    pools::HostPoolSizing host{.tokens = 131072};
    kernels::HostLayout host_layout = kernels::HostLayout::kPageFirst;
    kernels::BackendKind backend = kernels::BackendKind::kCpu;
    kernels::BackendOptions backend_options;
    std::string tenant_salt;
    // Storage tier (HDF5 page files); none when storage_dir is empty.
    std::string storage_dir;
    std::uint64_t storage_capacity_pages = 0;  // this rank's share; 0: unlimited
    // The controller's policies (write, eviction, load-back threshold, consistency check, fault
    // injection, prefetch: ControllerConfig and its StorageConfig) and this rank's place in the
    // decision group (controller.storage.tp_rank/tp_size/cp_rank/cp_size: key suffixes, writer
    // choice), handed to the controller whole. The Cache fills in page_size, spaces,
    // striped_loader and storage.stage_suffix.
    controller::ControllerConfig controller;
    // Place in the job (file names).
    int world_rank = 0;
    std::uint32_t first_layer = 0;  // of this pipeline stage's layer slice
    bool pipeline = false;          // several stages: stored pages name their layer slice
    // Remote tier (peers' host pools over UCX): on when remote_transport is set (built with UCX
    // only: kNotSupported otherwise). remote_group: the ranks that hold the same shards as this
    // one in other DP replicas (same tp, cp and pp coordinates: Grid::dpComm()); used during
    // create() only. Every pool gets a RemotePageStore on channel remote_channel_base + index.
    std::shared_ptr<comm::ucx::UcxTransport> remote_transport;
    const comm::MpiComm* remote_group = nullptr;
    std::chrono::milliseconds remote_timeout{500};
    std::uint16_t remote_channel_base = 1;
    // Striped loads: the mode, and the decision group's communicator (Grid::decisionComm(): the
    // TP x CP ranks of this replica's pipeline stage, in decision-group rank order), used during
    // create() only. Without striped_group (or with a group of one) striped loads are off.
    StripedLoads striped_loads = StripedLoads::kOff;
    const comm::MpiComm* striped_group = nullptr;
    std::size_t striped_staging_bytes = std::size_t{64} << 20;  // device staging (two batches)
    // Node-wide host tier (HostSharing::kNode): the ranks of each node allocate their host pools
    // in one MPI shared window; pools replicated across TP or CP are stored once per replica and
    // node (one rank writes them), and the DP replicas of a node serve each other's pages through
    // the node index (a host hit, no network), before the remote tier, which then serves only
    // what the node lacks. host_sharing_job: the job's ranks (Grid::world()), host_sharing_group:
    // the decision group's (Grid::decisionComm()); both used during create() only, which is then
    // collective over the job. With kOff and both set, create() only measures the footprint
    // (hostFootprint()). Needs a page_first or page_first_direct host layout. host_sharing_lease:
    // how long a pin of a page being copied protects it against its owner's eviction.
    HostSharing host_sharing = HostSharing::kOff;
    const comm::MpiComm* host_sharing_job = nullptr;
    const comm::MpiComm* host_sharing_group = nullptr;
    std::chrono::milliseconds host_sharing_lease{2000};
};

// The device state slots used when CacheOptions::state_slots is 0: max(16, device pages / 16). A
// Mamba state is megabytes (every layer's conv and temporal state) where a token's KV is
// kilobytes, so a slot per 16 KV pages keeps the states' memory near the KV's.
std::size_t defaultStateSlots(std::size_t device_tokens, std::uint32_t page_size) noexcept;

// Requests admitted by a Cache and their prompt tokens by where they came from, counted at each
// successful admit() (host: the host tier's own hits, storage and remote hits apart).
struct TokenStats {
    std::uint64_t requests = 0, prompt_tokens = 0, computed_tokens = 0;
    std::uint64_t device_hit_tokens = 0, host_hit_tokens = 0, storage_hit_tokens = 0,
                  remote_hit_tokens = 0;
};

class Cache {
public:
    // Builds the pools of the model (pools::hybridLayout: every pool with bytes, in the layout's
    // order; a logical anchor keeps only its slot space) on the chosen back end and the
    // controller. Fails with the error of the first part that cannot be built (unknown model, bad
    // sizes, no GPU, OOM); kNotSupported for a hybrid model (several slot spaces) with the remote
    // tier or with pipeline stages. Collective over the group's replica (the ranks agree on pool
    // capacities).
    static Result<std::unique_ptr<Cache>> create(const CacheOptions& options,
                                                 comm::DecisionGroup& group);
    ~Cache();

    // Page keys of the full pages of `tokens` in this cache's namespace.
    std::vector<core::PageKey> keysFor(std::span<const std::int32_t> tokens) const;

    // Reusable prefix length in tokens (device + host) without admitting anything.
    std::size_t matchTokens(std::span<const std::int32_t> tokens);

    // See CacheController::admit. The Admission lists the device page of every prompt page.
    // `priority`: see CacheController::admit (the priority eviction policy keeps higher first).
    Result<Admission> admit(RequestId id, std::span<const std::int32_t> tokens,
                            std::uint32_t priority = 0);
    // See CacheController::prefetch / prefetchSettled.
    Status prefetch(RequestId id, std::span<const std::int32_t> tokens);
    bool prefetchSettled(RequestId id) const { return controller_->prefetchSettled(id); }
    Status launchLoads() { return controller_->launchLoads(); }
    Status waitLayer(RequestId id, std::uint32_t layer, void* native_stream = nullptr) {
        return controller_->waitLayer(id, layer, native_stream);
    }
    Status insert(RequestId id) { return controller_->insert(id); }
    Status insertAfter(RequestId id, void* native_stream) {
        return controller_->insertAfter(id, native_stream);
    }
    Status release(RequestId id) { return controller_->release(id); }
    Status abort(RequestId id) { return controller_->abort(id); }
    // `flag`: a value of the caller's agreed by MAX in the round's agreement (CacheController).
    Status step(std::int64_t* flag = nullptr) { return controller_->step(flag); }
    Status drain() { return controller_->drain(); }

    const CacheOptions& options() const noexcept { return options_; }
    kernels::Backend& backend() noexcept { return *backend_; }
    // The pools with bytes, in the layout's order (the logical anchor of DeepSeek-V4 has none);
    // devicePools(), hostPools(), poolSpace() and poolLayerMap() use the same indices.
    const std::vector<pools::PoolSpec>& poolSpecs() const noexcept { return specs_; }
    const std::vector<pools::DevicePool>& devicePools() const noexcept { return device_pools_; }
    const std::vector<pools::HostPool>& hostPools() const noexcept { return host_pools_; }
    controller::CacheController& controller() noexcept { return *controller_; }
    const TokenStats& tokenStats() const noexcept { return token_stats_; }
    // Summed statistics of the storage tier's stores (zero without one); safe while the storage
    // worker runs (each store guards its counters), final after drain().
    io::StoreStats storageStats() const;
    bool hasStorage() const noexcept { return !stores_.empty(); }
    // Summed statistics of the remote tier; safe while the storage worker runs (atomic counters).
    io::RemoteStoreStats remoteStats() const;  // summed over the pools; zero without a remote tier
    bool hasRemote() const noexcept { return !remotes_.empty(); }
    // The node-wide host tier: its footprint (zeros but bytes_this_rank when neither sharing nor
    // measured) and, with sharing, the node stores' figures summed over the pools (cross-replica
    // hits: pages_served).
    const HostFootprint& hostFootprint() const noexcept { return footprint_; }
    io::NodeStoreStats nodeStats() const;
    // This rank's node index figures (pins, waits for pins, expired leases); zeros without.
    comm::NodeIndexStats nodeIndexStats() const;
    bool hasNodeStores() const noexcept { return !node_stores_.empty(); }
    // True when replicated pools load striped over NCCL; otherwise stripedOffReason() says why
    // not ("" when the mode was off).
    bool stripedLoads() const noexcept { return striped_ != nullptr; }
    const std::string& stripedOffReason() const noexcept { return striped_off_reason_; }
    // The model's layers on this rank (the layout's model layers); a pool may have only some.
    std::uint32_t numLayers() const noexcept { return layout_.model_layers; }
    std::size_t hostCapacityTokens() const noexcept;
    // The model's pools as laid out (logical anchor included) and its slot spaces (space 0: the
    // anchor's; one per independent pool after it), as given to the controller.
    const pools::HybridLayout& layout() const noexcept { return layout_; }
    const std::vector<controller::SlotSpace>& spaces() const noexcept { return spaces_; }
    // Slot space of pool i (an index into spaces()) and the model layer of each of its layers.
    std::uint32_t poolSpace(std::size_t i) const { return pool_space_.at(i); }
    const std::vector<std::uint32_t>& poolLayerMap(std::size_t i) const {
        return layer_maps_.at(i);
    }

private:
    Cache() = default;
    CacheOptions options_;
    core::PageKey seed_;
    std::unique_ptr<kernels::Backend> backend_;
    pools::HybridLayout layout_;
    std::vector<controller::SlotSpace> spaces_;
    std::vector<pools::PoolSpec> specs_;
    std::vector<std::uint32_t> pool_space_;
    std::vector<std::vector<std::uint32_t>> layer_maps_;
    std::vector<pools::DevicePool> device_pools_;  // must outlive controller_
    std::unique_ptr<NodeHostTier> node_tier_;      // must outlive host_pools_
    HostFootprint footprint_;
    std::vector<pools::HostPool> host_pools_;                      // must outlive controller_
    std::vector<std::unique_ptr<io::PageStore>> stores_;           // must outlive controller_
    std::vector<std::unique_ptr<io::RemotePageStore>> remotes_;    // must outlive controller_
    std::vector<std::unique_ptr<io::NodePageStore>> node_stores_;  // must outlive controller_
    std::unique_ptr<comm::nccl::StripedLoader> striped_;           // must outlive controller_
    std::string striped_off_reason_;
    TokenStats token_stats_;
    std::unique_ptr<controller::CacheController> controller_;
};

}  // namespace strata::runtime

// Strata's public C++ API: what an inference engine links (libstrata, `find_package(Strata)`).
// Public header, installed: it names no type of Strata's internals or of its dependencies (MPI,
// CUDA, UCX, HDF5, JSON, logging), so an engine needs nothing else to build against it.
//
// One Job per process does the set-up an engine should not repeat: MPI (initialised here, or the
// engine's communicator adopted; or none, for workers that are not an MPI job: agree_min), the grid
// of TP x CP x PP x DP ranks, the remote tier's transport. One Cache per model on each rank caches
// the KV of its pools: the engine's own (declared with PoolDecl, over its tensors) or a built-in
// preset's. The engine's scheduler loop:
//   step(); for each new request: admit(); launchLoads(); per layer: waitLayer(), compute;
//   insert(); release();
// The ranks of a replica (its TP x CP grid) call step(), launchLoads() and the other collective
// points together; every rank of the Job creates its Caches in the same order.
// Thread-safety: a Job and its Caches are used from one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "strata/export.h"
#include "strata/pool_decl.h"
#include "strata/status.h"

namespace strata {

struct JobOptions {
    // The engine's MPI communicator as a Fortran handle (C: MPI_Comm_c2f(comm); mpi4py:
    // comm.py2f()); -1: MPI_COMM_WORLD. MPI is initialised (thread level MULTIPLE) unless the
    // engine has done it; MPI a Job initialised stays so until the process exits (finalised
    // then), so that Jobs can be made one after another.
    std::int64_t mpi_comm = -1;
    int tp = 1, cp = 1, pp = 1;  // the grid; DP = ranks / (tp * cp * pp)
    // GPUs per node the ranks bind to (local rank r -> GPU r % gpus); 0: none (the CPU back end).
    int gpus = 0;
    // The remote tier (peers' host pools over UCX, between DP replicas): "off", "on" (an error
    // when this build has no UCX) or "auto" (on with two or more replicas and UCX).
    std::string remote = "off";
    // The deadline of one agreement round of a replica's ranks (seconds, 0: none), and what a
    // rank that misses it does: "abort" the job naming the missing rank, or "warn" and wait.
    double round_timeout_s = 120;
    std::string on_round_timeout = "abort";
    std::string log_level = "info";  // trace, debug, info, warn, error, off
    // Not an MPI job (workers launched by torch.distributed or the engine's own launcher): set
    // agree_min, and this process's place: rank of world_size (laid out DP x CP x TP, TP
    // fastest; pp must be 1 and remote "off") and local_rank (the GPU binding: local_rank % gpus).
    // agree_min is the decision group's all-reduce: element-wise MIN of the values, in place, over
    // every rank of this rank's replica (its tp * cp ranks: world ranks r / (tp * cp) alike); every
    // rank calls it at the same points with the same length; a non-OK status fails the round. The
    // Job then neither initialises nor uses MPI (mpi_comm is ignored); round_timeout_s does not
    // apply (the engine's collective has its own timeouts).
    std::function<Status(std::span<std::int64_t>)> agree_min;
    int rank = 0, world_size = 1;
    int local_rank = 0;
};

// Where this rank is in the Job's grid.
struct RankPlace {
    int world_rank = 0, world_size = 1;
    int tp_rank = 0, tp_size = 1, cp_rank = 0, cp_size = 1, pp_rank = 0, pp_size = 1;
    int dp_rank = 0, dp_size = 1;
    int local_rank = 0;
    int device = -1;  // the GPU this rank binds to; -1: none
};

class STRATA_API Job {
public:
    // Collective over the communicator (with agree_min: no communication). kInvalidArgument
    // names a bad option (a grid that does not divide the ranks, an unknown remote mode, a rank
    // outside world_size); kNotSupported: remote "on" without UCX, or pp > 1 or a remote tier
    // with agree_min.
    static Result<std::unique_ptr<Job>> create(const JobOptions& options = {});
    ~Job();
    Job(const Job&) = delete;
    Job& operator=(const Job&) = delete;

    const RankPlace& place() const noexcept;
    bool remote() const noexcept;  // whether the remote tier is on

    struct Impl;
    Impl& impl() noexcept { return *impl_; }

private:
    explicit Job(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

struct CacheConfig {
    // The model's name: a built-in preset's ("llama3-8b", ...; `strata-run --list-models`) when
    // `pools` is empty, otherwise any name (part of the cache's namespace: caches of different
    // names never share pages).
    std::string model = "llama3-8b";
    std::vector<PoolDecl> pools;  // the engine's pools; empty: the preset's
    std::uint32_t layers = 0;     // the model's layers (0: the preset's, or as the pools declare)
    std::uint32_t page_size = 64;
    std::size_t device_tokens = 32768;  // token slots of the device pools
    std::size_t state_slots = 0;        // request slots of state pools; 0: a default from the above
    std::size_t host_tokens = 131072;   // host tier (pinned host memory) in tokens, or
    double host_ratio = 0;              // in multiples of device_tokens when non-zero
    std::string backend = "cpu";        // "cpu" (host memory stands for the GPU) or "cuda"
    std::string write_policy = "write_through";  // write_through, write_through_selective,
                                                 // write_back
    std::string eviction = "lru";                // lru, lfu, priority
    std::string storage_dir;  // the storage tier's directory (HDF5 page files); empty: none
    std::uint64_t storage_capacity_pages = 0;  // this rank's share; 0: unlimited
    std::string tenant_salt;                   // tenants with different salts never share pages
    bool check_consistency = false;  // compare every rank's tree and allocators every round
    // Prefetches from the storage and remote tiers (prefetch()): when a waiting request may be
    // admitted ("timeout": once finished or once the timeout passed; "wait_complete";
    // "best_effort": at once, with what has arrived), the fewest uncached tokens (of full pages)
    // worth a prefetch, and the timeout's base (it grows 100 ms per 1k tokens, capped at 30 s).
    std::string prefetch_policy = "timeout";
    std::size_t prefetch_threshold_tokens = 256;
    std::uint32_t prefetch_timeout_ms = 2000;
    // How the CUDA back end moves pages between host and device: "auto" (chosen per copy from
    // its chunk size and layout), "copy_engine" (no SM used: best while the model computes),
    // "kernel_warp", "kernel_bulk" (copy kernels on a few SMs) or "staged".
    std::string copy_path = "auto";
    // The host tier's layout: "page_first" (a page is one blob, rows of all layers per token;
    // what storage and peers move), "page_first_direct" (a page is one blob, each layer's rows
    // contiguous: the copy engine moves a page of a layer in one piece) or "layer_first".
    std::string host_layout = "page_first";
    // The node-wide host tier: "off" (each rank its own host pools) or "node" (the ranks of a
    // node allocate their host pools in one MPI shared window: pools replicated across TP or CP
    // are stored once per node, and DP replicas on the node load each other's pages from it).
    // "node" needs an MPI job (not agree_min) and a page_first or page_first_direct layout;
    // create() is then collective over the whole job.
    std::string host_sharing = "off";
};

// What admit() found for a prompt: the tokens reused and where from, and the device slots of
// every page of the prompt (pages[p]: the device page holding tokens [p * page_size, ...)).
struct Admission {
    std::size_t prompt_tokens = 0;
    std::size_t cached_tokens = 0;  // reused: the engine computes [cached_tokens, prompt_tokens)
    std::size_t device_hit_tokens = 0;
    std::size_t host_hit_tokens = 0;  // loaded from the host tier (storage and remote included)
    std::size_t storage_hit_tokens = 0;
    std::size_t remote_hit_tokens = 0;
    std::vector<std::uint32_t> pages;  // device pages of the kv pool's slot space
    // Per pool (the order of Cache::pools()): its device pages, or kNoPage where it keeps none
    // (a window's pages before the window); a state pool's request slot in state_slot.
    // A state pool's request slot holds the state at the end of the cached prefix once its loads
    // arrived; the engine leaves there the state at the end of the prompt's last full page. When
    // branch_state_slot is not kNoPage, the engine also leaves there the state at the end of page
    // branch_pages - 1 (another prompt branched off there), so that later prompts hit it.
    struct Pool {
        std::vector<std::uint32_t> pages;
        std::uint32_t state_slot = kNoPage;
        std::uint32_t branch_state_slot = kNoPage;
        std::size_t branch_pages = 0;
    };
    std::vector<Pool> pools;
    static constexpr std::uint32_t kNoPage = 0xffffffffu;
};

// A pool as the Cache holds it: its name and where its device rows are (the engine's memory, or
// what Strata allocated), in the layout of DeviceMemory.
struct PoolInfo {
    std::string name;
    std::uint32_t layers = 0, buffers = 0;
    std::size_t row_bytes = 0;
    std::size_t device_rows = 0;
    std::vector<void*> layer_ptrs;  // [buffer * layers + layer]
};

struct CacheStats {
    std::uint64_t rounds = 0;
    std::uint64_t prompt_tokens = 0, cached_tokens = 0;
    std::uint64_t backup_pages = 0, load_pages = 0;
    std::uint64_t device_evicted_pages = 0, host_evicted_pages = 0;
    std::uint64_t remote_pages_pulled = 0;
};

class STRATA_API Cache {
public:
    // Builds the pools (the engine's memory adopted, the rest allocated), the host tier, the
    // storage and remote tiers and the controller. Collective over the Job's replica. Errors name
    // what is wrong: a bad declaration (the pool and field), sizes, no GPU, OOM.
    static Result<std::unique_ptr<Cache>> create(Job& job, const CacheConfig& config);
    ~Cache();
    Cache(const Cache&) = delete;
    Cache& operator=(const Cache&) = delete;

    using RequestId = std::uint64_t;
    // Reusable prefix of `tokens` in tokens (device and host tiers), admitting nothing.
    std::size_t matchTokens(std::span<const std::int32_t> tokens);
    // Admits a request: reuses its cached prefix (loads from lower tiers start at launchLoads())
    // and gives it device pages for the rest. `priority`: kept longer by the priority eviction.
    // kResourceExhausted when the device pools cannot make room now (their pages are held by
    // running requests, or still being backed up to the host tier, which unlocks them at a later
    // step()): nothing is admitted; retry after step() (drain() waits for every backup).
    Result<Admission> admit(RequestId id, std::span<const std::int32_t> tokens,
                            std::uint32_t priority = 0);
    // Starts fetching the prompt's pages from storage or peers into the host tier ahead of admit.
    Status prefetch(RequestId id, std::span<const std::int32_t> tokens);
    bool prefetchSettled(RequestId id) const;
    Status launchLoads();
    // Blocks until layer `layer` of the request's loads is on the device; with a CUDA stream the
    // wait is enqueued on it instead.
    Status waitLayer(RequestId id, std::uint32_t layer, void* cuda_stream = nullptr);
    // The engine has written the request's KV: its new pages join the cache. The writes must be
    // done (on CUDA: the engine synchronised its stream); insertAfter takes the engine's CUDA
    // stream (cudaStream_t as void*; nullptr: the legacy default stream) instead, and the
    // backups of the new pages wait on the device for what is queued on it so far.
    Status insert(RequestId id);
    Status insertAfter(RequestId id, void* cuda_stream);
    Status release(RequestId id);  // the request is done; its pages stay cached
    Status abort(RequestId id);    // the request is dropped before insert
    Status step();                 // one agreement round (collective over the replica)
    Status drain();                // waits for every transfer and backup in flight

    const std::vector<PoolInfo>& pools() const noexcept;
    std::uint32_t pageSize() const noexcept;
    CacheStats stats() const;

    struct Impl;

private:
    explicit Cache(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// The version of the library ("0.1.0").
STRATA_API const char* version() noexcept;

}  // namespace strata

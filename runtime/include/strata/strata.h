/* Strata's C API: plain C11 over libstrata, for engines that are not C++ and for bindings (the
 * Python package `strata` is one). Opaque handles, plain structs, a status code per call and a
 * thread-local message for the last failure; no exception or C++ type crosses it.
 * Public header, installed; valid C11 and C++.
 *
 * The engine's scheduler loop:
 *   strata_cache_step(); for each new request: strata_cache_admit();
 *   strata_cache_launch_loads(); per layer: strata_cache_wait_layer(), compute;
 *   strata_cache_insert(); strata_cache_release();
 * The ranks of a replica (its TP x CP grid) call step, launch_loads and the other collective
 * points together; every rank of a job creates its caches in the same order.
 * Structs with an _init function are filled with defaults by it first: set only what differs
 * (a string field left NULL takes its default, except a pool's name and the cache's model).
 * Strings passed in are copied; strings and arrays handed out live as long as their handle.
 * A NULL handle or a NULL pointer argument is STRATA_INVALID_ARGUMENT naming the argument; no
 * C++ exception leaves a call (out of memory is STRATA_RESOURCE_EXHAUSTED).
 * Thread-safety: a job and its caches are used from one thread; strata_last_error() is per
 * thread. */
#ifndef STRATA_STRATA_H
#define STRATA_STRATA_H

#include <stddef.h>
#include <stdint.h>

#include "strata/export.h"
#include "strata/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The codes of strata::StatusCode, same values. */
typedef enum strata_status {
    STRATA_OK = 0,
    STRATA_INVALID_ARGUMENT = 1,
    STRATA_NOT_FOUND = 2,
    STRATA_RESOURCE_EXHAUSTED = 3,
    STRATA_FAILED_PRECONDITION = 4,
    STRATA_IO_ERROR = 5,
    STRATA_DATA_LOSS = 6,
    STRATA_UNAVAILABLE = 7,
    STRATA_TIMEOUT = 8,
    STRATA_NOT_SUPPORTED = 9,
    STRATA_INTERNAL = 10
} strata_status;

/* The message of the last call on this thread that did not return STRATA_OK ("" if none). */
STRATA_API const char* strata_last_error(void);
/* "ok", "invalid_argument", ... */
STRATA_API const char* strata_status_name(strata_status status);
/* The library's version, "MAJOR.MINOR.PATCH" (STRATA_VERSION of the headers it was built with). */
STRATA_API const char* strata_version(void);

typedef struct strata_job strata_job;
typedef struct strata_cache strata_cache;

/* For engines whose workers are not an MPI job (torch.distributed processes): the decision
 * group's all-reduce. Element-wise MIN of values[0..count) over every rank of the caller's
 * replica (its TP x CP grid: the world ranks r with the same r / (tp * cp)), in place; every
 * rank calls it at the same points with the same count (Strata also builds its barriers and
 * consistency checks from it). Called on the thread that calls Strata, from inside
 * strata_cache_create, step and the other collective calls. Returns 0 on success, anything else
 * fails the round (STRATA_UNAVAILABLE naming the code). */
typedef int (*strata_agree_min_fn)(int64_t* values, size_t count, void* user);

typedef struct strata_job_options {
    /* The engine's MPI communicator as a Fortran handle (MPI_Comm_c2f(comm), mpi4py's
     * comm.py2f()); -1: MPI_COMM_WORLD. */
    int64_t mpi_comm;
    int tp, cp, pp;               /* the grid; DP = ranks / (tp * cp * pp) */
    int gpus;                     /* GPUs per node (local rank r -> GPU r % gpus); 0: none */
    const char* remote;           /* "off" (default), "on" or "auto" */
    double round_timeout_s;       /* 120; 0: none */
    const char* on_round_timeout; /* "abort" (default) or "warn" */
    const char* log_level;        /* "info"; trace, debug, info, warn, error, off */
    /* Not an MPI job: agree_min set, and this process's place in the world (rank of
     * world_size, laid out DP x CP x TP with TP fastest; pp must be 1 and remote "off", else
     * STRATA_NOT_SUPPORTED). The job then neither initialises nor uses MPI (mpi_comm is
     * ignored), and round_timeout_s does not apply (the engine's collective has its own). */
    strata_agree_min_fn agree_min;
    void* agree_min_user;
    int rank, world_size;
    int local_rank; /* the GPU binding's local rank when not an MPI job */
} strata_job_options;

STRATA_API void strata_job_options_init(strata_job_options* options);

typedef struct strata_rank_place {
    int world_rank, world_size;
    int tp_rank, tp_size, cp_rank, cp_size, pp_rank, pp_size, dp_rank, dp_size;
    int local_rank;
    int device; /* -1: none */
} strata_rank_place;

/* Collective over the communicator (with agree_min: nothing collective). On failure *job is
 * NULL. */
STRATA_API strata_status strata_job_create(const strata_job_options* options, strata_job** job);
/* Destroys the job; NULL is ignored. A job with live caches goes when its last cache does. */
STRATA_API void strata_job_destroy(strata_job* job);
STRATA_API strata_status strata_job_place(const strata_job* job, strata_rank_place* place);

/* strata::PoolType, TpSharding and CpSharding (strata/pool_decl.h), same values. */
typedef enum strata_pool_type {
    STRATA_POOL_KV = 0,
    STRATA_POOL_SIDECAR = 1,
    STRATA_POOL_WINDOW = 2,
    STRATA_POOL_STATE = 3
} strata_pool_type;
typedef enum strata_tp_sharding {
    STRATA_TP_PER_RANK = 0,
    STRATA_TP_REPLICATED = 1
} strata_tp_sharding;
typedef enum strata_cp_sharding {
    STRATA_CP_REPLICATED = 0,
    STRATA_CP_PER_RANK = 1
} strata_cp_sharding;

/* One pool of the engine (strata::PoolDecl). The row of slot s of (buffer b, layer l) is at
 * base + b * buffer_stride + l * layer_stride + s * slot_stride, or at
 * layer_ptrs[b * num_layers + l] + s * slot_stride; base and layer_ptrs NULL: Strata allocates. */
typedef struct strata_pool_decl {
    const char* name;
    strata_pool_type type;
    const char* indices_of;  /* sidecar: the pool whose slot indices it uses */
    uint32_t tokens_per_row; /* sidecar: 1 (default), 4, 128, ... */
    uint32_t window_tokens;  /* window pools and their sidecars */
    const uint32_t* layers;  /* the model layers it has, ascending */
    size_t num_layers;
    uint32_t buffers;        /* 2: K and V; 1 (default): one row */
    size_t row_bytes;        /* one row of one buffer of one layer on this rank */
    size_t conv_state_bytes; /* state pools */
    const char* dtype;       /* a tag: "bf16" (default), "fp8", "f32", ... */
    strata_tp_sharding tp;   /* default STRATA_TP_PER_RANK */
    strata_cp_sharding cp;   /* default STRATA_CP_REPLICATED */
    void* base;
    void* const* layer_ptrs; /* buffers * num_layers pointers, or NULL */
    size_t rows;             /* rows the memory holds (token slots; request slots for state) */
    size_t slot_stride, layer_stride, buffer_stride; /* bytes; 0: packed */
} strata_pool_decl;

STRATA_API void strata_pool_decl_init(strata_pool_decl* decl);

typedef struct strata_cache_config {
    const char* model; /* a preset's name when num_pools is 0, otherwise any name */
    const strata_pool_decl* pools;
    size_t num_pools;
    uint32_t layers;    /* 0: the preset's, or as the pools declare */
    uint32_t page_size; /* 64 */
    size_t device_tokens, state_slots, host_tokens;
    double host_ratio;   /* host tier in multiples of device_tokens when non-zero */
    const char* backend; /* "cpu" (default) or "cuda" */
    const char*
        write_policy;     /* "write_through" (default), "write_through_selective", "write_back" */
    const char* eviction; /* "lru" (default), "lfu", "priority" */
    const char* storage_dir; /* the HDF5 tier's directory; NULL or "": none */
    uint64_t storage_capacity_pages;
    const char* tenant_salt;
    int check_consistency;
    const char* prefetch_policy;      /* "timeout" (default), "wait_complete", "best_effort" */
    size_t prefetch_threshold_tokens; /* 256: fewer uncached tokens start no prefetch */
    uint32_t prefetch_timeout_ms;     /* 2000: the "timeout" policy's base */
    /* CUDA: "auto" (default), "copy_engine" (no SM), "kernel_warp", "kernel_bulk", "staged" */
    const char* copy_path;
    /* the host tier's layout: "page_first" (default), "page_first_direct", "layer_first" */
    const char* host_layout;
    /* the node-wide host tier: "off" (default) or "node" (one MPI shared window per node;
     * needs an MPI job; strata_cache_create is then collective over the whole job) */
    const char* host_sharing;
} strata_cache_config;

STRATA_API void strata_cache_config_init(strata_cache_config* config);

/* Collective over the job's replica. On failure *cache is NULL; a bad pool declaration is
 * STRATA_INVALID_ARGUMENT whose message names the pool and the field. */
STRATA_API strata_status strata_cache_create(strata_job* job, const strata_cache_config* config,
                                             strata_cache** cache);
STRATA_API void strata_cache_destroy(strata_cache* cache); /* NULL is ignored */

/* 0 for a NULL cache. */
STRATA_API uint32_t strata_cache_page_size(const strata_cache* cache);
STRATA_API size_t strata_cache_num_pools(const strata_cache* cache);

/* A pool as the cache holds it: where its device rows are (the engine's memory, or what Strata
 * allocated). layer_ptrs has buffers * layers entries, [buffer * layers + layer]. */
typedef struct strata_pool_info {
    const char* name;
    uint32_t layers, buffers;
    size_t row_bytes, device_rows;
    void* const* layer_ptrs;
} strata_pool_info;

STRATA_API strata_status strata_cache_pool_info(const strata_cache* cache, size_t index,
                                                strata_pool_info* info);

typedef uint64_t strata_request_id;
#define STRATA_NO_PAGE 0xffffffffu

/* Reusable prefix of the tokens, in tokens, admitting nothing. */
STRATA_API strata_status strata_cache_match(strata_cache* cache, const int32_t* tokens,
                                            size_t num_tokens, size_t* cached_tokens);

/* What admit found for a prompt. */
typedef struct strata_admission {
    size_t prompt_tokens;
    size_t cached_tokens; /* the engine computes [cached_tokens, prompt_tokens) */
    size_t device_hit_tokens, host_hit_tokens, storage_hit_tokens, remote_hit_tokens;
} strata_admission;

/* Where admit writes one pool's device pages (in the order of strata_cache_pool_info). The
 * caller sets pages and capacity (at least ceil(num_tokens / page_size) entries; NULL and 0 to
 * skip the pool); admit sets num_pages (STRATA_NO_PAGE where the pool keeps none: a window's
 * pages before its window) and, for state pools, the request slot (see strata::Admission). */
typedef struct strata_admission_pool {
    uint32_t* pages;
    size_t capacity;
    size_t num_pages;
    uint32_t state_slot, branch_state_slot;
    size_t branch_pages;
} strata_admission_pool;

/* STRATA_RESOURCE_EXHAUSTED from admit: the device pools cannot make room now (pages held by
 * running requests or still being backed up); nothing is admitted: retry after a step (drain
 * waits for every backup). */
/* Admits a request: reuses its cached prefix (its loads start at launch_loads) and gives it
 * device pages for the rest. pools: strata_cache_num_pools entries, or NULL. A capacity too
 * small is STRATA_INVALID_ARGUMENT, checked before anything is admitted. */
STRATA_API strata_status strata_cache_admit(strata_cache* cache, strata_request_id id,
                                            const int32_t* tokens, size_t num_tokens,
                                            uint32_t priority, strata_admission* admission,
                                            strata_admission_pool* pools);
/* Starts looking the prompt up in the storage (HDF5) tier, and fetching what it holds into the
 * host tier; the storage tier is read only this way. Started when the prompt's full pages
 * (its last token excluded) past what the device and host tiers hold make
 * prefetch_threshold_tokens (256 by default) or more;
 * it settles over the next steps (strata_cache_prefetch_settled), then
 * admit finds the pages (storage_hit_tokens). A no-op without storage_dir. */
STRATA_API strata_status strata_cache_prefetch(strata_cache* cache, strata_request_id id,
                                               const int32_t* tokens, size_t num_tokens);
/* 1 when the request's prefetch has settled (or none was started), 0 otherwise (and for a NULL
 * cache). */
STRATA_API int strata_cache_prefetch_settled(const strata_cache* cache, strata_request_id id);
STRATA_API strata_status strata_cache_launch_loads(strata_cache* cache);
/* Until model layer `layer` (of this stage) of the request's loads is on the
 * device; with a CUDA stream (cudaStream_t as void*) the wait is enqueued on it instead. */
STRATA_API strata_status strata_cache_wait_layer(strata_cache* cache, strata_request_id id,
                                                 uint32_t layer, void* cuda_stream);
/* The engine has written the request's KV: its new pages join the cache (their backups to the
 * host tier start at the next step). The writes must be done (on CUDA: the engine synchronised
 * its stream). strata_cache_insert_after takes the engine's CUDA stream (cudaStream_t as void*;
 * NULL: the legacy default stream) instead: the backups wait on the device for what is queued on
 * it so far, and the host does not wait. */
STRATA_API strata_status strata_cache_insert(strata_cache* cache, strata_request_id id);
STRATA_API strata_status strata_cache_insert_after(strata_cache* cache, strata_request_id id,
                                                   void* cuda_stream);
STRATA_API strata_status strata_cache_release(strata_cache* cache, strata_request_id id);
STRATA_API strata_status strata_cache_abort(strata_cache* cache, strata_request_id id);
STRATA_API strata_status strata_cache_step(strata_cache* cache);
STRATA_API strata_status strata_cache_drain(strata_cache* cache);

typedef struct strata_cache_stats {
    uint64_t rounds;
    uint64_t prompt_tokens, cached_tokens;
    uint64_t backup_pages, load_pages;
    uint64_t device_evicted_pages, host_evicted_pages;
    uint64_t remote_pages_pulled;
} strata_cache_stats;

STRATA_API strata_status strata_cache_stats_get(const strata_cache* cache,
                                                strata_cache_stats* stats);

#ifdef __cplusplus
}
#endif

#endif /* STRATA_STRATA_H */

// The C API (strata/strata.h) over the C++ API (strata/strata.hpp): handles own the C++ objects,
// structs are converted field by field, every entry point catches every exception and turns a
// failure into a status code plus a thread-local message.
#include <algorithm>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "strata/core/status.h"
#include "strata/strata.h"
#include "strata/strata.hpp"

// A job handle shares its Job with its caches: the Job goes when the handle and every cache made
// from it are gone.
struct strata_job {
    std::shared_ptr<strata::Job> job;
};

struct strata_cache {
    std::shared_ptr<strata::Job> job;  // declared first: destroyed after the cache
    std::unique_ptr<strata::Cache> cache;
};

namespace strata {
namespace {

#define STRATA_C_SAME(c, cpp) \
    static_assert(static_cast<int>(c) == static_cast<int>(cpp), #c " differs from " #cpp)
STRATA_C_SAME(STRATA_OK, StatusCode::kOk);
STRATA_C_SAME(STRATA_INVALID_ARGUMENT, StatusCode::kInvalidArgument);
STRATA_C_SAME(STRATA_NOT_FOUND, StatusCode::kNotFound);
STRATA_C_SAME(STRATA_RESOURCE_EXHAUSTED, StatusCode::kResourceExhausted);
STRATA_C_SAME(STRATA_FAILED_PRECONDITION, StatusCode::kFailedPrecondition);
STRATA_C_SAME(STRATA_IO_ERROR, StatusCode::kIoError);
STRATA_C_SAME(STRATA_DATA_LOSS, StatusCode::kDataLoss);
STRATA_C_SAME(STRATA_UNAVAILABLE, StatusCode::kUnavailable);
STRATA_C_SAME(STRATA_TIMEOUT, StatusCode::kTimeout);
STRATA_C_SAME(STRATA_NOT_SUPPORTED, StatusCode::kNotSupported);
STRATA_C_SAME(STRATA_INTERNAL, StatusCode::kInternal);
STRATA_C_SAME(STRATA_POOL_KV, PoolType::kKv);
STRATA_C_SAME(STRATA_POOL_SIDECAR, PoolType::kSidecar);
STRATA_C_SAME(STRATA_POOL_WINDOW, PoolType::kWindow);
STRATA_C_SAME(STRATA_POOL_STATE, PoolType::kState);
STRATA_C_SAME(STRATA_TP_PER_RANK, TpSharding::kPerRank);
STRATA_C_SAME(STRATA_TP_REPLICATED, TpSharding::kReplicated);
STRATA_C_SAME(STRATA_CP_REPLICATED, CpSharding::kReplicated);
STRATA_C_SAME(STRATA_CP_PER_RANK, CpSharding::kPerRank);
STRATA_C_SAME(STRATA_NO_PAGE, Admission::kNoPage);
#undef STRATA_C_SAME
static_assert(std::is_same_v<strata_request_id, Cache::RequestId>);

thread_local std::string t_last_error;

strata_status fail(StatusCode code, std::string message) {
    t_last_error = std::move(message);
    return static_cast<strata_status>(code);
}

strata_status fromStatus(const Status& s) {
    if (s.isOk()) return STRATA_OK;
    return fail(s.code(), s.message());
}

// Runs `body` (returning a strata_status); no exception leaves it.
template <typename Body>
strata_status guarded(const char* what, Body&& body) noexcept {
    try {
        return body();
    } catch (const std::bad_alloc&) {
        return fail(StatusCode::kResourceExhausted, std::string(what) + ": out of memory");
    } catch (const std::exception& e) {
        try {
            return fail(StatusCode::kInternal, fmt::format("{}: {}", what, e.what()));
        } catch (...) {
            return STRATA_INTERNAL;
        }
    } catch (...) {
        return fail(StatusCode::kInternal, std::string(what) + ": unknown exception");
    }
}

strata_status nullArgument(const char* function, const char* argument) {
    return fail(StatusCode::kInvalidArgument, fmt::format("{}: {} is NULL", function, argument));
}

#define STRATA_C_NOT_NULL(function, arg) \
    if ((arg) == nullptr) return nullArgument(function, #arg)

// The value a C enum field holds, read as its bytes: a C caller may have stored any int there,
// which C++ must not load as the enum type.
template <typename Enum>
long long rawValue(const Enum& e) {
    std::underlying_type_t<Enum> v;
    static_assert(sizeof v == sizeof e);
    std::memcpy(&v, &e, sizeof v);
    return static_cast<long long>(v);
}

// A C enum field of pool `pool`, read by its bytes, into the C++ enum whose values are the same
// 0..count-1 (asserted above); any other value is an error naming the field and the valid ones.
template <typename E, typename CEnum>
Status enumField(const CEnum& c, long long count, E* out, const std::string& pool,
                 const char* field, const char* valid) {
    const long long v = rawValue(c);
    if (v < 0 || v >= count) {
        return Status(StatusCode::kInvalidArgument,
                      fmt::format("pool '{}': {} {} is not one of {}", pool, field, v, valid));
    }
    *out = static_cast<E>(v);
    return Status::ok();
}

std::string stringOr(const char* s, const char* fallback) { return s != nullptr ? s : fallback; }

// The C++ JobOptions of C options.
JobOptions jobOptionsOf(const strata_job_options& c) {
    JobOptions o;
    o.mpi_comm = c.mpi_comm;
    o.tp = c.tp;
    o.cp = c.cp;
    o.pp = c.pp;
    o.gpus = c.gpus;
    o.remote = stringOr(c.remote, "off");
    o.round_timeout_s = c.round_timeout_s;
    o.on_round_timeout = stringOr(c.on_round_timeout, "abort");
    o.log_level = stringOr(c.log_level, "info");
    if (c.agree_min != nullptr) {
        strata_agree_min_fn fn = c.agree_min;
        void* user = c.agree_min_user;
        o.agree_min = [fn, user](std::span<std::int64_t> values) -> Status {
            const int rc = fn(values.data(), values.size(), user);
            if (rc == 0) return Status::ok();
            return Status(StatusCode::kUnavailable,
                          fmt::format("the agree_min callback returned {}", rc));
        };
        o.rank = c.rank;
        o.world_size = c.world_size;
        o.local_rank = c.local_rank;
    }
    return o;
}

// The C++ PoolDecl of the C declaration `index`; every enum value is checked.
Result<PoolDecl> poolDeclOf(const strata_pool_decl& c, std::size_t index) {
    if (c.name == nullptr) {
        return Status(StatusCode::kInvalidArgument, fmt::format("pool {}: name is NULL", index));
    }
    PoolDecl d;
    d.name = c.name;
    STRATA_RETURN_IF_ERROR(enumField(c.type, 4, &d.type, d.name, "type",
                                     "STRATA_POOL_KV (0), STRATA_POOL_SIDECAR (1), "
                                     "STRATA_POOL_WINDOW (2), STRATA_POOL_STATE (3)"));
    STRATA_RETURN_IF_ERROR(enumField(c.tp, 2, &d.tp, d.name, "tp",
                                     "STRATA_TP_PER_RANK (0), STRATA_TP_REPLICATED (1)"));
    STRATA_RETURN_IF_ERROR(enumField(c.cp, 2, &d.cp, d.name, "cp",
                                     "STRATA_CP_REPLICATED (0), STRATA_CP_PER_RANK (1)"));
    if (c.num_layers > 0 && c.layers == nullptr) {
        return Status(
            StatusCode::kInvalidArgument,
            fmt::format("pool '{}': layers is NULL with num_layers {}", d.name, c.num_layers));
    }
    d.indices_of = stringOr(c.indices_of, "");
    d.tokens_per_row = c.tokens_per_row;
    d.window_tokens = c.window_tokens;
    if (c.num_layers > 0) d.layers.assign(c.layers, c.layers + c.num_layers);
    d.buffers = c.buffers;
    d.row_bytes = c.row_bytes;
    d.conv_state_bytes = c.conv_state_bytes;
    d.dtype = stringOr(c.dtype, "bf16");
    d.memory.base = c.base;
    if (c.layer_ptrs != nullptr) {
        d.memory.layer_ptrs.assign(c.layer_ptrs,
                                   c.layer_ptrs + std::size_t{c.buffers} * c.num_layers);
    }
    d.memory.rows = c.rows;
    d.memory.slot_stride = c.slot_stride;
    d.memory.layer_stride = c.layer_stride;
    d.memory.buffer_stride = c.buffer_stride;
    return d;
}

Result<CacheConfig> cacheConfigOf(const strata_cache_config& c) {
    CacheConfig o;
    if (c.model == nullptr) {
        return Status(StatusCode::kInvalidArgument, "cache config: model is NULL");
    }
    o.model = c.model;
    if (c.num_pools > 0 && c.pools == nullptr) {
        return Status(StatusCode::kInvalidArgument,
                      fmt::format("cache config: pools is NULL with num_pools {}", c.num_pools));
    }
    for (std::size_t i = 0; i < c.num_pools; ++i) {
        Result<PoolDecl> d = poolDeclOf(c.pools[i], i);
        if (!d.isOk()) return d.status();
        o.pools.push_back(std::move(d).value());
    }
    o.layers = c.layers;
    o.page_size = c.page_size;
    o.device_tokens = c.device_tokens;
    o.state_slots = c.state_slots;
    o.host_tokens = c.host_tokens;
    o.host_ratio = c.host_ratio;
    o.backend = stringOr(c.backend, "cpu");
    o.write_policy = stringOr(c.write_policy, "write_through");
    o.eviction = stringOr(c.eviction, "lru");
    o.storage_dir = stringOr(c.storage_dir, "");
    o.storage_capacity_pages = c.storage_capacity_pages;
    o.tenant_salt = stringOr(c.tenant_salt, "");
    o.check_consistency = c.check_consistency != 0;
    o.prefetch_policy = stringOr(c.prefetch_policy, "timeout");
    o.prefetch_threshold_tokens = c.prefetch_threshold_tokens;
    o.prefetch_timeout_ms = c.prefetch_timeout_ms;
    o.copy_path = stringOr(c.copy_path, "auto");
    o.host_layout = stringOr(c.host_layout, "page_first");
    o.host_sharing = stringOr(c.host_sharing, "off");
    return o;
}

std::span<const std::int32_t> tokenSpan(const int32_t* tokens, size_t num_tokens) {
    return {tokens, num_tokens};
}

// Writes one Admission into the C structs (capacities already checked).
void fillAdmission(const Admission& a, strata_admission* out, strata_admission_pool* pools) {
    out->prompt_tokens = a.prompt_tokens;
    out->cached_tokens = a.cached_tokens;
    out->device_hit_tokens = a.device_hit_tokens;
    out->host_hit_tokens = a.host_hit_tokens;
    out->storage_hit_tokens = a.storage_hit_tokens;
    out->remote_hit_tokens = a.remote_hit_tokens;
    if (pools == nullptr) return;
    for (std::size_t i = 0; i < a.pools.size(); ++i) {
        const Admission::Pool& p = a.pools[i];
        strata_admission_pool& c = pools[i];
        c.num_pages = p.pages.size();
        if (c.pages != nullptr) std::copy(p.pages.begin(), p.pages.end(), c.pages);
        c.state_slot = p.state_slot;
        c.branch_state_slot = p.branch_state_slot;
        c.branch_pages = p.branch_pages;
    }
}

}  // namespace
}  // namespace strata

using namespace strata;  // NOLINT(google-build-using-namespace): this file is the C API only

extern "C" {

const char* strata_last_error(void) { return t_last_error.c_str(); }

const char* strata_status_name(strata_status status) {
    switch (status) {
        case STRATA_OK:
            return "ok";
        case STRATA_INVALID_ARGUMENT:
            return "invalid_argument";
        case STRATA_NOT_FOUND:
            return "not_found";
        case STRATA_RESOURCE_EXHAUSTED:
            return "resource_exhausted";
        case STRATA_FAILED_PRECONDITION:
            return "failed_precondition";
        case STRATA_IO_ERROR:
            return "io_error";
        case STRATA_DATA_LOSS:
            return "data_loss";
        case STRATA_UNAVAILABLE:
            return "unavailable";
        case STRATA_TIMEOUT:
            return "timeout";
        case STRATA_NOT_SUPPORTED:
            return "not_supported";
        case STRATA_INTERNAL:
            return "internal";
    }
    return "unknown";
}

const char* strata_version(void) { return strata::version(); }

void strata_job_options_init(strata_job_options* options) {
    if (options == nullptr) return;
    const JobOptions d;
    *options = strata_job_options{};
    options->mpi_comm = d.mpi_comm;
    options->tp = d.tp;
    options->cp = d.cp;
    options->pp = d.pp;
    options->gpus = d.gpus;
    options->remote = "off";
    options->round_timeout_s = d.round_timeout_s;
    options->on_round_timeout = "abort";
    options->log_level = "info";
    options->agree_min = nullptr;
    options->agree_min_user = nullptr;
    options->rank = d.rank;
    options->world_size = d.world_size;
    options->local_rank = d.local_rank;
}

strata_status strata_job_create(const strata_job_options* options, strata_job** job) {
    return guarded("strata_job_create", [&] {
        STRATA_C_NOT_NULL("strata_job_create", job);
        *job = nullptr;
        STRATA_C_NOT_NULL("strata_job_create", options);
        Result<std::unique_ptr<Job>> r = Job::create(jobOptionsOf(*options));
        if (!r.isOk()) return fromStatus(r.status());
        *job = new strata_job{std::shared_ptr<Job>(std::move(r).value())};
        return STRATA_OK;
    });
}

void strata_job_destroy(strata_job* job) {
    // Destructors do not throw (they log); a job without caches ends here, else with its last.
    delete job;
}

strata_status strata_job_place(const strata_job* job, strata_rank_place* place) {
    return guarded("strata_job_place", [&] {
        STRATA_C_NOT_NULL("strata_job_place", job);
        STRATA_C_NOT_NULL("strata_job_place", place);
        const RankPlace& p = job->job->place();
        *place = {p.world_rank, p.world_size, p.tp_rank, p.tp_size, p.cp_rank,    p.cp_size,
                  p.pp_rank,    p.pp_size,    p.dp_rank, p.dp_size, p.local_rank, p.device};
        return STRATA_OK;
    });
}

void strata_pool_decl_init(strata_pool_decl* decl) {
    if (decl == nullptr) return;
    const PoolDecl d;
    *decl = strata_pool_decl{};
    decl->type = static_cast<strata_pool_type>(d.type);
    decl->tokens_per_row = d.tokens_per_row;
    decl->buffers = d.buffers;
    decl->dtype = "bf16";
    decl->tp = static_cast<strata_tp_sharding>(d.tp);
    decl->cp = static_cast<strata_cp_sharding>(d.cp);
}

void strata_cache_config_init(strata_cache_config* config) {
    if (config == nullptr) return;
    const CacheConfig d;
    *config = strata_cache_config{};
    config->model = "llama3-8b";
    config->layers = d.layers;
    config->page_size = d.page_size;
    config->device_tokens = d.device_tokens;
    config->state_slots = d.state_slots;
    config->host_tokens = d.host_tokens;
    config->host_ratio = d.host_ratio;
    config->backend = "cpu";
    config->write_policy = "write_through";
    config->eviction = "lru";
    config->storage_capacity_pages = d.storage_capacity_pages;
    config->check_consistency = d.check_consistency ? 1 : 0;
    config->prefetch_policy = "timeout";
    config->prefetch_threshold_tokens = d.prefetch_threshold_tokens;
    config->prefetch_timeout_ms = d.prefetch_timeout_ms;
    config->copy_path = "auto";
    config->host_layout = "page_first";
    config->host_sharing = "off";
}

strata_status strata_cache_create(strata_job* job, const strata_cache_config* config,
                                  strata_cache** cache) {
    return guarded("strata_cache_create", [&] {
        STRATA_C_NOT_NULL("strata_cache_create", cache);
        *cache = nullptr;
        STRATA_C_NOT_NULL("strata_cache_create", job);
        STRATA_C_NOT_NULL("strata_cache_create", config);
        Result<CacheConfig> cc = cacheConfigOf(*config);
        if (!cc.isOk()) return fromStatus(cc.status());
        Result<std::unique_ptr<Cache>> r = Cache::create(*job->job, *cc);
        if (!r.isOk()) return fromStatus(r.status());
        *cache = new strata_cache{job->job, std::move(r).value()};
        return STRATA_OK;
    });
}

void strata_cache_destroy(strata_cache* cache) { delete cache; }

uint32_t strata_cache_page_size(const strata_cache* cache) {
    if (cache == nullptr) {
        nullArgument("strata_cache_page_size", "cache");
        return 0;
    }
    return cache->cache->pageSize();
}

size_t strata_cache_num_pools(const strata_cache* cache) {
    if (cache == nullptr) {
        nullArgument("strata_cache_num_pools", "cache");
        return 0;
    }
    return cache->cache->pools().size();
}

strata_status strata_cache_pool_info(const strata_cache* cache, size_t index,
                                     strata_pool_info* info) {
    return guarded("strata_cache_pool_info", [&] {
        STRATA_C_NOT_NULL("strata_cache_pool_info", cache);
        STRATA_C_NOT_NULL("strata_cache_pool_info", info);
        const std::vector<PoolInfo>& pools = cache->cache->pools();
        if (index >= pools.size()) {
            return fail(StatusCode::kInvalidArgument,
                        fmt::format("strata_cache_pool_info: index {} is not below the {} pools",
                                    index, pools.size()));
        }
        const PoolInfo& p = pools[index];
        info->name = p.name.c_str();
        info->layers = p.layers;
        info->buffers = p.buffers;
        info->row_bytes = p.row_bytes;
        info->device_rows = p.device_rows;
        info->layer_ptrs = p.layer_ptrs.data();
        return STRATA_OK;
    });
}

strata_status strata_cache_match(strata_cache* cache, const int32_t* tokens, size_t num_tokens,
                                 size_t* cached_tokens) {
    return guarded("strata_cache_match", [&] {
        STRATA_C_NOT_NULL("strata_cache_match", cache);
        STRATA_C_NOT_NULL("strata_cache_match", cached_tokens);
        if (num_tokens > 0) STRATA_C_NOT_NULL("strata_cache_match", tokens);
        *cached_tokens = cache->cache->matchTokens(tokenSpan(tokens, num_tokens));
        return STRATA_OK;
    });
}

strata_status strata_cache_admit(strata_cache* cache, strata_request_id id, const int32_t* tokens,
                                 size_t num_tokens, uint32_t priority, strata_admission* admission,
                                 strata_admission_pool* pools) {
    return guarded("strata_cache_admit", [&] {
        STRATA_C_NOT_NULL("strata_cache_admit", cache);
        STRATA_C_NOT_NULL("strata_cache_admit", admission);
        if (num_tokens > 0) STRATA_C_NOT_NULL("strata_cache_admit", tokens);
        Cache& c = *cache->cache;
        const std::size_t page = c.pageSize();
        const std::size_t needed = (num_tokens + page - 1) / page;
        if (pools != nullptr) {
            for (std::size_t i = 0; i < c.pools().size(); ++i) {
                if (pools[i].pages == nullptr) continue;  // skipped
                if (pools[i].capacity < needed) {
                    return fail(
                        StatusCode::kInvalidArgument,
                        fmt::format("strata_cache_admit: pools[{}] (pool '{}') has "
                                    "capacity {}, less than the {} pages of {} tokens",
                                    i, c.pools()[i].name, pools[i].capacity, needed, num_tokens));
                }
            }
        }
        Result<Admission> a = c.admit(id, tokenSpan(tokens, num_tokens), priority);
        if (!a.isOk()) return fromStatus(a.status());
        if (pools != nullptr) {
            for (std::size_t i = 0; i < a->pools.size(); ++i) {
                if (pools[i].pages != nullptr && a->pools[i].pages.size() > pools[i].capacity) {
                    (void)c.abort(id);
                    return fail(StatusCode::kInternal,
                                fmt::format("strata_cache_admit: pool '{}' got {} pages for {} "
                                            "tokens (at most {} expected)",
                                            c.pools()[i].name, a->pools[i].pages.size(), num_tokens,
                                            needed));
                }
            }
        }
        fillAdmission(*a, admission, pools);
        return STRATA_OK;
    });
}

strata_status strata_cache_prefetch(strata_cache* cache, strata_request_id id,
                                    const int32_t* tokens, size_t num_tokens) {
    return guarded("strata_cache_prefetch", [&] {
        STRATA_C_NOT_NULL("strata_cache_prefetch", cache);
        if (num_tokens > 0) STRATA_C_NOT_NULL("strata_cache_prefetch", tokens);
        return fromStatus(cache->cache->prefetch(id, tokenSpan(tokens, num_tokens)));
    });
}

int strata_cache_prefetch_settled(const strata_cache* cache, strata_request_id id) {
    int settled = 0;
    guarded("strata_cache_prefetch_settled", [&] {
        STRATA_C_NOT_NULL("strata_cache_prefetch_settled", cache);
        settled = cache->cache->prefetchSettled(id) ? 1 : 0;
        return STRATA_OK;
    });
    return settled;
}

// The calls that take only the cache (and a request).
#define STRATA_C_CACHE_CALL(function, call)          \
    strata_status function(strata_cache* cache) {    \
        return guarded(#function, [&] {              \
            STRATA_C_NOT_NULL(#function, cache);     \
            return fromStatus(cache->cache->call()); \
        });                                          \
    }
#define STRATA_C_REQUEST_CALL(function, call)                           \
    strata_status function(strata_cache* cache, strata_request_id id) { \
        return guarded(#function, [&] {                                 \
            STRATA_C_NOT_NULL(#function, cache);                        \
            return fromStatus(cache->cache->call(id));                  \
        });                                                             \
    }
STRATA_C_CACHE_CALL(strata_cache_launch_loads, launchLoads)
STRATA_C_CACHE_CALL(strata_cache_step, step)
STRATA_C_CACHE_CALL(strata_cache_drain, drain)
STRATA_C_REQUEST_CALL(strata_cache_insert, insert)

strata_status strata_cache_insert_after(strata_cache* cache, strata_request_id id,
                                        void* cuda_stream) {
    return guarded("strata_cache_insert_after", [&] {
        STRATA_C_NOT_NULL("strata_cache_insert_after", cache);
        return fromStatus(cache->cache->insertAfter(id, cuda_stream));
    });
}
STRATA_C_REQUEST_CALL(strata_cache_release, release)
STRATA_C_REQUEST_CALL(strata_cache_abort, abort)
#undef STRATA_C_CACHE_CALL
#undef STRATA_C_REQUEST_CALL

strata_status strata_cache_wait_layer(strata_cache* cache, strata_request_id id, uint32_t layer,
                                      void* cuda_stream) {
    return guarded("strata_cache_wait_layer", [&] {
        STRATA_C_NOT_NULL("strata_cache_wait_layer", cache);
        return fromStatus(cache->cache->waitLayer(id, layer, cuda_stream));
    });
}

strata_status strata_cache_stats_get(const strata_cache* cache, strata_cache_stats* stats) {
    return guarded("strata_cache_stats_get", [&] {
        STRATA_C_NOT_NULL("strata_cache_stats_get", cache);
        STRATA_C_NOT_NULL("strata_cache_stats_get", stats);
        const CacheStats s = cache->cache->stats();
        *stats = {
            s.rounds,     s.prompt_tokens,        s.cached_tokens,      s.backup_pages,
            s.load_pages, s.device_evicted_pages, s.host_evicted_pages, s.remote_pages_pulled};
        return STRATA_OK;
    });
}

}  // extern "C"

/* The C API (strata/strata.h) from C, as an engine uses it, under mpiexec at any rank count (every
 * rank one TP shard of one replica): engine-owned pools in malloc'd memory (engine.h), the full
 * scheduler loop, a prefix that comes back from the host tier after the device pool was overrun,
 * an HDF5 hit in a second cache over the same storage directory, every reused byte checked; a job
 * destroyed while its cache lives; the errors (a bad declaration naming the pool and the field, a
 * page array too small, NULL arguments) and the version.
 * Usage: c_api_test <ranks> (the world size it is launched with). */
#define _XOPEN_SOURCE 700

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "strata/strata.h"

static strata_cache_config config_of(engine* e, const char* storage_dir) {
    strata_cache_config c;
    strata_cache_config_init(&c);
    c.model = "c-engine-test-model";
    c.pools = e->decls;
    c.num_pools = ENGINE_POOLS;
    c.page_size = ENGINE_PAGE;
    c.device_tokens = ENGINE_DEVICE_TOKENS;
    c.host_tokens = 64 * ENGINE_PAGE;
    c.storage_dir = storage_dir;
    c.check_consistency = 1;
    return c;
}

static int remove_entry(const char* path, const struct stat* st, int flag, struct FTW* ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Removes the storage directory and everything in it. */
static void remove_dir(const char* path) { nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* The errors that need no job, and the version. */
static void test_version_and_null_arguments(void) {
    strata_job* job = (strata_job*)1;
    strata_cache* cache = (strata_cache*)1;
    strata_cache_config config;
    strata_job_options options;
    strata_cache_stats stats;
    size_t cached = 0;

    CHECK(strcmp(strata_version(), STRATA_VERSION) == 0, "strata_version() %s, headers %s",
          strata_version(), STRATA_VERSION);
    CHECK(strcmp(strata_status_name(STRATA_INVALID_ARGUMENT), "invalid_argument") == 0, "%s",
          strata_status_name(STRATA_INVALID_ARGUMENT));

    CHECK(strata_job_create(NULL, &job) == STRATA_INVALID_ARGUMENT, "NULL options");
    CHECK(job == NULL, "the job is set to NULL on failure");
    CHECK(engine_contains(strata_last_error(), "options"), "%s", strata_last_error());
    strata_job_options_init(&options);
    CHECK(strata_job_create(&options, NULL) == STRATA_INVALID_ARGUMENT, "NULL job out");
    CHECK(engine_contains(strata_last_error(), "job"), "%s", strata_last_error());
    strata_cache_config_init(&config);
    CHECK(strata_cache_create(NULL, &config, &cache) == STRATA_INVALID_ARGUMENT, "NULL job");
    CHECK(cache == NULL, "the cache is set to NULL on failure");
    CHECK(engine_contains(strata_last_error(), "strata_cache_create: job is NULL"), "%s",
          strata_last_error());
    CHECK(strata_cache_step(NULL) == STRATA_INVALID_ARGUMENT, "NULL cache");
    CHECK(engine_contains(strata_last_error(), "strata_cache_step: cache is NULL"), "%s",
          strata_last_error());
    CHECK(strata_cache_match(NULL, NULL, 0, &cached) == STRATA_INVALID_ARGUMENT, "NULL cache");
    CHECK(strata_cache_stats_get(NULL, &stats) == STRATA_INVALID_ARGUMENT, "NULL cache");
    CHECK(strata_cache_prefetch_settled(NULL, 1) == 0, "NULL cache");
    CHECK(engine_contains(strata_last_error(), "strata_cache_prefetch_settled: cache is NULL"),
          "%s", strata_last_error());
    CHECK(strata_cache_num_pools(NULL) == 0, "no pools of no cache");
    CHECK(engine_contains(strata_last_error(), "cache"), "%s", strata_last_error());
    strata_job_destroy(NULL);
    strata_cache_destroy(NULL);
}

/* A bad declaration names the pool and the field; nothing is created. */
static void test_bad_declarations(strata_job* job, engine* e) {
    strata_cache* cache = NULL;
    strata_cache_config c = config_of(e, NULL);
    strata_pool_decl bad[ENGINE_POOLS];
    int i;
    const struct {
        const char* pool;
        const char* field;
    } want[4] = {{"pool 'kv'", "type"},
                 {"pool 'idx'", "tp"},
                 {"pool 'idx'", "row_bytes"},
                 {"pool 'kv'", "rows"}};
    c.pools = bad;
    for (i = 0; i < 4; ++i) {
        int raw = 7;
        memcpy(bad, e->decls, sizeof bad);
        switch (i) {
            case 0: /* an int that is no strata_pool_type, as a C caller may store */
                memcpy(&bad[0].type, &raw, sizeof raw);
                break;
            case 1:
                memcpy(&bad[1].tp, &raw, sizeof raw);
                break;
            case 2:
                bad[1].row_bytes = 0;
                break;
            default:
                bad[0].rows = ENGINE_DEVICE_TOKENS / 2;
                break;
        }
        CHECK(strata_cache_create(job, &c, &cache) == STRATA_INVALID_ARGUMENT, "case %d", i);
        CHECK(cache == NULL, "case %d", i);
        CHECK(engine_contains(strata_last_error(), want[i].pool) &&
                  engine_contains(strata_last_error(), want[i].field),
              "case %d: '%s' should name %s and %s", i, strata_last_error(), want[i].pool,
              want[i].field);
    }
}

int main(int argc, char** argv) {
    const int ranks = argc > 1 ? atoi(argv[1]) : 0;
    strata_job_options options;
    strata_job* job = NULL;
    strata_rank_place place;
    strata_cache* cache = NULL;
    strata_pool_info info;
    strata_cache_stats stats;
    strata_cache_config config;
    strata_admission_pool small[ENGINE_POOLS];
    strata_admission admission;
    uint32_t pages[ENGINE_POOLS][ENGINE_MAX_PAGES];
    engine e;
    engine_result r;
    int32_t first[FIRST_TOKENS], other[OTHER_TOKENS], back[BACK_TOKENS];
    char storage[64];
    size_t cached = 0, p;
    int rounds;

    if (ranks < 1) {
        fprintf(stderr, "usage: c_api_test <ranks>\n");
        return 2;
    }
    test_version_and_null_arguments();

    strata_job_options_init(&options);
    options.tp = ranks; /* every rank one TP shard of the one replica */
    options.log_level = "warn";
    CHECK_OK(strata_job_create(&options, &job));
    if (job == NULL) return 1;
    CHECK_OK(strata_job_place(job, &place));
    CHECK(place.world_size == ranks && place.tp_size == ranks && place.dp_size == 1,
          "world %d, tp %d, dp %d", place.world_size, place.tp_size, place.dp_size);
    CHECK(place.tp_rank == place.world_rank && place.device == -1, "tp rank %d, device %d",
          place.tp_rank, place.device);
    if (engine_init(&e, place.tp_rank) != 0) return 1;
    /* One storage directory for the ranks of this run (mpiexec's ranks on one host share their
     * parent): a TP-replicated pool's pages are written once, by one rank, for all. */
    snprintf(storage, sizeof storage, "/tmp/strata-c-api-%ld", (long)getppid());
    mkdir(storage, 0700);

    test_bad_declarations(job, &e);

    config = config_of(&e, storage);
    CHECK_OK(strata_cache_create(job, &config, &cache));
    if (cache == NULL) return 1;
    CHECK(strata_cache_page_size(cache) == ENGINE_PAGE && strata_cache_num_pools(cache) == 2,
          "page %u, pools %zu", strata_cache_page_size(cache), strata_cache_num_pools(cache));
    /* The cache reports the engine's own addresses. */
    CHECK_OK(strata_cache_pool_info(cache, 0, &info));
    CHECK(strcmp(info.name, "kv") == 0 && info.layers == 3 && info.buffers == 2 &&
              info.row_bytes == 96 && info.device_rows == ENGINE_DEVICE_TOKENS,
          "kv: %s %u layers %u buffers %zu bytes %zu rows", info.name, info.layers, info.buffers,
          info.row_bytes, info.device_rows);
    for (p = 0; p < 6; ++p) {
        CHECK(info.layer_ptrs[p] == e.kv_ptrs[p], "kv tensor %zu at %p, the engine's at %p", p,
              info.layer_ptrs[p], e.kv_ptrs[p]);
    }
    CHECK_OK(strata_cache_pool_info(cache, 1, &info));
    CHECK(strcmp(info.name, "idx") == 0 && info.layer_ptrs[1] == e.idx_block + e.idx_layer_stride,
          "idx: %s", info.name);
    CHECK(strata_cache_pool_info(cache, 2, &info) == STRATA_INVALID_ARGUMENT, "no pool 2");

    engine_tokens(1, FIRST_TOKENS, NULL, 0, first);
    r = engine_serve(cache, &e, 1, first, FIRST_TOKENS);
    CHECK(r.admission.cached_tokens == 0 && r.admission.prompt_tokens == FIRST_TOKENS,
          "cached %zu of %zu", r.admission.cached_tokens, r.admission.prompt_tokens);
    CHECK_OK(strata_cache_drain(cache)); /* backed up to the host tier (and storage) */
    CHECK_OK(strata_cache_match(cache, first, FIRST_TOKENS, &cached));
    CHECK(cached == FIRST_PAGES * ENGINE_PAGE, "match: %zu", cached);

    /* On the device: the same prompt reuses its full pages in place. */
    r = engine_serve(cache, &e, 2, first, FIRST_TOKENS);
    CHECK(r.admission.device_hit_tokens == FIRST_PAGES * ENGINE_PAGE, "device hit %zu",
          r.admission.device_hit_tokens);

    /* A page array too small: an error naming it, and nothing admitted (the id is still free). */
    memset(small, 0, sizeof small);
    for (p = 0; p < ENGINE_POOLS; ++p) {
        small[p].pages = pages[p];
        small[p].capacity = p == 1 ? FIRST_PAGES : ENGINE_MAX_PAGES; /* one more needed */
    }
    CHECK_OK(strata_cache_step(cache));
    CHECK(strata_cache_admit(cache, 3, first, FIRST_TOKENS, 0, &admission, small) ==
              STRATA_INVALID_ARGUMENT,
          "a capacity of %u pages for %u", FIRST_PAGES, FIRST_PAGES + 1);
    CHECK(engine_contains(strata_last_error(), "pool 'idx'") &&
              engine_contains(strata_last_error(), "capacity 17"),
          "%s", strata_last_error());
    CHECK(strata_cache_admit(cache, 3, first, 10, 0, NULL, NULL) == STRATA_INVALID_ARGUMENT,
          "NULL admission");
    CHECK(engine_contains(strata_last_error(), "admission is NULL"), "%s", strata_last_error());
    CHECK(strata_cache_admit(cache, 3, NULL, 10, 0, &admission, NULL) == STRATA_INVALID_ARGUMENT,
          "NULL tokens");
    CHECK(engine_contains(strata_last_error(), "tokens is NULL"), "%s", strata_last_error());
    /* Admitted without page arrays (pools NULL), then dropped before insert. */
    CHECK_OK(strata_cache_admit(cache, 99, first, FIRST_TOKENS, 0, &admission, NULL));
    CHECK(admission.device_hit_tokens == FIRST_PAGES * ENGINE_PAGE, "device hit %zu",
          admission.device_hit_tokens);
    CHECK_OK(strata_cache_abort(cache, 99));
    CHECK(strata_cache_abort(cache, 99) != STRATA_OK, "aborted twice");
    CHECK(strata_cache_insert_after(cache, 99, NULL) == STRATA_NOT_FOUND,
          "insert_after of a request that is not admitted");
    CHECK(strata_cache_insert_after(NULL, 99, NULL) == STRATA_INVALID_ARGUMENT,
          "insert_after of no cache");

    /* Two unrelated prompts push it off the device; it comes back from the host tier. */
    engine_tokens(2, OTHER_TOKENS, NULL, 0, other);
    engine_serve(cache, &e, 3, other, OTHER_TOKENS);
    CHECK_OK(strata_cache_drain(cache));
    engine_tokens(3, OTHER_TOKENS, NULL, 0, other);
    engine_serve(cache, &e, 4, other, OTHER_TOKENS);
    CHECK_OK(strata_cache_drain(cache));
    engine_tokens(4, BACK_TOKENS, first, FIRST_PAGES * ENGINE_PAGE, back);
    r = engine_serve(cache, &e, 5, back, BACK_TOKENS);
    CHECK(r.admission.host_hit_tokens == FIRST_PAGES * ENGINE_PAGE &&
              r.admission.cached_tokens == FIRST_PAGES * ENGINE_PAGE,
          "host hit %zu, cached %zu", r.admission.host_hit_tokens, r.admission.cached_tokens);
    CHECK_OK(strata_cache_drain(cache));
    CHECK_OK(strata_cache_stats_get(cache, &stats));
    CHECK(stats.rounds >= 6 && stats.load_pages >= FIRST_PAGES && stats.device_evicted_pages > 0 &&
              stats.backup_pages > 0,
          "rounds %llu, loads %llu, evicted %llu, backups %llu", (unsigned long long)stats.rounds,
          (unsigned long long)stats.load_pages, (unsigned long long)stats.device_evicted_pages,
          (unsigned long long)stats.backup_pages);
    /* first three times (requests 1, 2 and the aborted 99), the others once. */
    CHECK(stats.prompt_tokens == 3 * FIRST_TOKENS + 2 * OTHER_TOKENS + BACK_TOKENS &&
              stats.cached_tokens == 3 * FIRST_PAGES * ENGINE_PAGE,
          "prompt %llu, cached %llu", (unsigned long long)stats.prompt_tokens,
          (unsigned long long)stats.cached_tokens);
    CHECK(engine_padding_changed(&e) == 0, "bytes written outside the engine's rows");
    strata_cache_destroy(cache);

    /* A second cache over the same storage directory, on the same engine memory wiped: the
     * prefix is an HDF5 hit, its bytes loaded from the files. The job handle goes first: the
     * cache keeps the job alive. */
    engine_wipe(&e);
    CHECK_OK(strata_cache_create(job, &config, &cache));
    strata_job_destroy(job);
    if (cache == NULL) return 1;
    /* The storage tier is queried by a prefetch, which settles over the next rounds. */
    CHECK_OK(strata_cache_prefetch(cache, 1, back, BACK_TOKENS));
    for (rounds = 0; rounds < 100000 && !strata_cache_prefetch_settled(cache, 1); ++rounds) {
        const struct timespec ms = {0, 1000000};
        CHECK_OK(strata_cache_step(cache));
        nanosleep(&ms, NULL);
    }
    CHECK(strata_cache_prefetch_settled(cache, 1) == 1, "prefetch unsettled after %d rounds",
          rounds);
    r = engine_serve(cache, &e, 1, back, BACK_TOKENS);
    CHECK(r.admission.storage_hit_tokens == FIRST_PAGES * ENGINE_PAGE &&
              r.admission.cached_tokens == FIRST_PAGES * ENGINE_PAGE,
          "storage hit %zu, cached %zu", r.admission.storage_hit_tokens, r.admission.cached_tokens);
    CHECK_OK(strata_cache_drain(cache));
    CHECK(engine_padding_changed(&e) == 0, "bytes written outside the engine's rows");
    /* A round every rank enters after its last read: then the files can go. */
    CHECK_OK(strata_cache_step(cache));
    if (place.world_rank == 0) remove_dir(storage);
    strata_cache_destroy(cache); /* the job (and MPI) go here */

    engine_free(&e);
    if (engine_failures != 0) {
        fprintf(stderr, "c_api_test: %d check(s) failed\n", engine_failures);
        return 1;
    }
    printf("c_api_test: rank %d of %d passed\n", place.world_rank, place.world_size);
    return 0;
}

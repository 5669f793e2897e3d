/* The C API's callback mode: two worker processes that are not an MPI job (forked here, as an
 * engine's launcher starts its workers), TP2, each its own job whose decision group is the
 * engine's all-reduce: agree_min over shared memory (a process-shared mutex and condition
 * variable). Both take identical decisions (every admission and every page of every pool), the
 * prefixes hit as expected (device, then host after the device pool was overrun), every reused
 * byte is checked; and the options that need MPI are refused with a clear error. */
#define _DEFAULT_SOURCE

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "strata/strata.h"

#define RANKS 2
#define REQUESTS 5
#define MAX_VALUES 4096

/* The engine's all-reduce, in memory the two processes share. */
typedef struct shared_group {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    int arrived;
    unsigned long generation;
    size_t count;
    int lengths_differ;
    int64_t acc[MAX_VALUES];
    int64_t result[MAX_VALUES];
    unsigned long calls[RANKS];
    engine_result results[RANKS][REQUESTS];
    strata_rank_place places[RANKS];
    int failures[RANKS];
} shared_group;

typedef struct worker {
    shared_group* group;
    int rank;
} worker;

/* Element-wise MIN over both processes; 0 on success, -1 when the other rank never came (60 s)
 * or the lengths differ. */
static int agree_min(int64_t* values, size_t count, void* user) {
    worker* w = user;
    shared_group* g = w->group;
    unsigned long generation;
    size_t i;
    int rc = 0;
    struct timespec deadline;
    if (count > MAX_VALUES) return -1;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 60;
    pthread_mutex_lock(&g->mutex);
    ++g->calls[w->rank];
    if (g->arrived == 0) {
        g->count = count;
        g->lengths_differ = 0;
        memcpy(g->acc, values, count * sizeof values[0]);
    } else if (count != g->count) {
        g->lengths_differ = 1;
    } else {
        for (i = 0; i < count; ++i) {
            if (values[i] < g->acc[i]) g->acc[i] = values[i];
        }
    }
    generation = g->generation;
    if (++g->arrived == RANKS) {
        memcpy(g->result, g->acc, g->count * sizeof values[0]);
        g->arrived = 0;
        ++g->generation;
        pthread_cond_broadcast(&g->cond);
    } else {
        while (g->generation == generation && rc == 0) {
            rc = pthread_cond_timedwait(&g->cond, &g->mutex, &deadline);
        }
        if (g->generation != generation) rc = 0;
    }
    if (rc == 0 && !g->lengths_differ) memcpy(values, g->result, count * sizeof values[0]);
    pthread_mutex_unlock(&g->mutex);
    return rc == 0 && !g->lengths_differ ? 0 : -1;
}

static strata_job_options options_of(worker* w) {
    strata_job_options o;
    strata_job_options_init(&o);
    o.tp = RANKS;
    o.log_level = "warn";
    o.agree_min = agree_min;
    o.agree_min_user = w;
    o.rank = w->rank;
    o.world_size = RANKS;
    o.local_rank = w->rank;
    return o;
}

/* One worker: the loop of c_api_test's host-tier case, its results in shared memory. */
static int run_worker(shared_group* g, int rank) {
    worker w = {g, rank};
    strata_job_options o = options_of(&w);
    strata_job* job = NULL;
    strata_cache* cache = NULL;
    strata_cache_config c;
    engine e;
    int32_t first[FIRST_TOKENS], other[OTHER_TOKENS], back[BACK_TOKENS];

    CHECK_OK(strata_job_create(&o, &job));
    if (job == NULL || engine_init(&e, rank) != 0) return 1;
    CHECK_OK(strata_job_place(job, &g->places[rank]));
    strata_cache_config_init(&c);
    c.model = "c-engine-test-model";
    c.pools = e.decls;
    c.num_pools = ENGINE_POOLS;
    c.page_size = ENGINE_PAGE;
    c.device_tokens = ENGINE_DEVICE_TOKENS;
    c.host_tokens = 64 * ENGINE_PAGE;
    c.check_consistency = 1; /* every round compares both ranks' trees (gatherDigests) */
    CHECK_OK(strata_cache_create(job, &c, &cache));
    if (cache == NULL) return 1;

    engine_tokens(1, FIRST_TOKENS, NULL, 0, first);
    g->results[rank][0] = engine_serve(cache, &e, 1, first, FIRST_TOKENS);
    CHECK_OK(strata_cache_drain(cache));
    g->results[rank][1] = engine_serve(cache, &e, 2, first, FIRST_TOKENS);
    engine_tokens(2, OTHER_TOKENS, NULL, 0, other);
    g->results[rank][2] = engine_serve(cache, &e, 3, other, OTHER_TOKENS);
    CHECK_OK(strata_cache_drain(cache));
    engine_tokens(3, OTHER_TOKENS, NULL, 0, other);
    g->results[rank][3] = engine_serve(cache, &e, 4, other, OTHER_TOKENS);
    CHECK_OK(strata_cache_drain(cache));
    engine_tokens(4, BACK_TOKENS, first, FIRST_PAGES * ENGINE_PAGE, back);
    g->results[rank][4] = engine_serve(cache, &e, 5, back, BACK_TOKENS);
    CHECK_OK(strata_cache_drain(cache));
    CHECK(engine_padding_changed(&e) == 0, "bytes written outside the engine's rows");
    strata_cache_destroy(cache);
    strata_job_destroy(job);
    engine_free(&e);
    return engine_failures != 0;
}

/* Options that need MPI, or a place outside the world, are refused naming what is wrong. */
static void test_refused_options(void) {
    worker w = {NULL, 0};
    strata_job_options o = options_of(&w);
    strata_job* job = NULL;
    o.pp = 2;
    CHECK(strata_job_create(&o, &job) == STRATA_NOT_SUPPORTED && job == NULL, "pp 2");
    CHECK(engine_contains(strata_last_error(), "pp 2"), "%s", strata_last_error());
    o = options_of(&w);
    o.remote = "on";
    CHECK(strata_job_create(&o, &job) == STRATA_NOT_SUPPORTED, "remote on");
    CHECK(engine_contains(strata_last_error(), "remote 'on'"), "%s", strata_last_error());
    o = options_of(&w);
    o.rank = 2;
    CHECK(strata_job_create(&o, &job) == STRATA_INVALID_ARGUMENT, "rank 2 of 2");
    CHECK(engine_contains(strata_last_error(), "rank 2"), "%s", strata_last_error());
    o = options_of(&w);
    o.world_size = 3; /* tp 2 does not divide 3 ranks */
    CHECK(strata_job_create(&o, &job) == STRATA_INVALID_ARGUMENT, "world 3 of tp 2");
    CHECK(job == NULL, "no job");
}

int main(void) {
    shared_group* g;
    pthread_mutexattr_t ma;
    pthread_condattr_t ca;
    pid_t pids[RANKS];
    int rank, status, req;
    size_t p;
    const size_t device_hits[REQUESTS] = {0, FIRST_PAGES * ENGINE_PAGE, 0, 0, 0};
    const size_t host_hits[REQUESTS] = {0, 0, 0, 0, FIRST_PAGES * ENGINE_PAGE};

    g = mmap(NULL, sizeof *g, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (g == MAP_FAILED) return 1;
    memset(g, 0, sizeof *g);
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(&g->mutex, &ma);
    pthread_condattr_init(&ca);
    pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
    pthread_cond_init(&g->cond, &ca);

    /* Forked before this process made any job: each worker starts as a fresh process would. */
    fflush(NULL);
    for (rank = 0; rank < RANKS; ++rank) {
        pids[rank] = fork();
        if (pids[rank] < 0) return 1;
        if (pids[rank] == 0) _exit(run_worker(g, rank));
    }
    for (rank = 0; rank < RANKS; ++rank) {
        while (waitpid(pids[rank], &status, 0) < 0 && errno == EINTR) {
        }
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "worker %d failed (status %d)", rank,
              status);
    }

    for (rank = 0; rank < RANKS; ++rank) {
        const strata_rank_place* pl = &g->places[rank];
        CHECK(pl->world_rank == rank && pl->world_size == RANKS && pl->tp_rank == rank &&
                  pl->tp_size == RANKS && pl->dp_size == 1 && pl->local_rank == rank &&
                  pl->device == -1,
              "rank %d: world %d/%d tp %d/%d dp %d local %d device %d", rank, pl->world_rank,
              pl->world_size, pl->tp_rank, pl->tp_size, pl->dp_size, pl->local_rank, pl->device);
    }
    CHECK(g->calls[0] == g->calls[1] && g->calls[0] >= REQUESTS, "agree_min calls %lu and %lu",
          g->calls[0], g->calls[1]);
    for (req = 0; req < REQUESTS; ++req) {
        const engine_result* a = &g->results[0][req];
        const engine_result* b = &g->results[1][req];
        CHECK(a->status == STRATA_OK && b->status == STRATA_OK, "request %d", req + 1);
        CHECK(memcmp(&a->admission, &b->admission, sizeof a->admission) == 0,
              "request %d: the ranks' admissions differ (cached %zu and %zu)", req + 1,
              a->admission.cached_tokens, b->admission.cached_tokens);
        for (p = 0; p < ENGINE_POOLS; ++p) {
            CHECK(a->num_pages[p] == b->num_pages[p] &&
                      memcmp(a->pages[p], b->pages[p], a->num_pages[p] * sizeof(uint32_t)) == 0,
                  "request %d: the ranks' pages of pool %zu differ", req + 1, p);
        }
        CHECK(a->admission.device_hit_tokens == device_hits[req] &&
                  a->admission.host_hit_tokens == host_hits[req],
              "request %d: device hit %zu (want %zu), host hit %zu (want %zu)", req + 1,
              a->admission.device_hit_tokens, device_hits[req], a->admission.host_hit_tokens,
              host_hits[req]);
    }
    munmap(g, sizeof *g);
    test_refused_options();
    if (engine_failures != 0) {
        fprintf(stderr, "c_callback_test: %d check(s) failed\n", engine_failures);
        return 1;
    }
    printf("c_callback_test: passed\n");
    return 0;
}

/* An engine in C built against the installed libstrata through its C API (strata/strata.h): a job
 * on one rank, a cache over a KV pool the engine owns (K and V of 80-byte rows on two layers, a
 * gap between its layers), one prompt computed and inserted, then a second prompt that shares its
 * first three pages: the second must reuse exactly those pages, in the slots where the engine
 * wrote them, with their bytes intact. Exit 0 on success; a message and exit 1 otherwise. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strata/strata.h"

#define PAGE 16u
#define ROWS (64u * PAGE)
#define ROW_BYTES 80u
#define LAYER_STRIDE (ROWS * ROW_BYTES + 256u)
#define BUFFER_STRIDE (2u * LAYER_STRIDE)

static int fail(const char* what, strata_status status) {
    fprintf(stderr, "consumer_c: %s: %s: %s\n", what, strata_status_name(status),
            strata_last_error());
    return 1;
}

static unsigned char byte_of(int32_t token, size_t pos, size_t buffer, size_t layer, size_t j) {
    return (unsigned char)(((size_t)token * 131u + pos * 31u + buffer * 7u + layer * 3u + j) &
                           0xffu);
}

static size_t row_offset(uint32_t page, size_t pos, size_t buffer, size_t layer) {
    return buffer * BUFFER_STRIDE + layer * LAYER_STRIDE +
           ((size_t)page * PAGE + pos % PAGE) * ROW_BYTES;
}

int main(void) {
    static unsigned char memory[2 * BUFFER_STRIDE];
    static const uint32_t layers[2] = {0, 1};
    int32_t first[5 * PAGE], second[4 * PAGE];
    uint32_t pages[8];
    strata_job_options options;
    strata_job* job = NULL;
    strata_pool_decl kv;
    strata_cache_config config;
    strata_cache* cache = NULL;
    strata_admission a;
    strata_admission_pool pool;
    strata_cache_stats stats;
    strata_status s;
    size_t pos, b, l, j;

    if (strcmp(strata_version(), STRATA_VERSION) != 0) {
        fprintf(stderr, "consumer_c: strata_version() %s, headers %s\n", strata_version(),
                STRATA_VERSION);
        return 1;
    }
    strata_job_options_init(&options);
    if ((s = strata_job_create(&options, &job)) != STRATA_OK) return fail("job", s);

    strata_pool_decl_init(&kv);
    kv.name = "kv";
    kv.layers = layers;
    kv.num_layers = 2;
    kv.buffers = 2;
    kv.row_bytes = ROW_BYTES;
    kv.base = memory;
    kv.rows = ROWS;
    kv.layer_stride = LAYER_STRIDE;
    kv.buffer_stride = BUFFER_STRIDE;
    strata_cache_config_init(&config);
    config.model = "consumer-model";
    config.pools = &kv;
    config.num_pools = 1;
    config.page_size = PAGE;
    config.device_tokens = ROWS;
    config.host_tokens = 2 * ROWS;
    if ((s = strata_cache_create(job, &config, &cache)) != STRATA_OK) return fail("cache", s);
    strata_job_destroy(job); /* the cache keeps it */

    for (pos = 0; pos < 5 * PAGE; ++pos) first[pos] = (int32_t)(pos * 7 + 1);
    for (pos = 0; pos < 4 * PAGE; ++pos) {
        second[pos] = pos < 3 * PAGE ? first[pos] : (int32_t)(90000 + pos);
    }

    /* The first prompt: nothing cached; the engine computes and writes every row. */
    memset(&pool, 0, sizeof pool);
    pool.pages = pages;
    pool.capacity = 8;
    if ((s = strata_cache_admit(cache, 1, first, 5 * PAGE, 0, &a, &pool)) != STRATA_OK) {
        return fail("admit", s);
    }
    if (a.cached_tokens != 0 || pool.num_pages != 5) {
        fprintf(stderr, "consumer_c: a cold cache reused %zu tokens\n", a.cached_tokens);
        return 1;
    }
    for (pos = 0; pos < 5 * PAGE; ++pos)
        for (b = 0; b < 2; ++b)
            for (l = 0; l < 2; ++l)
                for (j = 0; j < ROW_BYTES; ++j)
                    memory[row_offset(pages[pos / PAGE], pos, b, l) + j] =
                        byte_of(first[pos], pos, b, l, j);
    if ((s = strata_cache_insert(cache, 1)) != STRATA_OK) return fail("insert", s);
    if ((s = strata_cache_release(cache, 1)) != STRATA_OK) return fail("release", s);
    if ((s = strata_cache_step(cache)) != STRATA_OK) return fail("step", s);

    /* The second prompt shares three pages: they are reused, in place, byte for byte. */
    if ((s = strata_cache_admit(cache, 2, second, 4 * PAGE, 0, &a, &pool)) != STRATA_OK) {
        return fail("admit", s);
    }
    if (a.cached_tokens != 3 * PAGE) {
        fprintf(stderr, "consumer_c: reused %zu tokens, not %u\n", a.cached_tokens, 3 * PAGE);
        return 1;
    }
    if ((s = strata_cache_launch_loads(cache)) != STRATA_OK) return fail("launch_loads", s);
    for (l = 0; l < 2; ++l) {
        if ((s = strata_cache_wait_layer(cache, 2, (uint32_t)l, NULL)) != STRATA_OK) {
            return fail("wait_layer", s);
        }
    }
    for (pos = 0; pos < 3 * PAGE; ++pos)
        for (b = 0; b < 2; ++b)
            for (l = 0; l < 2; ++l)
                for (j = 0; j < ROW_BYTES; ++j)
                    if (memory[row_offset(pages[pos / PAGE], pos, b, l) + j] !=
                        byte_of(second[pos], pos, b, l, j)) {
                        fprintf(stderr, "consumer_c: byte %zu of position %zu differs\n", j, pos);
                        return 1;
                    }
    if ((s = strata_cache_abort(cache, 2)) != STRATA_OK) return fail("abort", s);
    if ((s = strata_cache_drain(cache)) != STRATA_OK) return fail("drain", s);
    if ((s = strata_cache_stats_get(cache, &stats)) != STRATA_OK) return fail("stats", s);
    printf("consumer_c: strata %s, reused %zu of %u tokens, %llu rounds\n", strata_version(),
           a.cached_tokens, 4 * PAGE, (unsigned long long)stats.rounds);
    strata_cache_destroy(cache);
    return 0;
}

/* The C tests' model engine (engine.h). */
#include "engine.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KV_ROW 96u
#define IDX_ROW 40u
#define KV_GAP 64u  /* padding before every kv tensor */
#define IDX_GAP 32u /* padding after every idx layer */
#define KV_TENSOR (ENGINE_DEVICE_TOKENS * KV_ROW)

/* Where the kv tensor [buffer * 3 + layer] sits in the block: position k holds tensor kv_order[k].
 */
static const int kv_order[6] = {4, 1, 5, 0, 3, 2};

int engine_failures = 0;

void engine_check(int ok, const char* cond, const char* file, int line, const char* fmt, ...) {
    va_list args;
    if (ok) return;
    ++engine_failures;
    fprintf(stderr, "%s:%d: CHECK(%s) failed: ", file, line, cond);
    va_start(args, fmt);
    vfprintf(stderr, fmt, args);
    va_end(args);
    fputc('\n', stderr);
}

void engine_check_ok(strata_status status, const char* call, const char* file, int line) {
    engine_check(status == STRATA_OK, call, file, line, "%s: %s", strata_status_name(status),
                 status == STRATA_OK ? "" : strata_last_error());
}

int engine_contains(const char* text, const char* part) {
    return text != NULL && strstr(text, part) != NULL;
}

static uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

void engine_tokens(uint64_t seed, size_t n, const int32_t* from, size_t prefix, int32_t* tokens) {
    size_t i;
    for (i = 0; i < n; ++i) {
        if (i < prefix) {
            tokens[i] = from[i];
        } else {
            seed = mix(seed);
            tokens[i] = (int32_t)(seed % 50000u);
        }
    }
}

/* What byte j of row (pool, buffer, model layer) of the token at pos holds. */
static unsigned char pattern(size_t pool, uint32_t buffer, uint32_t layer, uint64_t digest,
                             size_t pos, int shard, size_t j) {
    const uint64_t h = mix(digest ^ ((uint64_t)pool << 56) ^ ((uint64_t)buffer << 48) ^
                           ((uint64_t)layer << 40) ^ ((uint64_t)pos << 8) ^ (uint64_t)shard);
    return (unsigned char)(mix(h + j) & 0xffu);
}

int engine_init(engine* e, int tp_rank) {
    int k;
    memset(e, 0, sizeof *e);
    e->tp_rank = tp_rank;
    e->kv_block_bytes = 6u * (KV_GAP + KV_TENSOR);
    e->kv_block = malloc(e->kv_block_bytes);
    e->idx_layer_stride = ENGINE_DEVICE_TOKENS * IDX_ROW + IDX_GAP;
    e->idx_block_bytes = 2u * e->idx_layer_stride;
    e->idx_block = malloc(e->idx_block_bytes);
    if (e->kv_block == NULL || e->idx_block == NULL) return -1;
    engine_wipe(e);
    for (k = 0; k < 6; ++k) {
        e->kv_ptrs[kv_order[k]] = e->kv_block + (size_t)k * (KV_GAP + KV_TENSOR) + KV_GAP;
    }
    e->kv_layers[0] = 0;
    e->kv_layers[1] = 1;
    e->kv_layers[2] = 2;
    e->idx_layers[0] = 1;
    e->idx_layers[1] = 2;

    strata_pool_decl_init(&e->decls[0]);
    e->decls[0].name = "kv";
    e->decls[0].type = STRATA_POOL_KV;
    e->decls[0].layers = e->kv_layers;
    e->decls[0].num_layers = 3;
    e->decls[0].buffers = 2;
    e->decls[0].row_bytes = KV_ROW;
    e->decls[0].dtype = "fp16";
    e->decls[0].layer_ptrs = e->kv_ptrs;
    e->decls[0].rows = ENGINE_DEVICE_TOKENS;

    strata_pool_decl_init(&e->decls[1]);
    e->decls[1].name = "idx";
    e->decls[1].type = STRATA_POOL_SIDECAR;
    e->decls[1].indices_of = "kv";
    e->decls[1].layers = e->idx_layers;
    e->decls[1].num_layers = 2;
    e->decls[1].row_bytes = IDX_ROW;
    e->decls[1].tp = STRATA_TP_REPLICATED;
    e->decls[1].base = e->idx_block;
    e->decls[1].rows = ENGINE_DEVICE_TOKENS;
    e->decls[1].layer_stride = e->idx_layer_stride;
    return 0;
}

void engine_free(engine* e) {
    free(e->kv_block);
    free(e->idx_block);
    e->kv_block = NULL;
    e->idx_block = NULL;
}

void engine_wipe(engine* e) {
    memset(e->kv_block, ENGINE_PAD, e->kv_block_bytes);
    memset(e->idx_block, ENGINE_PAD, e->idx_block_bytes);
}

size_t engine_padding_changed(const engine* e) {
    size_t changed = 0, i;
    int k, l;
    for (k = 0; k < 6; ++k) {
        const unsigned char* gap = e->kv_block + (size_t)k * (KV_GAP + KV_TENSOR);
        for (i = 0; i < KV_GAP; ++i) changed += gap[i] != ENGINE_PAD;
    }
    for (l = 0; l < 2; ++l) {
        const unsigned char* gap =
            e->idx_block + (size_t)l * e->idx_layer_stride + ENGINE_DEVICE_TOKENS * IDX_ROW;
        for (i = 0; i < IDX_GAP; ++i) changed += gap[i] != ENGINE_PAD;
    }
    return changed;
}

/* The engine's address of a row, from its own layout (not from strata_pool_info). */
static unsigned char* row_of(engine* e, size_t pool, uint32_t buffer, size_t layer_index,
                             size_t slot) {
    if (pool == 0) return (unsigned char*)e->kv_ptrs[buffer * 3 + layer_index] + slot * KV_ROW;
    return e->idx_block + layer_index * e->idx_layer_stride + slot * IDX_ROW;
}

/* Writes (write != 0) or checks the rows of positions [from, to); returns the bytes that differ. */
static size_t visit(engine* e, const int32_t* tokens, const engine_result* r, size_t from,
                    size_t to, int write) {
    size_t bad = 0, p, pos, li, j;
    uint64_t digest = 0;
    for (pos = 0; pos < to; ++pos) {
        digest = mix(digest ^ (uint32_t)tokens[pos]);
        if (pos < from) continue;
        for (p = 0; p < ENGINE_POOLS; ++p) {
            const strata_pool_decl* d = &e->decls[p];
            const int shard = d->tp == STRATA_TP_PER_RANK ? e->tp_rank : 0;
            const size_t slot =
                (size_t)r->pages[p][pos / ENGINE_PAGE] * ENGINE_PAGE + pos % ENGINE_PAGE;
            uint32_t b;
            for (b = 0; b < d->buffers; ++b) {
                for (li = 0; li < d->num_layers; ++li) {
                    unsigned char* bytes = row_of(e, p, b, li, slot);
                    for (j = 0; j < d->row_bytes; ++j) {
                        const unsigned char want =
                            pattern(p, b, d->layers[li], digest, pos, shard, j);
                        if (write) {
                            bytes[j] = want;
                        } else if (bytes[j] != want) {
                            ++bad;
                        }
                    }
                }
            }
        }
    }
    return bad;
}

engine_result engine_serve(strata_cache* cache, engine* e, strata_request_id id,
                           const int32_t* tokens, size_t n) {
    engine_result r;
    strata_admission_pool pools[ENGINE_POOLS];
    size_t p;
    uint32_t layer;
    memset(&r, 0, sizeof r);
    memset(pools, 0, sizeof pools);
    for (p = 0; p < ENGINE_POOLS; ++p) {
        pools[p].pages = r.pages[p];
        pools[p].capacity = ENGINE_MAX_PAGES;
    }
    CHECK_OK(strata_cache_step(cache));
    r.status = strata_cache_admit(cache, id, tokens, n, 0, &r.admission, pools);
    CHECK(r.status == STRATA_OK, "request %llu: admit: %s", (unsigned long long)id,
          strata_last_error());
    if (r.status != STRATA_OK) return r;
    for (p = 0; p < ENGINE_POOLS; ++p) {
        r.num_pages[p] = pools[p].num_pages;
        CHECK(pools[p].num_pages == (n + ENGINE_PAGE - 1) / ENGINE_PAGE,
              "request %llu: pool %zu got %zu pages for %zu tokens", (unsigned long long)id, p,
              pools[p].num_pages, n);
    }
    CHECK_OK(strata_cache_launch_loads(cache));
    for (layer = 0; layer < 3; ++layer) CHECK_OK(strata_cache_wait_layer(cache, id, layer, NULL));
    r.bad_bytes = visit(e, tokens, &r, 0, r.admission.cached_tokens, 0);
    CHECK(r.bad_bytes == 0, "request %llu: %zu reused bytes differ from what the engine wrote",
          (unsigned long long)id, r.bad_bytes);
    visit(e, tokens, &r, r.admission.cached_tokens, n, 1);
    /* Odd requests insert after the engine's stream (none on the CPU back end: NULL, the legacy
     * default stream, which the CPU back end has nothing queued on). */
    CHECK_OK(id % 2 ? strata_cache_insert_after(cache, id, NULL) : strata_cache_insert(cache, id));
    CHECK_OK(strata_cache_release(cache, id));
    return r;
}

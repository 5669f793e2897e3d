/* A model engine in C for the tests of the C API (strata/strata.h): pools it declares and owns in
 * malloc'd memory, of a shape no preset has, and the KV bytes a real model would write (each row
 * depends on the whole prefix up to its token, and on the TP rank for per-rank pools).
 *   kv:  K and V rows of 96 bytes on model layers 0, 1, 2, one tensor per (buffer, layer) given
 *        by layer_ptrs, laid out in one block in an order that is not (buffer, layer) order,
 *        with padding before every tensor.
 *   idx: a sidecar of kv's slots, 40-byte rows on layers 1 and 2, base + strides with gaps
 *        between its layers; replicated over TP.
 * Every byte outside the rows holds ENGINE_PAD, and the tests check it still does.
 * Test-only. Thread-safety: one engine per thread. */
#ifndef STRATA_TESTS_ENGINE_C_ENGINE_H
#define STRATA_TESTS_ENGINE_C_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "strata/strata.h"

#define ENGINE_PAGE 16u
#define ENGINE_DEVICE_TOKENS (32u * ENGINE_PAGE)
/* The tests' prompts: a first one of FIRST_PAGES full pages (at least 256 tokens: shorter prefixes
 * are not looked up in storage), others of as many pages, which overrun the device pool. */
#define FIRST_PAGES 17u
#define FIRST_TOKENS (FIRST_PAGES * ENGINE_PAGE + 3u)
#define OTHER_TOKENS (FIRST_PAGES * ENGINE_PAGE)
#define BACK_TOKENS ((FIRST_PAGES + 1u) * ENGINE_PAGE)
#define ENGINE_POOLS 2
#define ENGINE_MAX_PAGES 64
#define ENGINE_PAD 0xEE

/* Failed checks so far (every CHECK that failed printed itself to stderr). */
extern int engine_failures;

#define CHECK(cond, ...) engine_check((cond) != 0, #cond, __FILE__, __LINE__, __VA_ARGS__)
/* A call that must return STRATA_OK; prints strata_last_error() otherwise. */
#define CHECK_OK(call) engine_check_ok((call), #call, __FILE__, __LINE__)

void engine_check(int ok, const char* cond, const char* file, int line, const char* fmt, ...);
void engine_check_ok(strata_status status, const char* call, const char* file, int line);
/* Whether `text` contains `part`. */
int engine_contains(const char* text, const char* part);

typedef struct engine {
    int tp_rank;
    unsigned char* kv_block; /* the kv pool's one block */
    void* kv_ptrs[6];        /* [buffer * 3 + layer] */
    size_t kv_block_bytes;
    unsigned char* idx_block;
    size_t idx_block_bytes, idx_layer_stride;
    uint32_t kv_layers[3], idx_layers[2];
    strata_pool_decl decls[ENGINE_POOLS];
} engine;

/* Allocates the pools, every byte ENGINE_PAD; 0 on success. */
int engine_init(engine* e, int tp_rank);
void engine_free(engine* e);
/* Sets every byte of the pools back to ENGINE_PAD (as if the engine reused its memory). */
void engine_wipe(engine* e);
/* Bytes outside every row that no longer hold ENGINE_PAD. */
size_t engine_padding_changed(const engine* e);

/* A prompt: `prefix` tokens copied from `from` (may be NULL when prefix is 0), the rest from the
 * seed. tokens has room for n. */
void engine_tokens(uint64_t seed, size_t n, const int32_t* from, size_t prefix, int32_t* tokens);

/* What one request got: its admission and every pool's pages (for comparing ranks). */
typedef struct engine_result {
    strata_status status;
    strata_admission admission;
    size_t num_pages[ENGINE_POOLS];
    uint32_t pages[ENGINE_POOLS][ENGINE_MAX_PAGES];
    size_t bad_bytes; /* reused bytes that differ from what the engine wrote */
} engine_result;

/* Serves one request as an engine's scheduler loop does: step, admit, launch_loads, wait_layer
 * per layer, check the reused rows, write the computed ones, insert, release. */
engine_result engine_serve(strata_cache* cache, engine* e, strata_request_id id,
                           const int32_t* tokens, size_t n);

#endif /* STRATA_TESTS_ENGINE_C_ENGINE_H */

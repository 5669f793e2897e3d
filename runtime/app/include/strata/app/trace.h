// Public workload traces: the Mooncake FAST'25 JSONL trace and the kv-cache-tester JSON traces
// (formats in ../shared/traces/SOURCES.md), loaded into one form of prefix-block ids, and turned
// into token prompts whose page keys repeat exactly where the trace's prefix blocks repeat.
// Owns nothing beyond the returned values. Thread-safety: functions of their arguments only (the
// loaders read files and nothing else).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "strata/app/workload.h"
#include "strata/core/status.h"

namespace strata::app {

// One request of a trace. block_ids[i] names the i-th prefix block of the prompt: two requests
// hold the same id at position i only if their first i+1 blocks are identical.
struct TraceRequest {
    std::uint64_t id = 0;             // 0, 1, 2, ... in replay order
    double arrival_s = 0;             // mooncake: timestamp ms / 1000; kvtester: file-relative t
    std::uint64_t input_tokens = 0;   // prompt length
    std::uint64_t output_tokens = 0;  // generated tokens
    std::uint32_t block_tokens = 0;   // 512 (mooncake) or 64 (kvtester)
    // ceil(input_tokens / block_tokens) ids, unique across the whole trace; the last block holds
    // input_tokens - block_tokens * (size - 1) tokens.
    std::vector<std::uint64_t> block_ids;
    std::uint32_t session = 0;  // kvtester: index of the file in load order; mooncake: 0
    std::uint32_t agent = 0;    // kvtester: 0 for the conversation, k for its k-th sub-agent
};

// Bounds on what a trace file may declare, checked before anything is allocated from it; a value
// past one is an error naming the file and the field.
inline constexpr std::uint32_t kMaxTraceBlockTokens = 1u << 16;      // kvtester block_size
inline constexpr std::uint64_t kMaxTraceRequestTokens = 1ull << 24;  // input tokens of a request
inline constexpr std::size_t kMaxTraceSubAgentDepth = 256;           // nested sub-agent levels

struct Trace {
    std::string name;  // file stem (or directory name) the trace was loaded from
    std::vector<TraceRequest> requests;
    std::uint32_t block_tokens = 0;  // equal to every request's block_tokens
    // What the loader accepted but warned about (each also logged at warn by the loader):
    // requests whose time is earlier than the one before them in their file (mooncake) or list
    // (kvtester), and where the first such request is ("<path>:<line>" or "<path>: <pointer>");
    std::uint64_t out_of_order = 0;
    std::string first_out_of_order;
    // the entries of a kvtester directory that were not loaded, each "<name>: <why>".
    std::vector<std::string> skipped_files;
};

// Loads a Mooncake JSONL trace: one object per line with `timestamp` (ms), `input_length`,
// `output_length` and `hash_ids` (512-token blocks, ids global to the file, used as they are).
// Requests keep file order; blank lines are skipped. Every row must have
// len(hash_ids) == ceil(input_length / 512). A timestamp earlier than the line before it is
// replayed in file order all the same, and counted in out_of_order with a warning naming the
// first such line.
// Errors: kNotFound for a missing file; kIoError when it cannot be read; kInvalidArgument naming
// "<path>:<line>" and the field for a malformed line or field (invalid JSON: its column and what
// the parser expected), an inconsistent block count, an input_length of 0 or above
// kMaxTraceRequestTokens, or a NUL byte in the line; kInvalidArgument naming the path for a file
// that is empty or holds only whitespace (no request).
Result<Trace> loadMooncakeTrace(const std::string& path);

// Loads a kv-cache-tester trace: one .json file, or every *.json file of a directory in name
// order (the extension in any case: .json, .JSON; every other entry, a subdirectory included, is
// listed in skipped_files with the reason and logged at warn). Each file is one conversation and
// gets session = its index. Its requests are merged with the other files' by arrival time
// (stable: equal times keep file order, then request order). A request whose `t` is earlier than
// the one before it in the same list is therefore moved to its time: counted in out_of_order and
// logged at warn with the first one's JSON pointer.
// Sub-agent markers ("type": "subagent") are replaced by their nested requests; a nested `t` is
// seconds since the sub-agent started (every nested list starts at 0 and ends before the
// marker's duration_ms), so its arrival is marker.t + nested.t. Ids: with "hash_id_scope":
// "local" (or none) an id is keyed by (file, id), so files never collide; with "global" ids are
// shared by all files. The files' hash_ids cover only the full blocks (len == floor(in / bs));
// a request whose input ends inside a block gets one more id for that partial tail, unique to
// the request (a partial block has no hash, so no other request can be known to share it).
// Errors: kNotFound for a missing path or a directory without .json files; kIoError when a file
// cannot be read; kInvalidArgument naming the file for one that is empty, only whitespace, or not
// valid JSON (then the byte offset, line and column of the error and what the parser expected),
// or whose requests (sub-agents included) are none; kInvalidArgument naming the file and the JSON
// pointer of the bad field (for
// example "trace_0003.json: /requests/5/requests/2/hash_ids: ..."), a block count that is neither
// floor nor ceil of in / block_size, files whose block sizes differ, a block_size above
// kMaxTraceBlockTokens, an `in` of 0 or above kMaxTraceRequestTokens, sub-agents nested more than
// kMaxTraceSubAgentDepth levels, or a NUL byte in a file. Sub-agents are expanded without
// recursion: time and memory grow linearly with the file, whatever its nesting.
Result<Trace> loadKvTesterTrace(const std::string& path);

// kInvalidArgument unless page_tokens > 0 and page_tokens divides t.block_tokens (a block must map
// to whole pages); OK otherwise.
Status validatePageSize(const Trace& t, std::uint32_t page_tokens);

// The prompt of r: block i contributes tokens that are a fixed function of (block_ids[i], position
// in the block), in [0, 2^31), so equal ids give equal tokens (and equal page keys) and different
// ids give different tokens in practice. Length: input_tokens, the last block partial. Expects r
// as the loaders make it (ids consistent with input_tokens); otherwise the length is capped at
// block_tokens * block_ids.size().
std::vector<std::int32_t> traceTokens(const TraceRequest& r);

// The requests strata-run replays: id = position, session = r.session, turn = number of earlier
// requests of the same session, tokens = traceTokens(r). Only the first `limit` requests when
// limit > 0. Memory is 4 bytes per input token (the whole Mooncake trace: about 580 MB).
std::vector<RequestSpec> toRequestSpecs(const Trace& t, std::size_t limit = 0);

}  // namespace strata::app

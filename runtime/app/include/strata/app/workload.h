// Workloads for strata-run: the built-in synthetic agentic workload (multi-turn sessions that share
// long system prompts, with tool outputs, interleaved so that the cache must evict).
// Owns nothing beyond the returned vectors. Thread-safety: pure functions of their arguments.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "strata/core/status.h"

namespace strata::app {

// One prompt as a model worker would receive it. Requests are served in vector order.
struct RequestSpec {
    std::uint64_t id = 0;       // 0, 1, 2, ... in arrival order
    std::uint32_t session = 0;  // unique per session; a new session gets a new id
    std::uint32_t turn = 0;     // 0 for the first request of a session
    std::vector<std::int32_t> tokens;
};

// Shape of the synthetic agentic workload. Every size marked "randomised" is drawn uniformly from
// [n/2, 3n/2] per occurrence.
struct SyntheticWorkload {
    std::uint32_t requests = 400;               // total requests generated
    std::uint64_t seed = 1;                     // same seed, same requests, on every platform
    std::uint32_t sessions = 24;                // sessions active at any time (interleaved)
    std::uint32_t agents = 3;                   // distinct system prompts; sessions pick one
    std::uint32_t system_prompt_tokens = 2048;  // exact length of each agent's system prompt
    std::uint32_t turn_tokens = 256;            // user message per turn (randomised)
    std::uint32_t reply_tokens = 192;           // assistant reply per turn (randomised)
    std::uint32_t tool_output_tokens = 768;     // tool output per turn (randomised)
    std::uint32_t tool_percent = 60;            // chance in % that a turn ends in a tool output
    std::uint32_t max_context_tokens = 16384;   // a session ends before its prompt exceeds this
    std::uint32_t vocab = 32000;                // tokens are drawn from [0, vocab)
};

// The priority of a request under eviction `priority`, for the real run and the metadata replay
// alike: a digest of its first page modulo `levels` (0 when levels <= 1). Requests that share their
// first page (a system prompt, a conversation's first block) share a priority, as the requests of
// one tenant would. The same on every rank and run.
std::uint32_t requestPriority(std::uint64_t first_page_digest, std::uint32_t levels);

// The first-page digest of a prompt: its first `page_size` tokens (0 for an empty prompt).
std::uint64_t firstPageDigest(std::span<const std::int32_t> tokens, std::uint32_t page_size);

// Checks every field of `config`; kInvalidArgument naming the first bad field, OK otherwise.
Status validate(const SyntheticWorkload& config);

// Generates `config.requests` requests. A session starts with its agent's system prompt and a user
// message; each later turn's prompt is the previous prompt + an assistant reply + a tool output or
// user message. The next request is drawn from a pool of `sessions` active sessions; a session
// whose next prompt would exceed max_context_tokens ends and a fresh session takes its place.
// Deterministic for a seed across standard libraries (own bounded draws over std::mt19937_64).
// Fails with kInvalidArgument when validate(config) fails.
Result<std::vector<RequestSpec>> generateSynthetic(const SyntheticWorkload& config);

// Order-sensitive digest of ids, sessions, turns and tokens: equal workloads, equal digests.
std::uint64_t workloadDigest(const std::vector<RequestSpec>& requests);

}  // namespace strata::app

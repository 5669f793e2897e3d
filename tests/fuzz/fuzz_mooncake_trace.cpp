// Fuzz target: the Mooncake JSONL trace loader (runtime/app/src/trace.cpp). The input is written
// as a trace file and loaded. A malformed file must be a clean error naming the file; a file that
// loads must keep the loader's promises (trace.h): 512-token blocks, ceil(input / 512) ids per
// request, input lengths in (0, kMaxTraceRequestTokens], ids 0, 1, 2, ..., and prompts of exactly
// input_tokens tokens.
#include <cstddef>
#include <cstdint>

#include "fuzz_util.h"
#include "strata/app/trace.h"
#include "strata/core/log.h"

using namespace strata;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    core::setLogLevel(spdlog::level::off);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto path = fuzz::scratchDir() / "trace.jsonl";
    fuzz::writeFile(path, data, size);
    auto r = app::loadMooncakeTrace(path.string());
    if (!r.isOk()) {
        STRATA_FUZZ_CHECK(r.status().code() == StatusCode::kInvalidArgument);
        STRATA_FUZZ_CHECK(r.status().message().find(path.string()) != std::string::npos);
        return 0;
    }
    const app::Trace& t = r.value();
    STRATA_FUZZ_CHECK(t.block_tokens == 512);
    std::uint64_t tokens = 0;
    for (std::size_t i = 0; i < t.requests.size(); ++i) {
        const auto& q = t.requests[i];
        STRATA_FUZZ_CHECK(q.id == i);
        STRATA_FUZZ_CHECK(q.block_tokens == 512);
        STRATA_FUZZ_CHECK(q.input_tokens > 0 && q.input_tokens <= app::kMaxTraceRequestTokens);
        STRATA_FUZZ_CHECK(q.block_ids.size() == (q.input_tokens + 511) / 512);
        // Prompts of the first requests (bounded: a prompt is 4 bytes per token).
        if (tokens + q.input_tokens <= (1u << 20)) {
            tokens += q.input_tokens;
            STRATA_FUZZ_CHECK(app::traceTokens(q).size() == q.input_tokens);
        }
    }
    STRATA_FUZZ_CHECK(app::validatePageSize(t, 512).isOk());
    STRATA_FUZZ_CHECK(!app::validatePageSize(t, 0).isOk());
    return 0;
}

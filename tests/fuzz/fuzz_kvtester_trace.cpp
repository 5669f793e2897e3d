// Fuzz target: the kv-cache-tester JSON trace loader (runtime/app/src/trace.cpp). The input is
// written as one trace file and loaded. A malformed file must be a clean error naming the file; a
// file that loads must keep the loader's promises (trace.h): one block size, a block size within
// kMaxTraceBlockTokens, ceil(input / block) ids per request, input lengths in
// (0, kMaxTraceRequestTokens], ids 0, 1, 2, ..., and prompts of exactly input_tokens tokens.
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
    const auto path = fuzz::scratchDir() / "trace_0000.json";
    fuzz::writeFile(path, data, size);
    auto r = app::loadKvTesterTrace(path.string());
    if (!r.isOk()) {
        STRATA_FUZZ_CHECK(r.status().code() == StatusCode::kInvalidArgument);
        STRATA_FUZZ_CHECK(r.status().message().find("trace_0000.json") != std::string::npos);
        return 0;
    }
    const app::Trace& t = r.value();
    STRATA_FUZZ_CHECK(t.block_tokens > 0 && t.block_tokens <= app::kMaxTraceBlockTokens);
    std::uint64_t tokens = 0;
    for (std::size_t i = 0; i < t.requests.size(); ++i) {
        const auto& q = t.requests[i];
        STRATA_FUZZ_CHECK(q.id == i);
        STRATA_FUZZ_CHECK(q.block_tokens == t.block_tokens);
        STRATA_FUZZ_CHECK(q.session == 0);
        STRATA_FUZZ_CHECK(q.input_tokens > 0 && q.input_tokens <= app::kMaxTraceRequestTokens);
        STRATA_FUZZ_CHECK(q.block_ids.size() ==
                          (q.input_tokens + t.block_tokens - 1) / t.block_tokens);
        if (tokens + q.input_tokens <= (1u << 20)) {
            tokens += q.input_tokens;
            STRATA_FUZZ_CHECK(app::traceTokens(q).size() == q.input_tokens);
        }
    }
    STRATA_FUZZ_CHECK(app::validatePageSize(t, t.block_tokens).isOk());
    return 0;
}

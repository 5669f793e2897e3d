#include "strata/app/workload.h"

#include <fmt/format.h>

#include <algorithm>
#include <random>
#include <string_view>

#include "strata/core/hash.h"

namespace strata::app {
namespace {

// Uniform in [0, bound) without modulo bias. std::uniform_int_distribution is not used because its
// output differs across standard libraries, and the workload must be identical everywhere.
std::uint64_t drawBelow(std::mt19937_64& rng, std::uint64_t bound) {
    if (bound <= 1) return 0;
    // Values below `threshold` would make some residues more likely; reject them.
    const std::uint64_t threshold = (0 - bound) % bound;
    for (;;) {
        const std::uint64_t x = rng();
        if (x >= threshold) return x % bound;
    }
}

// Uniform in [n/2, n + n/2].
std::uint64_t drawAround(std::mt19937_64& rng, std::uint32_t n) {
    return n / 2 + drawBelow(rng, static_cast<std::uint64_t>(n) + 1);
}

void appendRandomTokens(std::mt19937_64& rng, std::uint32_t vocab, std::uint64_t count,
                        std::vector<std::int32_t>* out) {
    out->reserve(out->size() + count);
    for (std::uint64_t i = 0; i < count; ++i) {
        out->push_back(static_cast<std::int32_t>(drawBelow(rng, vocab)));
    }
}

Status invalid(std::string_view field, const std::string& why) {
    return STRATA_ERROR(StatusCode::kInvalidArgument, "synthetic workload: {} {}", field, why);
}

struct ActiveSession {
    std::uint32_t id = 0;
    std::uint32_t turn = 0;
    std::vector<std::int32_t> context;  // the prompt of this session's next request
};

class Generator {
public:
    explicit Generator(const SyntheticWorkload& config) : config_(config), rng_(config.seed) {
        system_prompts_.resize(config_.agents);
        for (auto& prompt : system_prompts_) {
            appendRandomTokens(rng_, config_.vocab, config_.system_prompt_tokens, &prompt);
        }
    }

    std::vector<RequestSpec> run() {
        std::vector<ActiveSession> pool(config_.sessions);
        for (auto& slot : pool) slot = startSession();

        std::vector<RequestSpec> requests;
        requests.reserve(config_.requests);
        for (std::uint32_t i = 0; i < config_.requests; ++i) {
            ActiveSession& slot = pool[drawBelow(rng_, pool.size())];
            requests.push_back(RequestSpec{i, slot.id, slot.turn, slot.context});
            if (!extend(&slot)) slot = startSession();
        }
        return requests;
    }

private:
    ActiveSession startSession() {
        ActiveSession session;
        session.id = next_session_++;
        session.context = system_prompts_[drawBelow(rng_, system_prompts_.size())];
        appendRandomTokens(rng_, config_.vocab, drawAround(rng_, config_.turn_tokens),
                           &session.context);
        return session;
    }

    // Grows the session by an assistant reply and a tool output or user message. False when the
    // next prompt would exceed max_context_tokens: the session has ended.
    bool extend(ActiveSession* session) {
        const std::uint64_t reply = drawAround(rng_, config_.reply_tokens);
        const bool tool = drawBelow(rng_, 100) < config_.tool_percent;
        const std::uint64_t input =
            drawAround(rng_, tool ? config_.tool_output_tokens : config_.turn_tokens);
        if (session->context.size() + reply + input > config_.max_context_tokens) return false;
        appendRandomTokens(rng_, config_.vocab, reply + input, &session->context);
        ++session->turn;
        return true;
    }

    const SyntheticWorkload& config_;
    std::mt19937_64 rng_;
    std::vector<std::vector<std::int32_t>> system_prompts_;
    std::uint32_t next_session_ = 0;
};

}  // namespace

std::uint32_t requestPriority(std::uint64_t first_page_digest, std::uint32_t levels) {
    return levels <= 1 ? 0 : static_cast<std::uint32_t>(first_page_digest % levels);
}

std::uint64_t firstPageDigest(std::span<const std::int32_t> tokens, std::uint32_t page_size) {
    if (tokens.empty()) return 0;
    const std::size_t n = std::min<std::size_t>(page_size, tokens.size());
    return core::checksum64(tokens.data(), n * sizeof(std::int32_t));
}

Status validate(const SyntheticWorkload& config) {
    if (config.requests == 0) return invalid("requests", "must be at least 1");
    if (config.sessions == 0) return invalid("sessions", "must be at least 1");
    if (config.agents == 0) return invalid("agents", "must be at least 1");
    if (config.vocab < 2) {
        return invalid("vocab", fmt::format("must be at least 2 (got {})", config.vocab));
    }
    if (config.tool_percent > 100) {
        return invalid("tool_percent",
                       fmt::format("must be at most 100 (got {})", config.tool_percent));
    }
    if (config.system_prompt_tokens == 0 && config.turn_tokens == 0) {
        return invalid("system_prompt_tokens",
                       "and turn_tokens are both 0: the first prompt of a session would be empty");
    }
    const std::uint64_t longest_first_prompt =
        static_cast<std::uint64_t>(config.system_prompt_tokens) + config.turn_tokens +
        config.turn_tokens / 2;
    if (config.max_context_tokens < longest_first_prompt) {
        return invalid("max_context_tokens",
                       fmt::format("({}) must be at least system_prompt_tokens + 1.5 x turn_tokens "
                                   "({}), the longest first prompt of a session",
                                   config.max_context_tokens, longest_first_prompt));
    }
    return Status::ok();
}

Result<std::vector<RequestSpec>> generateSynthetic(const SyntheticWorkload& config) {
    STRATA_RETURN_IF_ERROR(validate(config));
    return Generator(config).run();
}

std::uint64_t workloadDigest(const std::vector<RequestSpec>& requests) {
    std::uint64_t digest = core::foldDigest(0, requests.size());
    for (const RequestSpec& r : requests) {
        digest = core::foldDigest(digest, r.id);
        digest = core::foldDigest(digest, (static_cast<std::uint64_t>(r.session) << 32) | r.turn);
        digest = core::foldDigest(digest, r.tokens.size());
        digest = core::foldDigest(digest, core::checksum64(std::as_bytes(std::span(r.tokens))));
    }
    return digest;
}

}  // namespace strata::app

#include "strata/app/workload.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

namespace strata::app {
namespace {

SyntheticWorkload smallWorkload(std::uint64_t seed) {
    SyntheticWorkload w;
    w.requests = 200;
    w.seed = seed;
    w.sessions = 8;
    w.system_prompt_tokens = 512;
    w.max_context_tokens = 4096;
    return w;
}

TEST(Workload, SameSeedSameDigestDifferentSeedDifferent) {
    auto a = generateSynthetic(smallWorkload(7));
    auto b = generateSynthetic(smallWorkload(7));
    auto c = generateSynthetic(smallWorkload(8));
    ASSERT_TRUE(a.isOk()) << a.status().toString();
    ASSERT_TRUE(b.isOk() && c.isOk());
    EXPECT_EQ(workloadDigest(*a), workloadDigest(*b));
    EXPECT_NE(workloadDigest(*a), workloadDigest(*c));
    EXPECT_EQ(a->size(), 200u);
}

TEST(Workload, DefaultIsPinned) {
    // The default workload is the same on every platform and standard library; a change of this
    // value changes every published strata-run figure.
    auto a = generateSynthetic(SyntheticWorkload{});
    ASSERT_TRUE(a.isOk());
    ASSERT_EQ(a->size(), 400u);
    auto again = generateSynthetic(SyntheticWorkload{});
    EXPECT_EQ(workloadDigest(*a), workloadDigest(*again));
    std::uint64_t tokens = 0;
    for (const auto& r : *a) tokens += r.tokens.size();
    EXPECT_GT(tokens, 400u * 2048u);
}

TEST(Workload, LaterTurnsExtendTheWholePreviousPrompt) {
    auto requests = generateSynthetic(smallWorkload(3));
    ASSERT_TRUE(requests.isOk());
    std::map<std::uint32_t, const RequestSpec*> last_of_session;
    std::size_t continued = 0;
    for (std::size_t i = 0; i < requests->size(); ++i) {
        const RequestSpec& r = (*requests)[i];
        EXPECT_EQ(r.id, i);
        EXPECT_LE(r.tokens.size(), 4096u);
        auto it = last_of_session.find(r.session);
        if (it == last_of_session.end()) {
            EXPECT_EQ(r.turn, 0u) << "session " << r.session;
        } else {
            const RequestSpec& prev = *it->second;
            EXPECT_EQ(r.turn, prev.turn + 1);
            ASSERT_GT(r.tokens.size(), prev.tokens.size());
            EXPECT_TRUE(std::equal(prev.tokens.begin(), prev.tokens.end(), r.tokens.begin()))
                << "request " << r.id << " does not extend request " << prev.id;
            ++continued;
        }
        last_of_session[r.session] = &r;
    }
    EXPECT_GT(continued, requests->size() / 2);
}

TEST(Workload, SessionsShareFewSystemPrompts) {
    SyntheticWorkload w = smallWorkload(5);
    auto requests = generateSynthetic(w);
    ASSERT_TRUE(requests.isOk());
    std::set<std::vector<std::int32_t>> system_prompts;
    std::set<std::uint32_t> sessions;
    for (const auto& r : *requests) {
        ASSERT_GE(r.tokens.size(), w.system_prompt_tokens);
        system_prompts.emplace(r.tokens.begin(), r.tokens.begin() + w.system_prompt_tokens);
        sessions.insert(r.session);
        for (std::int32_t t : r.tokens) ASSERT_TRUE(t >= 0 && t < static_cast<int>(w.vocab));
    }
    EXPECT_EQ(system_prompts.size(), w.agents);
    // Sessions end at max_context_tokens and new ones start: more sessions than the active pool.
    EXPECT_GT(sessions.size(), w.sessions);
}

TEST(Workload, SessionsAreInterleaved) {
    auto requests = generateSynthetic(smallWorkload(9));
    ASSERT_TRUE(requests.isOk());
    std::size_t switches = 0;
    for (std::size_t i = 1; i < requests->size(); ++i) {
        switches += (*requests)[i].session != (*requests)[i - 1].session;
    }
    EXPECT_GT(switches, requests->size() / 2);
}

TEST(Workload, InvalidConfigNamesTheField) {
    auto expectInvalid = [](SyntheticWorkload w, const std::string& field) {
        auto r = generateSynthetic(w);
        ASSERT_FALSE(r.isOk()) << field;
        EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
        EXPECT_NE(r.status().message().find(field), std::string::npos) << r.status().message();
    };
    SyntheticWorkload w;
    w.requests = 0;
    expectInvalid(w, "requests");
    w = {};
    w.sessions = 0;
    expectInvalid(w, "sessions");
    w = {};
    w.vocab = 1;
    expectInvalid(w, "vocab");
    w = {};
    w.agents = 0;
    expectInvalid(w, "agents");
    w = {};
    w.tool_percent = 101;
    expectInvalid(w, "tool_percent");
    w = {};
    w.max_context_tokens = 2048;
    expectInvalid(w, "max_context_tokens");
}

}  // namespace
}  // namespace strata::app

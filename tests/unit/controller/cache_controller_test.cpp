#include "strata/controller/cache_controller.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "strata/testing/thread_decision_group.h"

namespace strata::controller {
namespace {

using testing::Harness;
using testing::HarnessOptions;
using testing::tokensOf;

// Steps until no copy is in flight, with invariants checked every round.
void settle(Harness& h) {
    for (int i = 0; i < 100000 && h.ctl().inflightOps() > 0; ++i) {
        ASSERT_TRUE(h.ctl().step().isOk());
        ASSERT_TRUE(h.ctl().checkInvariants().isOk()) << h.ctl().checkInvariants().toString();
    }
    ASSERT_EQ(h.ctl().inflightOps(), 0u);
}

TEST(CacheController, RejectsBadArguments) {
    Harness h(HarnessOptions{});
    auto tokens = tokensOf(1, 40);
    auto keys = h.keys(tokens);
    EXPECT_EQ(h.ctl().admit(1, std::span(keys).first(1), tokens.size()).status().code(),
              StatusCode::kInvalidArgument);
    ASSERT_TRUE(h.ctl().admit(1, keys, tokens.size()).isOk());
    EXPECT_EQ(h.ctl().admit(1, keys, tokens.size()).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(h.ctl().insert(2).code(), StatusCode::kNotFound);
    EXPECT_EQ(h.ctl().release(2).code(), StatusCode::kNotFound);
    EXPECT_TRUE(h.ctl().release(1).isOk());
    EXPECT_TRUE(h.ctl().checkInvariants().isOk()) << h.ctl().checkInvariants().toString();
}

// step(&flag): the caller's value rides in the round's agreement and comes back as the largest
// any rank passed (strata-run's stop request reaches every rank at the same round).
TEST(CacheController, StepAgreesTheCallersFlagByMaxOverTheGroup) {
    constexpr int kRanks = 3;
    auto members = strata::testing::ThreadDecisionGroup::createGroup(kRanks);
    std::vector<std::vector<std::int64_t>> seen(kRanks);
    std::vector<std::string> errors(kRanks);
    std::vector<std::thread> threads;
    for (int r = 0; r < kRanks; ++r) {
        threads.emplace_back([&, r] {
            HarnessOptions o;
            o.group = members[static_cast<std::size_t>(r)].get();
            Harness h(o);
            // Round 1: only rank 1 raises it; round 2: ranks 0 and 2 with different values;
            // round 3: nobody; then a plain step(), as every rank of a group must agree alike.
            const std::int64_t mine[] = {r == 1 ? 15 : 0, r == 0 ? 2 : (r == 2 ? 9 : 0), 0};
            for (std::int64_t value : mine) {
                std::int64_t flag = value;
                if (Status s = h.ctl().step(&flag); !s.isOk()) errors[r] = s.toString();
                seen[r].push_back(flag);
            }
            if (Status s = h.ctl().step(); !s.isOk()) errors[r] = s.toString();
        });
    }
    for (auto& t : threads) t.join();
    for (int r = 0; r < kRanks; ++r) {
        EXPECT_EQ(errors[r], "") << "rank " << r;
        EXPECT_EQ(seen[r], (std::vector<std::int64_t>{15, 9, 0})) << "rank " << r;
    }
}

TEST(CacheController, DeviceHitReusesPagesAndLeavesLastTokenToCompute) {
    Harness h(HarnessOptions{});
    auto tokens = tokensOf(5, 64);  // exactly 4 pages of 16
    Admission a1 = h.serve(1, tokens);
    EXPECT_EQ(a1.computed_tokens, 64u);
    Admission a2 = h.serve(2, tokens);
    // The last page holds the last token, which is always computed.
    EXPECT_EQ(a2.device_hit_tokens, 48u);
    EXPECT_EQ(a2.computed_tokens, 16u);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(a2.device_pages[i], a1.device_pages[i]);
    settle(h);
    EXPECT_TRUE(h.ctl().checkInvariants().isOk()) << h.ctl().checkInvariants().toString();
    h.expectAllUnlocked();
}

TEST(CacheController, DeviceHostDeviceRoundTripIsBitExact) {
    for (auto layout : {kernels::HostLayout::kLayerFirst, kernels::HostLayout::kPageFirst,
                        kernels::HostLayout::kPageFirstDirect}) {
        SCOPED_TRACE(std::string(kernels::hostLayoutName(layout)));
        HarnessOptions o;
        o.device_tokens = 16 * 8;  // 8 pages
        o.layout = layout;
        o.jitter_us = 200;
        Harness h(o);
        auto first = tokensOf(11, 16 * 6 + 5);
        h.serve(1, first);
        settle(h);  // backed up to host
        // Two unrelated requests push the first one off the device.
        h.serve(2, tokensOf(12, 16 * 7));
        settle(h);
        auto m = h.ctl().match(h.keys(first));
        EXPECT_EQ(m.device_pages, 0u);
        EXPECT_EQ(m.host_pages, 6u);
        // Load back: serve() checks every reused byte against the pattern.
        Admission a = h.serve(3, first);
        EXPECT_EQ(a.host_hit_tokens, 16u * 6);
        EXPECT_EQ(a.device_hit_tokens, 0u);
        settle(h);
        const ControllerStats& st = h.ctl().stats();
        EXPECT_GT(st.load_pages, 0u);
        // The copy streams' busy time (timed events around each batch): positive (each job is
        // delayed by up to 200 us of jitter) and within each batch's launch-to-reap time.
        EXPECT_GT(st.load_busy_seconds, 0.0);
        EXPECT_LE(st.load_busy_seconds, st.load_seconds);
        EXPECT_GT(st.backup_busy_seconds, 0.0);
        EXPECT_LE(st.backup_busy_seconds, st.backup_seconds);
        h.expectAllUnlocked();
    }
}

TEST(CacheController, SplitOfANodeWhoseBackupIsInFlightPublishesBothFragments) {
    HarnessOptions o;
    o.jitter_us = 20000;  // keep the backup in flight while we split
    Harness h(o);
    auto a_tokens = tokensOf(21, 16 * 8 + 3);
    h.serve(1, a_tokens);
    ASSERT_TRUE(h.ctl().step().isOk());  // launches the backup
    // A request sharing the first 3 pages splits the node whose backup is still running.
    auto b_tokens = tokensOf(22, 16 * 6, std::vector(a_tokens.begin(), a_tokens.begin() + 48));
    auto keys = h.keys(b_tokens);
    auto m = h.ctl().match(keys);
    EXPECT_EQ(m.device_pages, 3u);
    ASSERT_NE(m.device_last->backup_op, 0u);  // the upper fragment carries the pending op
    ASSERT_EQ(m.device_last->children.size(), 1u);
    Node* lower = m.device_last->children.begin()->second.get();
    EXPECT_EQ(lower->backup_op, m.device_last->backup_op);
    h.serve(2, b_tokens);
    settle(h);
    EXPECT_TRUE(m.device_last->backedUp());
    EXPECT_TRUE(lower->backedUp());
    h.expectAllUnlocked();
    // Both fragments load back bit-exact after the device is flushed.
    h.serve(3, tokensOf(23, 16 * 15));
    settle(h);
    Admission a = h.serve(4, a_tokens);
    EXPECT_EQ(a.host_hit_tokens + a.device_hit_tokens, 16u * 8);
    settle(h);
    h.expectAllUnlocked();
}

TEST(CacheController, WriteBackCopiesBeforeFreeingDevicePages) {
    HarnessOptions o;
    o.policy = WritePolicy::kWriteBack;
    o.jitter_us = 3000;  // a copy finishes long after it is issued
    o.device_tokens = 16 * 8;
    Harness h(o);
    auto first = tokensOf(31, 16 * 6 + 1);
    h.serve(1, first);
    settle(h);
    EXPECT_EQ(h.ctl().stats().backup_pages, 0u);  // write-back: nothing copied yet
    // This request needs the device pages of the first: they are written back, then reused and
    // overwritten at once. If they were freed before the copy finished, the host copy would hold
    // the new request's bytes and the load below would fail the byte check.
    h.serve(2, tokensOf(32, 16 * 7));
    EXPECT_GE(h.ctl().stats().write_back_pages, 6u);
    settle(h);
    Admission a = h.serve(3, first);
    EXPECT_EQ(a.host_hit_tokens, 16u * 6);
    settle(h);
    EXPECT_TRUE(h.ctl().checkInvariants().isOk()) << h.ctl().checkInvariants().toString();
}

TEST(CacheController, AbortDuringALoadWaitsForItAndReturnsEveryPage) {
    HarnessOptions o;
    o.device_tokens = 16 * 8;
    o.jitter_us = 20000;  // the load is still running when the request is aborted
    Harness h(o);
    auto first = tokensOf(61, 16 * 5 + 3);
    h.serve(1, first);
    settle(h);
    h.serve(2, tokensOf(62, 16 * 7));  // pushes the first request off the device
    settle(h);
    auto keys = h.keys(first);
    auto a = h.ctl().admit(3, keys, first.size());
    ASSERT_TRUE(a.isOk());
    ASSERT_EQ(a->host_hit_tokens, 16u * 5);
    ASSERT_TRUE(h.ctl().launchLoads().isOk());
    ASSERT_TRUE(h.ctl().abort(3).isOk());
    EXPECT_EQ(h.ctl().abort(3).code(), StatusCode::kNotFound);
    settle(h);
    h.expectAllUnlocked();
    EXPECT_TRUE(h.ctl().checkInvariants().isOk()) << h.ctl().checkInvariants().toString();
    // The loaded pages stayed in the tree and are correct.
    Admission again = h.serve(4, first);
    EXPECT_EQ(again.device_hit_tokens, 16u * 5);
}

TEST(CacheController, WriteThroughSelectiveBacksUpOnSecondHit) {
    HarnessOptions o;
    o.policy = WritePolicy::kWriteThroughSelective;
    Harness h(o);
    auto t = tokensOf(41, 16 * 4 + 2);
    h.serve(1, t);
    settle(h);
    EXPECT_EQ(h.ctl().stats().backup_pages, 0u);
    h.serve(2, t);
    settle(h);
    EXPECT_EQ(h.ctl().stats().backup_pages, 4u);
}

TEST(CacheController, DeviceFullRejectsAdmissionWithNothingHeld) {
    HarnessOptions o;
    o.device_tokens = 16 * 4;
    Harness h(o);
    auto t = tokensOf(51, 16 * 3);
    auto keys = h.keys(t);
    ASSERT_TRUE(h.ctl().admit(1, keys, t.size()).isOk());
    auto t2 = tokensOf(52, 16 * 3);
    auto keys2 = h.keys(t2);
    auto r = h.ctl().admit(2, keys2, t2.size());
    EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
    EXPECT_EQ(h.ctl().stats().rejected_admissions, 1u);
    EXPECT_TRUE(h.ctl().checkInvariants().isOk()) << h.ctl().checkInvariants().toString();
    EXPECT_TRUE(h.ctl().release(1).isOk());
    EXPECT_EQ(h.ctl().deviceAllocator().usedPages(), 0u);  // nothing inserted, nothing held
}

// Device room for two prompts of three pages: a third evicts one of them. LRU takes the older
// prompt; priority eviction takes the lower-priority one even though it is more recent.
TEST(CacheController, PriorityEvictionKeepsAHigherPriorityPrefixOverAMoreRecentOne) {
    for (EvictionPolicy policy : {EvictionPolicy::kLru, EvictionPolicy::kPriority}) {
        SCOPED_TRACE(policy == EvictionPolicy::kLru ? "lru" : "priority");
        HarnessOptions o;
        o.device_tokens = 16 * 6;
        o.host_tokens = 16 * 32;
        o.eviction = policy;
        Harness h(o);
        const auto older = tokensOf(61, 16 * 3);  // priority 2, served first
        const auto newer = tokensOf(62, 16 * 3);  // priority 0, served second
        h.serve(1, older, true, /*priority=*/2);
        h.serve(2, newer, true, /*priority=*/0);
        settle(h);
        h.serve(3, tokensOf(63, 16 * 3));
        settle(h);
        const auto older_keys = h.keys(older);
        const auto newer_keys = h.keys(newer);
        const std::size_t older_on_device = h.ctl().match(older_keys).device_pages;
        const std::size_t newer_on_device = h.ctl().match(newer_keys).device_pages;
        if (policy == EvictionPolicy::kLru) {
            EXPECT_LT(older_on_device, 3u);
            EXPECT_EQ(newer_on_device, 3u);
        } else {
            EXPECT_EQ(older_on_device, 3u);
            EXPECT_LT(newer_on_device, 3u);
        }
        EXPECT_TRUE(h.ctl().checkInvariants().isOk()) << h.ctl().checkInvariants().toString();
        h.expectAllUnlocked();
    }
}

// Long random sequences over a few shared prefixes with every write policy and copy jitter: the
// tree invariants and slot conservation hold after every step, every reused byte is correct, and
// all locks return to zero.
TEST(CacheController, RandomOperationSequencesKeepInvariants) {
    const std::uint64_t seed = std::random_device{}();
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    for (auto policy : {WritePolicy::kWriteThrough, WritePolicy::kWriteThroughSelective,
                        WritePolicy::kWriteBack}) {
        SCOPED_TRACE(std::string(writePolicyName(policy)));
        HarnessOptions o;
        o.policy = policy;
        o.device_tokens = 16 * 24;
        o.host_tokens = 16 * 40;
        o.jitter_us = 300;
        o.seed = rng();
        Harness h(o);
        std::vector<std::vector<std::int32_t>> roots;
        for (int i = 0; i < 4; ++i) roots.push_back(tokensOf(rng(), 16 * (1 + rng() % 4)));
        std::map<RequestId, std::vector<std::int32_t>> live;
        std::map<RequestId, Admission> admitted;
        std::set<RequestId> inserted;
        RequestId next = 1;
        for (int op = 0; op < 600; ++op) {
            int kind = static_cast<int>(rng() % 10);
            if (kind < 4 && live.size() < 3) {
                auto& root = roots[rng() % roots.size()];
                std::size_t extra = rng() % 70;
                std::size_t cut = rng() % (root.size() + 1);
                auto t =
                    tokensOf(rng(), cut + extra + 1, std::vector(root.begin(), root.begin() + cut));
                auto keys = h.keys(t);
                auto r = h.ctl().admit(next, keys, t.size());
                if (r.isOk()) {
                    admitted[next] = *r;
                    live[next] = t;
                } else {
                    ASSERT_EQ(r.status().code(), StatusCode::kResourceExhausted);
                }
                ++next;
            } else if (kind < 7 && !live.empty()) {
                auto it = std::next(live.begin(), static_cast<long>(rng() % live.size()));
                RequestId id = it->first;
                Admission& a = admitted[id];
                ASSERT_TRUE(h.ctl().waitAllLayers(id).isOk());
                if (inserted.contains(id)) {
                    ASSERT_TRUE(h.ctl().release(id).isOk());
                    live.erase(it);
                    continue;
                }
                inserted.insert(id);
                ASSERT_EQ(h.mismatches(it->second, a, a.reusedTokens()), 0u);
                h.compute(it->second, a, a.reusedTokens());
                ASSERT_TRUE(h.ctl().insert(id).isOk());
                if (rng() % 2) {
                    ASSERT_TRUE(h.ctl().release(id).isOk());
                    live.erase(it);
                }
            } else if (kind < 8 && !live.empty()) {
                // Release (possibly before insert: an aborted request).
                auto it = std::next(live.begin(), static_cast<long>(rng() % live.size()));
                ASSERT_TRUE(h.ctl().waitAllLayers(it->first).isOk());
                ASSERT_TRUE(h.ctl().release(it->first).isOk());
                live.erase(it);
            } else if (kind == 8) {
                ASSERT_TRUE(h.ctl().step().isOk());
            } else {
                // Copies finish while the scheduler works: let them catch up now and then.
                ASSERT_TRUE(h.ctl().drain().isOk());
            }
            Status inv = h.ctl().checkInvariants();
            ASSERT_TRUE(inv.isOk()) << "after op " << op << ": " << inv.toString();
        }
        for (auto& [id, t] : live) {
            ASSERT_TRUE(h.ctl().waitAllLayers(id).isOk());
            ASSERT_TRUE(h.ctl().release(id).isOk());
        }
        ASSERT_TRUE(h.ctl().drain().isOk());
        ASSERT_TRUE(h.ctl().checkInvariants().isOk()) << h.ctl().checkInvariants().toString();
        h.expectAllUnlocked();
        EXPECT_GT(h.ctl().stats().device_evicted_pages, 0u)
            << "rejected " << h.ctl().stats().rejected_admissions << " nodes "
            << h.ctl().tree().nodeCount() << " backups " << h.ctl().stats().backup_pages;
    }
}

// With deterministic rounds the hits do not depend on when copies finish: two runs of the same
// requests under different random copy delays give the same hits and the same counts.
TEST(CacheController, DeterministicRoundsGiveTheSameHitsWhateverTheCopyTiming) {
    auto run = [](std::uint64_t jitter_seed) {
        HarnessOptions o;
        o.device_tokens = 16 * 12;
        o.host_tokens = 16 * 24;
        o.jitter_us = 400;
        o.seed = jitter_seed;
        o.deterministic = true;
        Harness h(o);
        std::vector<std::size_t> hits;
        // Sessions whose turns extend the previous turn's prompt, interleaved, so that prefixes
        // move between the device and the host while copies are in flight.
        std::vector<std::vector<std::int32_t>> sessions(4);
        for (std::size_t s = 0; s < sessions.size(); ++s) sessions[s] = tokensOf(100 + s, 16 * 2);
        RequestId id = 1;
        for (int turn = 0; turn < 5; ++turn) {
            for (std::size_t s = 0; s < sessions.size(); ++s) {
                auto& tokens = sessions[s];
                tokens = tokensOf(1000 * (s + 1) + turn, tokens.size() + 16 + 5, tokens);
                Admission a = h.serve(id, tokens);
                for (int tries = 0; a.device_pages.empty() && tries < 1000; ++tries) {
                    EXPECT_TRUE(h.ctl().step().isOk());  // the device was full: retry next round
                    a = h.serve(id, tokens);
                }
                EXPECT_FALSE(a.device_pages.empty()) << "request " << id << " never fit";
                hits.push_back(a.device_hit_tokens);
                hits.push_back(a.host_hit_tokens);
                ++id;
                EXPECT_TRUE(h.ctl().step().isOk());
                // Every round reaps everything launched before it: only this round's backups
                // can still be in flight.
                EXPECT_LE(h.ctl().inflightOps(), 1u);
            }
        }
        settle(h);
        const ControllerStats& st = h.ctl().stats();
        hits.insert(hits.end(),
                    {st.rounds, st.backup_ops, st.backup_pages, st.load_ops, st.load_pages,
                     st.device_evicted_pages, st.host_evicted_pages, st.rejected_admissions});
        return hits;
    };
    const auto first = run(1);
    const auto second = run(987654321);
    EXPECT_EQ(first, second);
    // The workload reuses from the host tier (the comparison covers the timing-sensitive part).
    std::size_t host_hits = 0;
    for (std::size_t i = 1; i < 40; i += 2) host_hits += first[i];
    EXPECT_GT(host_hits, 0u);
}

}  // namespace
}  // namespace strata::controller

#include "strata/app/trace.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>

namespace strata::app {
namespace {

namespace fs = std::filesystem;

const std::string kTracesDir = STRATA_TRACES_DIR;
const std::string kMooncake =
    kTracesDir + "/mooncake-FAST25-release/traces/conversation_trace.jsonl";
const std::string kKvTesterDir = kTracesDir + "/kv-cache-tester/traces";

double secondsSince(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The infinite-cache prefix-hit ceiling (rules of shared/reference/hit-rate-references.md): a
// request hits the leading run of its blocks seen before, in tokens, the last block counting its
// own length; then all its blocks are remembered.
double prefixHitCeiling(const Trace& t) {
    std::unordered_set<std::uint64_t> seen;
    std::uint64_t hit = 0;
    std::uint64_t total = 0;
    for (const TraceRequest& r : t.requests) {
        std::size_t run = 0;
        while (run < r.block_ids.size() && seen.count(r.block_ids[run]) != 0) ++run;
        hit += run == r.block_ids.size() ? r.input_tokens
                                         : static_cast<std::uint64_t>(run) * r.block_tokens;
        total += r.input_tokens;
        seen.insert(r.block_ids.begin(), r.block_ids.end());
    }
    return static_cast<double>(hit) / static_cast<double>(total);
}

// A fresh directory for one test's inputs, removed at the end.
class TempDir {
public:
    explicit TempDir(const std::string& name)
        : path_(fs::path(::testing::TempDir()) / ("strata_trace_test_" + name)) {
        fs::remove_all(path_);
        fs::create_directories(path_);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    std::string write(const std::string& file, const std::string& text) const {
        const fs::path p = path_ / file;
        std::ofstream(p, std::ios::binary) << text;
        return p.string();
    }
    std::string path() const { return path_.string(); }

private:
    fs::path path_;
};

void expectInvalid(const Result<Trace>& r, const std::string& needle1, const std::string& needle2) {
    ASSERT_FALSE(r.isOk()) << "expected an error containing '" << needle1 << "'";
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().toString();
    EXPECT_NE(r.status().message().find(needle1), std::string::npos) << r.status().toString();
    EXPECT_NE(r.status().message().find(needle2), std::string::npos) << r.status().toString();
}

TEST(TraceMooncake, RealTraceCountsAndCeiling) {
    ASSERT_TRUE(fs::exists(kMooncake)) << "Mooncake trace missing: " << kMooncake
                                       << " (shared/traces must sit beside the repository)";
    const auto start = std::chrono::steady_clock::now();
    auto trace = loadMooncakeTrace(kMooncake);
    const double load_s = secondsSince(start);
    ASSERT_TRUE(trace.isOk()) << trace.status().toString();
    std::printf("mooncake: loaded %zu requests in %.3f s\n", trace->requests.size(), load_s);

    EXPECT_EQ(trace->name, "conversation_trace");
    EXPECT_EQ(trace->block_tokens, 512u);
    ASSERT_EQ(trace->requests.size(), 12031u);
    std::uint64_t refs = 0;
    std::unordered_set<std::uint64_t> unique;
    for (std::size_t i = 0; i < trace->requests.size(); ++i) {
        const TraceRequest& r = trace->requests[i];
        EXPECT_EQ(r.id, i);
        EXPECT_EQ(r.session, 0u);
        EXPECT_EQ(r.block_tokens, 512u);
        EXPECT_EQ(r.block_ids.size(), (r.input_tokens + 511) / 512);
        refs += r.block_ids.size();
        unique.insert(r.block_ids.begin(), r.block_ids.end());
    }
    EXPECT_EQ(refs, 288500u);
    EXPECT_EQ(unique.size(), 182790u);
    // First row: {"timestamp": 0, "input_length": 6758, "output_length": 500, "hash_ids": [0..13]}
    const TraceRequest& first = trace->requests.front();
    EXPECT_EQ(first.arrival_s, 0.0);
    EXPECT_EQ(first.input_tokens, 6758u);
    EXPECT_EQ(first.output_tokens, 500u);
    EXPECT_EQ(first.block_ids.size(), 14u);
    EXPECT_NEAR(trace->requests.back().arrival_s, 3536.999, 1e-9);

    const double ceiling = prefixHitCeiling(*trace);
    std::printf("mooncake: infinite-cache prefix-hit ceiling %.5f\n", ceiling);
    EXPECT_NEAR(ceiling, 0.374, 0.0005);
}

TEST(TraceKvTester, DirectoryLoadsAllConversationsAndSubAgents) {
    ASSERT_TRUE(fs::is_directory(kKvTesterDir))
        << "kv-cache-tester traces missing: " << kKvTesterDir;
    const auto start = std::chrono::steady_clock::now();
    auto trace = loadKvTesterTrace(kKvTesterDir);
    const double load_s = secondsSince(start);
    ASSERT_TRUE(trace.isOk()) << trace.status().toString();
    std::printf("kvtester: loaded %zu requests in %.3f s\n", trace->requests.size(), load_s);

    EXPECT_EQ(trace->block_tokens, 64u);
    // SOURCES.md: 28 files, 2,882 top-level requests plus 11 sub-agent markers holding 121.
    ASSERT_EQ(trace->requests.size(), 3003u);
    std::size_t top_level = 0;
    std::set<std::uint32_t> sessions;
    std::set<std::pair<std::uint32_t, std::uint32_t>> sub_agents;
    std::unordered_map<std::uint64_t, std::uint32_t> owner;  // block id -> session
    std::unordered_map<std::uint64_t, int> tail_uses;
    std::uint64_t refs = 0;
    for (std::size_t i = 0; i < trace->requests.size(); ++i) {
        const TraceRequest& r = trace->requests[i];
        EXPECT_EQ(r.id, i);
        if (i > 0) {
            EXPECT_LE(trace->requests[i - 1].arrival_s, r.arrival_s);
        }
        EXPECT_EQ(r.block_tokens, 64u);
        ASSERT_EQ(r.block_ids.size(), (r.input_tokens + 63) / 64) << "request " << i;
        sessions.insert(r.session);
        if (r.agent == 0) {
            ++top_level;
        } else {
            sub_agents.insert({r.session, r.agent});
        }
        for (const std::uint64_t id : r.block_ids) {
            const auto [it, fresh] = owner.emplace(id, r.session);
            EXPECT_EQ(it->second, r.session) << "block id " << id << " shared by two files";
        }
        if (r.input_tokens % 64 != 0) ++tail_uses[r.block_ids.back()];
        refs += r.block_ids.size();
    }
    EXPECT_EQ(top_level, 2882u);
    EXPECT_EQ(sub_agents.size(), 11u);
    EXPECT_EQ(sessions.size(), 28u);
    for (const auto& [id, uses] : tail_uses) EXPECT_EQ(uses, 1) << "tail id " << id;
    std::printf("kvtester: %llu block references, %zu unique blocks, %zu partial tails\n",
                static_cast<unsigned long long>(refs), owner.size(), tail_uses.size());

    // trace_0003.json (session 2): its first sub-agent marker has t = 134.227 and nested requests
    // at t = 0, 6, ... relative to it; in = 9526 for the first.
    bool found = false;
    for (const TraceRequest& r : trace->requests) {
        if (r.session == 2 && r.agent == 1 && std::abs(r.arrival_s - 134.227) < 1e-9) {
            EXPECT_EQ(r.input_tokens, 9526u);
            found = true;
        }
    }
    EXPECT_TRUE(found) << "first nested request of trace_0003 not at 134.227 s";
}

TEST(TraceKvTester, SingleFileAndLocalIdsDoNotCollide) {
    auto one = loadKvTesterTrace(kKvTesterDir + "/trace_0001.json");
    auto two = loadKvTesterTrace(kKvTesterDir + "/trace_0002.json");
    ASSERT_TRUE(one.isOk()) << one.status().toString();
    ASSERT_TRUE(two.isOk()) << two.status().toString();
    EXPECT_EQ(one->name, "trace_0001");
    EXPECT_EQ(one->requests.size(), 41u);
    EXPECT_EQ(one->requests.front().arrival_s, 0.0);
    EXPECT_EQ(one->requests.front().input_tokens, 71175u);
    // Both files start with local id 1; loaded as one directory they must differ.
    TempDir dir("collide");
    fs::copy_file(kKvTesterDir + "/trace_0001.json", dir.path() + "/a.json");
    fs::copy_file(kKvTesterDir + "/trace_0002.json", dir.path() + "/b.json");
    auto both = loadKvTesterTrace(dir.path());
    ASSERT_TRUE(both.isOk()) << both.status().toString();
    EXPECT_EQ(both->requests.size(), one->requests.size() + two->requests.size());
    std::set<std::uint64_t> first_a;
    std::set<std::uint64_t> first_b;
    for (const TraceRequest& r : both->requests) {
        (r.session == 0 ? first_a : first_b).insert(r.block_ids.front());
    }
    for (const std::uint64_t id : first_a) EXPECT_EQ(first_b.count(id), 0u);
}

TEST(TraceKvTester, SubAgentTimesAndGlobalScope) {
    TempDir dir("subagent");
    // Nested t counts from the marker; the merged order follows arrival, ties keep file order.
    const std::string path = dir.write("a.json", R"({"block_size": 4, "hash_id_scope": "global",
      "requests": [
        {"t": 0, "type": "n", "in": 8, "out": 1, "hash_ids": [1, 2]},
        {"t": 10, "type": "subagent", "requests": [
            {"t": 0, "type": "n", "in": 5, "out": 1, "hash_ids": [7]},
            {"t": 3, "type": "n", "in": 4, "out": 1, "hash_ids": [7]}]},
        {"t": 11, "type": "n", "in": 12, "out": 2, "hash_ids": [1, 2, 3]}]})");
    auto t = loadKvTesterTrace(path);
    ASSERT_TRUE(t.isOk()) << t.status().toString();
    ASSERT_EQ(t->requests.size(), 4u);
    EXPECT_EQ(t->requests[0].arrival_s, 0.0);
    EXPECT_EQ(t->requests[1].arrival_s, 10.0);
    EXPECT_EQ(t->requests[1].agent, 1u);
    EXPECT_EQ(t->requests[2].arrival_s, 11.0);
    EXPECT_EQ(t->requests[2].agent, 0u);
    EXPECT_EQ(t->requests[3].arrival_s, 13.0);
    // Global scope: ids used as they are; in = 5 with one hashed block gets a tail id of its own.
    EXPECT_EQ(t->requests[0].block_ids, (std::vector<std::uint64_t>{1, 2}));
    ASSERT_EQ(t->requests[1].block_ids.size(), 2u);
    EXPECT_EQ(t->requests[1].block_ids[0], 7u);
    EXPECT_NE(t->requests[1].block_ids[1], 7u);
    EXPECT_EQ(t->requests[3].block_ids, (std::vector<std::uint64_t>{7}));
}

TEST(TraceMooncake, MalformedInputsNameFileAndLine) {
    TempDir dir("mooncake_bad");
    const std::string good =
        R"({"timestamp": 5, "input_length": 600, "output_length": 3, "hash_ids": [0, 1]})";
    expectInvalid(loadMooncakeTrace(dir.write("badjson.jsonl", good + "\n{\"timestamp\": 1,\n")),
                  "badjson.jsonl:2", "JSON");
    expectInvalid(
        loadMooncakeTrace(dir.write(
            "notarray.jsonl",
            good + "\n\n" +
                R"({"timestamp": 5, "input_length": 600, "output_length": 3, "hash_ids": 7})")),
        "notarray.jsonl:3", "field 'hash_ids' must be an array of integers");
    expectInvalid(
        loadMooncakeTrace(dir.write(
            "count.jsonl",
            R"({"timestamp": 5, "input_length": 1025, "output_length": 3, "hash_ids": [0, 1]})")),
        "count.jsonl:1", "ceil(1025/512) = 3");
    expectInvalid(
        loadMooncakeTrace(dir.write(
            "negative.jsonl",
            R"({"timestamp": 5, "input_length": -4, "output_length": 3, "hash_ids": []})")),
        "negative.jsonl:1", "input_length");
    expectInvalid(
        loadMooncakeTrace(dir.write("missing_field.jsonl",
                                    R"({"timestamp": 5, "input_length": 4, "hash_ids": [0]})")),
        "missing_field.jsonl:1", "output_length");

    auto missing = loadMooncakeTrace(dir.path() + "/nope.jsonl");
    ASSERT_FALSE(missing.isOk());
    EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
    EXPECT_NE(missing.status().message().find("nope.jsonl"), std::string::npos);

    auto ok = loadMooncakeTrace(dir.write("ok.jsonl", good + "\r\n" + good + "\n\n"));
    ASSERT_TRUE(ok.isOk()) << ok.status().toString();
    ASSERT_EQ(ok->requests.size(), 2u);
    EXPECT_EQ(ok->requests[1].id, 1u);
    EXPECT_DOUBLE_EQ(ok->requests[1].arrival_s, 0.005);
}

TEST(TraceKvTester, MalformedInputsNameFileAndPointer) {
    TempDir dir("kv_bad");
    expectInvalid(loadKvTesterTrace(dir.write("badjson.json", R"({"requests": [)")), "badjson.json",
                  "JSON");
    expectInvalid(loadKvTesterTrace(dir.write("notarray.json", R"({"block_size": 64,
        "requests": [{"t": 0, "in": 64, "out": 1, "hash_ids": [1]},
                     {"t": 1, "in": 64, "out": 1, "hash_ids": "x"}]})")),
                  "notarray.json: /requests/1", "field 'hash_ids' must be an array of integers");
    expectInvalid(loadKvTesterTrace(dir.write("count.json", R"({"block_size": 64,
        "requests": [{"t": 0, "in": 200, "out": 1, "hash_ids": [1]}]})")),
                  "count.json: /requests/0/hash_ids", "floor or ceil");
    expectInvalid(loadKvTesterTrace(dir.write("nested.json", R"({"block_size": 64,
        "requests": [{"t": 0, "type": "subagent", "requests": [
            {"t": 0, "in": 64, "out": 1, "hash_ids": [1]},
            {"t": 1, "in": "many", "out": 1, "hash_ids": [1]}]}]})")),
                  "nested.json: /requests/0/requests/1", "field 'in'");
    expectInvalid(loadKvTesterTrace(dir.write("badtime.json", R"({"block_size": 64,
        "requests": [{"t": -1, "in": 64, "out": 1, "hash_ids": [1]}]})")),
                  "badtime.json: /requests/0", "field 't'");

    TempDir mixed("kv_mixed");
    mixed.write("a.json", R"({"block_size": 64,
        "requests": [{"t": 0, "in": 64, "out": 1, "hash_ids": [1]}]})");
    mixed.write("b.json", R"({"block_size": 16,
        "requests": [{"t": 0, "in": 16, "out": 1, "hash_ids": [1]}]})");
    expectInvalid(loadKvTesterTrace(mixed.path()), "b.json: /block_size", "differs");

    auto missing = loadKvTesterTrace(dir.path() + "/nope.json");
    ASSERT_FALSE(missing.isOk());
    EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
    TempDir empty("kv_empty");
    auto none = loadKvTesterTrace(empty.path());
    ASSERT_FALSE(none.isOk());
    EXPECT_EQ(none.status().code(), StatusCode::kNotFound);
}

// Issue 19: inputs that ran as nothing (exit 0, hit rate 0.0) are errors naming the file.
TEST(TraceBadInput, EmptyAndBlankFilesAreErrorsNamingTheFile) {
    TempDir dir("blank");
    expectInvalid(loadMooncakeTrace(dir.write("empty.jsonl", "")), "empty.jsonl",
                  "the file is empty (0 bytes)");
    expectInvalid(loadMooncakeTrace(dir.write("blank.jsonl", "\n  \r\n\t\n")), "blank.jsonl",
                  "only whitespace (7 bytes)");
    expectInvalid(loadKvTesterTrace(dir.write("empty.json", "")), "empty.json",
                  "the file is empty (0 bytes)");
    expectInvalid(loadKvTesterTrace(dir.write("blank.json", " \n\n ")), "blank.json",
                  "only whitespace (4 bytes)");
    expectInvalid(
        loadKvTesterTrace(dir.write("none.json", R"({"block_size": 64, "requests": []})")),
        "none.json: /requests", "is empty: a trace file needs at least one request");
    expectInvalid(loadKvTesterTrace(dir.write("hollow.json", R"({"requests": [
        {"t": 0, "type": "subagent", "requests": []}]})")),
                  "hollow.json: /requests", "holds no request");
    // One empty file in a directory is named too, not skipped.
    TempDir mixed("blank_in_dir");
    mixed.write("a.json", R"({"requests": [{"t": 0, "in": 64, "out": 1, "hash_ids": [1]}]})");
    mixed.write("b.json", "");
    expectInvalid(loadKvTesterTrace(mixed.path()), "b.json", "the file is empty");
}

TEST(TraceBadInput, TruncatedJsonGivesTheByteOffsetLineAndColumn) {
    TempDir dir("truncated");
    // Cut in the middle of the second request: the parser runs out at the end of the file.
    const std::string whole =
        "{\"block_size\": 64, \"requests\": [\n"
        "  {\"t\": 0, \"in\": 64, \"out\": 1, \"hash_ids\": [1]},\n"
        "  {\"t\": 1, \"in\": 64, \"out\": 1, \"hash_ids\": [1, ";
    auto cut = loadKvTesterTrace(dir.write("cut.json", whole));
    expectInvalid(cut, "cut.json", "not valid JSON at byte " + std::to_string(whole.size()));
    const std::size_t column = whole.size() - whole.rfind('\n');  // one past the last character
    EXPECT_EQ(column, 48u);
    EXPECT_NE(cut.status().message().find("(line 3, column 48), the end of the file: truncated?"),
              std::string::npos)
        << cut.status().message();
    EXPECT_NE(cut.status().message().find("unexpected end of input"), std::string::npos)
        << cut.status().message();
    // A bad character in the middle: its own offset, line and column.
    const std::string bad = "{\"requests\": [\n  {\"t\": 0,, \"in\": 64}]}";
    auto mid = loadKvTesterTrace(dir.write("mid.json", bad));
    expectInvalid(mid, "mid.json", "not valid JSON at byte " + std::to_string(bad.find(",,") + 1));
    EXPECT_NE(mid.status().message().find("(line 2, column 11)"), std::string::npos)
        << mid.status().message();
    EXPECT_EQ(mid.status().message().find("truncated?"), std::string::npos)
        << mid.status().message();
    // A Mooncake line: the line number and the column within it.
    const std::string good =
        R"({"timestamp": 5, "input_length": 600, "output_length": 3, "hash_ids": [0, 1]})";
    auto line = loadMooncakeTrace(dir.write("cut.jsonl", good + "\n" + good.substr(0, 40)));
    expectInvalid(line, "cut.jsonl:2", "not a valid JSON object at column 41");
    EXPECT_NE(line.status().message().find("truncated?"), std::string::npos)
        << line.status().message();
}

TEST(TraceBadInput, DirectoryLoadsUpperCaseJsonAndListsWhatItSkips) {
    TempDir dir("case");
    const std::string one = R"({"requests": [{"t": 0, "in": 64, "out": 1, "hash_ids": [1]}]})";
    const std::string two = R"({"requests": [{"t": 1, "in": 64, "out": 1, "hash_ids": [1]},
        {"t": 2, "in": 128, "out": 1, "hash_ids": [1, 2]}]})";
    dir.write("trace_0001.json", one);
    dir.write("trace_0100.JSON", two);
    dir.write("notes.txt", "not a trace");
    dir.write("trace_0002.json.bak", one);
    fs::create_directories(dir.path() + "/old.json");
    auto t = loadKvTesterTrace(dir.path());
    ASSERT_TRUE(t.isOk()) << t.status().toString();
    EXPECT_EQ(t->requests.size(), 3u);  // both files, the .JSON one included
    std::set<std::uint32_t> sessions;
    for (const TraceRequest& r : t->requests) sessions.insert(r.session);
    EXPECT_EQ(sessions, (std::set<std::uint32_t>{0, 1}));
    EXPECT_EQ(t->skipped_files,
              (std::vector<std::string>{"notes.txt: does not end in .json",
                                        "old.json: a directory (subdirectories are not read)",
                                        "trace_0002.json.bak: does not end in .json"}));

    TempDir none("case_none");
    none.write("a.txt", one);
    auto empty = loadKvTesterTrace(none.path());
    ASSERT_FALSE(empty.isOk());
    EXPECT_EQ(empty.status().code(), StatusCode::kNotFound);
    EXPECT_NE(empty.status().message().find("a.txt: does not end in .json"), std::string::npos)
        << empty.status().message();
}

TEST(TraceBadInput, OutOfOrderRequestsAreCountedWithTheFirstPlace) {
    TempDir dir("order");
    // kvtester: t goes back twice in the top-level list (/requests/2 and /requests/4) and once in
    // the sub-agent's list; the merge by arrival replays them at their times.
    auto kv = loadKvTesterTrace(dir.write("order.json", R"({"block_size": 4, "requests": [
        {"t": 0, "in": 4, "out": 1, "hash_ids": [1]},
        {"t": 5, "in": 4, "out": 1, "hash_ids": [2]},
        {"t": 3, "in": 4, "out": 1, "hash_ids": [3]},
        {"t": 6, "type": "subagent", "requests": [
            {"t": 2, "in": 4, "out": 1, "hash_ids": [4]},
            {"t": 1, "in": 4, "out": 1, "hash_ids": [5]}]},
        {"t": 4, "in": 4, "out": 1, "hash_ids": [6]}]})"));
    ASSERT_TRUE(kv.isOk()) << kv.status().toString();
    EXPECT_EQ(kv->out_of_order, 3u);
    EXPECT_NE(kv->first_out_of_order.find("order.json: /requests/2 (t 3 after 5)"),
              std::string::npos)
        << kv->first_out_of_order;
    ASSERT_EQ(kv->requests.size(), 6u);
    for (std::size_t i = 1; i < kv->requests.size(); ++i) {
        EXPECT_LE(kv->requests[i - 1].arrival_s, kv->requests[i].arrival_s);
    }
    // In order (sub-agent times restart at 0 and are not a step back): nothing counted.
    auto sorted = loadKvTesterTrace(dir.write("sorted.json", R"({"block_size": 4, "requests": [
        {"t": 0, "in": 4, "out": 1, "hash_ids": [1]},
        {"t": 5, "type": "subagent", "requests": [
            {"t": 0, "in": 4, "out": 1, "hash_ids": [4]}]},
        {"t": 5, "in": 4, "out": 1, "hash_ids": [6]}]})"));
    ASSERT_TRUE(sorted.isOk()) << sorted.status().toString();
    EXPECT_EQ(sorted->out_of_order, 0u);
    EXPECT_TRUE(sorted->first_out_of_order.empty());

    // Mooncake: file order is kept; the step back is counted with its line.
    auto row = [](int ts) {
        return "{\"timestamp\": " + std::to_string(ts) +
               ", \"input_length\": 10, \"output_length\": 1, \"hash_ids\": [" +
               std::to_string(ts) + "]}\n";
    };
    auto mc = loadMooncakeTrace(
        dir.write("order.jsonl", row(10) + row(30) + "\n" + row(20) + row(40) + row(5)));
    ASSERT_TRUE(mc.isOk()) << mc.status().toString();
    EXPECT_EQ(mc->out_of_order, 2u);
    EXPECT_NE(mc->first_out_of_order.find("order.jsonl:4 (timestamp 20 after 30)"),
              std::string::npos)
        << mc->first_out_of_order;
    ASSERT_EQ(mc->requests.size(), 5u);
    EXPECT_EQ(mc->requests[2].block_ids.front(), 20u);  // file order
}

// A kv-cache-tester file whose one request sits `depth` sub-agent levels deep (each marker at
// t = 1).
std::string nestedKvTrace(std::size_t depth) {
    std::string text = R"({"block_size": 64, "requests": )";
    for (std::size_t i = 0; i < depth; ++i) text += R"([{"t": 1, "type": "subagent", "requests": )";
    text += R"([{"t": 0, "in": 64, "out": 1, "hash_ids": [1]}])";
    for (std::size_t i = 0; i < depth; ++i) text += "}]";
    return text + "}";
}

// Issue 15: 50,000 nested sub-agents overflowed the recursive parser's stack (its memory grew with
// the square of the depth). Now a clear, short error naming the file and the depth.
TEST(TraceKvTester, DeepSubAgentNestingIsAShortErrorNotACrash) {
    TempDir dir("kv_deep");
    const auto start = std::chrono::steady_clock::now();
    auto r = loadKvTesterTrace(dir.write("deep.json", nestedKvTrace(50000)));
    std::printf("50,000 nested sub-agents rejected in %.3f s\n", secondsSince(start));
    expectInvalid(r, "deep.json: /requests/0/requests/0/requests/0/...",
                  "sub-agents nested more than 256 levels deep");
    EXPECT_LT(r.status().message().size(), 300u) << r.status().message();
}

TEST(TraceKvTester, SubAgentsNestedToTheLimitParse) {
    TempDir dir("kv_limit");
    auto r = loadKvTesterTrace(dir.write("limit.json", nestedKvTrace(kMaxTraceSubAgentDepth)));
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    ASSERT_EQ(r->requests.size(), 1u);
    EXPECT_EQ(r->requests[0].arrival_s, static_cast<double>(kMaxTraceSubAgentDepth));
    EXPECT_EQ(r->requests[0].agent, kMaxTraceSubAgentDepth);
    expectInvalid(
        loadKvTesterTrace(dir.write("over.json", nestedKvTrace(kMaxTraceSubAgentDepth + 1))),
        "over.json: /requests/0/", "nested more than 256 levels deep");
}

// Issue 15: a 95-byte trace with "block_size": 2^31 aborted with bad_alloc.
TEST(TraceKvTester, HugeBlockSizeIsAnErrorNotAnAllocation) {
    TempDir dir("kv_huge");
    expectInvalid(loadKvTesterTrace(dir.write("huge.json", R"({"block_size": 2147483648,
        "requests": [{"t": 0, "in": 2147483648, "out": 1, "hash_ids": [1]}]})")),
                  "huge.json: /block_size", "exceeds the limit of 65536 tokens per block");
    expectInvalid(loadKvTesterTrace(dir.write("long.json", R"({"block_size": 65536,
        "requests": [{"t": 0, "in": 4294967296, "out": 1, "hash_ids": [1]}]})")),
                  "long.json: /requests/0", "field 'in' (4294967296) exceeds the limit");
    auto at_limit = loadKvTesterTrace(dir.write("ok.json", R"({"block_size": 65536,
        "requests": [{"t": 0, "in": 65536, "out": 1, "hash_ids": [1]}]})"));
    EXPECT_TRUE(at_limit.isOk()) << at_limit.status().toString();
}

// Issue 15: a 0-token request passed the parser and aborted the run after set-up.
TEST(TraceKvTester, ZeroTokenRequestIsAParseError) {
    TempDir dir("kv_zero");
    expectInvalid(loadKvTesterTrace(dir.write("zero.json", R"({"block_size": 64,
        "requests": [{"t": 0, "in": 64, "out": 1, "hash_ids": [1]},
                     {"t": 1, "in": 0, "out": 1, "hash_ids": []}]})")),
                  "zero.json: /requests/1", "field 'in' is 0");
}

TEST(TraceMooncake, ZeroTokenRequestIsAParseError) {
    TempDir dir("mooncake_zero");
    const std::string good =
        R"({"timestamp": 5, "input_length": 600, "output_length": 3, "hash_ids": [0, 1]})";
    expectInvalid(
        loadMooncakeTrace(dir.write(
            "zero.jsonl",
            good + "\n" +
                R"({"timestamp": 6, "input_length": 0, "output_length": 3, "hash_ids": []})")),
        "zero.jsonl:2", "field 'input_length' is 0");
    expectInvalid(
        loadMooncakeTrace(dir.write(
            "long.jsonl",
            R"({"timestamp": 6, "input_length": 99999999999, "output_length": 3, "hash_ids": []})")),
        "long.jsonl:1", "exceeds the limit");
}

// Issue 15: a NUL byte silently ended a Mooncake line (the parser stopped there).
TEST(TraceMooncake, NulByteInALineIsAnErrorNamingTheLine) {
    TempDir dir("mooncake_nul");
    const std::string good =
        R"({"timestamp": 5, "input_length": 600, "output_length": 3, "hash_ids": [0, 1]})";
    expectInvalid(loadMooncakeTrace(dir.write(
                      "nul.jsonl", good + "\n" + good + std::string(1, '\0') + "garbage\n")),
                  "nul.jsonl:2", "NUL byte");
    TempDir kv("kv_nul");
    expectInvalid(loadKvTesterTrace(kv.write("nul.json", R"({"block_size": 64, "requests": []})" +
                                                             std::string(1, '\0') + "x")),
                  "nul.json", "NUL byte");
}

TEST(TraceTokens, EqualIdsEqualTokensAndPartialLastBlock) {
    TraceRequest a{0, 0, 1000, 1, 512, {5, 6}, 0, 0};
    TraceRequest b{1, 0, 1500, 1, 512, {5, 6, 9}, 0, 0};
    TraceRequest c{2, 0, 600, 1, 512, {5, 8}, 0, 0};
    const auto ta = traceTokens(a);
    const auto tb = traceTokens(b);
    const auto tc = traceTokens(c);
    ASSERT_EQ(ta.size(), 1000u);  // last block partial: 1000 - 512 = 488 tokens
    ASSERT_EQ(tb.size(), 1500u);
    ASSERT_EQ(tc.size(), 600u);
    EXPECT_TRUE(std::equal(ta.begin(), ta.end(), tb.begin()));          // equal ids, equal tokens
    EXPECT_TRUE(std::equal(ta.begin(), ta.begin() + 512, tc.begin()));  // shared first block
    EXPECT_FALSE(std::equal(ta.begin() + 512, ta.begin() + 600, tc.begin() + 512));
    for (const std::int32_t tok : tb) EXPECT_GE(tok, 0);
    EXPECT_EQ(traceTokens(TraceRequest{0, 0, 0, 0, 64, {}, 0, 0}).size(), 0u);
}

TEST(TraceTokens, DifferentIdsDifferentTokens) {
    // The first 4 tokens of 5,000 ids (mooncake-like small ids and kvtester-like namespaced ids)
    // are all distinct.
    std::set<std::array<std::int32_t, 4>> seen;
    std::size_t n = 0;
    for (std::uint64_t base : {std::uint64_t{0}, std::uint64_t{3} << 32}) {
        for (std::uint64_t id = 0; id < 2500; ++id) {
            const auto tokens = traceTokens(TraceRequest{0, 0, 4, 0, 64, {base | id}, 0, 0});
            ASSERT_EQ(tokens.size(), 4u);
            seen.insert({tokens[0], tokens[1], tokens[2], tokens[3]});
            ++n;
        }
    }
    EXPECT_EQ(seen.size(), n);
}

TEST(TraceTokens, PageSizeMustDivideBlock) {
    Trace t;
    t.name = "t";
    t.block_tokens = 512;
    EXPECT_TRUE(validatePageSize(t, 512).isOk());
    EXPECT_TRUE(validatePageSize(t, 64).isOk());
    EXPECT_TRUE(validatePageSize(t, 16).isOk());
    const Status bad = validatePageSize(t, 100);
    EXPECT_EQ(bad.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(bad.message().find("100"), std::string::npos) << bad.toString();
    EXPECT_EQ(validatePageSize(t, 0).code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(validatePageSize(t, 1024).code(), StatusCode::kInvalidArgument);
}

TEST(TraceTokens, ToRequestSpecsNumbersTurnsPerSession) {
    Trace t;
    t.block_tokens = 64;
    t.requests = {TraceRequest{0, 0.0, 70, 1, 64, {1, 2}, 0, 0},
                  TraceRequest{1, 0.5, 64, 1, 64, {9}, 1, 0},
                  TraceRequest{2, 1.0, 130, 1, 64, {1, 2, 3}, 0, 1}};
    const auto all = toRequestSpecs(t);
    ASSERT_EQ(all.size(), 3u);
    EXPECT_EQ(all[2].id, 2u);
    EXPECT_EQ(all[2].session, 0u);
    EXPECT_EQ(all[2].turn, 1u);
    EXPECT_EQ(all[1].turn, 0u);
    EXPECT_EQ(all[2].tokens.size(), 130u);
    EXPECT_EQ(all[0].tokens, traceTokens(t.requests[0]));
    EXPECT_TRUE(
        std::equal(all[0].tokens.begin(), all[0].tokens.begin() + 64, all[2].tokens.begin()));
    EXPECT_EQ(toRequestSpecs(t, 2).size(), 2u);
    EXPECT_EQ(toRequestSpecs(t, 10).size(), 3u);
}

}  // namespace
}  // namespace strata::app

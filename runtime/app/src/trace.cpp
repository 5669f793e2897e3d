#include "strata/app/trace.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>

namespace strata::app {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

constexpr std::uint32_t kMooncakeBlockTokens = 512;
constexpr std::uint32_t kKvTesterDefaultBlockTokens = 64;
// kv-cache-tester ids: bits 32..62 hold file index + 1 for "local" scope (0 for "global"), bits
// 0..31 the file's id; bit 63 marks the synthetic id of a partial tail block.
constexpr std::uint64_t kTailBit = std::uint64_t{1} << 63;
constexpr std::uint64_t kLocalIdLimit = std::uint64_t{1} << 32;

std::uint64_t splitmix64(std::uint64_t x) {
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

std::uint64_t ceilDiv(std::uint64_t a, std::uint64_t b) { return a / b + (a % b != 0 ? 1 : 0); }

Status invalid(std::string_view where, std::string_view why) {
    return STRATA_ERROR(StatusCode::kInvalidArgument, "{}: {}", where, why);
}

// Reads a whole file. kNotFound when it does not exist, kIoError when it cannot be read.
Result<std::string> readFile(const std::string& path) {
    std::error_code ec;
    if (!fs::exists(path, ec)) {
        return STRATA_ERROR(StatusCode::kNotFound, "trace file {} does not exist", path);
    }
    if (fs::is_directory(path, ec)) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "trace file {} is a directory", path);
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) return STRATA_ERROR(StatusCode::kIoError, "cannot open trace file {}", path);
    std::string data;
    in.seekg(0, std::ios::end);
    const auto size = in.tellg();
    if (size < 0) return STRATA_ERROR(StatusCode::kIoError, "cannot read trace file {}", path);
    data.resize(static_cast<std::size_t>(size));
    in.seekg(0, std::ios::beg);
    in.read(data.data(), static_cast<std::streamsize>(data.size()));
    if (!in) return STRATA_ERROR(StatusCode::kIoError, "cannot read trace file {}", path);
    return data;
}

// A non-negative integer field, or nullopt (the caller names the field).
std::optional<std::uint64_t> unsignedValue(const Json& v) {
    if (v.is_number_unsigned()) return v.get<std::uint64_t>();
    if (v.is_number_integer() && v.get<std::int64_t>() >= 0) {
        return static_cast<std::uint64_t>(v.get<std::int64_t>());
    }
    return std::nullopt;
}

// A finite, non-negative number, or nullopt.
std::optional<double> timeValue(const Json& v) {
    if (!v.is_number()) return std::nullopt;
    const double t = v.get<double>();
    if (!std::isfinite(t) || t < 0) return std::nullopt;
    return t;
}

// Reads `field` of object `obj` as a non-negative integer; `where` prefixes the error.
Status readCount(const Json& obj, const char* field, const std::string& where, std::uint64_t* out) {
    const auto it = obj.find(field);
    if (it == obj.end()) return invalid(where, fmt::format("missing field '{}'", field));
    const auto v = unsignedValue(*it);
    if (!v) return invalid(where, fmt::format("field '{}' must be a non-negative integer", field));
    *out = *v;
    return Status::ok();
}

Status readTime(const Json& obj, const char* field, const std::string& where, double* out) {
    const auto it = obj.find(field);
    if (it == obj.end()) return invalid(where, fmt::format("missing field '{}'", field));
    const auto v = timeValue(*it);
    if (!v) return invalid(where, fmt::format("field '{}' must be a non-negative number", field));
    *out = *v;
    return Status::ok();
}

// A request's input length (`field`) must be at least one token and at most
// kMaxTraceRequestTokens: a request without input cannot be run, and its tokens are allocated.
Status checkInputTokens(const char* field, std::uint64_t tokens, const std::string& where) {
    if (tokens == 0) {
        return invalid(where, fmt::format("field '{}' is 0: a request needs at least one input "
                                          "token",
                                          field));
    }
    if (tokens > kMaxTraceRequestTokens) {
        return invalid(where, fmt::format("field '{}' ({}) exceeds the limit of {} tokens per "
                                          "request",
                                          field, tokens, kMaxTraceRequestTokens));
    }
    return Status::ok();
}

// A NUL byte ends nlohmann's input early (it stops there as at the end of a C string), which would
// silently drop the rest of a line or file: it is an error.
Status checkNoNul(std::string_view text, const std::string& where) {
    const std::size_t at = text.find('\0');
    if (at == std::string_view::npos) return Status::ok();
    return invalid(where, fmt::format("contains a NUL byte (at byte {})", at + 1));
}

// Appends hash_ids to *ids, each passed through map(id) -> optional<uint64_t> (nullopt: out of
// range). The error names the field.
template <typename Map>
Status readIds(const Json& obj, const std::string& where, Map map,
               std::vector<std::uint64_t>* ids) {
    const auto it = obj.find("hash_ids");
    if (it == obj.end()) return invalid(where, "missing field 'hash_ids'");
    if (!it->is_array()) return invalid(where, "field 'hash_ids' must be an array of integers");
    ids->reserve(it->size() + 1);
    for (const Json& e : *it) {
        const auto v = unsignedValue(e);
        if (!v) return invalid(where, "field 'hash_ids' must be an array of integers");
        const auto mapped = map(*v);
        if (!mapped) return invalid(where, fmt::format("hash id {} is out of range", *v));
        ids->push_back(*mapped);
    }
    return Status::ok();
}

std::string stemOf(const std::string& path) {
    fs::path p(path);
    if (!p.has_filename()) p = p.parent_path();  // "dir/" -> "dir"
    return p.stem().string();
}

// ---- Mooncake ----------------------------------------------------------------------------------

Status parseMooncakeLine(std::string_view line, const std::string& where, TraceRequest* r) {
    STRATA_RETURN_IF_ERROR(checkNoNul(line, where));
    const Json row = Json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
    if (row.is_discarded()) return invalid(where, "not a valid JSON object");
    if (!row.is_object()) return invalid(where, "not a JSON object");
    double timestamp_ms = 0;
    STRATA_RETURN_IF_ERROR(readTime(row, "timestamp", where, &timestamp_ms));
    STRATA_RETURN_IF_ERROR(readCount(row, "input_length", where, &r->input_tokens));
    STRATA_RETURN_IF_ERROR(readCount(row, "output_length", where, &r->output_tokens));
    STRATA_RETURN_IF_ERROR(checkInputTokens("input_length", r->input_tokens, where));
    STRATA_RETURN_IF_ERROR(readIds(
        row, where, [](std::uint64_t id) { return std::optional<std::uint64_t>(id); },
        &r->block_ids));
    const std::uint64_t want = ceilDiv(r->input_tokens, kMooncakeBlockTokens);
    if (r->block_ids.size() != want) {
        return invalid(where, fmt::format("field 'hash_ids' has {} ids but input_length {} needs "
                                          "ceil({}/{}) = {}",
                                          r->block_ids.size(), r->input_tokens, r->input_tokens,
                                          kMooncakeBlockTokens, want));
    }
    r->arrival_s = timestamp_ms / 1000.0;
    r->block_tokens = kMooncakeBlockTokens;
    return Status::ok();
}

// ---- kv-cache-tester ---------------------------------------------------------------------------

struct KvFileContext {
    std::string name;  // file name used in messages
    std::uint32_t session = 0;
    std::uint64_t namespace_bits = 0;  // (file index + 1) << 32 for local scope, 0 for global
    std::uint32_t block_tokens = 0;
    std::uint64_t next_tail = 0;  // synthetic tail ids handed out in this file
    std::uint32_t next_agent = 1;
};

// One list of requests being expanded: the file's top-level list or a sub-agent's.
struct KvLevel {
    const Json* list = nullptr;
    std::size_t next = 0;  // index of the next element to read
    double base_s = 0;     // arrival of the sub-agent's marker (0 for the top level)
    std::uint32_t agent = 0;
};

// The JSON pointer of element `index` of the innermost list ("/requests/3/requests/0"). Levels
// between the first and the last few are elided ("/requests/3/.../requests/0"), so that a message
// stays short however deep the nesting.
std::string kvPointer(const std::vector<KvLevel>& stack, std::size_t index) {
    constexpr std::size_t kEdge = 3;
    std::string out;
    for (std::size_t k = 0; k < stack.size(); ++k) {
        if (stack.size() > 2 * kEdge + 1 && k == kEdge) {
            out += fmt::format("/...({} levels)...", stack.size() - 2 * kEdge);
            k = stack.size() - kEdge - 1;
            continue;
        }
        // An outer level's `next` has moved past the marker being expanded.
        out += fmt::format("/requests/{}", k + 1 == stack.size() ? index : stack[k].next - 1);
    }
    return out;
}

// Parses one request (not a marker) into *out.
Status parseKvRequest(const Json& req, const std::string& where, double arrival_s,
                      std::uint32_t agent, KvFileContext* ctx, std::vector<TraceRequest>* out) {
    TraceRequest r;
    r.arrival_s = arrival_s;
    r.block_tokens = ctx->block_tokens;
    r.session = ctx->session;
    r.agent = agent;
    STRATA_RETURN_IF_ERROR(readCount(req, "in", where, &r.input_tokens));
    STRATA_RETURN_IF_ERROR(readCount(req, "out", where, &r.output_tokens));
    STRATA_RETURN_IF_ERROR(checkInputTokens("in", r.input_tokens, where));
    const std::uint64_t ns = ctx->namespace_bits;
    STRATA_RETURN_IF_ERROR(readIds(
        req, where,
        [ns](std::uint64_t id) {
            return id < kLocalIdLimit ? std::optional<std::uint64_t>(ns | id) : std::nullopt;
        },
        &r.block_ids));
    const std::uint64_t full = r.input_tokens / ctx->block_tokens;
    const std::uint64_t all = ceilDiv(r.input_tokens, ctx->block_tokens);
    if (r.block_ids.size() == full && full != all) {
        // The file hashes full blocks only; give the partial tail an id of its own.
        if (ctx->next_tail >= kLocalIdLimit) return invalid(where, "too many requests");
        r.block_ids.push_back(kTailBit | ctx->namespace_bits | ctx->next_tail++);
    } else if (r.block_ids.size() != all) {
        return invalid(where + "/hash_ids",
                       fmt::format("has {} ids but in {} needs floor or ceil of {}/{} ({} or {})",
                                   r.block_ids.size(), r.input_tokens, r.input_tokens,
                                   ctx->block_tokens, full, all));
    }
    out->push_back(std::move(r));
    return Status::ok();
}

// Parses the file's request list `top` (at /requests). Sub-agent markers are expanded in place
// with an explicit stack, not by recursion: memory grows with the depth, never the call stack,
// and a nesting deeper than kMaxTraceSubAgentDepth is an error naming the file and the depth.
Status parseKvRequests(const Json& top, KvFileContext* ctx, std::vector<TraceRequest>* out) {
    if (!top.is_array()) return invalid(ctx->name + ": /requests", "must be an array");
    std::vector<KvLevel> stack;
    stack.push_back(KvLevel{&top, 0, 0.0, 0});
    out->reserve(out->size() + top.size());
    while (!stack.empty()) {
        KvLevel& level = stack.back();
        if (level.next == level.list->size()) {
            stack.pop_back();
            continue;
        }
        const std::size_t index = level.next++;
        const Json& req = (*level.list)[index];
        const std::string where = ctx->name + ": " + kvPointer(stack, index);
        if (!req.is_object()) return invalid(where, "request must be a JSON object");
        double t = 0;
        STRATA_RETURN_IF_ERROR(readTime(req, "t", where, &t));
        const auto type = req.find("type");
        if (type != req.end() && !type->is_string()) {
            return invalid(where, "field 'type' must be a string");
        }
        if (type == req.end() || type->get_ref<const std::string&>() != "subagent") {
            STRATA_RETURN_IF_ERROR(
                parseKvRequest(req, where, level.base_s + t, level.agent, ctx, out));
            continue;
        }
        const auto nested = req.find("requests");
        if (nested == req.end()) return invalid(where, "sub-agent marker without 'requests'");
        if (!nested->is_array()) return invalid(where + "/requests", "must be an array");
        if (stack.size() > kMaxTraceSubAgentDepth) {
            return invalid(where, fmt::format("sub-agents nested more than {} levels deep",
                                              kMaxTraceSubAgentDepth));
        }
        // Nested t counts from the sub-agent's start, which is the marker's arrival. `level` is
        // not used past this push, which may move it.
        const KvLevel child{&*nested, 0, level.base_s + t, ctx->next_agent++};
        stack.push_back(child);
    }
    return Status::ok();
}

// Parses one kv-cache-tester file. *block_tokens is 0 before the first file, then must match.
Status loadKvFile(const fs::path& file, std::uint32_t session, std::uint32_t* block_tokens,
                  std::vector<TraceRequest>* out) {
    const std::string path = file.string();
    STRATA_ASSIGN_OR_RETURN(std::string text, readFile(path));
    STRATA_RETURN_IF_ERROR(checkNoNul(text, path));
    const Json doc = Json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded()) return invalid(path, "not valid JSON");
    if (!doc.is_object()) return invalid(path, "top level must be a JSON object");

    KvFileContext ctx;
    ctx.name = path;
    ctx.session = session;
    ctx.block_tokens = kKvTesterDefaultBlockTokens;
    if (const auto it = doc.find("block_size"); it != doc.end()) {
        const auto v = unsignedValue(*it);
        if (!v || *v == 0) return invalid(path + ": /block_size", "must be a positive integer");
        if (*v > kMaxTraceBlockTokens) {
            return invalid(path + ": /block_size",
                           fmt::format("{} exceeds the limit of {} tokens per block", *v,
                                       kMaxTraceBlockTokens));
        }
        ctx.block_tokens = static_cast<std::uint32_t>(*v);
    }
    if (*block_tokens != 0 && *block_tokens != ctx.block_tokens) {
        return invalid(path + ": /block_size",
                       fmt::format("{} differs from the {} of the files before it",
                                   ctx.block_tokens, *block_tokens));
    }
    *block_tokens = ctx.block_tokens;
    bool global = false;
    if (const auto it = doc.find("hash_id_scope"); it != doc.end()) {
        if (!it->is_string() || (*it != "local" && *it != "global")) {
            return invalid(path + ": /hash_id_scope", "must be \"local\" or \"global\"");
        }
        global = *it == "global";
    }
    ctx.namespace_bits = global ? 0 : (static_cast<std::uint64_t>(session) + 1) << 32;
    const auto reqs = doc.find("requests");
    if (reqs == doc.end()) return invalid(path, "missing field 'requests'");
    return parseKvRequests(*reqs, &ctx, out);
}

Result<Trace> loadKvTesterUnchecked(const std::string& path) {
    std::error_code ec;
    if (!fs::exists(path, ec)) {
        return STRATA_ERROR(StatusCode::kNotFound, "trace path {} does not exist", path);
    }
    std::vector<fs::path> files;
    if (fs::is_directory(path, ec)) {
        for (const auto& entry : fs::directory_iterator(path, ec)) {
            if (entry.path().extension() == ".json" && !entry.is_directory(ec)) {
                files.push_back(entry.path());
            }
        }
        if (ec) {
            return STRATA_ERROR(StatusCode::kIoError, "cannot list {}: {}", path, ec.message());
        }
        if (files.empty()) {
            return STRATA_ERROR(StatusCode::kNotFound, "no .json trace files in {}", path);
        }
        std::sort(files.begin(), files.end(),
                  [](const fs::path& a, const fs::path& b) { return a.filename() < b.filename(); });
    } else {
        files.emplace_back(path);
    }
    if (files.size() >= 0x7FFFFFFFu) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "too many trace files in {}", path);
    }

    Trace trace;
    trace.name = stemOf(path);
    for (std::size_t i = 0; i < files.size(); ++i) {
        STRATA_RETURN_IF_ERROR(loadKvFile(files[i], static_cast<std::uint32_t>(i),
                                          &trace.block_tokens, &trace.requests));
    }
    // Files are concatenated in name order and each in its own order, so a stable sort by arrival
    // breaks ties by (file, position).
    std::stable_sort(
        trace.requests.begin(), trace.requests.end(),
        [](const TraceRequest& a, const TraceRequest& b) { return a.arrival_s < b.arrival_s; });
    for (std::size_t i = 0; i < trace.requests.size(); ++i) trace.requests[i].id = i;
    return trace;
}

Result<Trace> loadMooncakeUnchecked(const std::string& path) {
    STRATA_ASSIGN_OR_RETURN(std::string text, readFile(path));
    Trace trace;
    trace.name = stemOf(path);
    trace.block_tokens = kMooncakeBlockTokens;
    trace.requests.reserve(static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')) +
                           1);
    std::size_t line_no = 0;
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t end = text.find('\n', pos);
        if (end == std::string::npos) end = text.size();
        std::string_view line(text.data() + pos, end - pos);
        pos = end + 1;
        ++line_no;
        if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
        TraceRequest r;
        r.id = trace.requests.size();
        const Status s = parseMooncakeLine(line, fmt::format("{}:{}", path, line_no), &r);
        if (!s.isOk()) return s;
        trace.requests.push_back(std::move(r));
    }
    return trace;
}

}  // namespace

// nlohmann::json is used without exceptions (allow_exceptions = false, types checked before
// get<>); the try blocks keep an allocation failure from crossing the library boundary.
Result<Trace> loadMooncakeTrace(const std::string& path) {
    try {
        return loadMooncakeUnchecked(path);
    } catch (const std::exception& e) {
        return STRATA_ERROR(StatusCode::kInternal, "loading {}: {}", path, e.what());
    }
}

Result<Trace> loadKvTesterTrace(const std::string& path) {
    try {
        return loadKvTesterUnchecked(path);
    } catch (const std::exception& e) {
        return STRATA_ERROR(StatusCode::kInternal, "loading {}: {}", path, e.what());
    }
}

Status validatePageSize(const Trace& t, std::uint32_t page_tokens) {
    if (page_tokens == 0 || t.block_tokens % page_tokens != 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "page size {} does not divide the {}-token blocks of trace {}",
                            page_tokens, t.block_tokens, t.name);
    }
    return Status::ok();
}

std::vector<std::int32_t> traceTokens(const TraceRequest& r) {
    const std::uint64_t cap = static_cast<std::uint64_t>(r.block_tokens) * r.block_ids.size();
    const std::uint64_t total = std::min(r.input_tokens, cap);
    std::vector<std::int32_t> tokens(total);
    std::uint64_t at = 0;
    for (const std::uint64_t id : r.block_ids) {
        const std::uint64_t n = std::min<std::uint64_t>(r.block_tokens, total - at);
        // Distinct (id, position) pairs give distinct 64-bit inputs for any realistic ids;
        // splitmix64 is a bijection and the top 31 bits of its output are the token.
        const std::uint64_t base = id * 0x9E3779B97F4A7C15ULL;
        for (std::uint64_t k = 0; k < n; ++k) {
            tokens[at + k] = static_cast<std::int32_t>(splitmix64(base + k) >> 33);
        }
        at += n;
        if (at == total) break;
    }
    return tokens;
}

std::vector<RequestSpec> toRequestSpecs(const Trace& t, std::size_t limit) {
    const std::size_t n =
        limit == 0 ? t.requests.size() : std::min<std::size_t>(limit, t.requests.size());
    std::vector<RequestSpec> specs;
    specs.reserve(n);
    std::unordered_map<std::uint32_t, std::uint32_t> turns;
    for (std::size_t i = 0; i < n; ++i) {
        const TraceRequest& r = t.requests[i];
        specs.push_back(RequestSpec{i, r.session, turns[r.session]++, traceTokens(r)});
    }
    return specs;
}

}  // namespace strata::app

#include "strata/app/trace.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>

#include "strata/core/log.h"

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

// An empty file or one of only whitespace holds no request: an error naming the file, not a run
// of nothing with a hit rate of 0.
Status checkNotBlank(std::string_view text, const std::string& path) {
    if (text.empty()) return invalid(path, "the file is empty (0 bytes): a trace needs requests");
    if (text.find_first_not_of(" \t\r\n\f\v") == std::string_view::npos) {
        return invalid(path, fmt::format("the file holds only whitespace ({} bytes): a trace "
                                         "needs requests",
                                         text.size()));
    }
    return Status::ok();
}

// Where and why a text is not valid JSON.
struct JsonError {
    std::size_t byte = 0;    // offset of the offending character, 0-based (text size: the end)
    std::size_t line = 1;    // 1-based
    std::size_t column = 1;  // 1-based, in bytes
    bool at_end = false;     // the text ended before the JSON did
    std::string why;         // the parser's reason: "syntax error while parsing ... expected ..."
};

// Parses `text` again with exceptions, so that only the failure path pays for the details.
JsonError jsonError(std::string_view text) {
    JsonError out;
    try {
        const Json parsed = Json::parse(text.begin(), text.end());
        (void)parsed;
        out.why = "not valid JSON";
    } catch (const Json::parse_error& e) {
        // e.byte counts the characters read, the offending one included (1-based).
        out.byte = std::min<std::size_t>(e.byte == 0 ? 0 : e.byte - 1, text.size());
        const std::string_view head = text.substr(0, out.byte);
        out.line = static_cast<std::size_t>(std::count(head.begin(), head.end(), '\n')) + 1;
        const std::size_t nl = head.rfind('\n');
        out.column = out.byte - (nl == std::string_view::npos ? 0 : nl + 1) + 1;
        out.at_end = out.byte >= text.size();
        // what(): "[json.exception.parse_error.101] parse error at line L, column C: syntax error
        // while parsing value - unexpected end of input; expected ..."; keep the reason.
        out.why = e.what();
        if (const std::size_t at = out.why.find("syntax error"); at != std::string::npos) {
            out.why = out.why.substr(at);
        } else if (const std::size_t at2 = out.why.find("] "); at2 != std::string::npos) {
            out.why = out.why.substr(at2 + 2);
        }
    } catch (const std::exception& e) {
        out.why = e.what();
    }
    return out;
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
    if (row.is_discarded()) {
        const JsonError e = jsonError(line);
        return invalid(where,
                       fmt::format("not a valid JSON object at column {}{}: {}", e.column,
                                   e.at_end ? " (the end of the line: truncated?)" : "", e.why));
    }
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
    std::uint64_t out_of_order = 0;  // elements whose t is below the one before in their list
    std::string first_out_of_order;  // "<path>: <pointer>" of the first
};

// One list of requests being expanded: the file's top-level list or a sub-agent's.
struct KvLevel {
    const Json* list = nullptr;
    std::size_t next = 0;  // index of the next element to read
    double base_s = 0;     // arrival of the sub-agent's marker (0 for the top level)
    std::uint32_t agent = 0;
    double last_t = 0;  // t of the element read before `next` (0 before the first)
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
    stack.push_back(KvLevel{&top, 0, 0.0, 0, 0.0});
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
        if (t < level.last_t) {
            if (ctx->out_of_order++ == 0) {
                ctx->first_out_of_order =
                    fmt::format("{} (t {:g} after {:g})", where, t, level.last_t);
            }
        }
        level.last_t = t;
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
        const KvLevel child{&*nested, 0, level.base_s + t, ctx->next_agent++, 0.0};
        stack.push_back(child);
    }
    return Status::ok();
}

// Parses one kv-cache-tester file. *block_tokens is 0 before the first file, then must match.
Status loadKvFile(const fs::path& file, std::uint32_t session, std::uint32_t* block_tokens,
                  Trace* trace) {
    const std::string path = file.string();
    STRATA_ASSIGN_OR_RETURN(std::string text, readFile(path));
    STRATA_RETURN_IF_ERROR(checkNotBlank(text, path));
    STRATA_RETURN_IF_ERROR(checkNoNul(text, path));
    const Json doc = Json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded()) {
        const JsonError e = jsonError(text);
        return invalid(
            path,
            fmt::format("not valid JSON at byte {} (line {}, column {}){}: {}", e.byte, e.line,
                        e.column, e.at_end ? ", the end of the file: truncated?" : "", e.why));
    }
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
    const std::size_t before = trace->requests.size();
    STRATA_RETURN_IF_ERROR(parseKvRequests(*reqs, &ctx, &trace->requests));
    if (trace->requests.size() == before) {
        return invalid(path + ": /requests",
                       reqs->empty() ? "is empty: a trace file needs at least one request"
                                     : "holds no request (only empty sub-agents)");
    }
    if (ctx.out_of_order > 0 && trace->out_of_order == 0) {
        trace->first_out_of_order = ctx.first_out_of_order;
    }
    trace->out_of_order += ctx.out_of_order;
    return Status::ok();
}

// Whether a directory entry's name ends in ".json" in any case (".JSON", ".Json").
bool hasJsonExtension(const fs::path& p) {
    std::string ext = p.extension().string();
    for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return ext == ".json";
}

Result<Trace> loadKvTesterUnchecked(const std::string& path) {
    std::error_code ec;
    if (!fs::exists(path, ec)) {
        return STRATA_ERROR(StatusCode::kNotFound, "trace path {} does not exist", path);
    }
    std::vector<fs::path> files;
    std::vector<std::string> skipped;
    if (fs::is_directory(path, ec)) {
        for (const auto& entry : fs::directory_iterator(path, ec)) {
            const std::string name = entry.path().filename().string();
            std::error_code entry_ec;
            if (entry.is_directory(entry_ec)) {
                skipped.push_back(name + ": a directory (subdirectories are not read)");
            } else if (!hasJsonExtension(entry.path())) {
                skipped.push_back(name + ": does not end in .json");
            } else {
                files.push_back(entry.path());
            }
        }
        if (ec) {
            return STRATA_ERROR(StatusCode::kIoError, "cannot list {}: {}", path, ec.message());
        }
        std::sort(skipped.begin(), skipped.end());
        if (files.empty()) {
            return STRATA_ERROR(StatusCode::kNotFound, "no .json trace files in {}{}", path,
                                skipped.empty()
                                    ? std::string(" (it is empty)")
                                    : fmt::format(" (skipped: {})", fmt::join(skipped, "; ")));
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
    trace.skipped_files = std::move(skipped);
    for (std::size_t i = 0; i < files.size(); ++i) {
        STRATA_RETURN_IF_ERROR(
            loadKvFile(files[i], static_cast<std::uint32_t>(i), &trace.block_tokens, &trace));
    }
    auto& log = core::logger("runtime");
    if (!trace.skipped_files.empty()) {
        log.warn("trace directory {}: loaded {} .json files, skipped {}: {}", path, files.size(),
                 trace.skipped_files.size(), fmt::join(trace.skipped_files, "; "));
    }
    if (trace.out_of_order > 0) {
        log.warn(
            "trace {}: {} request(s) have a t earlier than the request before them in their "
            "list, first {}; they are replayed at their time (requests are merged by "
            "arrival)",
            path, trace.out_of_order, trace.first_out_of_order);
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
    STRATA_RETURN_IF_ERROR(checkNotBlank(text, path));
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
        if (!trace.requests.empty() && r.arrival_s < trace.requests.back().arrival_s) {
            if (trace.out_of_order++ == 0) {
                trace.first_out_of_order =
                    fmt::format("{}:{} (timestamp {:g} after {:g})", path, line_no,
                                r.arrival_s * 1000.0, trace.requests.back().arrival_s * 1000.0);
            }
        }
        trace.requests.push_back(std::move(r));
    }
    if (trace.out_of_order > 0) {
        core::logger("runtime").warn(
            "trace {}: {} line(s) have a timestamp earlier than the line before them, first {}; "
            "requests are replayed in file order",
            path, trace.out_of_order, trace.first_out_of_order);
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

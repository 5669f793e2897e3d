#include "report.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>

namespace strata::bench {
namespace {

std::string hostName() {
    char buf[256] = {};
    if (gethostname(buf, sizeof(buf) - 1) != 0) return "unknown";
    return buf;
}

std::string isoDateUtc() {
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    char buf[32];
    std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

}  // namespace

BenchReport::BenchReport(std::string bench, std::string device)
    : bench_(std::move(bench)),
      host_(hostName()),
      device_(std::move(device)),
      date_(isoDateUtc()) {}

double advantage(const BenchRow& row, double baseline) {
    if (row.higher_is_better) return baseline != 0.0 ? row.strata / baseline : 0.0;
    return row.strata != 0.0 ? baseline / row.strata : 0.0;
}

nlohmann::ordered_json BenchReport::toJson() const {
    nlohmann::ordered_json j;
    j["bench"] = bench_;
    j["host"] = host_;
    j["device"] = device_;
    j["date"] = date_;
    j["rows"] = nlohmann::ordered_json::array();
    for (const BenchRow& r : rows_) {
        nlohmann::ordered_json row;
        row["case"] = r.case_name;
        row["metric"] = r.metric;
        row["unit"] = r.unit;
        row["higher_is_better"] = r.higher_is_better;
        row["strata"] = r.strata;
        row["baselines"] = nlohmann::ordered_json::object();
        for (const auto& [name, value] : r.baselines) row["baselines"][name] = value;
        row["extra"] = r.extra;
        j["rows"].push_back(std::move(row));
    }
    return j;
}

Status BenchReport::writeJson(const std::string& path) const {
    std::ofstream out(path);
    if (!out) {
        return STRATA_ERROR(StatusCode::kIoError, "cannot open {} for writing: {}", path,
                            std::strerror(errno));
    }
    out << toJson().dump(2) << "\n";
    out.close();
    if (!out) {
        return STRATA_ERROR(StatusCode::kIoError, "cannot write {}: {}", path,
                            std::strerror(errno));
    }
    return Status::ok();
}

std::string BenchReport::table() const {
    std::vector<std::string> names;
    for (const BenchRow& r : rows_) {
        for (const auto& b : r.baselines) {
            if (std::find(names.begin(), names.end(), b.first) == names.end()) {
                names.push_back(b.first);
            }
        }
    }
    std::size_t case_w = 4;
    for (const BenchRow& r : rows_) case_w = std::max(case_w, r.case_name.size());
    std::string out = fmt::format("{} on {} ({}), {}\n", bench_, host_, device_, date_);
    std::string header =
        fmt::format("{:<{}}  {:<8}  {:<5}  {:>12}", "case", case_w, "metric", "unit", "strata");
    for (const auto& n : names) header += fmt::format("  {:>26}", n);
    out += header + "\n" + std::string(header.size(), '-') + "\n";
    for (const BenchRow& r : rows_) {
        out += fmt::format("{:<{}}  {:<8}  {:<5}  {:>12.3f}", r.case_name, case_w, r.metric, r.unit,
                           r.strata);
        for (const auto& n : names) {
            auto it = std::find_if(r.baselines.begin(), r.baselines.end(),
                                   [&](const auto& b) { return b.first == n; });
            if (it == r.baselines.end()) {
                out += fmt::format("  {:>26}", "-");
            } else {
                out += fmt::format("  {:>26}", fmt::format("{:.3f} (strata {:.2f}x)", it->second,
                                                           advantage(r, it->second)));
            }
        }
        out += "\n";
    }
    for (const auto& note : notes_) out += note + "\n";
    return out;
}

}  // namespace strata::bench

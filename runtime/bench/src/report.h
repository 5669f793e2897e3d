// BenchReport: the one result format of every bench. Rows carry Strata's figure and each
// baseline's figure measured in the same run; writes
// {"bench","host","device","date","rows":[{"case","metric","unit","higher_is_better","strata",
// "baselines":{...},"extra":{...}}]} and prints a table with the baselines beside Strata.
// Thread-safety: not thread-safe; one per bench run.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <utility>
#include <vector>

#include "strata/core/status.h"

namespace strata::bench {

struct BenchRow {
    std::string case_name;
    std::string metric;
    std::string unit;
    bool higher_is_better = false;
    double strata = 0.0;
    std::vector<std::pair<std::string, double>> baselines;  // printed in this order
    nlohmann::ordered_json extra = nlohmann::ordered_json::object();
};

class BenchReport {
public:
    // device: "cpu" or the GPU's name. Host and date (ISO-8601, UTC) are taken now.
    BenchReport(std::string bench, std::string device);

    void addRow(BenchRow row) { rows_.push_back(std::move(row)); }
    // A line printed under the table (goals and their outcome).
    void addNote(std::string note) { notes_.push_back(std::move(note)); }
    const std::vector<BenchRow>& rows() const noexcept { return rows_; }

    nlohmann::ordered_json toJson() const;
    // Writes toJson() (indented) to `path`; kIoError naming the path and errno text on failure.
    Status writeJson(const std::string& path) const;
    // The table: one line per row, each baseline as "value (strata N.NNx)" where N > 1 means
    // Strata is better; then the notes.
    std::string table() const;

private:
    std::string bench_;
    std::string host_;
    std::string device_;
    std::string date_;
    std::vector<BenchRow> rows_;
    std::vector<std::string> notes_;
};

// "1.23x": how many times better Strata is than `baseline` in this row's direction.
double advantage(const BenchRow& row, double baseline);

}  // namespace strata::bench

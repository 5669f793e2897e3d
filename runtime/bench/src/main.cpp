// strata-bench NAME [--json PATH] [options]: runs one registered microbenchmark, prints its table
// (Strata beside its baselines) and optionally writes the JSON report.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>
#include <vector>

#include "registry.h"

int main(int argc, char** argv) {
    using namespace strata::bench;
    CLI::App app{"strata-bench: Strata microbenchmarks, each measured beside its baselines"};
    app.require_subcommand(1);
    BenchContext ctx;
    app.add_option("--json", ctx.json_path, "write the report as JSON to this path");
    std::vector<std::pair<CLI::App*, std::unique_ptr<Bench>>> benches;
    for (const BenchEntry& entry : registeredBenches()) {
        CLI::App* sub = app.add_subcommand(entry.name, entry.description);
        sub->fallthrough();  // --json may follow the bench name
        std::unique_ptr<Bench> bench = entry.make();
        bench->addOptions(*sub);
        benches.emplace_back(sub, std::move(bench));
    }
    CLI11_PARSE(app, argc, argv);

    for (auto& [sub, bench] : benches) {
        if (!sub->parsed()) continue;
        auto report = bench->run(ctx);
        if (!report.isOk()) {
            std::fprintf(stderr, "strata-bench %s: %s\n", sub->get_name().c_str(),
                         report.status().toString().c_str());
            return 1;
        }
        if (!ctx.reporter) return 0;
        std::fputs(report->table().c_str(), stdout);
        if (!ctx.json_path.empty()) {
            strata::Status s = report->writeJson(ctx.json_path);
            if (!s.isOk()) {
                std::fprintf(stderr, "strata-bench: %s\n", s.toString().c_str());
                return 1;
            }
            std::printf("wrote %s\n", ctx.json_path.c_str());
        }
        return 0;
    }
    return 1;
}

// The bench registry: strata-bench NAME runs the bench registered under NAME. A bench adds its own
// options to its CLI11 subcommand and fills a BenchReport. Register new benches in registry.cpp.
// Thread-safety: used from main() only.
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <span>
#include <string>

#include "report.h"

namespace strata::bench {

struct BenchContext {
    std::string json_path;  // --json PATH ("" = no file)
    // Set by the bench: false on processes that must not print or write (MPI ranks > 0).
    bool reporter = true;
};

class Bench {
public:
    virtual ~Bench() = default;
    // Binds the bench's options to its subcommand (called before parsing).
    virtual void addOptions(CLI::App& app) = 0;
    // Runs after parsing. Returns the report (on the reporter) or the failure.
    virtual Result<BenchReport> run(BenchContext& ctx) = 0;
};

struct BenchEntry {
    const char* name;
    const char* description;
    std::unique_ptr<Bench> (*make)();
};

std::span<const BenchEntry> registeredBenches();

// Factories of the registered benches (one per bench source file).
std::unique_ptr<Bench> makeSyncBench();
std::unique_ptr<Bench> makeStorageBench();
std::unique_ptr<Bench> makeTreeBench();
// A long 4-rank strata-run watched from outside (RSS, descriptors, mismatches over time).
std::unique_ptr<Bench> makeSoakBench();
// The remote tier's pull bench (without UCX in the build it fails: kNotSupported).
std::unique_ptr<Bench> makeRemoteBench();
// The node-wide host tier (run under mpirun -np 4 on one host).
std::unique_ptr<Bench> makeNodePoolBench();
// GPU benches (built with CUDA; nccl also needs NCCL).
std::unique_ptr<Bench> makeTransferBench();
std::unique_ptr<Bench> makeOverlapBench();
std::unique_ptr<Bench> makeNcclBench();

}  // namespace strata::bench

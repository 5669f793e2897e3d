// Fuzz target: strata-run's TOML configuration (runtime/app/src/run_config.cpp). The input is
// written as the file named by --config and the configuration loaded as strata-run loads it. A bad
// file must be a clean kInvalidArgument naming the file (no exception, no crash); a file that
// loads must give a configuration that validates and describes itself.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "strata/app/run_config.h"
#include "strata/core/log.h"

using namespace strata;

extern char** environ;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    core::setLogLevel(spdlog::level::off);
    // The STRATA_* environment would override the file's values: none here.
    std::vector<std::string> names;
    for (char** e = environ; *e != nullptr; ++e) {
        const std::string entry = *e;
        if (entry.rfind("STRATA_", 0) == 0) names.push_back(entry.substr(0, entry.find('=')));
    }
    for (const auto& n : names) ::unsetenv(n.c_str());
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto path = fuzz::scratchDir() / "strata.toml";
    fuzz::writeFile(path, data, size);
    const std::string file = path.string();
    const char* argv[] = {"strata-run", "--config", file.c_str()};
    auto r = app::loadRunConfig(3, argv);
    if (!r.isOk()) {
        STRATA_FUZZ_CHECK(r.status().code() == StatusCode::kInvalidArgument);
        STRATA_FUZZ_CHECK(r.status().message().find(file) != std::string::npos);
        return 0;
    }
    const app::RunConfig& c = r.value();
    STRATA_FUZZ_CHECK(c.config_file == file);
    STRATA_FUZZ_CHECK(app::validateRunConfig(c).isOk());
    STRATA_FUZZ_CHECK(!app::describe(c).empty());
    return 0;
}

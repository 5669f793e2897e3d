// Serving a MetricsRegistry (metrics.h) to Prometheus: an HTTP endpoint (GET /metrics, over
// Debian's cpp-httplib) and a file writer for node exporters' textfile collector (the text written
// to a temporary file beside PATH, then renamed over PATH, so a reader never sees half a file).
// Ownership: both borrow the registry, which must outlive them; each owns one thread, stopped and
// joined by its destructor. Thread-safety: their methods may be called from any one thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "strata/core/status.h"
#include "strata/runtime/metrics.h"

namespace strata::runtime {

// Writes `text` to PATH atomically: to "PATH.tmp.<pid>" in PATH's directory, flushed, then renamed
// over PATH. kIoError naming the path and the errno text (the temporary file is removed).
Status writeMetricsFile(const std::string& path, const std::string& text);

class MetricsServer {
public:
    // Listens on address:port (port 0: one the kernel picks; port() says which) and serves the
    // registry's text at GET /metrics (Content-Type text/plain; version=0.0.4) and a one-line
    // pointer to it at GET /. kUnavailable naming the address and port when the bind fails (in
    // use, no permission); kInvalidArgument for a port above 65535.
    static Result<std::unique_ptr<MetricsServer>> create(const MetricsRegistry& registry,
                                                         const std::string& address, int port);
    ~MetricsServer();  // stops listening and joins the thread
    MetricsServer(const MetricsServer&) = delete;
    MetricsServer& operator=(const MetricsServer&) = delete;

    int port() const noexcept;
    std::uint64_t requestsServed() const noexcept;

private:
    struct Impl;
    explicit MetricsServer(std::unique_ptr<Impl> impl) noexcept;
    std::unique_ptr<Impl> impl_;
};

class MetricsFileWriter {
public:
    // Writes the registry's text to `path` now (the first write's error is returned: kIoError
    // naming the path) and then every `interval` (> 0; kInvalidArgument otherwise) from its own
    // thread; a later failure is logged once per run of failures and retried next time.
    static Result<std::unique_ptr<MetricsFileWriter>> create(const MetricsRegistry& registry,
                                                             std::string path,
                                                             std::chrono::milliseconds interval);
    // Stops the thread and writes the last snapshot once more (so the file ends with the final
    // figures).
    ~MetricsFileWriter();
    MetricsFileWriter(const MetricsFileWriter&) = delete;
    MetricsFileWriter& operator=(const MetricsFileWriter&) = delete;

    // Writes the current snapshot now, on the caller's thread.
    Status writeNow();
    std::uint64_t writes() const noexcept;

private:
    struct Impl;
    explicit MetricsFileWriter(std::unique_ptr<Impl> impl) noexcept;
    std::unique_ptr<Impl> impl_;
};

}  // namespace strata::runtime

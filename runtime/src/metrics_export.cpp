#include "strata/runtime/metrics_export.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "strata/config.h"
#if STRATA_HAVE_HTTP
#include <httplib.h>
#endif

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>

#include "strata/core/log.h"

namespace strata::runtime {
namespace {

auto& log() { return core::logger("runtime"); }

constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

Status writeAll(int fd, const std::string& text, const std::string& tmp) {
    std::size_t done = 0;
    while (done < text.size()) {
        const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            return STRATA_ERROR(StatusCode::kIoError, "metrics file: writing '{}' failed: {}", tmp,
                                std::strerror(errno));
        }
        done += static_cast<std::size_t>(n);
    }
    if (::fsync(fd) != 0) {
        return STRATA_ERROR(StatusCode::kIoError, "metrics file: fsync of '{}' failed: {}", tmp,
                            std::strerror(errno));
    }
    return Status::ok();
}

}  // namespace

Status writeMetricsFile(const std::string& path, const std::string& text) {
    // Beside PATH, so that the rename stays on one file system (and is atomic); a node exporter's
    // textfile collector reads only *.prom, so the temporary name is never collected.
    const std::string tmp = fmt::format("{}.tmp.{}", path, ::getpid());
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        return STRATA_ERROR(StatusCode::kIoError, "metrics file: cannot create '{}': {}", tmp,
                            std::strerror(errno));
    }
    Status s = writeAll(fd, text, tmp);
    if (::close(fd) != 0 && s.isOk()) {
        s = STRATA_ERROR(StatusCode::kIoError, "metrics file: closing '{}' failed: {}", tmp,
                         std::strerror(errno));
    }
    if (s.isOk() && std::rename(tmp.c_str(), path.c_str()) != 0) {
        s = STRATA_ERROR(StatusCode::kIoError, "metrics file: renaming '{}' to '{}' failed: {}",
                         tmp, path, std::strerror(errno));
    }
    if (!s.isOk()) ::unlink(tmp.c_str());
    return s;
}

// ---- HTTP endpoint ---------------------------------------------------------------------------
#if STRATA_HAVE_HTTP

struct MetricsServer::Impl {
    const MetricsRegistry& registry;  // must outlive the server
    httplib::Server server;
    int port = 0;
    std::atomic<std::uint64_t> served{0};
    std::atomic<bool> listen_returned{false};
    std::thread thread;

    explicit Impl(const MetricsRegistry& r) : registry(r) {}
};

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}

Result<std::unique_ptr<MetricsServer>> MetricsServer::create(const MetricsRegistry& registry,
                                                             const std::string& address, int port) {
    if (port < 0 || port > 65535) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "metrics port {} is outside 0..65535",
                            port);
    }
    auto impl = std::make_unique<Impl>(registry);
    Impl* self = impl.get();
    // A scrape is one small GET: two worker threads are plenty, and keep the rank's thread count
    // low on a machine with many cores.
    self->server.new_task_queue = [] { return new httplib::ThreadPool(2); };
    // SO_REUSEADDR only: httplib's default adds SO_REUSEPORT, with which a second job on the node
    // would silently share the port (and the scrapes) instead of being told it is in use.
    self->server.set_socket_options([](socket_t sock) {
        int yes = 1;
        ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    });
    self->server.Get("/metrics", [self](const httplib::Request&, httplib::Response& res) {
        res.set_content(self->registry.text(), kContentType);
        self->served.fetch_add(1, std::memory_order_relaxed);
    });
    self->server.Get("/", [](const httplib::Request&, httplib::Response& res) {
        res.set_content("strata metrics: GET /metrics\n", "text/plain");
    });
    if (port == 0) {
        self->port = self->server.bind_to_any_port(address);
        if (self->port < 0) {
            return STRATA_ERROR(StatusCode::kUnavailable,
                                "metrics endpoint: cannot listen on {} (any port): {}", address,
                                std::strerror(errno));
        }
    } else {
        if (!self->server.bind_to_port(address, port)) {
            return STRATA_ERROR(StatusCode::kUnavailable,
                                "metrics endpoint: cannot listen on {}:{} ({}): pick another "
                                "--metrics-port",
                                address, port,
                                errno != 0 ? std::strerror(errno) : "address not usable");
        }
        self->port = port;
    }
    self->thread = std::thread([self] {
        if (!self->server.listen_after_bind()) {
            log().warn("metrics endpoint on port {} stopped serving", self->port);
        }
        self->listen_returned = true;
    });
    // stop() only ends a server that is already running (httplib sets the flag inside
    // listen_after_bind()): wait for it, so that the destructor can always stop the thread.
    while (!self->server.is_running() && !self->listen_returned)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(impl)));
}

MetricsServer::~MetricsServer() {
    if (!impl_) return;
    // stop() ends listen_after_bind() whether or not it has started accepting yet.
    impl_->server.stop();
    if (impl_->thread.joinable()) impl_->thread.join();
}

int MetricsServer::port() const noexcept { return impl_->port; }
std::uint64_t MetricsServer::requestsServed() const noexcept {
    return impl_->served.load(std::memory_order_relaxed);
}

#else  // !STRATA_HAVE_HTTP: built without cpp-httplib (STRATA_ENABLE_OPS)

struct MetricsServer::Impl {
    int port = 0;
};

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}

Result<std::unique_ptr<MetricsServer>> MetricsServer::create(const MetricsRegistry&,
                                                             const std::string& address, int port) {
    return STRATA_ERROR(StatusCode::kUnavailable,
                        "metrics endpoint {}:{}: this build has no HTTP endpoint (cpp-httplib, "
                        "Debian's libcpp-httplib-dev, was not found at configure time); use "
                        "--metrics-file, or rebuild with it",
                        address, port);
}

MetricsServer::~MetricsServer() = default;
int MetricsServer::port() const noexcept { return impl_->port; }
std::uint64_t MetricsServer::requestsServed() const noexcept { return 0; }

#endif  // STRATA_HAVE_HTTP

// ---- file writer -----------------------------------------------------------------------------

struct MetricsFileWriter::Impl {
    const MetricsRegistry& registry;  // must outlive the writer
    std::string path;
    std::chrono::milliseconds interval;
    std::mutex mutex;  // guards stop and serialises writes
    std::condition_variable wake;
    bool stop = false;
    bool failing = false;  // the last write failed (logged once per run of failures)
    std::atomic<std::uint64_t> writes{0};
    std::thread thread;

    Impl(const MetricsRegistry& r, std::string p, std::chrono::milliseconds i)
        : registry(r), path(std::move(p)), interval(i) {}

    // With `mutex` held.
    Status writeLocked() {
        Status s = writeMetricsFile(path, registry.text());
        if (s.isOk()) {
            writes.fetch_add(1, std::memory_order_relaxed);
            if (failing) log().info("metrics file '{}' written again", path);
            failing = false;
        } else if (!failing) {
            failing = true;
            log().warn("{} (retried every {} ms)", s.message(), interval.count());
        }
        return s;
    }

    void loop() {
        std::unique_lock<std::mutex> lock(mutex);
        while (!wake.wait_for(lock, interval, [this] { return stop; })) {
            (void)writeLocked();  // logged inside
        }
    }
};

MetricsFileWriter::MetricsFileWriter(std::unique_ptr<Impl> impl) noexcept
    : impl_(std::move(impl)) {}

Result<std::unique_ptr<MetricsFileWriter>> MetricsFileWriter::create(
    const MetricsRegistry& registry, std::string path, std::chrono::milliseconds interval) {
    if (interval.count() <= 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "metrics file interval must be positive (got {} ms)", interval.count());
    }
    if (path.empty()) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "metrics file path is empty");
    }
    auto impl = std::make_unique<Impl>(registry, std::move(path), interval);
    STRATA_RETURN_IF_ERROR(writeMetricsFile(impl->path, registry.text()));
    impl->writes = 1;
    Impl* self = impl.get();
    self->thread = std::thread([self] { self->loop(); });
    return std::unique_ptr<MetricsFileWriter>(new MetricsFileWriter(std::move(impl)));
}

MetricsFileWriter::~MetricsFileWriter() {
    if (!impl_) return;
    {
        std::lock_guard<std::mutex> lock(impl_->mutex);
        impl_->stop = true;
    }
    impl_->wake.notify_all();
    if (impl_->thread.joinable()) impl_->thread.join();
    std::lock_guard<std::mutex> lock(impl_->mutex);
    (void)impl_->writeLocked();
}

Status MetricsFileWriter::writeNow() {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    return impl_->writeLocked();
}

std::uint64_t MetricsFileWriter::writes() const noexcept {
    return impl_->writes.load(std::memory_order_relaxed);
}

}  // namespace strata::runtime

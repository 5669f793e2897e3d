// KvEventPublisher: queues the controller's events, and at each flush() sends them as one batch on
// an XPUB socket (to subscribers an XPUB is a PUB; it also hands the publisher their subscriptions,
// which is how the first flush can wait for one). ZMQ_XPUB_NODROP with ZMQ_DONTWAIT makes a full
// queue an EAGAIN the publisher counts, instead of a silent drop or a blocked scheduler.
#include <fmt/format.h>

#include <charconv>
#include <chrono>
#include <thread>

#include "strata/config.h"
#if STRATA_HAVE_ZMQ
#include <zmq.hpp>
#endif

#include "strata/core/log.h"
#include "strata/runtime/kv_events.h"

namespace strata::runtime {

#if STRATA_HAVE_ZMQ
struct KvEventPublisher::Socket {
    zmq::context_t context{1};
    zmq::socket_t socket{context, zmq::socket_type::xpub};
};
#else
struct KvEventPublisher::Socket {};  // never made: create() fails in a build without ZeroMQ
#endif

namespace {

[[maybe_unused]] bool bindsEndpoint(std::string_view endpoint) {
    return endpoint.find('*') != std::string_view::npos ||
           endpoint.find("::") != std::string_view::npos || endpoint.starts_with("ipc://") ||
           endpoint.starts_with("inproc://");
}

[[maybe_unused]] void bigEndian64(std::uint64_t v, char* out) {
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((v >> (8 * (7 - i))) & 0xff);
}

}  // namespace

Result<std::string> kvEventsEndpointFor(const std::string& endpoint, std::int64_t dp_rank) {
    if (dp_rank == 0) return endpoint;
    if (endpoint.starts_with("inproc://")) return fmt::format("{}_dp{}", endpoint, dp_rank);
    if (!endpoint.starts_with("tcp://")) return endpoint;
    const auto colon = endpoint.rfind(':');
    const std::string port_text = endpoint.substr(colon + 1);
    if (port_text == "*") return endpoint;  // each replica binds a free port of its own
    int port = 0;
    const auto [end, ec] =
        std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (colon < 6 || ec != std::errc() || end != port_text.data() + port_text.size()) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "kv events endpoint '{}' has no numeric port to offset by the DP "
                            "rank {}",
                            endpoint, dp_rank);
    }
    return fmt::format("{}:{}", endpoint.substr(0, colon), port + dp_rank);
}

KvEventPublisher::KvEventPublisher(const KvEventOptions& options) : options_(options) {}

KvEventPublisher::~KvEventPublisher() {
    if (!socket_) return;
#if STRATA_HAVE_ZMQ
    try {
        socket_->socket.set(zmq::sockopt::linger, static_cast<int>(options_.linger.count()));
        socket_->socket.close();
        socket_->context.close();
    } catch (const zmq::error_t& e) {
        core::logger("runtime").warn("kv events: closing {}: {}", options_.endpoint, e.what());
    }
#endif
}

Result<std::unique_ptr<KvEventPublisher>> KvEventPublisher::create(const KvEventOptions& options) {
    const std::string& ep = options.endpoint;
    const auto scheme = ep.find("://");
    if (scheme == std::string::npos || ep.substr(0, scheme) == "" ||
        (ep.starts_with("tcp://") && ep.find(':', scheme + 3) == std::string::npos)) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "kv events endpoint '{}' is not tcp://HOST:PORT, ipc://PATH or "
                            "inproc://NAME",
                            ep);
    }
    if (options.send_hwm <= 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "kv events send_hwm {} must be positive",
                            options.send_hwm);
    }
#if !STRATA_HAVE_ZMQ
    return STRATA_ERROR(StatusCode::kUnavailable,
                        "kv events endpoint '{}': this build has no KV events (cppzmq, Debian's "
                        "cppzmq-dev, was not found at configure time); rebuild with it",
                        ep);
#else
    std::unique_ptr<KvEventPublisher> p(new KvEventPublisher(options));
    try {
        p->socket_ = std::make_unique<Socket>();
        zmq::socket_t& s = p->socket_->socket;
        s.set(zmq::sockopt::sndhwm, options.send_hwm);
        s.set(zmq::sockopt::xpub_nodrop, 1);
        s.set(zmq::sockopt::linger, 0);  // until the destructor sets the configured one
        if (bindsEndpoint(ep)) {
            s.bind(ep);
            p->endpoint_ = s.get(zmq::sockopt::last_endpoint);
        } else {
            s.connect(ep);
            p->endpoint_ = ep;
        }
    } catch (const zmq::error_t& e) {
        return STRATA_ERROR(StatusCode::kUnavailable, "kv events endpoint '{}': {}", ep, e.what());
    }
    KvWireEvent cleared;
    cleared.type = KvWireEvent::Type::kAllBlocksCleared;
    p->queued_.push_back(std::move(cleared));
    return p;
#endif
}

controller::KvEventSink KvEventPublisher::sink() {
    return [this](const controller::KvEvent& e) { add(e); };
}

void KvEventPublisher::add(const controller::KvEvent& event) {
    KvWireEvent w;
    w.medium = std::string(kvMediumOf(event.tier));
    w.block_hashes.reserve(event.keys.size());
    for (const auto& k : event.keys) w.block_hashes.push_back(k.lo);
    if (event.kind == controller::KvEventKind::kRemoved) {
        w.type = KvWireEvent::Type::kBlockRemoved;
        queued_.push_back(std::move(w));
        return;
    }
    w.type = KvWireEvent::Type::kBlockStored;
    w.block_size = options_.block_size;
    if (event.parent) w.parent_block_hash = event.parent->lo;
    if (event.request) {
        auto it = tokens_.find(*event.request);
        const std::size_t from = event.first_page * options_.block_size;
        const std::size_t to = from + event.keys.size() * options_.block_size;
        if (it != tokens_.end() && to <= it->second.size()) {
            w.token_ids.assign(it->second.begin() + static_cast<long>(from),
                               it->second.begin() + static_cast<long>(to));
        }
    }
    queued_.push_back(std::move(w));
}

void KvEventPublisher::noteRequest(std::uint64_t id, std::span<const std::int32_t> tokens) {
    tokens_[id].assign(tokens.begin(), tokens.end());
}

void KvEventPublisher::forgetRequest(std::uint64_t id) { tokens_.erase(id); }

Status KvEventPublisher::flush() {
    if (queued_.empty()) return Status::ok();
#if !STRATA_HAVE_ZMQ
    return STRATA_ERROR(StatusCode::kUnavailable, "kv events on {}: this build has no ZeroMQ",
                        options_.endpoint);
#else
    zmq::socket_t& s = socket_->socket;
    try {
        if (!waited_ && options_.wait_subscriber.count() > 0) {
            // A subscription is a message whose first byte is 1; wait for one, bounded.
            zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
            const auto deadline = std::chrono::steady_clock::now() + options_.wait_subscriber;
            bool subscribed = false;
            while (!subscribed && std::chrono::steady_clock::now() < deadline) {
                const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now());
                zmq::poll(&item, 1, std::max(left, std::chrono::milliseconds(1)));
                zmq::message_t m;
                while (s.recv(m, zmq::recv_flags::dontwait)) {
                    if (m.size() > 0 && m.data<unsigned char>()[0] == 1) subscribed = true;
                }
            }
            if (!subscribed) {
                core::logger("runtime").warn(
                    "kv events: no subscriber on {} after {} ms; publishing anyway", endpoint_,
                    options_.wait_subscriber.count());
            }
        }
        waited_ = true;
        zmq::message_t m;
        while (s.recv(m, zmq::recv_flags::dontwait)) {
        }  // subscriptions: not needed after the first batch

        KvWireBatch batch;
        batch.ts =
            std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
                .count();
        batch.data_parallel_rank = options_.data_parallel_rank;
        batch.events = std::move(queued_);
        queued_.clear();
        const std::string payload = encodeKvBatch(batch, options_.layout);
        char seq[8];
        bigEndian64(sequence_++, seq);
        // Multipart messages are atomic: once the first frame is taken, so are the others.
        const bool sent = s.send(zmq::buffer(options_.topic),
                                 zmq::send_flags::sndmore | zmq::send_flags::dontwait)
                              .has_value();
        if (!sent) {
            ++counts_.dropped_batches;
            counts_.dropped_events += batch.events.size();
            return Status::ok();
        }
        s.send(zmq::buffer(seq, 8), zmq::send_flags::sndmore);
        s.send(zmq::buffer(payload), zmq::send_flags::none);
        ++counts_.batches;
        counts_.events += batch.events.size();
        for (const auto& e : batch.events) {
            switch (e.type) {
                case KvWireEvent::Type::kBlockStored:
                    counts_.stored[e.medium] += e.block_hashes.size();
                    ++counts_.stored_events[e.medium];
                    break;
                case KvWireEvent::Type::kBlockRemoved:
                    counts_.removed[e.medium] += e.block_hashes.size();
                    ++counts_.removed_events[e.medium];
                    break;
                case KvWireEvent::Type::kAllBlocksCleared:
                    ++counts_.cleared;
                    break;
            }
        }
    } catch (const zmq::error_t& e) {
        return STRATA_ERROR(StatusCode::kUnavailable, "kv events on {}: {}", options_.endpoint,
                            e.what());
    }
    return Status::ok();
#endif
}

}  // namespace strata::runtime

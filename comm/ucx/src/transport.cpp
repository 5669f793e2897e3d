// UcxTransport's public facade: forwards to the Impl (transport_impl.h). create() is in
// bootstrap.cpp, exposeRegion() in read_server.cpp, get() in read_client.cpp. Built with UCX;
// transport_stub.cpp takes the place of all of these without it.
#include "strata/comm/ucx/transport.h"

#include "transport_impl.h"

namespace strata::comm::ucx {

bool available() noexcept { return true; }

RemoteRegion::RemoteRegion(std::unique_ptr<State> s) noexcept : s_(std::move(s)) {}
RemoteRegion::RemoteRegion(RemoteRegion&&) noexcept = default;
RemoteRegion& RemoteRegion::operator=(RemoteRegion&&) noexcept = default;
RemoteRegion::~RemoteRegion() = default;

const std::vector<int>& RemoteRegion::members() const noexcept { return s_->members; }

std::span<const std::byte> RemoteRegion::info(int rank) const noexcept {
    if (rank < 0 || static_cast<std::size_t>(rank) >= s_->by_rank.size()) return {};
    return s_->by_rank[static_cast<std::size_t>(rank)].info;
}

std::size_t RemoteRegion::sizeBytes(int rank) const noexcept {
    if (rank < 0 || static_cast<std::size_t>(rank) >= s_->by_rank.size()) return 0;
    return s_->by_rank[static_cast<std::size_t>(rank)].size;
}

UcxTransport::UcxTransport(std::shared_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
UcxTransport::~UcxTransport() = default;

int UcxTransport::rank() const noexcept { return impl_->rank; }
int UcxTransport::size() const noexcept { return impl_->size; }

Status UcxTransport::setHandler(std::uint16_t channel, MessageHandler handler) {
    if (channel >= kMaxChannels) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "channel {} >= {}", channel,
                            kMaxChannels);
    }
    std::lock_guard lk(impl_->handlers_mu);
    impl_->handlers[channel] = std::move(handler);
    return Status::ok();
}

void UcxTransport::clearHandler(std::uint16_t channel) {
    if (channel >= kMaxChannels) return;
    std::lock_guard lk(impl_->handlers_mu);
    impl_->handlers[channel] = nullptr;
}

Status UcxTransport::send(int peer, std::uint16_t channel, std::span<const std::byte> payload,
                          bool connect) {
    return impl_->send(peer, channel, payload, connect);
}

void UcxTransport::backOff(int peer) {
    if (peer >= 0 && peer < size() && peer != rank()) impl_->backOff(peer);
}

bool UcxTransport::waitUntil(const std::function<bool()>& pred, Clock::time_point deadline) {
    return impl_->waitUntil(pred, deadline);
}

void UcxTransport::notifyWaiters() { impl_->notify(); }

TransportStats UcxTransport::stats() const {
    const auto& c = impl_->counters;
    TransportStats s;
    s.messages_sent = c.sent;
    s.messages_accepted = c.accepted;
    s.rejected_malformed = c.malformed;
    s.rejected_forged = c.forged;
    s.rejected_replayed = c.replayed;
    s.rejected_unhandled = c.unhandled;
    s.messages_rejected =
        s.rejected_malformed + s.rejected_forged + s.rejected_replayed + s.rejected_unhandled;
    s.gets = c.gets;
    s.get_bytes = c.get_bytes;
    s.timeouts = c.timeouts;
    s.peer_failures = c.peer_failures;
    s.reconnects = c.reconnects;
    s.backoff_skips = c.backoff_skips;
    s.reads_served = c.reads_served;
    s.bytes_served = c.bytes_served;
    s.reads_refused = c.reads_refused;
    s.late_replies = c.late_replies;
    return s;
}

std::vector<std::byte> UcxTransport::workerAddress() const { return impl_->address; }

}  // namespace strata::comm::ucx

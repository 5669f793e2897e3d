// UcxTransport without UCX in the build (chosen by CMake when UCX is disabled or not found): the
// same API, create() failing with kNotSupported on every rank before any collective. Since no
// transport, and so no region, can exist, the other members are never reached; they answer as a
// transport without peers would.
#include <utility>

#include "strata/comm/ucx/transport.h"

namespace strata::comm::ucx {

namespace {

Status noUcx() {
    return STRATA_ERROR(StatusCode::kNotSupported,
                        "this build of strata has no UCX support, so no remote tier (configure "
                        "with STRATA_ENABLE_UCX=ON where libucx-dev is installed)");
}

}  // namespace

bool available() noexcept { return false; }

struct RemoteRegion::State {
    std::vector<int> members;
};

RemoteRegion::RemoteRegion(std::unique_ptr<State> s) noexcept : s_(std::move(s)) {}
RemoteRegion::RemoteRegion(RemoteRegion&&) noexcept = default;
RemoteRegion& RemoteRegion::operator=(RemoteRegion&&) noexcept = default;
RemoteRegion::~RemoteRegion() = default;

const std::vector<int>& RemoteRegion::members() const noexcept { return s_->members; }
std::span<const std::byte> RemoteRegion::info(int) const noexcept { return {}; }
std::size_t RemoteRegion::sizeBytes(int) const noexcept { return 0; }

struct UcxTransport::Impl {};

Result<std::shared_ptr<UcxTransport>> UcxTransport::create(const MpiComm&,
                                                           const TransportOptions&) {
    return noUcx();
}

UcxTransport::UcxTransport(std::shared_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
UcxTransport::~UcxTransport() = default;

int UcxTransport::rank() const noexcept { return 0; }
int UcxTransport::size() const noexcept { return 0; }

Result<RemoteRegion> UcxTransport::exposeRegion(const MpiComm&, std::span<std::byte>,
                                                std::span<const std::byte>) {
    return noUcx();
}

Status UcxTransport::setHandler(std::uint16_t, MessageHandler) { return noUcx(); }
void UcxTransport::clearHandler(std::uint16_t) {}

Status UcxTransport::send(int, std::uint16_t, std::span<const std::byte>, bool) { return noUcx(); }

std::vector<Status> UcxTransport::get(const RemoteRegion&, std::span<const PeerGets> gets,
                                      Clock::time_point) {
    return std::vector<Status>(gets.size(), noUcx());
}

void UcxTransport::backOff(int) {}

bool UcxTransport::waitUntil(const std::function<bool()>& pred, Clock::time_point) {
    return pred();
}

void UcxTransport::notifyWaiters() {}

TransportStats UcxTransport::stats() const { return {}; }

std::vector<std::byte> UcxTransport::workerAddress() const { return {}; }

}  // namespace strata::comm::ucx

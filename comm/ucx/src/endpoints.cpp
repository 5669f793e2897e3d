// Endpoints of the UCX transport and their lifetime. A thread that sends holds a reference to
// the endpoint (EndpointRef) while it uses it. Only an endpoint UCX reported failed is replaced,
// by the next connect; the replaced one is retired and force-closed once no thread holds it (by
// that connect or by the progress thread), because closing an endpoint another thread is sending
// on crashes inside UCX. A timeout never replaces an endpoint: the peer backs off instead.
#include <utility>

#include "transport_impl.h"

namespace strata::comm::ucx {

using Impl = UcxTransport::Impl;

void Impl::onEpError(void* arg, ucp_ep_h ep, ucs_status_t st) {
    auto* a = static_cast<ErrArg*>(arg);
    Impl* self = a->impl;
    std::lock_guard lk(self->peers_mu);
    Peer& p = *self->peers[static_cast<std::size_t>(a->peer)];
    if (p.ep != nullptr && p.ep->ep == ep && !p.failed) {
        p.failed = true;
        self->counters.peer_failures++;
        log().warn("ucx endpoint to rank {} failed: {}", a->peer, ucs_status_string(st));
    }
}

Result<ucp_ep_h> Impl::createEp(int peer) {
    auto arg = std::make_unique<ErrArg>(ErrArg{this, peer});
    ucp_ep_params_t params{};
    params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                        UCP_EP_PARAM_FIELD_ERR_HANDLER;
    params.address = reinterpret_cast<const ucp_address_t*>(peer_addresses[peer].data());  // NOLINT
    params.err_mode = UCP_ERR_HANDLING_MODE_PEER;
    params.err_handler.cb = &Impl::onEpError;
    params.err_handler.arg = arg.get();
    ucp_ep_h ep = nullptr;
    const ucs_status_t st = ucp_ep_create(worker.get(), &params, &ep);
    if (st != UCS_OK) {
        log().error("ucp_ep_create to rank {}: {}", peer, ucs_status_string(st));
        return ucxError("ucp_ep_create", st);
    }
    std::lock_guard lk(peers_mu);
    err_args.push_back(std::move(arg));  // callbacks of closed endpoints may still come
    return ep;
}

void Impl::closeEp(ucp_ep_h ep, bool force, std::chrono::milliseconds timeout) {
    ucp_request_param_t param{};
    param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    param.flags = force ? UCP_EP_CLOSE_FLAG_FORCE : 0;
    void* req = ucp_ep_close_nbx(ep, &param);
    const ucs_status_t st =
        waitRequest(worker.get(), req, Clock::now() + timeout, [this] { idleWait(); });
    if (st == UCS_INPROGRESS) {
        log().warn("closing an endpoint did not finish in {} ms", timeout.count());
    }
}

// With `connect` (a rank that starts an exchange and will wait for it): fails fast while the
// peer backs off, and creates or re-creates the endpoint. Without (a handler's reply): never
// blocks, connects or closes, and ignores the back-off, which only spares this rank's own waits:
// refusing to answer a peer we back off from made it time out and back off from us in turn, and
// under load the two kept each other's links dead. Without an endpoint, the progress thread
// makes one (the requester times out this once).
Result<Impl::EndpointRef> Impl::endpoint(int peer, bool connect) {
    if (peer < 0 || peer >= size || peer == rank) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "no peer rank {} (world {}, me {})", peer,
                            size, rank);
    }
    Peer& p = *peers[static_cast<std::size_t>(peer)];
    {
        std::lock_guard lk(peers_mu);
        if (!connect) {
            if (p.ep != nullptr && !p.failed) return p.ep;
            p.connect_wanted = true;
            connect_wanted = true;
        } else if (Clock::now() < p.backoff_until) {
            counters.backoff_skips++;
            return STRATA_ERROR(StatusCode::kUnavailable, "rank {} is backing off", peer);
        } else if (p.ep != nullptr && !p.failed) {
            return p.ep;
        }
    }
    if (!connect) {
        ucp_worker_signal(worker.get());  // wakes the progress thread to connect
        return STRATA_ERROR(StatusCode::kUnavailable, "no endpoint to rank {}", peer);
    }
    return connectPeer(peer);
}

Result<Impl::EndpointRef> Impl::connectPeer(int peer) {
    Peer& p = *peers[static_cast<std::size_t>(peer)];
    std::lock_guard connect_lk(connect_mu);
    bool replaced = false;
    {
        std::lock_guard lk(peers_mu);
        p.connect_wanted = false;
        if (p.ep != nullptr && !p.failed) return p.ep;
        replaced = p.generation > 0;
        retireLocked(p);
    }
    closeRetired();
    STRATA_ASSIGN_OR_RETURN(ucp_ep_h ep, createEp(peer));
    std::lock_guard lk(peers_mu);
    p.ep = std::make_shared<const Endpoint>(Endpoint{ep});
    ++p.generation;
    p.failed = false;
    if (replaced) counters.reconnects++;
    return p.ep;
}

void Impl::connectWanted() {
    std::vector<int> wanted;
    {
        std::lock_guard lk(peers_mu);
        if (!connect_wanted) return;
        connect_wanted = false;
        for (int r = 0; r < size; ++r) {
            if (peers[static_cast<std::size_t>(r)]->connect_wanted) wanted.push_back(r);
        }
    }
    for (int r : wanted) (void)connectPeer(r);  // createEp logs a failure
}

void Impl::retireLocked(Peer& p) {
    if (p.ep != nullptr) retired.push_back(std::exchange(p.ep, nullptr));
}

// Force-closes (cancelling their outstanding operations) the retired endpoints that no thread
// uses any more; the others wait for a later call. Never called from a handler: closing
// progresses the worker.
void Impl::closeRetired() {
    std::vector<EndpointRef> closable;
    {
        std::lock_guard lk(peers_mu);
        // No new reference to a retired endpoint can be taken, so a count of one (ours) stays.
        std::vector<EndpointRef> kept;
        for (auto& e : retired) (e.use_count() == 1 ? closable : kept).push_back(std::move(e));
        retired = std::move(kept);
    }
    for (const auto& e : closable) closeEp(e->ep, /*force=*/true, options.close_timeout);
}

void Impl::backOff(int peer) {
    std::lock_guard lk(peers_mu);
    peers[static_cast<std::size_t>(peer)]->backoff_until = Clock::now() + options.peer_backoff;
}

bool Impl::peerFailed(int peer) {
    std::lock_guard lk(peers_mu);
    return peers[static_cast<std::size_t>(peer)]->failed;
}

}  // namespace strata::comm::ucx

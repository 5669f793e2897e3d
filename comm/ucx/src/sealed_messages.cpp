// Sealed messages: control messages (user channels, one AM id) and read requests are sealed with
// the job secret (message_auth.h), sent eager and header-less, and verified on arrival; anything
// malformed, forged, replayed or without a handler is dropped and counted, never delivered.
#include "transport_impl.h"

namespace strata::comm::ucx {

using Impl = UcxTransport::Impl;

bool Impl::verifySealed(std::span<const std::byte> message, Stream stream, MessageHeader* h,
                        std::span<const std::byte>* payload) {
    Verdict v;
    {
        std::lock_guard lk(recv_mu);
        v = verifier->verify(message, stream, h, payload);
    }
    if (v != Verdict::kAccepted) reject(v, message.size() >= sizeof(*h) ? h->src_rank : -1);
    return v == Verdict::kAccepted;
}

bool Impl::acceptSealed(Stream stream, size_t header_length, void* data, size_t length,
                        const ucp_am_recv_param_t* param, MessageHeader* h,
                        std::span<const std::byte>* payload) {
    if ((param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0 || header_length != 0) {
        if ((param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0) {
            ucp_am_data_release(worker.get(), data);
        }
        reject(Verdict::kMalformed, -1);
        return false;
    }
    return verifySealed({static_cast<const std::byte*>(data), length}, stream, h, payload);
}

ucs_status_t Impl::onMessage(void* arg, const void* /*header*/, size_t header_length, void* data,
                             size_t length, const ucp_am_recv_param_t* param) {
    auto* self = static_cast<Impl*>(arg);
    MessageHeader h;
    std::span<const std::byte> payload;
    if (!self->acceptSealed(Stream::kControl, header_length, data, length, param, &h, &payload)) {
        return UCS_OK;
    }
    std::lock_guard lk(self->handlers_mu);
    if (h.channel >= kMaxChannels || !self->handlers[h.channel]) {
        self->counters.unhandled++;
        log().warn("dropped an authentic message from rank {} on channel {}: no handler",
                   h.src_rank, h.channel);
        return UCS_OK;
    }
    self->counters.accepted++;
    self->handlers[h.channel](h.src_rank, payload);
    return UCS_OK;
}

void Impl::reject(Verdict v, int claimed_src) {
    std::uint64_t n = 0;
    const char* why = "";
    switch (v) {
        case Verdict::kMalformed:
            n = ++counters.malformed;
            why = "malformed";
            break;
        case Verdict::kForged:
            n = ++counters.forged;
            why = "failed authentication";
            break;
        case Verdict::kReplayed:
            n = ++counters.replayed;
            why = "replayed";
            break;
        case Verdict::kAccepted:
            return;
    }
    // Log the first few of each kind, then every 1000th: a flood must not flood the log.
    if (n <= 5 || n % 1000 == 0) {
        log().warn("rejected a control message ({}, claimed sender {}): {} so far", why,
                   claimed_src, n);
    }
}

void Impl::onSendDone(void* request, ucs_status_t /*st*/, void* user) {
    auto* m = static_cast<SentMessage*>(user);
    m->impl->outstanding--;
    delete m;
    if (request != nullptr) ucp_request_free(request);
}

Status Impl::send(int peer, std::uint16_t channel, std::span<const std::byte> payload,
                  bool connect) {
    if (channel >= kMaxChannels) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "channel {} >= {}", channel,
                            kMaxChannels);
    }
    return sendSealed(peer, kControlAmId, Stream::kControl, channel, payload, connect);
}

Status Impl::sendSealed(int peer, std::uint16_t am_id, Stream stream, std::uint16_t channel,
                        std::span<const std::byte> payload, bool connect) {
    STRATA_ASSIGN_OR_RETURN(EndpointRef ep, endpoint(peer, connect));
    const std::uint64_t seq = peers[static_cast<std::size_t>(peer)]->nextSeq(stream);
    auto* m = new SentMessage{this, sealMessage(*secret, channel, rank, seq, payload)};
    ucp_request_param_t param{};
    param.op_attr_mask =
        UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS;
    param.cb.send = &Impl::onSendDone;
    param.user_data = m;
    param.flags = UCP_AM_SEND_FLAG_EAGER;
    void* req =
        ucp_am_send_nbx(ep->ep, am_id, nullptr, 0, m->bytes.data(), m->bytes.size(), &param);
    if (req == nullptr) {
        delete m;  // completed in place
    } else if (UCS_PTR_IS_ERR(req)) {
        delete m;
        return ucxError("ucp_am_send_nbx", UCS_PTR_STATUS(req));
    } else {
        outstanding++;
    }
    counters.sent++;
    return Status::ok();
}

}  // namespace strata::comm::ucx

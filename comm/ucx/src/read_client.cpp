// Reads, the reader's side: get() sends one sealed read request per peer (at most
// kMaxOpsPerRequest ops each) and waits; replies land in the caller's memory only while the
// batch is live (rendezvous data is received into staging of its own first), so that no byte
// lands after get() returned. A deadline makes the peer back off; its late replies are dropped.
#include <algorithm>
#include <cstring>

#include "transport_impl.h"

namespace strata::comm::ucx {

using Impl = UcxTransport::Impl;

void Impl::land(ReadBatch& b, std::uint32_t op, const std::byte* bytes, std::size_t n) {
    bool finished = false;
    {
        std::lock_guard lk(b.mu);
        if (!b.live || b.landed[op] != 0) return;
        std::memcpy(b.ops[op].local, bytes, n);
        b.landed[op] = 1;
        finished = --b.pending == 0;
    }
    if (finished) notify();
}

void Impl::failBatch(ReadBatch& b, Refusal refusal) {
    {
        std::lock_guard lk(b.mu);
        if (refusal != Refusal::kNone) {
            b.refusal = refusal;
        } else {
            b.malformed_reply = true;
        }
    }
    notify();
}

void Impl::onRndvDone(void* request, ucs_status_t st, size_t length, void* user) {
    auto* r = static_cast<RndvRecv*>(user);
    if (st == UCS_OK && length == r->staging.size()) {
        r->impl->land(*r->batch, r->op, r->staging.data(), r->staging.size());
    } else if (st != UCS_ERR_CANCELED) {
        r->impl->failBatch(*r->batch, Refusal::kNone);
    }
    r->impl->outstanding--;
    delete r;
    if (request != nullptr) ucp_request_free(request);
}

ucs_status_t Impl::onReadReply(void* arg, const void* header, size_t header_length, void* data,
                               size_t length, const ucp_am_recv_param_t* param) {
    auto* self = static_cast<Impl*>(arg);
    const bool rndv = (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0;
    auto drop = [&] {
        if (rndv) ucp_am_data_release(self->worker.get(), data);
        return UCS_OK;
    };
    MessageHeader h;
    std::span<const std::byte> payload;
    if (!self->verifySealed({static_cast<const std::byte*>(header), header_length},
                            Stream::kReadReply, &h, &payload)) {
        return drop();
    }
    const auto decoded = decodeReadReply(h.channel, payload);
    if (!decoded) {
        self->reject(Verdict::kMalformed, h.src_rank);
        return drop();
    }
    const ReadReplyDesc& d = *decoded;
    std::shared_ptr<ReadBatch> b;
    {
        std::lock_guard lk(self->reads_mu);
        auto it = self->reads.find(d.batch);
        if (it != self->reads.end() && it->second->peer == h.src_rank) b = it->second;
    }
    if (!b) {
        self->counters.late_replies++;  // its get() already returned
        return drop();
    }
    if (d.op == kWholeBatch) {
        const auto r = static_cast<Refusal>(d.refusal);
        self->failBatch(*b, r == Refusal::kNone ? Refusal::kNoRegion : r);
        return drop();
    }
    if (d.op >= b->ops.size() || d.bytes != b->ops[d.op].bytes || length != d.bytes) {
        log().warn("rank {} answered a read with a reply that matches no op", h.src_rank);
        self->failBatch(*b, Refusal::kNone);
        return drop();
    }
    if (!rndv) {
        self->land(*b, d.op, static_cast<const std::byte*>(data), length);
        return UCS_OK;
    }
    // Rendezvous: received into staging of its own, landed when complete (and only if the
    // batch still waits), so that no byte reaches the caller's memory after get() returned.
    auto* r = new RndvRecv{self, b, d.op, std::vector<std::byte>(length)};
    ucp_request_param_t p{};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    p.cb.recv_am = &Impl::onRndvDone;
    p.user_data = r;
    void* req = ucp_am_recv_data_nbx(self->worker.get(), data, r->staging.data(), length, &p);
    if (req == nullptr) {
        self->land(*b, d.op, r->staging.data(), length);
        delete r;
    } else if (UCS_PTR_IS_ERR(req)) {
        self->failBatch(*b, Refusal::kNone);
        delete r;
    } else {
        self->outstanding++;
    }
    return UCS_OK;
}

std::vector<Status> UcxTransport::get(const RemoteRegion& region, std::span<const PeerGets> gets,
                                      Clock::time_point deadline) {
    auto& s = *region.s_;
    std::vector<Status> out(gets.size());
    std::vector<std::shared_ptr<Impl::ReadBatch>> batches(gets.size());
    for (std::size_t i = 0; i < gets.size(); ++i) {
        const int peer = gets[i].peer;
        if (peer < 0 || static_cast<std::size_t>(peer) >= s.by_rank.size() ||
            !s.by_rank[static_cast<std::size_t>(peer)].member || peer == rank()) {
            out[i] =
                STRATA_ERROR(StatusCode::kInvalidArgument, "rank {} is not a remote member", peer);
            continue;
        }
        const auto& m = s.by_rank[static_cast<std::size_t>(peer)];
        bool in_range = true;
        for (const auto& op : gets[i].ops) {
            in_range &= op.remote_offset <= m.size && op.bytes <= m.size - op.remote_offset;
        }
        if (!in_range) {
            out[i] = STRATA_ERROR(StatusCode::kInvalidArgument,
                                  "a get lies outside rank {}'s {} exposed bytes", peer, m.size);
            continue;
        }
        if (gets[i].ops.empty()) continue;
        auto b = std::make_shared<Impl::ReadBatch>();
        b->id = impl_->next_batch++;
        b->peer = peer;
        b->ops.assign(gets[i].ops.begin(), gets[i].ops.end());
        b->landed.assign(b->ops.size(), 0);
        b->pending = b->ops.size();
        {
            std::lock_guard lk(impl_->reads_mu);
            impl_->reads.emplace(b->id, b);
        }
        Status sent;
        for (std::size_t first = 0; first < b->ops.size() && sent.isOk();
             first += kMaxOpsPerRequest) {
            const std::size_t n = std::min(kMaxOpsPerRequest, b->ops.size() - first);
            ReadRequestHead head;
            head.batch = b->id;
            head.region = m.region;
            head.first_op = static_cast<std::uint32_t>(first);
            head.num_ops = static_cast<std::uint32_t>(n);
            std::vector<std::byte> payload(sizeof(head) + n * sizeof(ReadOpWire));
            std::memcpy(payload.data(), &head, sizeof(head));
            for (std::size_t k = 0; k < n; ++k) {
                const ReadOpWire op{b->ops[first + k].remote_offset, b->ops[first + k].bytes};
                std::memcpy(payload.data() + sizeof(head) + k * sizeof(op), &op, sizeof(op));
            }
            sent = impl_->sendSealed(peer, kReadRequestAmId, Stream::kReadRequest,
                                     kReadRequestChannel, payload, true);
        }
        if (!sent.isOk()) {
            std::lock_guard lk(impl_->reads_mu);
            impl_->reads.erase(b->id);
            out[i] = sent;
            continue;
        }
        impl_->counters.gets += b->ops.size();
        for (const auto& op : b->ops) impl_->counters.get_bytes += op.bytes;
        batches[i] = std::move(b);
    }
    impl_->waitUntil(
        [&] {
            for (const auto& b : batches) {
                if (b && !b->done() && !impl_->peerFailed(b->peer)) return false;
            }
            return true;
        },
        deadline);
    for (std::size_t i = 0; i < gets.size(); ++i) {
        auto& b = batches[i];
        if (!b) continue;
        {
            std::lock_guard lk(impl_->reads_mu);
            impl_->reads.erase(b->id);
        }
        std::size_t pending = 0;
        Refusal refusal = Refusal::kNone;
        bool malformed = false;
        {
            std::lock_guard lk(b->mu);
            b->live = false;  // from here on, nothing lands in the caller's memory
            pending = b->pending;
            refusal = b->refusal;
            malformed = b->malformed_reply;
        }
        const int peer = gets[i].peer;
        if (refusal != Refusal::kNone) {
            out[i] = STRATA_ERROR(StatusCode::kUnavailable, "rank {} refused the read: {}", peer,
                                  refusalText(refusal));
        } else if (malformed) {
            out[i] = STRATA_ERROR(StatusCode::kUnavailable, "a read from rank {} failed", peer);
        } else if (pending == 0) {
            continue;
        } else if (impl_->peerFailed(peer)) {
            out[i] =
                STRATA_ERROR(StatusCode::kUnavailable,
                             "the endpoint to rank {} failed ({} ops unanswered)", peer, pending);
        } else {
            // Deadline passed: the peer backs off. Its endpoint stays: a stopped or slow peer
            // answers once it runs again, and those replies are dropped (the batch is no longer
            // live). Replacing the endpoint instead crashed: in ucp_am_send_nbx when another
            // thread was sending on it, and inside UCX 1.13's tcp progress and wire-up when
            // endpoints were replaced often. Only an endpoint UCX reported failed is replaced.
            const auto n = ++impl_->counters.timeouts;
            impl_->backOff(peer);
            if (n <= 5 || n % 100 == 0) {
                log().warn(
                    "read from rank {} timed out ({} ops unanswered): backing off for {} ms "
                    "({} timeouts so far)",
                    peer, pending, impl_->options.peer_backoff.count(), n);
            }
            out[i] = STRATA_ERROR(StatusCode::kTimeout, "get from rank {} timed out", peer);
        }
    }
    return out;
}

}  // namespace strata::comm::ucx

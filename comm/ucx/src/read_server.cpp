// Reads, the holder's side: memory exposed to a group (exposeRegion, RemoteRegion::State), read
// requests validated (region, the reader's membership, every range) and answered op by op with a
// sealed descriptor as the AM header and the bytes as its data, sent straight from the exposed
// memory (eager or rendezvous as UCX chooses), or refused once with the reason. A region that is
// no longer exposed waits (bounded) for the replies still in flight from it.
#include <cstring>

#include "gather_bytes.h"
#include "transport_impl.h"

namespace strata::comm::ucx {

using Impl = UcxTransport::Impl;

void Impl::onReplySent(void* request, ucs_status_t st, void* user) {
    auto* r = static_cast<ReplySend*>(user);
    if (st != UCS_OK && st != UCS_ERR_CANCELED) {
        log().warn("sending a read reply failed: {}", ucs_status_string(st));
    }
    r->impl->outstanding--;
    r->impl->finishReply(r);
    if (request != nullptr) ucp_request_free(request);
}

void Impl::finishReply(ReplySend* r) {
    if (r->region && r->region->in_flight.fetch_sub(1) == 1) notify();
    delete r;
}

void Impl::sendReply(int peer, const ReadReplyDesc& desc, const std::byte* data, std::size_t bytes,
                     std::shared_ptr<Exposed> region) {
    auto ep = endpoint(peer, /*connect=*/false);
    if (!ep.isOk()) return;  // the reader times out
    const std::uint64_t seq = peers[static_cast<std::size_t>(peer)]->nextSeq(Stream::kReadReply);
    auto* r = new ReplySend{this,
                            sealMessage(*secret, kReadReplyChannel, rank, seq,
                                        std::as_bytes(std::span<const ReadReplyDesc>(&desc, 1))),
                            std::move(region)};
    if (r->region) r->region->in_flight.fetch_add(1);
    ucp_request_param_t param{};
    param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    param.cb.send = &Impl::onReplySent;
    param.user_data = r;
    void* req = ucp_am_send_nbx((*ep)->ep, kReadReplyAmId, r->header.data(), r->header.size(), data,
                                bytes, &param);
    if (req == nullptr) {
        finishReply(r);
    } else if (UCS_PTR_IS_ERR(req)) {
        log().warn("sending a read reply to rank {}: {}", peer,
                   ucs_status_string(UCS_PTR_STATUS(req)));
        finishReply(r);
    } else {
        outstanding++;
    }
}

ucs_status_t Impl::onReadRequest(void* arg, const void* /*header*/, size_t header_length,
                                 void* data, size_t length, const ucp_am_recv_param_t* param) {
    auto* self = static_cast<Impl*>(arg);
    MessageHeader h;
    std::span<const std::byte> payload;
    if (!self->acceptSealed(Stream::kReadRequest, header_length, data, length, param, &h,
                            &payload)) {
        return UCS_OK;
    }
    auto request = decodeReadRequest(h.channel, payload);
    if (!request) {
        self->reject(Verdict::kMalformed, h.src_rank);
        return UCS_OK;
    }
    self->serveRead(h.src_rank, *request);
    return UCS_OK;
}

void Impl::serveRead(int reader, const ReadRequest& request) {
    const ReadRequestHead& head = request.head;
    const auto& ops = request.ops;
    std::shared_ptr<Exposed> region;
    {
        std::lock_guard lk(exposed_mu);
        auto it = exposed.find(head.region);
        if (it != exposed.end()) region = it->second;
    }
    Refusal refusal = Refusal::kNone;
    if (!region) {
        refusal = Refusal::kNoRegion;
    } else if (static_cast<std::size_t>(reader) >= region->readers.size() ||
               region->readers[static_cast<std::size_t>(reader)] == 0) {
        refusal = Refusal::kNotReader;
    } else {
        refusal = checkReadOps(ops, region->size);
    }
    if (refusal != Refusal::kNone) {
        const auto n = ++counters.reads_refused;
        if (n <= 5 || n % 1000 == 0) {
            log().warn("refused a read request of rank {}: {} ({} so far)", reader,
                       refusalText(refusal), n);
        }
        ReadReplyDesc d;
        d.batch = head.batch;
        d.op = kWholeBatch;
        d.refusal = static_cast<std::int32_t>(refusal);
        sendReply(reader, d, nullptr, 0, nullptr);
        return;
    }
    for (std::uint32_t i = 0; i < ops.size(); ++i) {
        ReadReplyDesc d;
        d.batch = head.batch;
        d.op = head.first_op + i;
        d.bytes = ops[i].bytes;
        sendReply(reader, d, region->base + ops[i].offset, ops[i].bytes, region);
        counters.reads_served++;
        counters.bytes_served += ops[i].bytes;
    }
}

RemoteRegion::State::~State() {
    if (local_id == 0) return;
    std::shared_ptr<Impl::Exposed> mine;
    {
        std::lock_guard lk(impl->exposed_mu);
        auto it = impl->exposed.find(local_id);
        if (it == impl->exposed.end()) return;
        mine = std::move(it->second);
        impl->exposed.erase(it);
    }
    const bool drained = impl->waitUntil([&] { return mine->in_flight.load() == 0; },
                                         Clock::now() + impl->options.close_timeout);
    if (!drained) {
        log().error("{} read replies still in flight from an unexposed region",
                    mine->in_flight.load());
    }
}

Result<RemoteRegion> UcxTransport::exposeRegion(const MpiComm& group, std::span<std::byte> memory,
                                                std::span<const std::byte> info) {
    auto state = std::make_unique<RemoteRegion::State>();
    state->impl = impl_;
    auto mine = std::make_shared<Impl::Exposed>();
    mine->base = memory.data();
    mine->size = memory.size();
    mine->readers.assign(static_cast<std::size_t>(impl_->size), 0);
    {
        std::lock_guard lk(impl_->exposed_mu);
        state->local_id = impl_->next_region++;
    }
    RegionWire w;
    w.rank = impl_->rank;
    w.region = state->local_id;
    w.size = memory.size();
    w.info_bytes = static_cast<std::uint32_t>(info.size());
    std::vector<std::byte> wire(sizeof(w) + info.size());
    std::memcpy(wire.data(), &w, sizeof(w));
    if (!info.empty()) std::memcpy(wire.data() + sizeof(w), info.data(), info.size());
    STRATA_ASSIGN_OR_RETURN(auto all, allGatherBytes(group, wire));
    state->by_rank.resize(static_cast<std::size_t>(impl_->size));
    for (const auto& blob : all) {
        auto decoded = decodeRegionDescriptor(blob, impl_->size);
        if (!decoded) return STRATA_ERROR(StatusCode::kInternal, "bad region descriptor");
        const RegionWire& m = decoded->head;
        if (state->by_rank[static_cast<std::size_t>(m.rank)].member) {
            return STRATA_ERROR(StatusCode::kInternal, "two region descriptors from rank {}",
                                m.rank);
        }
        auto& member = state->by_rank[static_cast<std::size_t>(m.rank)];
        member.member = true;
        member.region = m.region;
        member.size = m.size;
        member.info = std::move(decoded->info);
        state->members.push_back(m.rank);
        mine->readers[static_cast<std::size_t>(m.rank)] = 1;
    }
    {
        std::lock_guard lk(impl_->exposed_mu);
        impl_->exposed.emplace(state->local_id, std::move(mine));
    }
    // Every member serves the region before any member reads from it.
    STRATA_RETURN_IF_ERROR(group.barrier());
    return RemoteRegion(std::move(state));
}

}  // namespace strata::comm::ucx

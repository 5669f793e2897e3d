// create(): the collective start of the transport. Local UCX set-up (context with AM and wakeup
// but no RMA, one multi-threaded worker, its event fd and address, the three AM handlers), then
// over MPI: every rank's outcome counted (all ranks fail alike), worker addresses all-gathered,
// the job secret broadcast from rank 0, endpoints to every other rank, the progress thread.
#include <algorithm>

#include "gather_bytes.h"
#include "strata/comm/job_collectives.h"
#include "transport_impl.h"

namespace strata::comm::ucx {

using Impl = UcxTransport::Impl;

namespace {

// Local part of create(): context, worker (multi-thread), event fd, address, AM handler.
Status initLocal(Impl& t) {
    ucp_config_t* config = nullptr;
    ucs_status_t st = ucp_config_read(nullptr, nullptr, &config);
    if (st != UCS_OK) return ucxError("ucp_config_read", st);
    ucp_params_t params{};
    params.field_mask = UCP_PARAM_FIELD_FEATURES;
    // No UCP_FEATURE_RMA, on purpose: see wire.h.
    params.features = UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
    ucp_context_h ctx = nullptr;
    st = ucp_init(&params, config, &ctx);
    ucp_config_release(config);
    if (st != UCS_OK) return ucxError("ucp_init", st);
    t.context.reset(ctx);

    ucp_worker_params_t wp{};
    wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    wp.thread_mode = UCS_THREAD_MODE_MULTI;
    ucp_worker_h worker = nullptr;
    st = ucp_worker_create(t.context.get(), &wp, &worker);
    if (st != UCS_OK) return ucxError("ucp_worker_create", st);
    t.worker.reset(worker);

    ucp_worker_attr_t attr{};
    attr.field_mask = UCP_WORKER_ATTR_FIELD_THREAD_MODE | UCP_WORKER_ATTR_FIELD_ADDRESS |
                      UCP_WORKER_ATTR_FIELD_MAX_AM_HEADER;
    st = ucp_worker_query(worker, &attr);
    if (st != UCS_OK) return ucxError("ucp_worker_query", st);
    const auto* addr = reinterpret_cast<const std::byte*>(attr.address);  // NOLINT
    t.address.assign(addr, addr + attr.address_length);
    ucp_worker_release_address(worker, attr.address);
    if (attr.thread_mode != UCS_THREAD_MODE_MULTI) {
        return STRATA_ERROR(StatusCode::kNotSupported,
                            "this UCX build gives no multi-threaded worker (needs --enable-mt)");
    }
    const std::size_t reply_header = sizeof(MessageHeader) + sizeof(ReadReplyDesc);
    if (attr.max_am_header < reply_header) {
        return STRATA_ERROR(StatusCode::kNotSupported,
                            "UCX allows {}-byte active-message headers; read replies need {}",
                            attr.max_am_header, reply_header);
    }
    st = ucp_worker_get_efd(worker, &t.event_fd);
    if (st != UCS_OK) return ucxError("ucp_worker_get_efd", st);

    using Handler = ucp_am_recv_callback_t;
    const std::array<std::pair<std::uint16_t, Handler>, 3> handlers{{
        {kControlAmId, &Impl::onMessage},
        {kReadRequestAmId, &Impl::onReadRequest},
        {kReadReplyAmId, &Impl::onReadReply},
    }};
    for (const auto& [id, cb] : handlers) {
        ucp_am_handler_param_t hp{};
        hp.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_FLAGS |
                        UCP_AM_HANDLER_PARAM_FIELD_CB | UCP_AM_HANDLER_PARAM_FIELD_ARG;
        hp.id = id;
        hp.flags = UCP_AM_FLAG_WHOLE_MSG;
        hp.cb = cb;
        hp.arg = &t;
        st = ucp_worker_set_am_recv_handler(worker, &hp);
        if (st != UCS_OK) return ucxError("ucp_worker_set_am_recv_handler", st);
    }
    return Status::ok();
}

}  // namespace

Result<std::shared_ptr<UcxTransport>> UcxTransport::create(const MpiComm& comm,
                                                           const TransportOptions& options) {
    auto impl = std::make_shared<Impl>();
    impl->options = options;
    impl->rank = comm.rank();
    impl->size = comm.size();
    Status local = initLocal(*impl);
    if (!local.isOk()) log().error("ucx transport: {}", local.toString());
    STRATA_ASSIGN_OR_RETURN(int failures, countFailures(comm, !local.isOk()));
    if (!local.isOk()) return local;
    if (failures > 0) {
        return STRATA_ERROR(StatusCode::kUnavailable,
                            "ucx transport: {} rank(s) could not start UCX", failures);
    }
    STRATA_ASSIGN_OR_RETURN(impl->peer_addresses, allGatherBytes(comm, impl->address));

    std::vector<std::byte> secret_bytes;
    Status secret_status;
    if (comm.rank() == 0) {
        auto s = JobSecret::generate();
        if (s.isOk()) {
            secret_bytes.assign(s->bytes().begin(), s->bytes().end());
        } else {
            secret_status = s.status();
        }
    }
    STRATA_RETURN_IF_ERROR(broadcastBytes(comm, &secret_bytes, 0));
    if (secret_bytes.empty()) {
        return secret_status.isOk()
                   ? STRATA_ERROR(StatusCode::kUnavailable, "rank 0 could not make a job secret")
                   : secret_status;
    }
    STRATA_ASSIGN_OR_RETURN(JobSecret secret, JobSecret::fromBytes(secret_bytes));
    std::fill(secret_bytes.begin(), secret_bytes.end(), std::byte{0});
    impl->secret = std::make_unique<JobSecret>(secret);
    impl->verifier = std::make_unique<MessageVerifier>(secret, impl->size);

    impl->peers.resize(static_cast<std::size_t>(impl->size));
    for (auto& p : impl->peers) p = std::make_unique<Impl::Peer>();
    Status eps;
    for (int r = 0; r < impl->size && eps.isOk(); ++r) {
        if (r == impl->rank) continue;
        auto ep = impl->createEp(r);
        if (!ep.isOk()) {
            eps = ep.status();
            break;
        }
        impl->peers[static_cast<std::size_t>(r)]->ep =
            std::make_shared<const Impl::Endpoint>(Impl::Endpoint{*ep});
        impl->peers[static_cast<std::size_t>(r)]->generation = 1;
    }
    if (eps.isOk()) {
        Impl* raw = impl.get();
        impl->progress_thread = std::thread([raw] { raw->progressLoop(); });
    }
    STRATA_ASSIGN_OR_RETURN(failures, countFailures(comm, !eps.isOk()));
    if (!eps.isOk()) return eps;
    if (failures > 0) {
        return STRATA_ERROR(StatusCode::kUnavailable, "ucx transport: {} rank(s) failed endpoints",
                            failures);
    }
    if (comm.rank() == 0) {
        log().info("ucx transport up: {} ranks, worker address {} bytes", impl->size,
                   impl->address.size());
    }
    return std::shared_ptr<UcxTransport>(new UcxTransport(std::move(impl)));
}

}  // namespace strata::comm::ucx

#include "strata/comm/ucx/transport.h"

#include <poll.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "gather_bytes.h"
#include "strata/comm/job_collectives.h"
#include "strata/comm/ucx/message_auth.h"
#include "ucx_handles.h"

namespace strata::comm::ucx {

namespace {

Status ucxError(const char* what, ucs_status_t st) {
    return STRATA_ERROR(StatusCode::kIoError, "{}: {}", what, ucs_status_string(st));
}

// Waits for a request returned by a *_nbx call; returns its final status. Progress is the
// caller's: `progress_once` drives the worker.
template <typename Progress>
ucs_status_t waitRequest(ucp_worker_h worker, void* req, Clock::time_point deadline,
                         Progress&& notify_idle) {
    if (req == nullptr) return UCS_OK;
    if (UCS_PTR_IS_ERR(req)) return UCS_PTR_STATUS(req);
    ucs_status_t st;
    while ((st = ucp_request_check_status(req)) == UCS_INPROGRESS) {
        if (Clock::now() >= deadline) break;
        if (ucp_worker_progress(worker) == 0) notify_idle();
    }
    ucp_request_free(req);
    return st;
}

// Remote-read region descriptor exchanged over MPI: header, packed rkey, info.
struct RegionWire {
    std::int32_t rank = -1;
    std::uint32_t rkey_bytes = 0;
    std::uint64_t base = 0;
    std::uint64_t size = 0;
    std::uint32_t info_bytes = 0;
    std::uint32_t pad = 0;
};

}  // namespace

// ---------------------------------------------------------------------------------------------

struct UcxTransport::Impl {
    struct Peer {
        ucp_ep_h ep = nullptr;  // guarded by peers_mu; closed by resetPeer()/shutdown()
        std::uint64_t generation = 0;
        bool failed = false;
        Clock::time_point backoff_until{};
        std::atomic<std::uint64_t> next_seq{1};
    };
    struct ErrArg {
        Impl* impl = nullptr;
        int peer = -1;
    };
    // Completion counter of one peer's batch of gets.
    struct Batch {
        Impl* impl = nullptr;
        std::atomic<int> pending{0};
        std::atomic<int> failed{0};
    };

    TransportOptions options;
    int rank = 0, size = 0;
    ContextOwner context;  // must outlive worker and registrations
    WorkerOwner worker;
    int event_fd = -1;
    std::vector<std::byte> address;
    std::vector<std::vector<std::byte>> peer_addresses;
    std::unique_ptr<JobSecret> secret;

    mutable std::mutex peers_mu;
    std::vector<std::unique_ptr<Peer>> peers;
    std::vector<std::unique_ptr<ErrArg>> err_args;
    std::mutex connect_mu;  // serialises endpoint (re)creation

    std::mutex recv_mu;  // guards verifier
    std::unique_ptr<MessageVerifier> verifier;
    std::mutex handlers_mu;  // held while a handler runs
    std::array<MessageHandler, kMaxChannels> handlers;

    std::mutex wait_mu;
    std::condition_variable wait_cv;

    std::atomic<bool> stop{false};
    std::thread progress_thread;

    struct Counters {
        std::atomic<std::uint64_t> sent{0}, accepted{0}, malformed{0}, forged{0}, replayed{0},
            unhandled{0}, gets{0}, get_bytes{0}, timeouts{0}, peer_failures{0}, reconnects{0},
            backoff_skips{0};
    } counters;

    ~Impl() { shutdown(); }

    void notify() {
        std::lock_guard lk(wait_mu);
        wait_cv.notify_all();
    }
    void idleWait() {
        std::unique_lock lk(wait_mu);
        wait_cv.wait_for(lk, std::chrono::microseconds(200));
    }

    // ---- endpoints ----

    static void onEpError(void* arg, ucp_ep_h ep, ucs_status_t st) {
        auto* a = static_cast<ErrArg*>(arg);
        Impl* self = a->impl;
        std::lock_guard lk(self->peers_mu);
        Peer& p = *self->peers[static_cast<std::size_t>(a->peer)];
        if (p.ep == ep && !p.failed) {
            p.failed = true;
            self->counters.peer_failures++;
            log().warn("ucx endpoint to rank {} failed: {}", a->peer, ucs_status_string(st));
        }
    }

    Result<ucp_ep_h> createEp(int peer) {
        auto arg = std::make_unique<ErrArg>(ErrArg{this, peer});
        ucp_ep_params_t params{};
        params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS |
                            UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE | UCP_EP_PARAM_FIELD_ERR_HANDLER;
        params.address =
            reinterpret_cast<const ucp_address_t*>(peer_addresses[peer].data());  // NOLINT
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

    // Closes `ep` (force: outstanding operations are cancelled) and waits up to `timeout`.
    void closeEp(ucp_ep_h ep, bool force, std::chrono::milliseconds timeout) {
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

    // An endpoint usable now, with its generation; creates/re-creates it when `connect`.
    Result<std::pair<ucp_ep_h, std::uint64_t>> endpoint(int peer, bool connect) {
        if (peer < 0 || peer >= size || peer == rank) {
            return STRATA_ERROR(StatusCode::kInvalidArgument, "no peer rank {} (world {}, me {})",
                                peer, size, rank);
        }
        Peer& p = *peers[static_cast<std::size_t>(peer)];
        {
            std::lock_guard lk(peers_mu);
            if (Clock::now() < p.backoff_until) {
                counters.backoff_skips++;
                return STRATA_ERROR(StatusCode::kUnavailable, "rank {} is backing off", peer);
            }
            if (p.ep != nullptr && !p.failed) return std::make_pair(p.ep, p.generation);
            if (!connect) {
                return STRATA_ERROR(StatusCode::kUnavailable, "no endpoint to rank {}", peer);
            }
        }
        std::lock_guard connect_lk(connect_mu);
        ucp_ep_h old = nullptr;
        {
            std::lock_guard lk(peers_mu);
            if (p.ep != nullptr && !p.failed) return std::make_pair(p.ep, p.generation);
            old = std::exchange(p.ep, nullptr);
        }
        if (old != nullptr) closeEp(old, /*force=*/true, options.close_timeout);
        STRATA_ASSIGN_OR_RETURN(ucp_ep_h ep, createEp(peer));
        std::lock_guard lk(peers_mu);
        p.ep = ep;
        p.failed = false;
        if (old != nullptr) counters.reconnects++;
        return std::make_pair(ep, ++p.generation);
    }

    // Drops the endpoint (force close: cancels its outstanding operations) and starts a back-off.
    void resetPeer(int peer) {
        Peer& p = *peers[static_cast<std::size_t>(peer)];
        std::lock_guard connect_lk(connect_mu);
        ucp_ep_h old = nullptr;
        {
            std::lock_guard lk(peers_mu);
            old = std::exchange(p.ep, nullptr);
            p.backoff_until = Clock::now() + options.peer_backoff;
        }
        if (old != nullptr) closeEp(old, /*force=*/true, options.close_timeout);
    }

    void backOff(int peer) {
        std::lock_guard lk(peers_mu);
        peers[static_cast<std::size_t>(peer)]->backoff_until = Clock::now() + options.peer_backoff;
    }

    // ---- messages ----

    static ucs_status_t onMessage(void* arg, const void* header, size_t header_length, void* data,
                                  size_t length, const ucp_am_recv_param_t* param) {
        auto* self = static_cast<Impl*>(arg);
        if ((param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0 || header_length != 0) {
            // Our control messages are small, eager and header-less: anything else is foreign.
            if ((param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0) {
                ucp_am_data_release(self->worker.get(), data);
            }
            self->reject(Verdict::kMalformed, -1);
            return UCS_OK;
        }
        const std::span<const std::byte> message(static_cast<const std::byte*>(data), length);
        MessageHeader h;
        std::span<const std::byte> payload;
        Verdict v;
        {
            std::lock_guard lk(self->recv_mu);
            v = self->verifier->verify(message, &h, &payload);
        }
        if (v != Verdict::kAccepted) {
            self->reject(v, -1);
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

    void reject(Verdict v, int claimed_src) {  // claimed_src: -1 when unknown
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

    static void onSendDone(void* request, ucs_status_t st, void* user) {
        delete static_cast<std::vector<std::byte>*>(user);
        if (request != nullptr) ucp_request_free(request);
    }

    Status send(int peer, std::uint16_t channel, std::span<const std::byte> payload, bool connect) {
        if (channel >= kMaxChannels) {
            return STRATA_ERROR(StatusCode::kInvalidArgument, "channel {} >= {}", channel,
                                kMaxChannels);
        }
        STRATA_ASSIGN_OR_RETURN(auto ep, endpoint(peer, connect));
        const std::uint64_t seq = peers[static_cast<std::size_t>(peer)]->next_seq++;
        auto* buf = new std::vector<std::byte>(sealMessage(*secret, channel, rank, seq, payload));
        ucp_request_param_t param{};
        param.op_attr_mask =
            UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS;
        param.cb.send = &Impl::onSendDone;
        param.user_data = buf;
        param.flags = UCP_AM_SEND_FLAG_EAGER;
        void* req =
            ucp_am_send_nbx(ep.first, kControlAmId, nullptr, 0, buf->data(), buf->size(), &param);
        if (req == nullptr) {
            delete buf;  // completed in place
        } else if (UCS_PTR_IS_ERR(req)) {
            delete buf;
            return ucxError("ucp_am_send_nbx", UCS_PTR_STATUS(req));
        }
        counters.sent++;
        return Status::ok();
    }

    // ---- progress ----

    void progressLoop() {
        while (!stop.load(std::memory_order_acquire)) {
            bool any = false;
            while (ucp_worker_progress(worker.get()) != 0) any = true;
            if (any) notify();
            const ucs_status_t st = ucp_worker_arm(worker.get());
            if (st == UCS_ERR_BUSY) continue;
            if (st != UCS_OK) {
                log().error("ucp_worker_arm: {}", ucs_status_string(st));
            }
            pollfd pfd{event_fd, POLLIN, 0};
            ::poll(&pfd, 1, 100);
        }
    }

    bool waitUntil(const std::function<bool()>& pred, Clock::time_point deadline) {
        for (;;) {
            if (pred()) return true;
            if (Clock::now() >= deadline) return pred();
            if (ucp_worker_progress(worker.get()) == 0) idleWait();
        }
    }

    void shutdown() {
        if (!worker) return;
        // Close every endpoint gracefully (flush), all at once, bounded by close_timeout.
        std::vector<void*> reqs;
        {
            std::lock_guard connect_lk(connect_mu);
            std::vector<ucp_ep_h> eps;
            {
                std::lock_guard lk(peers_mu);
                for (auto& p : peers) {
                    if (p->ep != nullptr) eps.push_back(std::exchange(p->ep, nullptr));
                }
            }
            ucp_request_param_t param{};
            for (ucp_ep_h ep : eps) {
                void* req = ucp_ep_close_nbx(ep, &param);
                if (req != nullptr && !UCS_PTR_IS_ERR(req)) reqs.push_back(req);
            }
        }
        const auto deadline = Clock::now() + options.close_timeout;
        for (void* req : reqs) {
            while (ucp_request_check_status(req) == UCS_INPROGRESS && Clock::now() < deadline) {
                if (ucp_worker_progress(worker.get()) == 0) idleWait();
            }
            if (ucp_request_check_status(req) == UCS_INPROGRESS) {
                log().warn("an endpoint did not close within {} ms", options.close_timeout.count());
            }
            ucp_request_free(req);
        }
        stop.store(true, std::memory_order_release);
        ucp_worker_signal(worker.get());
        if (progress_thread.joinable()) progress_thread.join();
        worker.reset();
        context.reset();
    }
};

// ---------------------------------------------------------------------------------------------

struct RemoteRegion::State {
    struct Member {
        std::uint64_t base = 0, size = 0;
        std::vector<std::byte> packed_rkey;
        std::vector<std::byte> info;
        std::uint64_t rkey_generation = 0;  // endpoint generation the rkey was unpacked for
        RkeyOwner rkey;
    };
    std::shared_ptr<UcxTransport::Impl> impl;  // keeps context and worker alive
    MemOwner mem;                              // this rank's registration
    std::vector<int> members;
    std::vector<Member> by_rank;  // indexed by transport rank; size 0 for non-members
    std::mutex mu;                // guards rkeys

    ~State() {
        for (auto& m : by_rank) m.rkey.reset();  // before the registration and the context
        mem.reset();
    }
};

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

// ---------------------------------------------------------------------------------------------

UcxTransport::UcxTransport(std::shared_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
UcxTransport::~UcxTransport() = default;

int UcxTransport::rank() const noexcept { return impl_->rank; }
int UcxTransport::size() const noexcept { return impl_->size; }

namespace {

// Local part of create(): context, worker (multi-thread), event fd, address, AM handler.
Status initLocal(UcxTransport::Impl& t) {
    ucp_config_t* config = nullptr;
    ucs_status_t st = ucp_config_read(nullptr, nullptr, &config);
    if (st != UCS_OK) return ucxError("ucp_config_read", st);
    ucp_params_t params{};
    params.field_mask = UCP_PARAM_FIELD_FEATURES;
    params.features = UCP_FEATURE_RMA | UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
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
    attr.field_mask = UCP_WORKER_ATTR_FIELD_THREAD_MODE | UCP_WORKER_ATTR_FIELD_ADDRESS;
    st = ucp_worker_query(worker, &attr);
    if (st != UCS_OK) return ucxError("ucp_worker_query", st);
    const auto* addr = reinterpret_cast<const std::byte*>(attr.address);  // NOLINT
    t.address.assign(addr, addr + attr.address_length);
    ucp_worker_release_address(worker, attr.address);
    if (attr.thread_mode != UCS_THREAD_MODE_MULTI) {
        return STRATA_ERROR(StatusCode::kNotSupported,
                            "this UCX build gives no multi-threaded worker (needs --enable-mt)");
    }
    st = ucp_worker_get_efd(worker, &t.event_fd);
    if (st != UCS_OK) return ucxError("ucp_worker_get_efd", st);

    ucp_am_handler_param_t hp{};
    hp.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_FLAGS |
                    UCP_AM_HANDLER_PARAM_FIELD_CB | UCP_AM_HANDLER_PARAM_FIELD_ARG;
    hp.id = kControlAmId;
    hp.flags = UCP_AM_FLAG_WHOLE_MSG;
    hp.cb = &UcxTransport::Impl::onMessage;
    hp.arg = &t;
    st = ucp_worker_set_am_recv_handler(worker, &hp);
    if (st != UCS_OK) return ucxError("ucp_worker_set_am_recv_handler", st);
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
        impl->peers[static_cast<std::size_t>(r)]->ep = *ep;
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

Result<RemoteRegion> UcxTransport::exposeRegion(const MpiComm& group, std::span<std::byte> memory,
                                                std::span<const std::byte> info) {
    auto state = std::make_unique<RemoteRegion::State>();
    state->impl = impl_;
    std::vector<std::byte> wire;
    Status local = [&]() -> Status {
        ucp_mem_map_params_t mp{};
        mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH |
                        UCP_MEM_MAP_PARAM_FIELD_PROT;
        mp.address = memory.data();
        mp.length = memory.size();
        // Remote read only: a leaked remote key cannot be used to write into the pool.
        mp.prot = UCP_MEM_MAP_PROT_LOCAL_READ | UCP_MEM_MAP_PROT_LOCAL_WRITE |
                  UCP_MEM_MAP_PROT_REMOTE_READ;
        ucp_mem_h mem = nullptr;
        ucs_status_t st = ucp_mem_map(impl_->context.get(), &mp, &mem);
        if (st != UCS_OK) return ucxError("ucp_mem_map", st);
        state->mem = MemOwner(impl_->context.get(), mem);
        void* packed = nullptr;
        std::size_t packed_size = 0;
        st = ucp_rkey_pack(impl_->context.get(), mem, &packed, &packed_size);
        if (st != UCS_OK) return ucxError("ucp_rkey_pack", st);
        RkeyBufferOwner packed_owner(packed);
        RegionWire w;
        w.rank = impl_->rank;
        w.rkey_bytes = static_cast<std::uint32_t>(packed_size);
        w.base = reinterpret_cast<std::uintptr_t>(memory.data());  // NOLINT
        w.size = memory.size();
        w.info_bytes = static_cast<std::uint32_t>(info.size());
        wire.resize(sizeof(w) + packed_size + info.size());
        std::memcpy(wire.data(), &w, sizeof(w));
        std::memcpy(wire.data() + sizeof(w), packed, packed_size);
        if (!info.empty())
            std::memcpy(wire.data() + sizeof(w) + packed_size, info.data(), info.size());
        return Status::ok();
    }();
    if (!local.isOk()) log().error("exposing {} bytes: {}", memory.size(), local.toString());
    STRATA_ASSIGN_OR_RETURN(int failures, countFailures(group, !local.isOk()));
    if (!local.isOk()) return local;
    if (failures > 0) {
        return STRATA_ERROR(StatusCode::kUnavailable, "{} rank(s) could not register memory",
                            failures);
    }
    STRATA_ASSIGN_OR_RETURN(auto all, allGatherBytes(group, wire));
    state->by_rank.resize(static_cast<std::size_t>(impl_->size));
    for (const auto& blob : all) {
        RegionWire w;
        if (blob.size() < sizeof(w)) {
            return STRATA_ERROR(StatusCode::kInternal, "short region descriptor");
        }
        std::memcpy(&w, blob.data(), sizeof(w));
        if (w.rank < 0 || w.rank >= impl_->size ||
            blob.size() != sizeof(w) + w.rkey_bytes + w.info_bytes ||
            !state->by_rank[static_cast<std::size_t>(w.rank)].packed_rkey.empty()) {
            return STRATA_ERROR(StatusCode::kInternal, "bad region descriptor from rank {}",
                                w.rank);
        }
        auto& m = state->by_rank[static_cast<std::size_t>(w.rank)];
        m.base = w.base;
        m.size = w.size;
        m.packed_rkey.assign(blob.begin() + sizeof(w), blob.begin() + sizeof(w) + w.rkey_bytes);
        m.info.assign(blob.begin() + sizeof(w) + w.rkey_bytes, blob.end());
        state->members.push_back(w.rank);
    }
    return RemoteRegion(std::move(state));
}

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

namespace {
void onGetDone(void* request, ucs_status_t st, void* user) {
    auto* b = static_cast<UcxTransport::Impl::Batch*>(user);
    if (st != UCS_OK) b->failed.store(1);
    if (b->pending.fetch_sub(1) == 1) b->impl->notify();
    if (request != nullptr) ucp_request_free(request);
}
}  // namespace

std::vector<Status> UcxTransport::get(const RemoteRegion& region, std::span<const PeerGets> gets,
                                      Clock::time_point deadline) {
    auto& s = *region.s_;
    std::vector<Status> out(gets.size());
    std::vector<std::unique_ptr<Impl::Batch>> batches(gets.size());
    for (std::size_t i = 0; i < gets.size(); ++i) {
        const int peer = gets[i].peer;
        if (peer < 0 || static_cast<std::size_t>(peer) >= s.by_rank.size() ||
            s.by_rank[static_cast<std::size_t>(peer)].packed_rkey.empty() || peer == rank()) {
            out[i] =
                STRATA_ERROR(StatusCode::kInvalidArgument, "rank {} is not a remote member", peer);
            continue;
        }
        auto& m = s.by_rank[static_cast<std::size_t>(peer)];
        bool in_range = true;
        for (const auto& op : gets[i].ops) {
            in_range &= op.remote_offset <= m.size && op.bytes <= m.size - op.remote_offset;
        }
        if (!in_range) {
            out[i] = STRATA_ERROR(StatusCode::kInvalidArgument,
                                  "a get lies outside rank {}'s {} exposed bytes", peer, m.size);
            continue;
        }
        auto ep = impl_->endpoint(peer, /*connect=*/true);
        if (!ep.isOk()) {
            out[i] = ep.status();
            continue;
        }
        ucp_rkey_h rkey = nullptr;
        {
            std::lock_guard lk(s.mu);
            if (!m.rkey || m.rkey_generation != ep->second) {
                ucp_rkey_h fresh = nullptr;
                const ucs_status_t st = ucp_ep_rkey_unpack(ep->first, m.packed_rkey.data(), &fresh);
                if (st != UCS_OK) {
                    out[i] = ucxError("ucp_ep_rkey_unpack", st);
                    continue;
                }
                m.rkey.reset(fresh);
                m.rkey_generation = ep->second;
            }
            rkey = m.rkey.get();
        }
        auto batch = std::make_unique<Impl::Batch>();
        batch->impl = impl_.get();
        batch->pending.store(static_cast<int>(gets[i].ops.size()) + 1);
        for (const auto& op : gets[i].ops) {
            ucp_request_param_t param{};
            param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
            param.cb.send = &onGetDone;
            param.user_data = batch.get();
            void* req =
                ucp_get_nbx(ep->first, op.local, op.bytes, m.base + op.remote_offset, rkey, &param);
            if (req == nullptr) {
                batch->pending.fetch_sub(1);
            } else if (UCS_PTR_IS_ERR(req)) {
                batch->failed.store(1);
                batch->pending.fetch_sub(1);
            }
            impl_->counters.gets++;
            impl_->counters.get_bytes += op.bytes;
        }
        batch->pending.fetch_sub(1);  // the issuing reference
        batches[i] = std::move(batch);
    }
    const bool all_done = impl_->waitUntil(
        [&] {
            for (const auto& b : batches) {
                if (b && b->pending.load() > 0) return false;
            }
            return true;
        },
        deadline);
    for (std::size_t i = 0; i < gets.size(); ++i) {
        auto& b = batches[i];
        if (!b) continue;
        const int peer = gets[i].peer;
        if (all_done || b->pending.load() == 0) {
            if (b->failed.load() != 0) {
                out[i] = STRATA_ERROR(StatusCode::kUnavailable, "a get from rank {} failed", peer);
            }
            continue;
        }
        // Deadline passed: force-close the endpoint so that the outstanding gets are cancelled
        // and no byte lands in the caller's memory after we return.
        impl_->counters.timeouts++;
        log().warn("get from rank {} timed out ({} ops outstanding): endpoint reset", peer,
                   b->pending.load());
        impl_->resetPeer(peer);
        const bool purged = impl_->waitUntil([&] { return b->pending.load() == 0; },
                                             Clock::now() + impl_->options.close_timeout);
        if (!purged) {
            log().error("gets to rank {} still outstanding after the endpoint reset", peer);
            (void)b.release();  // their callbacks may still come: never freed
        }
        out[i] = STRATA_ERROR(StatusCode::kTimeout, "get from rank {} timed out", peer);
    }
    return out;
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
    return s;
}

std::vector<std::byte> UcxTransport::workerAddress() const { return impl_->address; }

}  // namespace strata::comm::ucx

#include "strata/comm/ucx/transport.h"

#include <poll.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <unordered_map>

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

// Region descriptor exchanged over MPI: header, then info.
struct RegionWire {
    std::int32_t rank = -1;
    std::uint32_t region = 0;  // the member's local id of the region
    std::uint64_t size = 0;
    std::uint32_t info_bytes = 0;
    std::uint32_t pad = 0;
};

// Reads are served by the holder, never done by UCX on its own: the context has no RMA feature,
// so UCX installs no handler that writes or reads memory for a peer (its software RMA emulation
// would write to any address a peer names, registered or not). A reader sends a sealed read
// request; the holder replies per op with a sealed descriptor as the AM header and the bytes as
// its data, sent from the exposed memory. Both travel on AM ids of their own, sealed like control
// messages on a channel above every user channel.
constexpr std::uint16_t kReadRequestAmId = kControlAmId + 1;
constexpr std::uint16_t kReadReplyAmId = kControlAmId + 2;
constexpr std::uint16_t kReadRequestChannel = 0xffff;
constexpr std::uint16_t kReadReplyChannel = 0xfffe;
constexpr std::size_t kMaxOpsPerRequest = 2048;  // keeps each request eager (32 KiB of ops)
constexpr std::uint32_t kWholeBatch = 0xffffffff;

struct ReadRequestHead {
    std::uint64_t batch = 0;
    std::uint32_t region = 0;
    std::uint32_t first_op = 0;
    std::uint32_t num_ops = 0;
    std::uint32_t pad = 0;
};
struct ReadOpWire {
    std::uint64_t offset = 0, bytes = 0;
};
enum class Refusal : std::int32_t { kNone = 0, kNoRegion = 1, kNotReader = 2, kOutOfRange = 3 };
struct ReadReplyDesc {
    std::uint64_t batch = 0;
    std::uint32_t op = 0;  // kWholeBatch: the request was refused
    std::int32_t refusal = 0;
    std::uint64_t bytes = 0;
};

const char* refusalText(Refusal r) {
    switch (r) {
        case Refusal::kNone:
            return "none";
        case Refusal::kNoRegion:
            return "the region is not exposed there (any more)";
        case Refusal::kNotReader:
            return "this rank is not a member of the region's group";
        case Refusal::kOutOfRange:
            return "an op lies outside the exposed memory";
    }
    return "unknown";
}

}  // namespace

// ---------------------------------------------------------------------------------------------

struct UcxTransport::Impl {
    // One UCX endpoint. Threads that send hold a reference while they use it; a reset or a
    // reconnect only retires it, and it is closed once no thread holds it any more (closing an
    // endpoint that another thread is sending on is a use-after-free inside UCX).
    struct Endpoint {
        ucp_ep_h ep = nullptr;
    };
    using EndpointRef = std::shared_ptr<const Endpoint>;
    struct Peer {
        EndpointRef ep;  // guarded by peers_mu; null after a reset until the next connect
        std::uint64_t generation = 0;
        bool failed = false;
        bool connect_wanted = false;  // a handler had no endpoint to reply on
        Clock::time_point backoff_until{};
        std::array<std::atomic<std::uint64_t>, kStreams> last_seq{};  // per stream, towards it
        std::uint64_t nextSeq(Stream s) { return ++last_seq[static_cast<std::size_t>(s)]; }
    };
    struct ErrArg {
        Impl* impl = nullptr;
        int peer = -1;
    };
    // Memory this rank exposed, served to the ranks marked in `readers`.
    struct Exposed {
        std::byte* base = nullptr;
        std::size_t size = 0;
        std::vector<char> readers;  // by transport rank
        std::atomic<int> in_flight{0};
    };
    // One peer's outstanding reads. Bytes land in the caller's memory only through land(),
    // under `mu` and while `live`: a reply that comes after get() returned lands nowhere.
    struct ReadBatch {
        std::uint64_t id = 0;
        int peer = -1;
        std::mutex mu;
        bool live = true;
        std::vector<GetOp> ops;
        std::vector<char> landed;
        std::size_t pending = 0;
        Refusal refusal = Refusal::kNone;
        bool malformed_reply = false;
        bool done() {
            std::lock_guard lk(mu);
            return pending == 0 || refusal != Refusal::kNone || malformed_reply;
        }
    };
    // A control message or read request in flight: its sealed bytes.
    struct SentMessage {
        Impl* impl = nullptr;
        std::vector<std::byte> bytes;
    };
    // A reply in flight at the holder: its sealed header and the region it reads from.
    struct ReplySend {
        Impl* impl = nullptr;
        std::vector<std::byte> header;
        std::shared_ptr<Exposed> region;
    };
    // A rendezvous reply being received into staging memory of its own.
    struct RndvRecv {
        Impl* impl = nullptr;
        std::shared_ptr<ReadBatch> batch;
        std::uint32_t op = 0;
        std::vector<std::byte> staging;
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
    std::vector<EndpointRef> retired;  // guarded by peers_mu; closed by closeRetired()
    bool connect_wanted = false;       // guarded by peers_mu: some peer's connect_wanted is set
    std::vector<std::unique_ptr<ErrArg>> err_args;
    std::mutex connect_mu;  // serialises endpoint (re)creation

    std::mutex recv_mu;  // guards verifier
    std::unique_ptr<MessageVerifier> verifier;
    std::mutex handlers_mu;  // held while a handler runs
    std::array<MessageHandler, kMaxChannels> handlers;

    std::mutex wait_mu;
    std::condition_variable wait_cv;

    std::mutex exposed_mu;
    std::unordered_map<std::uint32_t, std::shared_ptr<Exposed>> exposed;
    std::uint32_t next_region = 1;  // guarded by exposed_mu
    std::mutex reads_mu;
    std::unordered_map<std::uint64_t, std::shared_ptr<ReadBatch>> reads;
    std::atomic<std::uint64_t> next_batch{1};

    std::atomic<bool> stop{false};
    std::thread progress_thread;
    // UCX requests of ours not completed yet (sends, replies, rendezvous receives): the worker is
    // destroyed only when none is left (UCX 1.13 aborts on an endpoint with requests in flight).
    std::atomic<std::int64_t> outstanding{0};

    struct Counters {
        std::atomic<std::uint64_t> sent{0}, accepted{0}, malformed{0}, forged{0}, replayed{0},
            unhandled{0}, gets{0}, get_bytes{0}, timeouts{0}, peer_failures{0}, reconnects{0},
            backoff_skips{0}, reads_served{0}, bytes_served{0}, reads_refused{0}, late_replies{0};
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
        if (p.ep != nullptr && p.ep->ep == ep && !p.failed) {
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

    // An endpoint usable now (held by the caller while it uses it). With `connect` (a rank that
    // starts an exchange and will wait for it): fails fast while the peer backs off, and creates
    // or re-creates the endpoint. Without (a handler's reply): never blocks, connects or closes,
    // and ignores the back-off, which only spares this rank's own waits: refusing to answer a
    // peer we back off from made it time out and back off from us in turn, and under load the
    // two kept each other's links dead. Without an endpoint, the progress thread makes one (the
    // requester times out this once).
    Result<EndpointRef> endpoint(int peer, bool connect) {
        if (peer < 0 || peer >= size || peer == rank) {
            return STRATA_ERROR(StatusCode::kInvalidArgument, "no peer rank {} (world {}, me {})",
                                peer, size, rank);
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

    // Creates the endpoint to `peer` unless a usable one exists (replacing a failed or retired
    // one). Never called from a handler.
    Result<EndpointRef> connectPeer(int peer) {
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

    // Connects the peers whose handlers found no endpoint to reply on (progress thread).
    void connectWanted() {
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

    // Moves the peer's endpoint, if any, to the retired list. Caller holds peers_mu.
    void retireLocked(Peer& p) {
        if (p.ep != nullptr) retired.push_back(std::exchange(p.ep, nullptr));
    }

    // Force-closes (cancelling their outstanding operations) the retired endpoints that no thread
    // uses any more; the others wait for a later call. Never called from a handler: closing
    // progresses the worker.
    void closeRetired() {
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

    void backOff(int peer) {
        std::lock_guard lk(peers_mu);
        peers[static_cast<std::size_t>(peer)]->backoff_until = Clock::now() + options.peer_backoff;
    }

    // ---- messages ----

    // Checks a sealed message (header + payload); rejects and counts it unless authentic.
    bool verifySealed(std::span<const std::byte> message, Stream stream, MessageHeader* h,
                      std::span<const std::byte>* payload) {
        Verdict v;
        {
            std::lock_guard lk(recv_mu);
            v = verifier->verify(message, stream, h, payload);
        }
        if (v != Verdict::kAccepted) reject(v, message.size() >= sizeof(*h) ? h->src_rank : -1);
        return v == Verdict::kAccepted;
    }

    // Control messages and read requests are small, eager and header-less, sealed in the data:
    // anything else is foreign. True when `data` is an authentic message.
    bool acceptSealed(Stream stream, size_t header_length, void* data, size_t length,
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

    static ucs_status_t onMessage(void* arg, const void* /*header*/, size_t header_length,
                                  void* data, size_t length, const ucp_am_recv_param_t* param) {
        auto* self = static_cast<Impl*>(arg);
        MessageHeader h;
        std::span<const std::byte> payload;
        if (!self->acceptSealed(Stream::kControl, header_length, data, length, param, &h,
                                &payload)) {
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
        auto* m = static_cast<SentMessage*>(user);
        m->impl->outstanding--;
        delete m;
        if (request != nullptr) ucp_request_free(request);
    }

    Status send(int peer, std::uint16_t channel, std::span<const std::byte> payload, bool connect) {
        if (channel >= kMaxChannels) {
            return STRATA_ERROR(StatusCode::kInvalidArgument, "channel {} >= {}", channel,
                                kMaxChannels);
        }
        return sendSealed(peer, kControlAmId, Stream::kControl, channel, payload, connect);
    }

    // A sealed, eager, header-less message on AM id `am_id`.
    Status sendSealed(int peer, std::uint16_t am_id, Stream stream, std::uint16_t channel,
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

    // ---- reads: the holder's side ----

    static void onReplySent(void* request, ucs_status_t st, void* user) {
        auto* r = static_cast<ReplySend*>(user);
        if (st != UCS_OK && st != UCS_ERR_CANCELED) {
            log().warn("sending a read reply failed: {}", ucs_status_string(st));
        }
        r->impl->outstanding--;
        r->impl->finishReply(r);
        if (request != nullptr) ucp_request_free(request);
    }

    void finishReply(ReplySend* r) {
        if (r->region && r->region->in_flight.fetch_sub(1) == 1) notify();
        delete r;
    }

    // One reply to `peer`: `desc` sealed as the AM header, `bytes` of `data` as its data (sent
    // from the exposed memory; `region` stays counted in flight until UCX is done with it).
    void sendReply(int peer, const ReadReplyDesc& desc, const std::byte* data, std::size_t bytes,
                   std::shared_ptr<Exposed> region) {
        auto ep = endpoint(peer, /*connect=*/false);
        if (!ep.isOk()) return;  // the reader times out
        const std::uint64_t seq =
            peers[static_cast<std::size_t>(peer)]->nextSeq(Stream::kReadReply);
        auto* r =
            new ReplySend{this,
                          sealMessage(*secret, kReadReplyChannel, rank, seq,
                                      std::as_bytes(std::span<const ReadReplyDesc>(&desc, 1))),
                          std::move(region)};
        if (r->region) r->region->in_flight.fetch_add(1);
        ucp_request_param_t param{};
        param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
        param.cb.send = &Impl::onReplySent;
        param.user_data = r;
        void* req = ucp_am_send_nbx((*ep)->ep, kReadReplyAmId, r->header.data(), r->header.size(),
                                    data, bytes, &param);
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

    static ucs_status_t onReadRequest(void* arg, const void* /*header*/, size_t header_length,
                                      void* data, size_t length, const ucp_am_recv_param_t* param) {
        auto* self = static_cast<Impl*>(arg);
        MessageHeader h;
        std::span<const std::byte> payload;
        if (!self->acceptSealed(Stream::kReadRequest, header_length, data, length, param, &h,
                                &payload)) {
            return UCS_OK;
        }
        ReadRequestHead head;
        if (h.channel != kReadRequestChannel || payload.size() < sizeof(head)) {
            self->reject(Verdict::kMalformed, h.src_rank);
            return UCS_OK;
        }
        std::memcpy(&head, payload.data(), sizeof(head));
        if (head.num_ops > kMaxOpsPerRequest ||
            payload.size() != sizeof(head) + std::size_t{head.num_ops} * sizeof(ReadOpWire)) {
            self->reject(Verdict::kMalformed, h.src_rank);
            return UCS_OK;
        }
        self->serveRead(h.src_rank, head, payload.subspan(sizeof(head)));
        return UCS_OK;
    }

    void serveRead(int reader, const ReadRequestHead& head, std::span<const std::byte> op_bytes) {
        std::shared_ptr<Exposed> region;
        {
            std::lock_guard lk(exposed_mu);
            auto it = exposed.find(head.region);
            if (it != exposed.end()) region = it->second;
        }
        Refusal refusal = Refusal::kNone;
        std::vector<ReadOpWire> ops(head.num_ops);
        if (!ops.empty()) std::memcpy(ops.data(), op_bytes.data(), op_bytes.size());
        if (!region) {
            refusal = Refusal::kNoRegion;
        } else if (static_cast<std::size_t>(reader) >= region->readers.size() ||
                   region->readers[static_cast<std::size_t>(reader)] == 0) {
            refusal = Refusal::kNotReader;
        } else {
            for (const auto& op : ops) {
                if (op.offset > region->size || op.bytes > region->size - op.offset) {
                    refusal = Refusal::kOutOfRange;
                }
            }
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
        for (std::uint32_t i = 0; i < head.num_ops; ++i) {
            ReadReplyDesc d;
            d.batch = head.batch;
            d.op = head.first_op + i;
            d.bytes = ops[i].bytes;
            sendReply(reader, d, region->base + ops[i].offset, ops[i].bytes, region);
            counters.reads_served++;
            counters.bytes_served += ops[i].bytes;
        }
    }

    // ---- reads: the reader's side ----

    // Copies one op's bytes into the caller's memory if the batch still waits for them.
    void land(ReadBatch& b, std::uint32_t op, const std::byte* bytes, std::size_t n) {
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

    void failBatch(ReadBatch& b, Refusal refusal) {
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

    static void onRndvDone(void* request, ucs_status_t st, size_t length, void* user) {
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

    static ucs_status_t onReadReply(void* arg, const void* header, size_t header_length, void* data,
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
        ReadReplyDesc d;
        if (h.channel != kReadReplyChannel || payload.size() != sizeof(d)) {
            self->reject(Verdict::kMalformed, h.src_rank);
            return drop();
        }
        std::memcpy(&d, payload.data(), sizeof(d));
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

    bool peerFailed(int peer) {
        std::lock_guard lk(peers_mu);
        return peers[static_cast<std::size_t>(peer)]->failed;
    }

    // ---- progress ----

    void progressLoop() {
        while (!stop.load(std::memory_order_acquire)) {
            connectWanted();
            closeRetired();  // those no thread uses any more
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
        // Stop the progress thread first: from here on handlers run only inside this thread's
        // own progress calls, so no other thread holds an endpoint while it is closed.
        stop.store(true, std::memory_order_release);
        ucp_worker_signal(worker.get());
        if (progress_thread.joinable()) progress_thread.join();
        // Healthy endpoints close gracefully (flushing what was sent); failed, backing-off and
        // retired ones are force-closed, since a stopped peer never answers a flush. All at once,
        // bounded by close_timeout.
        std::vector<std::pair<ucp_ep_h, bool>> eps;  // endpoint, force
        {
            std::lock_guard connect_lk(connect_mu);
            std::lock_guard lk(peers_mu);
            const auto now = Clock::now();
            for (auto& p : peers) {
                if (p->ep == nullptr) continue;
                eps.emplace_back(p->ep->ep, p->failed || now < p->backoff_until);
                p->ep.reset();
            }
            for (const auto& e : retired) eps.emplace_back(e->ep, true);
            retired.clear();
        }
        std::vector<void*> reqs;
        for (const auto& [ep, force] : eps) {
            ucp_request_param_t param{};
            param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
            param.flags = force ? UCP_EP_CLOSE_FLAG_FORCE : 0;
            void* req = ucp_ep_close_nbx(ep, &param);
            if (req != nullptr && !UCS_PTR_IS_ERR(req)) reqs.push_back(req);
        }
        // Wait, bounded, until every close and every request of ours completed.
        const auto deadline = Clock::now() + options.close_timeout;
        auto pending = [&] {
            return std::count_if(
                       reqs.begin(), reqs.end(),
                       [](void* r) { return ucp_request_check_status(r) == UCS_INPROGRESS; }) +
                   outstanding.load();
        };
        while (pending() > 0 && Clock::now() < deadline) {
            if (ucp_worker_progress(worker.get()) == 0) idleWait();
        }
        const auto left = pending();
        for (void* req : reqs) ucp_request_free(req);
        // UCX 1.13 aborts in ucp_worker_destroy when an endpoint still has requests (one whose
        // peer stopped or vanished, or whose transfer a timeout abandoned). The process keeps
        // running (an engine) or is about to exit: leaving the worker and context to it is the
        // lesser harm.
        if (left > 0 || counters.timeouts > 0 || counters.peer_failures > 0) {
            log().info(
                "ucx transport closed with {} operation(s) unfinished, {} timeout(s) and "
                "{} failed endpoint(s): its worker is not destroyed",
                left, counters.timeouts.load(), counters.peer_failures.load());
            (void)worker.release();
            (void)context.release();
            return;
        }
        worker.reset();
        context.reset();
    }
};

// ---------------------------------------------------------------------------------------------

struct RemoteRegion::State {
    struct Member {
        bool member = false;
        std::uint32_t region = 0;  // the member's local id of the region
        std::uint64_t size = 0;
        std::vector<std::byte> info;
    };
    std::shared_ptr<UcxTransport::Impl> impl;  // keeps context and worker alive
    std::uint32_t local_id = 0;                // this rank's exposure (0: none)
    std::vector<int> members;
    std::vector<Member> by_rank;  // indexed by transport rank

    // Stops serving, then waits (bounded) until UCX is done with every reply sent from it.
    ~State() {
        if (local_id == 0) return;
        std::shared_ptr<UcxTransport::Impl::Exposed> mine;
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
    // No UCP_FEATURE_RMA, on purpose: see kReadRequestAmId.
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
        {kControlAmId, &UcxTransport::Impl::onMessage},
        {kReadRequestAmId, &UcxTransport::Impl::onReadRequest},
        {kReadReplyAmId, &UcxTransport::Impl::onReadReply},
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
        RegionWire m;
        if (blob.size() < sizeof(m)) {
            return STRATA_ERROR(StatusCode::kInternal, "short region descriptor");
        }
        std::memcpy(&m, blob.data(), sizeof(m));
        if (m.rank < 0 || m.rank >= impl_->size || blob.size() != sizeof(m) + m.info_bytes ||
            state->by_rank[static_cast<std::size_t>(m.rank)].member) {
            return STRATA_ERROR(StatusCode::kInternal, "bad region descriptor from rank {}",
                                m.rank);
        }
        auto& member = state->by_rank[static_cast<std::size_t>(m.rank)];
        member.member = true;
        member.region = m.region;
        member.size = m.size;
        member.info.assign(blob.begin() + sizeof(m), blob.end());
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

// The state behind UcxTransport (private to comm/ucx). One Impl per rank; its methods live in
// files by responsibility:
//   endpoints.cpp        endpoint creation, references, retirement and closing, back-off
//   sealed_messages.cpp  control messages and read requests: seal, send, verify, dispatch
//   read_server.cpp      the holder's side of reads: exposed regions, serving requests, replies
//   read_client.cpp      the reader's side of reads: batches, landing replies, get()
//   progress.cpp         the progress thread, waits, shutdown
//   bootstrap.cpp        create(): context, worker, AM handlers, addresses and secret over MPI
//   transport.cpp        the public facade
// Lock order (never the reverse): connect_mu -> peers_mu; handlers_mu is held while a handler
// runs (handlers may send, which takes peers_mu); reads_mu, exposed_mu, recv_mu and a batch's mu
// are leaves.
#pragma once

#include <ucp/api/ucp.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "strata/comm/ucx/message_auth.h"
#include "strata/comm/ucx/transport.h"
#include "strata/comm/ucx/wire.h"
#include "ucx_handles.h"

namespace strata::comm::ucx {

inline Status ucxError(const char* what, ucs_status_t st) {
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

    // ---- progress (progress.cpp) ----

    // Wakes threads in waitUntil() and idleWait().
    void notify();
    // Sleeps until notify() or 200 us, whichever comes first.
    void idleWait();
    // The progress thread: connects wanted peers, closes unused retired endpoints, progresses
    // the worker and sleeps on its event fd (100 ms at most).
    void progressLoop();
    bool waitUntil(const std::function<bool()>& pred, Clock::time_point deadline);
    // Stops the progress thread, closes every endpoint and waits (bounded) for our requests;
    // destroys worker and context only when nothing is left in flight.
    void shutdown();

    // ---- endpoints (endpoints.cpp) ----

    static void onEpError(void* arg, ucp_ep_h ep, ucs_status_t st);
    Result<ucp_ep_h> createEp(int peer);
    // Closes `ep` (force: outstanding operations are cancelled) and waits up to `timeout`.
    void closeEp(ucp_ep_h ep, bool force, std::chrono::milliseconds timeout);
    // An endpoint usable now (held by the caller while it uses it). With `connect`: fails fast
    // while the peer backs off, and creates or re-creates the endpoint. Without (a handler's
    // reply): never blocks, connects or closes, and ignores the back-off.
    Result<EndpointRef> endpoint(int peer, bool connect);
    // Creates the endpoint to `peer` unless a usable one exists (replacing a failed or retired
    // one). Never called from a handler.
    Result<EndpointRef> connectPeer(int peer);
    // Connects the peers whose handlers found no endpoint to reply on (progress thread).
    void connectWanted();
    // Moves the peer's endpoint, if any, to the retired list. Caller holds peers_mu.
    void retireLocked(Peer& p);
    // Force-closes the retired endpoints that no thread uses any more. Never from a handler.
    void closeRetired();
    void backOff(int peer);
    bool peerFailed(int peer);

    // ---- sealed messages (sealed_messages.cpp) ----

    // Checks a sealed message (header + payload); rejects and counts it unless authentic.
    bool verifySealed(std::span<const std::byte> message, Stream stream, MessageHeader* h,
                      std::span<const std::byte>* payload);
    // Control messages and read requests are small, eager and header-less, sealed in the data:
    // anything else is foreign. True when `data` is an authentic message.
    bool acceptSealed(Stream stream, size_t header_length, void* data, size_t length,
                      const ucp_am_recv_param_t* param, MessageHeader* h,
                      std::span<const std::byte>* payload);
    static ucs_status_t onMessage(void* arg, const void* header, size_t header_length, void* data,
                                  size_t length, const ucp_am_recv_param_t* param);
    void reject(Verdict v, int claimed_src);  // claimed_src: -1 when unknown
    static void onSendDone(void* request, ucs_status_t st, void* user);
    Status send(int peer, std::uint16_t channel, std::span<const std::byte> payload, bool connect);
    // A sealed, eager, header-less message on AM id `am_id`.
    Status sendSealed(int peer, std::uint16_t am_id, Stream stream, std::uint16_t channel,
                      std::span<const std::byte> payload, bool connect);

    // ---- reads: the holder's side (read_server.cpp) ----

    static void onReplySent(void* request, ucs_status_t st, void* user);
    void finishReply(ReplySend* r);
    // One reply to `peer`: `desc` sealed as the AM header, `bytes` of `data` as its data (sent
    // from the exposed memory; `region` stays counted in flight until UCX is done with it).
    void sendReply(int peer, const ReadReplyDesc& desc, const std::byte* data, std::size_t bytes,
                   std::shared_ptr<Exposed> region);
    static ucs_status_t onReadRequest(void* arg, const void* header, size_t header_length,
                                      void* data, size_t length, const ucp_am_recv_param_t* param);
    void serveRead(int reader, const ReadRequest& request);

    // ---- reads: the reader's side (read_client.cpp) ----

    // Copies one op's bytes into the caller's memory if the batch still waits for them.
    void land(ReadBatch& b, std::uint32_t op, const std::byte* bytes, std::size_t n);
    void failBatch(ReadBatch& b, Refusal refusal);
    static void onRndvDone(void* request, ucs_status_t st, size_t length, void* user);
    static ucs_status_t onReadReply(void* arg, const void* header, size_t header_length, void* data,
                                    size_t length, const ucp_am_recv_param_t* param);
};

// A region as one rank sees it: every member's descriptor, and this rank's exposure.
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

    // Stops serving, then waits (bounded) until UCX is done with every reply sent from it
    // (read_server.cpp).
    ~State();
};

}  // namespace strata::comm::ucx

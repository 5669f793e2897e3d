// UcxTransport: one UCX context, worker and endpoint set per rank of a job, bootstrapped over MPI
// (worker addresses, remote keys and the per-job secret travel over MPI; no side channel).
// Offers authenticated control messages (active messages keyed by the job secret; anything else
// is dropped and counted), reads of memory that peers exposed to a group, and bounded waits: a slow
// or stopped peer costs a timeout (no late byte lands) and a back-off period, never a hang. No UCX
// type appears here.
// Reads are served, not one-sided: the UCX context has no RMA feature, so no peer, in the job or
// not, can make UCX write into (or read from) this process's memory. With RMA enabled, UCX 1.13's
// software RMA over tcp and shared memory writes wherever a put names, whatever the remote key's
// protection says (the ForeignPutsNeverWriteIntoAPool test shows the transport is immune). A
// reader sends an authenticated read request; the holder's worker answers each op with an
// authenticated reply whose data is sent straight from the exposed memory; the reader copies the
// bytes into its memory only while its get() still waits for them.
// Progress: a background thread blocked on the worker's event fd (woken by UCX or every 100 ms)
// serves incoming messages; callers waiting on their own operations progress the worker too.
// Ownership: create() returns a shared owner; exposed regions keep the transport alive.
// Thread-safety: every method may be called from any thread (the UCX worker runs in multi-thread
// mode); message handlers run on whichever thread progresses the worker and must not block.
// Without UCX in the build, available() is false and create() fails with kNotSupported (so no
// transport or region ever exists); callers need no #if.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "strata/comm/mpi_comm.h"
#include "strata/core/status.h"

namespace strata::comm::ucx {

using Clock = std::chrono::steady_clock;

// True when this build has UCX (the transport can be created).
bool available() noexcept;

struct TransportOptions {
    // Graceful endpoint close at destruction waits at most this long for peers.
    std::chrono::milliseconds close_timeout{2000};
    // After a timeout, operations towards that peer fail fast (kUnavailable) for this long.
    std::chrono::milliseconds peer_backoff{1000};
};

struct TransportStats {
    std::uint64_t messages_sent = 0;
    std::uint64_t messages_accepted = 0;
    std::uint64_t messages_rejected = 0;  // the sum of the four reasons below
    std::uint64_t rejected_malformed = 0, rejected_forged = 0, rejected_replayed = 0;
    std::uint64_t rejected_unhandled = 0;  // authentic but no handler on that channel
    std::uint64_t gets = 0, get_bytes = 0;
    std::uint64_t timeouts = 0;       // gets whose deadline passed (the peer backs off)
    std::uint64_t peer_failures = 0;  // endpoints UCX reported broken
    std::uint64_t reconnects = 0;     // endpoints re-created after UCX reported them failed
    std::uint64_t backoff_skips = 0;  // operations refused while a peer was backing off
    std::uint64_t reads_served = 0, bytes_served = 0;  // ops this rank answered as a holder
    std::uint64_t reads_refused = 0;  // read requests refused (no such region, not a member, range)
    std::uint64_t late_replies = 0;   // replies that came after their get() returned (dropped)
};

// One local read: `bytes` at `remote_offset` of the peer's exposed region into `local`.
struct GetOp {
    std::uint64_t remote_offset = 0;
    std::byte* local = nullptr;
    std::size_t bytes = 0;
};

struct PeerGets {
    int peer = -1;  // transport rank
    std::span<const GetOp> ops;
};

class UcxTransport;

// Memory the members of a group exposed to each other for reading. Move-only; destruction stops
// serving this rank's memory and waits (bounded by close_timeout) for replies in flight from it.
class RemoteRegion {
public:
    RemoteRegion(RemoteRegion&&) noexcept;
    RemoteRegion& operator=(RemoteRegion&&) noexcept;
    ~RemoteRegion();

    // Transport ranks of the group, in group rank order.
    const std::vector<int>& members() const noexcept;
    // The `info` bytes a member passed to exposeRegion() (empty for non-members).
    std::span<const std::byte> info(int rank) const noexcept;
    // Size of a member's exposed memory (0 for non-members).
    std::size_t sizeBytes(int rank) const noexcept;

private:
    friend class UcxTransport;
    struct State;
    explicit RemoteRegion(std::unique_ptr<State> s) noexcept;
    std::unique_ptr<State> s_;
};

class UcxTransport {
public:
    // Called with the sender's transport rank and the authenticated payload.
    using MessageHandler = std::function<void(int src_rank, std::span<const std::byte> payload)>;
    static constexpr std::uint16_t kMaxChannels = 64;

    // Collective over `comm`: UCX context and worker, worker addresses all-gathered, endpoints to
    // every other rank, the job secret broadcast from rank 0. Every rank gets the same outcome
    // (kIoError naming the UCX status text on the rank that failed, kUnavailable on the others;
    // kNotSupported on every rank, before any collective, in a build without UCX).
    static Result<std::shared_ptr<UcxTransport>> create(const MpiComm& comm,
                                                        const TransportOptions& options = {});

    ~UcxTransport();
    UcxTransport(const UcxTransport&) = delete;
    UcxTransport& operator=(const UcxTransport&) = delete;

    int rank() const noexcept;
    int size() const noexcept;

    // Collective over `group` (ranks of this transport's job): serves `memory` to the group's
    // members for reading (never for writing) and all-gathers the members' sizes and `info`.
    // `memory` must stay valid while the region lives. Returns once every member serves.
    Result<RemoteRegion> exposeRegion(const MpiComm& group, std::span<std::byte> memory,
                                      std::span<const std::byte> info);

    // Installs (or replaces) the handler of `channel`. clearHandler() returns once the handler is
    // not running and will not be called again.
    Status setHandler(std::uint16_t channel, MessageHandler handler);
    void clearHandler(std::uint16_t channel);

    // Sends an authenticated message (payload copied; completion is asynchronous). With `connect`
    // (a rank starting an exchange): kUnavailable while the peer backs off; the endpoint is
    // created when missing. Without (handlers replying): the back-off does not apply, nothing
    // blocks or connects; kUnavailable when there is no usable endpoint (the progress thread then
    // makes one). kInvalidArgument for a bad rank.
    Status send(int peer, std::uint16_t channel, std::span<const std::byte> payload,
                bool connect = true);

    // Reads every op of every peer (all in flight at once) and waits until all completed or the
    // deadline. Per peer (same order as `gets`): OK; kTimeout (the deadline passed: no byte of
    // these ops lands after the return, and the peer backs off);
    // kUnavailable (backing off, the endpoint failed, or the peer refused the read);
    // kInvalidArgument (not a region member, or an op outside its exposed memory). Ops of a
    // failed peer may have landed partly.
    std::vector<Status> get(const RemoteRegion& region, std::span<const PeerGets> gets,
                            Clock::time_point deadline);

    // Makes operations towards `peer` fail fast for the back-off period (e.g. after a control
    // request timed out).
    void backOff(int peer);

    // Progresses the worker until pred() holds (true) or the deadline passes (false). pred is
    // called without locks; completions and handlers wake the waiter.
    bool waitUntil(const std::function<bool()>& pred, Clock::time_point deadline);
    // Wakes threads in waitUntil() (handlers call it after publishing a completion).
    void notifyWaiters();

    TransportStats stats() const;
    // This rank's packed worker address (tests hand it to a process outside the job).
    std::vector<std::byte> workerAddress() const;

    struct Impl;

private:
    explicit UcxTransport(std::shared_ptr<Impl> impl) noexcept;
    std::shared_ptr<Impl> impl_;
};

}  // namespace strata::comm::ucx

#include "strata/comm/node_window.h"

#include <mpi.h>

#include <cstring>
#include <numeric>

#include "mpi_error.h"
#include "strata/comm/mpi_native.h"
#include "strata/core/log.h"

namespace strata::comm {

namespace {

constexpr std::size_t kSegmentAlign = 4096;

MPI_Win nativeWin(std::uintptr_t w) noexcept {
    MPI_Win win;
    std::memcpy(&win, &w, sizeof(win));
    return win;
}

std::uintptr_t opaqueWin(MPI_Win win) noexcept {
    std::uintptr_t w = 0;
    static_assert(sizeof(MPI_Win) <= sizeof(std::uintptr_t), "MPI_Win must fit an uintptr_t");
    std::memcpy(&w, &win, sizeof(win));
    return w;
}

}  // namespace

Result<std::unique_ptr<NodeWindow>> NodeWindow::create(const MpiComm& node,
                                                       std::size_t local_bytes) {
    if (!node.valid()) {
        return STRATA_ERROR(StatusCode::kFailedPrecondition, "node window over a null comm");
    }
    std::unique_ptr<NodeWindow> w(new NodeWindow());
    STRATA_ASSIGN_OR_RETURN(w->comm_, node.dup());
    MPI_Comm c = nativeComm(w->comm_);
    // MPI's base is not page-aligned (Open MPI puts a header first): each segment asks for one
    // page more and starts at its first page boundary, so that segments are page-aligned,
    // page-sized and never share a page (a GPU rank registers each one for DMA on its own).
    const std::size_t usable = (local_bytes + kSegmentAlign - 1) / kSegmentAlign * kSegmentAlign;
    const std::size_t bytes = usable == 0 ? 0 : usable + kSegmentAlign;
    MPI_Win win = MPI_WIN_NULL;
    void* base = nullptr;
    STRATA_MPI_RETURN_IF_ERROR(
        MPI_Win_allocate_shared(static_cast<MPI_Aint>(bytes), 1, MPI_INFO_NULL, c, &base, &win));
    w->win_ = opaqueWin(win);
    // Memory model: unified (one copy of the memory, loads and stores see each other) is what
    // lets the node index use plain atomics on the window; separate would need MPI_Put/Get.
    int* model = nullptr;
    int flag = 0;
    STRATA_MPI_RETURN_IF_ERROR(MPI_Win_get_attr(win, MPI_WIN_MODEL, &model, &flag));
    int unified = (flag != 0 && *model == MPI_WIN_UNIFIED) ? 1 : 0;
    STRATA_MPI_RETURN_IF_ERROR(MPI_Allreduce(MPI_IN_PLACE, &unified, 1, MPI_INT, MPI_MIN, c));
    w->bases_.resize(static_cast<std::size_t>(w->size()));
    w->sizes_.resize(static_cast<std::size_t>(w->size()));
    for (int r = 0; r < w->size(); ++r) {
        MPI_Aint size = 0;
        int disp = 0;
        void* ptr = nullptr;
        STRATA_MPI_RETURN_IF_ERROR(MPI_Win_shared_query(win, r, &size, &disp, &ptr));
        const auto raw = reinterpret_cast<std::uintptr_t>(ptr);
        const std::uintptr_t aligned = (raw + kSegmentAlign - 1) / kSegmentAlign * kSegmentAlign;
        const std::uintptr_t end = raw + static_cast<std::uintptr_t>(size);
        w->bases_[r] = reinterpret_cast<std::byte*>(aligned);
        w->sizes_[r] =
            size == 0 || end < aligned ? 0 : (end - aligned) / kSegmentAlign * kSegmentAlign;
    }
    STRATA_MPI_RETURN_IF_ERROR(MPI_Win_lock_all(MPI_MODE_NOCHECK, win));
    w->locked_ = true;
    if (unified == 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "the node's shared window is not in MPI's unified memory model: "
                            "the node-wide host tier needs it (use --host-sharing off)");
    }
    // Zero-filled: MPI does not promise it. Each rank clears its own segment, then all meet.
    if (w->sizes_[w->rank()] != 0) std::memset(w->mySegment(), 0, w->sizes_[w->rank()]);
    STRATA_RETURN_IF_ERROR(w->barrier());
    return w;
}

NodeWindow::~NodeWindow() {
    if (win_ == 0) return;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized != 0) {
        core::logger("comm").warn("node window leaked: MPI is already finalised");
        return;
    }
    MPI_Win win = nativeWin(win_);
    if (locked_) {
        int rc = MPI_Win_unlock_all(win);
        if (rc != MPI_SUCCESS) core::logger("comm").warn("MPI_Win_unlock_all failed ({})", rc);
    }
    int rc = MPI_Win_free(&win);
    if (rc != MPI_SUCCESS) core::logger("comm").warn("MPI_Win_free failed ({})", rc);
}

std::size_t NodeWindow::totalBytes() const noexcept {
    return std::accumulate(sizes_.begin(), sizes_.end(), std::size_t{0});
}

void NodeWindow::sync() const noexcept { MPI_Win_sync(nativeWin(win_)); }

Status NodeWindow::barrier() const {
    sync();
    STRATA_MPI_RETURN_IF_ERROR(MPI_Barrier(nativeComm(comm_)));
    sync();
    return Status::ok();
}

}  // namespace strata::comm

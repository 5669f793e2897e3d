// Grid: the DP x PP x CP x TP layout of MPI_COMM_WORLD (TP fastest) and the communicators split
// from it (TP, CP, PP, DP, the TP x CP decision group, the replica) plus node-local rank -> GPU.
// Ownership: owns every communicator it split and a duplicate of the world it was given.
// Thread-safety: immutable after create(); MPI calls on one communicator need one thread at a time.
#pragma once

#include <string>
#include <string_view>

#include "strata/comm/mpi_comm.h"
#include "strata/core/status.h"

namespace strata::comm {

struct GridShape {
    int tp = 1;
    int cp = 1;
    int pp = 1;
};

// Coordinates of one world rank; pure data computed by gridCoords().
struct GridCoords {
    int tp_rank = 0;
    int cp_rank = 0;
    int pp_rank = 0;
    int dp_rank = 0;
    int dp_size = 1;
    int decision_rank = 0;  // cp_rank * tp + tp_rank, inside the TP x CP group of (dp, pp)
    int replica_rank = 0;   // world_rank % (tp * cp * pp), inside the dp replica
};

// Checks that every extent is >= 1 and that world_size is a positive multiple of tp*cp*pp.
// kInvalidArgument naming the sizes otherwise.
Status validateGridShape(int world_size, GridShape shape);

// Pure: the coordinates of `world_rank` (0 <= world_rank < world_size) in the DP x PP x CP x TP
// layout: tp = r % tp, cp = (r / tp) % cp, pp = (r / (tp*cp)) % pp, dp = r / (tp*cp*pp).
// Fails like validateGridShape, or with kInvalidArgument for a rank out of range.
Result<GridCoords> gridCoords(int world_rank, int world_size, GridShape shape);

// Pure: the entry `device` of a CUDA_VISIBLE_DEVICES value ("2,3", "GPU-<uuid>,...", "MIG-...").
// Unset/empty value (nullptr or ""): the ordinal itself. Out of range: the ordinal itself.
std::string physicalDeviceId(int device, const char* cuda_visible_devices);

class Grid {
public:
    // Collective over `world` (every rank calls it with the same shape). device_count is the number
    // of devices this process sees (0: no GPU, device() is -1); the bound device is
    // local_rank % device_count. Fails with kInvalidArgument for a shape that does not divide
    // world's size (identically on every rank, before any communication), or with the MPI error.
    static Result<Grid> create(const MpiComm& world, GridShape shape, int device_count = 0);

    Grid(Grid&&) noexcept = default;
    Grid& operator=(Grid&&) noexcept = default;

    GridShape shape() const noexcept { return shape_; }
    const GridCoords& coords() const noexcept { return coords_; }

    int worldRank() const noexcept { return world_.rank(); }
    int worldSize() const noexcept { return world_.size(); }
    int tpRank() const noexcept { return coords_.tp_rank; }
    int tpSize() const noexcept { return shape_.tp; }
    int cpRank() const noexcept { return coords_.cp_rank; }
    int cpSize() const noexcept { return shape_.cp; }
    int ppRank() const noexcept { return coords_.pp_rank; }
    int ppSize() const noexcept { return shape_.pp; }
    int dpRank() const noexcept { return coords_.dp_rank; }
    int dpSize() const noexcept { return coords_.dp_size; }
    int decisionRank() const noexcept { return coords_.decision_rank; }
    int decisionSize() const noexcept { return shape_.tp * shape_.cp; }
    int replicaRank() const noexcept { return coords_.replica_rank; }
    int replicaSize() const noexcept { return shape_.tp * shape_.cp * shape_.pp; }
    int localRank() const noexcept { return local_.rank(); }  // on this node (split_type shared)
    int localSize() const noexcept { return local_.size(); }
    int device() const noexcept { return device_; }  // -1 without devices
    // CUDA_VISIBLE_DEVICES entry of device() at create() time ("" without devices).
    const std::string& physicalDevice() const noexcept { return physical_device_; }

    const MpiComm& world() const noexcept { return world_; }
    const MpiComm& tpComm() const noexcept { return tp_; }
    const MpiComm& cpComm() const noexcept { return cp_; }
    const MpiComm& ppComm() const noexcept { return pp_; }
    const MpiComm& dpComm() const noexcept { return dp_; }
    const MpiComm& decisionComm() const noexcept { return decision_; }  // TP x CP of (dp, pp)
    const MpiComm& replicaComm() const noexcept { return replica_; }    // TP x CP x PP of dp
    const MpiComm& localComm() const noexcept { return local_; }

    // One line: "world 3/4 dp 0/1 pp 0/1 cp 1/2 tp 1/2 local 3/4 device 1 (phys 1)".
    std::string describe() const;

private:
    Grid() = default;

    GridShape shape_;
    GridCoords coords_;
    int device_ = -1;
    std::string physical_device_;
    MpiComm world_;  // MPI_Comm_dup of the communicator given to create()
    MpiComm tp_;
    MpiComm cp_;
    MpiComm pp_;
    MpiComm dp_;
    MpiComm decision_;
    MpiComm replica_;
    MpiComm local_;
};

}  // namespace strata::comm

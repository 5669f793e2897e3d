#include "strata/comm/grid.h"

#include <fmt/format.h>

#include <cstdlib>
#include <utility>
#include <vector>

#include "strata/core/log.h"

namespace strata::comm {

Status validateGridShape(int world_size, GridShape shape) {
    if (shape.tp < 1 || shape.cp < 1 || shape.pp < 1) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "grid extents must be >= 1: tp={} cp={} pp={}", shape.tp, shape.cp,
                            shape.pp);
    }
    if (world_size < 1) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "world size {} < 1", world_size);
    }
    const long long replica = 1LL * shape.tp * shape.cp * shape.pp;
    if (world_size % replica != 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "world size {} is not a multiple of tp*cp*pp = {}*{}*{} = {}",
                            world_size, shape.tp, shape.cp, shape.pp, replica);
    }
    return Status::ok();
}

Result<GridCoords> gridCoords(int world_rank, int world_size, GridShape shape) {
    STRATA_RETURN_IF_ERROR(validateGridShape(world_size, shape));
    if (world_rank < 0 || world_rank >= world_size) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "rank {} outside world of size {}",
                            world_rank, world_size);
    }
    const int tp = shape.tp;
    const int tp_cp = tp * shape.cp;
    const int replica = tp_cp * shape.pp;
    GridCoords c;
    c.tp_rank = world_rank % tp;
    c.cp_rank = (world_rank / tp) % shape.cp;
    c.pp_rank = (world_rank / tp_cp) % shape.pp;
    c.dp_rank = world_rank / replica;
    c.dp_size = world_size / replica;
    c.decision_rank = c.cp_rank * tp + c.tp_rank;
    c.replica_rank = world_rank % replica;
    return c;
}

std::string physicalDeviceId(int device, const char* cuda_visible_devices) {
    if (device < 0) return "";
    if (cuda_visible_devices == nullptr || *cuda_visible_devices == '\0') {
        return std::to_string(device);
    }
    std::string_view list(cuda_visible_devices);
    int index = 0;
    while (true) {
        std::size_t comma = list.find(',');
        std::string_view item = list.substr(0, comma);
        while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
        while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
        if (index == device) return item.empty() ? std::to_string(device) : std::string(item);
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
        ++index;
    }
    return std::to_string(device);
}

Result<Grid> Grid::create(const MpiComm& world, GridShape shape, int device_count) {
    if (!world.valid()) {
        return STRATA_ERROR(StatusCode::kFailedPrecondition, "grid needs a valid world comm");
    }
    if (device_count < 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "device count {} < 0", device_count);
    }
    // Pure validation first: every rank sees the same world size and shape, so every rank
    // fails alike before any collective is entered.
    STRATA_ASSIGN_OR_RETURN(GridCoords coords, gridCoords(world.rank(), world.size(), shape));

    Grid g;
    g.shape_ = shape;
    g.coords_ = coords;
    const int r = world.rank();
    const int tp = shape.tp;
    const int cp = shape.cp;
    const int pp = shape.pp;
    const int dp = coords.dp_rank;
    // Colors: one value per group of ranks that share every coordinate but the split one.
    STRATA_ASSIGN_OR_RETURN(g.tp_, world.split(r / tp, coords.tp_rank));
    STRATA_ASSIGN_OR_RETURN(
        g.cp_, world.split((dp * pp + coords.pp_rank) * tp + coords.tp_rank, coords.cp_rank));
    STRATA_ASSIGN_OR_RETURN(
        g.pp_, world.split((dp * cp + coords.cp_rank) * tp + coords.tp_rank, coords.pp_rank));
    STRATA_ASSIGN_OR_RETURN(g.dp_, world.split(coords.replica_rank, dp));
    STRATA_ASSIGN_OR_RETURN(g.decision_, world.split(r / (tp * cp), coords.decision_rank));
    STRATA_ASSIGN_OR_RETURN(g.replica_, world.split(dp, coords.replica_rank));
    STRATA_ASSIGN_OR_RETURN(g.local_, world.splitShared(r));
    // A duplicate, so the grid owns everything it hands out and `world` need not outlive it.
    STRATA_ASSIGN_OR_RETURN(g.world_, world.dup());
    if (device_count > 0) {
        g.device_ = g.local_.rank() % device_count;
        g.physical_device_ = physicalDeviceId(g.device_, std::getenv("CUDA_VISIBLE_DEVICES"));
    }
    return g;
}

std::string Grid::describe() const {
    return fmt::format(
        "world {}/{} dp {}/{} pp {}/{} cp {}/{} tp {}/{} local {}/{} device {} (phys {})",
        worldRank(), worldSize(), dpRank(), dpSize(), ppRank(), ppSize(), cpRank(), cpSize(),
        tpRank(), tpSize(), localRank(), localSize(), device_,
        physical_device_.empty() ? "-" : physical_device_);
}

}  // namespace strata::comm

// The NCCL id bootstrap over MPI (built with and without NCCL): rank 0 of the group makes the id
// and broadcasts it, behind a flag byte that says whether it could, so that every rank returns
// instead of some waiting in NCCL for a communicator that never forms.
#include <algorithm>
#include <vector>

#include "strata/comm/job_collectives.h"
#include "strata/comm/nccl/striped_loader.h"

namespace strata::comm::nccl {

Result<std::unique_ptr<StripedLoader>> StripedLoader::create(kernels::Backend& backend,
                                                             const MpiComm& group,
                                                             std::size_t staging_bytes) {
    if (!available()) {
        return STRATA_ERROR(StatusCode::kNotSupported,
                            "this build of strata has no NCCL support (STRATA_ENABLE_NCCL)");
    }
    // Rank 0 of the group makes the NCCL id; the first byte says whether it could.
    std::vector<std::byte> message(1 + sizeof(NcclUniqueIdBytes::bytes));
    Status made = Status::ok();
    if (group.rank() == 0) {
        auto id = newUniqueId();
        made = id.status();
        message[0] = std::byte{id.isOk() ? std::uint8_t{1} : std::uint8_t{0}};
        if (id.isOk()) std::copy(id->bytes.begin(), id->bytes.end(), message.begin() + 1);
    }
    STRATA_RETURN_IF_ERROR(broadcastBytes(group, &message, 0));
    if (message.size() != 1 + sizeof(NcclUniqueIdBytes::bytes) || message[0] != std::byte{1}) {
        if (!made.isOk()) return made;
        return STRATA_ERROR(StatusCode::kInternal,
                            "striped loads: rank 0 of the group could not make an NCCL id (see its "
                            "log)");
    }
    NcclUniqueIdBytes id;
    std::copy(message.begin() + 1, message.end(), id.bytes.begin());
    return create(backend, id, group.rank(), group.size(), staging_bytes);
}

}  // namespace strata::comm::nccl

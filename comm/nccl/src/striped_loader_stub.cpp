// StripedLoader without NCCL in the build (chosen by CMake when NCCL is not found): the same API,
// every create() failing with kNotSupported.
#include "strata/comm/nccl/striped_loader.h"

namespace strata::comm::nccl {

namespace {

Status noNccl() {
    return STRATA_ERROR(StatusCode::kNotSupported,
                        "this build of strata has no NCCL support (STRATA_ENABLE_NCCL)");
}

}  // namespace

bool available() noexcept { return false; }

Result<NcclUniqueIdBytes> newUniqueId() { return noNccl(); }

Result<std::unique_ptr<StripedLoader>> StripedLoader::create(kernels::Backend&,
                                                             const NcclUniqueIdBytes&, int, int,
                                                             std::size_t) {
    return noNccl();
}

}  // namespace strata::comm::nccl

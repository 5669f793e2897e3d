// Private factories of the back ends, chosen by Backend::create. The CUDA ones exist only when the
// build has CUDA (STRATA_HAVE_CUDA); none of this is visible outside kernels/.
#pragma once

#include <memory>

#include "strata/config.h"
#include "strata/kernels/backend.h"

namespace strata::kernels::detail {

Result<std::unique_ptr<Backend>> createCpuBackend(const BackendOptions& options);

#if STRATA_HAVE_CUDA
Result<std::unique_ptr<Backend>> createCudaBackend(const BackendOptions& options);
// Number of usable CUDA devices; 0 when there is no driver or no device.
int cudaDeviceCount() noexcept;
#endif

}  // namespace strata::kernels::detail

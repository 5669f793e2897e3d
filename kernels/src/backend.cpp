#include "strata/kernels/backend.h"

#include <fmt/format.h>

#include <utility>
#include <vector>

#include "backend_impl.h"
#include "strata/config.h"

namespace strata::kernels {

Result<std::vector<EventPtr>> enqueueLayerByLayer(Stream& stream, const CopyJob& job) {
    STRATA_RETURN_IF_ERROR(validateCopy(job.geometry, job.device, job.host, job.pages,
                                        job.layer_begin, job.layer_end));
    std::vector<EventPtr> events;
    events.reserve(job.layer_end - job.layer_begin);
    for (std::uint32_t layer = job.layer_begin; layer < job.layer_end; ++layer) {
        CopyJob one = job;
        one.layer_begin = layer;
        one.layer_end = layer + 1;
        STRATA_RETURN_IF_ERROR(stream.enqueueCopy(std::move(one)));
        STRATA_ASSIGN_OR_RETURN(EventPtr event, stream.record());
        events.push_back(std::move(event));
    }
    return events;
}

Result<double> Event::secondsSince(Event& /*start*/) {
    return STRATA_ERROR(StatusCode::kInvalidArgument,
                        "secondsSince needs two events made by Stream::recordTimed()");
}

Memory::Memory(Memory&& other) noexcept
    : ptr_(std::exchange(other.ptr_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      free_(std::exchange(other.free_, nullptr)) {}

Memory& Memory::operator=(Memory&& other) noexcept {
    if (this != &other) {
        if (ptr_ != nullptr && free_ != nullptr) free_(ptr_, size_);
        ptr_ = std::exchange(other.ptr_, nullptr);
        size_ = std::exchange(other.size_, 0);
        free_ = std::exchange(other.free_, nullptr);
    }
    return *this;
}

Memory::~Memory() {
    if (ptr_ != nullptr && free_ != nullptr) free_(ptr_, size_);
}

Result<std::unique_ptr<Backend>> Backend::create(BackendKind kind, const BackendOptions& options) {
    switch (kind) {
        case BackendKind::kCpu:
            return detail::createCpuBackend(options);
        case BackendKind::kCuda:
#if STRATA_HAVE_CUDA
            return detail::createCudaBackend(options);
#else
            return STRATA_ERROR(StatusCode::kNotSupported,
                                "this build of strata has no CUDA support (STRATA_ENABLE_CUDA)");
#endif
    }
    return STRATA_ERROR(StatusCode::kInvalidArgument, "unknown back end kind {}",
                        static_cast<int>(kind));
}

bool Backend::cudaAvailable() noexcept { return cudaDeviceCount() > 0; }

int Backend::cudaDeviceCount() noexcept {
#if STRATA_HAVE_CUDA
    return detail::cudaDeviceCount();
#else
    return 0;
#endif
}

}  // namespace strata::kernels

#include "strata/kernels/transfer.h"

#include <fmt/format.h>

#include <cstring>
#include <unordered_map>

namespace strata::kernels {

Status PoolGeometry::validate() const {
    if (num_layers == 0) return STRATA_ERROR(StatusCode::kInvalidArgument, "num_layers is 0");
    if (num_buffers == 0) return STRATA_ERROR(StatusCode::kInvalidArgument, "num_buffers is 0");
    if (row_bytes == 0) return STRATA_ERROR(StatusCode::kInvalidArgument, "row_bytes is 0");
    if (page_size == 0) return STRATA_ERROR(StatusCode::kInvalidArgument, "page_size is 0");
    return Status::ok();
}

std::size_t hostRowOffset(const PoolGeometry& g, const HostView& host, std::uint32_t buffer,
                          std::uint32_t layer, std::size_t token) noexcept {
    const std::size_t plane = std::size_t{buffer} * g.num_layers + layer;  // (buffer, layer)
    switch (host.layout) {
        case HostLayout::kLayerFirst:
            return (plane * host.capacity_tokens + token) * g.row_bytes;
        case HostLayout::kPageFirst:
            return token * g.bytesPerToken() + plane * g.row_bytes;
        case HostLayout::kPageFirstDirect: {
            const std::size_t page = token / g.page_size;
            const std::size_t in_page = token % g.page_size;
            return page * g.bytesPerPage() + (plane * g.page_size + in_page) * g.row_bytes;
        }
    }
    return 0;
}

std::size_t hostBytes(const PoolGeometry& g, std::size_t capacity_tokens) noexcept {
    return capacity_tokens * g.bytesPerToken();
}

namespace {

Status checkRowStride(const PoolGeometry& g, const DeviceView& dev, std::string_view what) {
    if (dev.row_stride != 0 && dev.row_stride < g.row_bytes) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "{}device row stride {} is below the row's {} bytes (rows would "
                            "overlap)",
                            what, dev.row_stride, g.row_bytes);
    }
    return Status::ok();
}

}  // namespace

Status validateCopy(const PoolGeometry& g, const DeviceView& dev, const HostView& host,
                    std::span<const PageCopy> pages, std::uint32_t layer_begin,
                    std::uint32_t layer_end) {
    STRATA_RETURN_IF_ERROR(g.validate());
    if (layer_begin >= layer_end || layer_end > g.num_layers) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "bad layer range [{}, {}) for a pool of {} layers", layer_begin,
                            layer_end, g.num_layers);
    }
    STRATA_RETURN_IF_ERROR(checkRowStride(g, dev, ""));
    if (pages.empty()) return Status::ok();
    if (dev.layer_ptrs == nullptr) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "device view has no layer pointers");
    }
    for (std::uint32_t b = 0; b < g.num_buffers; ++b) {
        for (std::uint32_t l = layer_begin; l < layer_end; ++l) {
            if (dev.layer_ptrs[std::size_t{b} * g.num_layers + l] == nullptr) {
                return STRATA_ERROR(StatusCode::kInvalidArgument,
                                    "device layer pointer of buffer {} layer {} is null", b, l);
            }
        }
    }
    if (host.base == nullptr) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "host view has a null base");
    }
    const std::size_t device_pages = dev.capacity_tokens / g.page_size;
    const std::size_t host_pages = host.capacity_tokens / g.page_size;
    for (std::size_t i = 0; i < pages.size(); ++i) {
        if (pages[i].device_page >= device_pages) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "copy {}: device page {} out of range (device pool has {} pages)",
                                i, pages[i].device_page, device_pages);
        }
        if (pages[i].host_page >= host_pages) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "copy {}: host page {} out of range (host pool has {} pages)", i,
                                pages[i].host_page, host_pages);
        }
    }
    return Status::ok();
}

namespace {

// Accumulates (device, host, length) pieces and issues one memcpy per run that is contiguous on
// both sides, so that consecutive pages of layer_first pools (and whole single-plane pools) move
// with one call.
class RunCopier {
public:
    explicit RunCopier(Direction dir) noexcept : dir_(dir) {}
    ~RunCopier() { flush(); }
    RunCopier(const RunCopier&) = delete;
    RunCopier& operator=(const RunCopier&) = delete;

    void add(std::byte* device, std::byte* host, std::size_t len) noexcept {
        if (len_ != 0 && device == device_ + len_ && host == host_ + len_) {
            len_ += len;
            return;
        }
        flush();
        device_ = device;
        host_ = host;
        len_ = len;
    }

    void flush() noexcept {
        if (len_ == 0) return;
        if (dir_ == Direction::kDeviceToHost) {
            std::memcpy(host_, device_, len_);
        } else {
            std::memcpy(device_, host_, len_);
        }
        len_ = 0;
    }

private:
    Direction dir_;
    std::byte* device_ = nullptr;
    std::byte* host_ = nullptr;
    std::size_t len_ = 0;
};

}  // namespace

void copyPagesCpu(const PoolGeometry& g, const DeviceView& dev, const HostView& host,
                  std::span<const PageCopy> pages, std::uint32_t layer_begin,
                  std::uint32_t layer_end, Direction dir) noexcept {
    const std::size_t chunk = std::size_t{g.page_size} * g.row_bytes;  // a page of one plane
    const std::size_t stride = dev.rowStride(g.row_bytes);
    // A page of one plane is one contiguous chunk on the device side only when packed.
    const bool row_by_row = host.layout == HostLayout::kPageFirst || stride != g.row_bytes;
    RunCopier copier(dir);
    for (std::uint32_t b = 0; b < g.num_buffers; ++b) {
        for (std::uint32_t l = layer_begin; l < layer_end; ++l) {
            std::byte* plane = dev.layer_ptrs[std::size_t{b} * g.num_layers + l];
            for (const PageCopy& pc : pages) {
                std::byte* device = plane + std::size_t{pc.device_page} * g.page_size * stride;
                const std::size_t first_token = std::size_t{pc.host_page} * g.page_size;
                if (row_by_row) {
                    // Host rows of one (buffer, layer) are bytesPerToken apart (page_first), or
                    // device rows are stride apart: row by row.
                    for (std::uint32_t t = 0; t < g.page_size; ++t) {
                        copier.add(device + std::size_t{t} * stride,
                                   host.base + hostRowOffset(g, host, b, l, first_token + t),
                                   g.row_bytes);
                    }
                } else {
                    copier.add(device, host.base + hostRowOffset(g, host, b, l, first_token),
                               chunk);
                }
            }
        }
    }
}

Status validateDeviceCopy(const PoolGeometry& g, const DeviceView& dev,
                          std::span<const DevicePageMove> moves, std::uint32_t layer_begin,
                          std::uint32_t layer_end) {
    STRATA_RETURN_IF_ERROR(g.validate());
    if (layer_begin >= layer_end || layer_end > g.num_layers) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "device copy: bad layer range [{}, {}) for a pool of {} layers",
                            layer_begin, layer_end, g.num_layers);
    }
    STRATA_RETURN_IF_ERROR(checkRowStride(g, dev, "device copy: "));
    if (moves.empty()) return Status::ok();
    if (dev.layer_ptrs == nullptr) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "device copy: device view has no layer pointers");
    }
    for (std::uint32_t b = 0; b < g.num_buffers; ++b) {
        for (std::uint32_t l = layer_begin; l < layer_end; ++l) {
            if (dev.layer_ptrs[std::size_t{b} * g.num_layers + l] == nullptr) {
                return STRATA_ERROR(StatusCode::kInvalidArgument,
                                    "device copy: layer pointer of buffer {} layer {} is null", b,
                                    l);
            }
        }
    }
    const std::size_t device_pages = dev.capacity_tokens / g.page_size;
    // Page -> (index of the move, role): 1 = source, 2 = destination, 3 = both.
    struct Use {
        std::size_t as_src = 0;  // 1 + index of the first move reading it, 0 if none
        std::size_t as_dst = 0;  // 1 + index of the move writing it, 0 if none
    };
    std::unordered_map<std::uint32_t, Use> uses;
    uses.reserve(moves.size() * 2);
    for (std::size_t i = 0; i < moves.size(); ++i) {
        const DevicePageMove& m = moves[i];
        if (m.src_page >= device_pages) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "device copy move {}: source page {} out of range (pool has {} "
                                "pages)",
                                i, m.src_page, device_pages);
        }
        if (m.dst_page >= device_pages) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "device copy move {}: destination page {} out of range (pool has "
                                "{} pages)",
                                i, m.dst_page, device_pages);
        }
        if (m.src_page == m.dst_page) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "device copy move {}: page {} is both source and destination", i,
                                m.src_page);
        }
        Use& src = uses[m.src_page];
        if (src.as_dst != 0) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "device copy move {}: source page {} is the destination of move {}",
                                i, m.src_page, src.as_dst - 1);
        }
        if (src.as_src == 0) src.as_src = i + 1;
        Use& dst = uses[m.dst_page];
        if (dst.as_dst != 0) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "device copy move {}: destination page {} is already the "
                                "destination of move {}",
                                i, m.dst_page, dst.as_dst - 1);
        }
        if (dst.as_src != 0) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "device copy move {}: destination page {} is the source of move {}",
                                i, m.dst_page, dst.as_src - 1);
        }
        dst.as_dst = i + 1;
    }
    return Status::ok();
}

void copyDevicePagesCpu(const PoolGeometry& g, const DeviceView& dev,
                        std::span<const DevicePageMove> moves, std::uint32_t layer_begin,
                        std::uint32_t layer_end) noexcept {
    const std::size_t chunk = std::size_t{g.page_size} * g.row_bytes;  // a page of one plane
    const std::size_t stride = dev.rowStride(g.row_bytes);
    const std::size_t page_span = std::size_t{g.page_size} * stride;
    for (std::uint32_t b = 0; b < g.num_buffers; ++b) {
        for (std::uint32_t l = layer_begin; l < layer_end; ++l) {
            std::byte* plane = dev.layer_ptrs[std::size_t{b} * g.num_layers + l];
            for (const DevicePageMove& m : moves) {
                std::byte* dst = plane + std::size_t{m.dst_page} * page_span;
                const std::byte* src = plane + std::size_t{m.src_page} * page_span;
                if (stride == g.row_bytes) {
                    std::memcpy(dst, src, chunk);
                    continue;
                }
                for (std::uint32_t t = 0; t < g.page_size; ++t) {  // strided: row by row
                    std::memcpy(dst + std::size_t{t} * stride, src + std::size_t{t} * stride,
                                g.row_bytes);
                }
            }
        }
    }
}

}  // namespace strata::kernels

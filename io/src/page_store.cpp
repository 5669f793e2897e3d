#include "strata/io/page_store.h"

namespace strata::io {

// A store without publish_retract keeps its own copies: announcing host pages means nothing to it.
Status PageStore::publish(std::span<const PageKey>, const pools::HostPool& pool,
                          std::span<const std::uint32_t>) {
    return STRATA_ERROR(StatusCode::kNotSupported,
                        "the page store of pool '{}' does not publish host pages (no "
                        "publish_retract capability)",
                        pool.spec().name);
}

Status PageStore::retract(std::span<const PageKey>) {
    return STRATA_ERROR(StatusCode::kNotSupported,
                        "this page store does not retract host pages (no publish_retract "
                        "capability)");
}

}  // namespace strata::io

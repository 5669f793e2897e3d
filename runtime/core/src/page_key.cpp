#include "strata/core/page_key.h"

#include <cstring>

namespace strata::core {
namespace {

void appendFramed(std::string* out, std::string_view field) {
    std::uint64_t n = field.size();
    out->append(reinterpret_cast<const char*>(&n), sizeof n);
    out->append(field);
}

}  // namespace

PageKey namespaceSeed(const KeyNamespace& ns) {
    std::string bytes = "strata-ns-v1";
    appendFramed(&bytes, ns.model_id);
    appendFramed(&bytes, ns.layout_signature);
    appendFramed(&bytes, ns.tenant_salt);
    return hash128(bytes);
}

std::vector<PageKey> pageKeys(const PageKey& previous, std::span<const std::int32_t> tokens,
                              std::uint32_t page_size) {
    std::vector<PageKey> keys;
    if (page_size == 0) return keys;
    std::size_t full = tokens.size() / page_size;
    keys.reserve(full);
    PageKey prev = previous;
    for (std::size_t i = 0; i < full; ++i) {
        prev = chainHash(prev, tokens.subspan(i * page_size, page_size));
        keys.push_back(prev);
    }
    return keys;
}

PageKey storageKey(const PageKey& key, std::string_view pool_name, int tp_shard, int cp_shard) {
    std::string bytes(sizeof key.lo + sizeof key.hi, '\0');
    std::memcpy(bytes.data(), &key.lo, sizeof key.lo);
    std::memcpy(bytes.data() + sizeof key.lo, &key.hi, sizeof key.hi);
    appendFramed(&bytes, pool_name);
    std::int64_t shard = tp_shard;
    bytes.append(reinterpret_cast<const char*>(&shard), sizeof shard);
    if (cp_shard >= 0) {
        const std::int64_t cp = cp_shard;
        bytes.append("cp");
        bytes.append(reinterpret_cast<const char*>(&cp), sizeof cp);
    }
    return hash128(bytes);
}

}  // namespace strata::core

// Page keys: key_i = H(key_{i-1} || tokens of page i), seeded by a namespace digest of the model
// id, the pool layout signature and a tenant salt. Identical on every rank, node and run. Tree keys
// carry no rank; storage keys of pools sharded across TP add a per-TP-rank suffix, those of pools
// sharded across CP a per-CP-rank suffix (both for a pool sharded on both axes); pools replicated
// across CP carry no CP rank. Thread-safety: values and pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "strata/core/hash.h"

namespace strata::core {

using PageKey = Digest128;

struct KeyNamespace {
    std::string model_id;          // preset name or the worker's model id
    std::string layout_signature;  // pool shapes, page size, dtype: pages differ when these do
    std::string tenant_salt;       // isolates tenants (LoRA, cache salt); empty for none
};

// The seed of every chain in this namespace. Fields are length-framed so that no two different
// namespaces give the same byte string.
PageKey namespaceSeed(const KeyNamespace& ns);

// Keys of the full pages of `tokens` (a trailing partial page gets no key), chained from `previous`
// (the seed for a prompt that starts at the root).
std::vector<PageKey> pageKeys(const PageKey& previous, std::span<const std::int32_t> tokens,
                              std::uint32_t page_size);

// Storage key of one pool's page: H(key || pool name || tp shard [|| "cp" || cp shard]), where
// tp_shard is the TP rank for pools sharded across TP and -1 for pools replicated across TP, and
// cp_shard the CP rank for pools sharded across CP; -1 (replicated across CP) leaves the CP part
// out, so those keys are what they were before CP sharding existed.
PageKey storageKey(const PageKey& key, std::string_view pool_name, int tp_shard, int cp_shard = -1);

}  // namespace strata::core

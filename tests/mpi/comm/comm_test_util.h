// Shared helpers of the comm tests: shapes valid at a world size and deterministic per-rank values.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "strata/comm/grid.h"

namespace strata::comm::test {

// Every (tp, cp, pp) whose product divides world_size, (1,1,1) first.
inline std::vector<GridShape> validShapes(int world_size) {
    std::vector<GridShape> shapes;
    for (int pp = 1; pp <= world_size; ++pp) {
        for (int cp = 1; cp <= world_size; ++cp) {
            for (int tp = 1; tp <= world_size; ++tp) {
                if (world_size % (tp * cp * pp) == 0) shapes.push_back({tp, cp, pp});
            }
        }
    }
    return shapes;
}

inline std::string shapeName(GridShape s) { return fmt::format("tp{}cp{}pp{}", s.tp, s.cp, s.pp); }

inline std::uint64_t splitMix(std::uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

// A value that any rank can recompute for any other rank: entry i of world rank r in round k.
inline std::int64_t rankValue(std::uint64_t seed, int world_rank, std::size_t i, std::uint64_t k) {
    std::uint64_t h = splitMix(seed ^ splitMix(static_cast<std::uint64_t>(world_rank) * 131 + i) ^
                               splitMix(k + 0x51ED));
    return static_cast<std::int64_t>(h % 2001) - 1000;
}

}  // namespace strata::comm::test

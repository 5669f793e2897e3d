#include "registry.h"

#include "strata/config.h"

namespace strata::bench {

std::span<const BenchEntry> registeredBenches() {
    static const BenchEntry kBenches[] = {
        {"sync",
         "per-round decision agreement: MpiDecisionGroup::agreeMin vs one bare MPI_Allreduce vs "
         "one all-reduce per decision kind over TP then CP (run under mpirun)",
         &makeSyncBench},
        {"storage",
         "HDF5 tier: write/read GB/s for 64 KiB and 1 MiB pages vs plain pwrite/pread of the same "
         "bytes (posix), and 128-key existence checks vs stat() per page file",
         &makeStorageBench},
        {"tree",
         "prefix tree: a whole trace replayed metadata-only at one capacity (requests/s, page "
         "operations/s, p99 per request, metadata bytes per cached page) vs a flat hash table "
         "with an LRU list of leaf pages (vLLM-style), same rules and hit rate",
         &makeTreeBench},
        {"soak",
         "a 4-rank TP2 x CP2 strata-run with jitter and storage for --duration-s (default 10 "
         "minutes), sampling every rank's RSS and open descriptors and the pages mismatched over "
         "time; verdict: RSS and descriptors flat after warm-up, 0 mismatched, 0 divergences",
         &makeSoakBench},
        {"remote",
         "remote tier: page pull GB/s for 64 KiB and 1 MiB pages between 2 ranks (mpirun -np 2, "
         "one host or two) vs ucx_perftest ucp_get with the same transport and sizes, and vs "
         "shared memory when both ranks share a host",
         &makeRemoteBench},
        {"node-pool",
         "node-wide host tier (mpirun -np 4, one host): host bytes per cached token per node "
         "for DeepSeek-V3 at TP 2 and 4 with --host-sharing node vs per-rank pools; a "
         "same-node cross-replica host hit vs a memcpy between two ranks; pooled (N x C) vs "
         "local (N caches of C) hit rates on the Mooncake conversation trace for N = 2, 4, 10",
         &makeNodePoolBench},
#if STRATA_HAVE_CUDA
        {"transfer",
         "device <-> pinned host page copies, 4-256 KiB chunks, both directions, every host "
         "layout: Strata vs one contiguous memcpy (ceiling), one memcpy per chunk, "
         "cudaMemcpyBatchAsync; plus a backup and a load at once",
         &makeTransferBench},
        {"overlap",
         "layer-by-layer load with per-layer ready events beside a per-layer compute kernel: "
         "total vs the ideal max(load, compute)",
         &makeOverlapBench},
#endif
#if STRATA_HAVE_NCCL
        {"nccl",
         "striped load of a replicated pool over NCCL (run under mpirun, one rank per GPU) vs "
         "one GPU loading alone",
         &makeNcclBench},
#endif
    };
    return kBenches;
}

}  // namespace strata::bench

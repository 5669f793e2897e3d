// Shared pieces of the GPU benches (transfer, overlap, nccl): CUDA error checks as Status, event
// timing, random fills, and the synthetic per-layer compute kernel of the overlap bench.
// Built only with CUDA. Thread-safety: none; one bench at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "strata/core/status.h"
#include "strata/kernels/backend.h"

namespace strata::bench::gpu {

// kInternal naming `what` and the CUDA error text when `err` (a cudaError_t) is not success.
Status check(int err, const char* what);

// The device's name ("NVIDIA H200") and SM count.
std::string deviceName(int device);
int smCount(int device);

// Fills `n` bytes with a splitmix64 stream (never zeros: benches must not time zero pages).
void fillRandom(std::byte* data, std::size_t n, std::uint64_t seed);

// Runs `work` (which queues onto `stream`, a cudaStream_t) `warmup` + `rounds` times, timing each
// round with events on that stream, and returns the median in milliseconds.
Result<double> medianMs(void* stream, int warmup, int rounds, const std::function<Status()>& work);

// Two-stream variant: both streams start together (the second waits for the first's start event)
// and the time runs until both have finished.
Result<double> medianMsTwoStreams(void* first, void* second, int warmup, int rounds,
                                  const std::function<Status()>& work);

// The num_buffers * num_layers plane pointers of a device pool of cap_pages pages that starts at
// `dev` (one plane after another).
std::vector<std::byte*> devicePlanes(std::byte* dev, const kernels::PoolGeometry& g,
                                     std::size_t cap_pages);

// A host-to-device load of all layers of `pages` pages between shuffled device and layer_first
// host slots of pools of cap_pages pages; the shuffle is seeded, so every rank builds the same
// job. `planes` must outlive the job.
kernels::CopyJob shuffledLoadJob(const kernels::PoolGeometry& g,
                                 const std::vector<std::byte*>& planes, std::byte* host,
                                 std::size_t cap_pages, std::size_t pages, std::uint64_t seed);

}  // namespace strata::bench::gpu

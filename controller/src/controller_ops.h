// Private to controller/: the operation records shared by cache_controller.cpp (requests, rounds)
// and cache_eviction.cpp (allocation, eviction, write-back).
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <vector>

#include "strata/controller/cache_controller.h"

namespace strata::controller {

using Clock = std::chrono::steady_clock;

// Loads admitted in one round, launched together layer by layer.
struct CacheController::LoadBatch {
    std::uint64_t id = 0;
    std::vector<kernels::PageCopy> pages;
    std::vector<Node*> nodes;        // carry load_op == id (and their split fragments)
    std::vector<Node*> host_locked;  // each holds one host path lock taken for this batch
    bool launched = false;
    std::vector<kernels::EventPtr> layer_events;  // one per layer once launched
    Clock::time_point launched_at;
    std::optional<Clock::time_point> seen_done_at;  // first step() that saw the copy finished
};

// Backups queued in one round, launched together as one all-layer copy per pool.
struct CacheController::BackupBatch {
    std::uint64_t id = 0;
    std::vector<kernels::PageCopy> pages;
    std::vector<Node*> nodes;  // each holds one device path lock and backup_op == id
    kernels::EventPtr done;
    Clock::time_point launched_at;
    std::optional<Clock::time_point> seen_done_at;
};

struct CacheController::Request {
    RequestId id = 0;
    std::size_t prompt_tokens = 0;
    std::vector<PageKey> keys;
    Node* locked = nullptr;                   // holds one device path lock for the request
    std::vector<std::uint32_t> device_pages;  // every page of the prompt
    std::vector<std::uint32_t> owned;         // pages of device_pages the tree does not hold
    std::vector<std::shared_ptr<LoadBatch>> waits;
    bool inserted = false;
};

}  // namespace strata::controller

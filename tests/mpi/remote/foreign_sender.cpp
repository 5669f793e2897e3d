// A UCX process outside the job: connects to a rank's worker address (hex in argv[1]) and
// - by default sends control messages the job must reject: a short garbage message, a well-formed
//   message sealed with another secret claiming to come from rank 1, and one with a tampered
//   payload. Exit 0 when every message was handed to UCX and the endpoint flushed.
// - with `put ADDRESS BYTES` (decimal) tries to overwrite BYTES at ADDRESS in the rank's memory
//   with 0x99 through UCX RMA (a put with a remote key of its own: the job publishes none), then to
//   read them back with a get. Each operation is waited on for at most 3 s. Exit 0 when both were
//   handed to UCX; it prints what UCX reported.
#include <ucp/api/ucp.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "strata/comm/ucx/message_auth.h"

namespace {

std::vector<std::byte> fromHex(const std::string& hex) {
    std::vector<std::byte> out(hex.size() / 2);
    for (std::size_t i = 0; i < out.size(); ++i) {
        out[i] = static_cast<std::byte>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
    }
    return out;
}

bool wait(ucp_worker_h w, void* req) {
    if (req == nullptr) return true;
    if (UCS_PTR_IS_ERR(req)) return false;
    ucs_status_t st;
    while ((st = ucp_request_check_status(req)) == UCS_INPROGRESS) ucp_worker_progress(w);
    ucp_request_free(req);
    return st == UCS_OK;
}

// Waits at most `seconds`; returns the status text (requests still in flight are left to UCX).
std::string waitBounded(ucp_worker_h w, void* req, double seconds) {
    if (req == nullptr) return "completed at once";
    if (UCS_PTR_IS_ERR(req)) return ucs_status_string(UCS_PTR_STATUS(req));
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    ucs_status_t st;
    while ((st = ucp_request_check_status(req)) == UCS_INPROGRESS &&
           std::chrono::steady_clock::now() < end) {
        ucp_worker_progress(w);
    }
    if (st == UCS_INPROGRESS) return "no answer";
    ucp_request_free(req);
    return ucs_status_string(st);
}

// Put, flush and get against `address` with a key of this process's own memory.
int tryPut(ucp_context_h ctx, ucp_worker_h worker, ucp_ep_h ep, std::uint64_t address,
           std::size_t bytes) {
    std::vector<unsigned char> mine(bytes, 0x99);
    ucp_mem_map_params_t mp{};
    mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
    mp.address = mine.data();
    mp.length = mine.size();
    ucp_mem_h mem = nullptr;
    if (ucp_mem_map(ctx, &mp, &mem) != UCS_OK) return 7;
    void* packed = nullptr;
    std::size_t packed_size = 0;
    if (ucp_rkey_pack(ctx, mem, &packed, &packed_size) != UCS_OK) return 7;
    ucp_rkey_h rkey = nullptr;
    if (ucp_ep_rkey_unpack(ep, packed, &rkey) != UCS_OK) return 7;
    ucp_request_param_t p{};
    const std::string put =
        waitBounded(worker, ucp_put_nbx(ep, mine.data(), bytes, address, rkey, &p), 3);
    ucp_request_param_t fp{};
    const std::string flush = waitBounded(worker, ucp_ep_flush_nbx(ep, &fp), 3);
    std::vector<unsigned char> back(bytes, 0);
    const std::string get =
        waitBounded(worker, ucp_get_nbx(ep, back.data(), bytes, address, rkey, &p), 3);
    std::printf("foreign put of %zu bytes: %s; flush: %s; get: %s\n", bytes, put.c_str(),
                flush.c_str(), get.c_str());
    std::fflush(stdout);
    return 0;  // the process exits without tearing down: UCX may still hold the requests
}

}  // namespace

int main(int argc, char** argv) {
    using namespace strata::comm::ucx;
    const bool put = argc == 5 && std::string(argv[2]) == "put";
    if (argc != 2 && !put) {
        std::fprintf(stderr, "usage: %s WORKER_ADDRESS_HEX [put ADDRESS BYTES]\n", argv[0]);
        return 2;
    }
    const auto address = fromHex(argv[1]);
    ucp_params_t params{};
    params.field_mask = UCP_PARAM_FIELD_FEATURES;
    params.features = UCP_FEATURE_AM | (put ? UCP_FEATURE_RMA : 0);
    ucp_context_h ctx = nullptr;
    if (ucp_init(&params, nullptr, &ctx) != UCS_OK) return 3;
    ucp_worker_params_t wp{};
    ucp_worker_h worker = nullptr;
    if (ucp_worker_create(ctx, &wp, &worker) != UCS_OK) return 3;
    ucp_ep_params_t ep_params{};
    ep_params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS;
    ep_params.address = reinterpret_cast<const ucp_address_t*>(address.data());
    ucp_ep_h ep = nullptr;
    if (ucp_ep_create(worker, &ep_params, &ep) != UCS_OK) return 4;
    if (put) return tryPut(ctx, worker, ep, std::stoull(argv[3]), std::stoull(argv[4]));

    auto other = JobSecret::generate();
    if (!other.isOk()) return 5;
    const std::vector<std::byte> payload(64, std::byte{0x42});
    std::vector<std::vector<std::byte>> messages;
    messages.push_back(std::vector<std::byte>(10, std::byte{0x7}));          // malformed
    messages.push_back(sealMessage(*other, 1, /*src_rank=*/1, 1, payload));  // wrong secret
    auto tampered = sealMessage(*other, 1, /*src_rank=*/0, 2, payload);
    tampered.back() ^= std::byte{1};
    messages.push_back(tampered);  // wrong secret and tampered

    bool ok = true;
    for (const auto& m : messages) {
        ucp_request_param_t p{};
        ok &= wait(worker, ucp_am_send_nbx(ep, kControlAmId, nullptr, 0, m.data(), m.size(), &p));
    }
    ucp_request_param_t flush{};
    ok &= wait(worker, ucp_ep_flush_nbx(ep, &flush));
    ucp_request_param_t close{};
    close.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    close.flags = UCP_EP_CLOSE_FLAG_FORCE;
    wait(worker, ucp_ep_close_nbx(ep, &close));
    ucp_worker_destroy(worker);
    ucp_cleanup(ctx);
    std::printf("foreign sender: %zu messages sent\n", messages.size());
    return ok ? 0 : 6;
}

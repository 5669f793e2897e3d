#include "h5_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "strata/core/log.h"

namespace strata::io {

void H5IdTraits::close(hid_t id) noexcept {
    herr_t rc = -1;
    const H5I_type_t type = H5Iget_type(id);
    switch (type) {
        case H5I_FILE:
            rc = H5Fclose(id);
            break;
        case H5I_DATASET:
            rc = H5Dclose(id);
            break;
        case H5I_DATASPACE:
            rc = H5Sclose(id);
            break;
        case H5I_ATTR:
            rc = H5Aclose(id);
            break;
        case H5I_GENPROP_LST:
            rc = H5Pclose(id);
            break;
        case H5I_DATATYPE:
            rc = H5Tclose(id);
            break;
        default:
            rc = H5Idec_ref(id) < 0 ? -1 : 0;
            break;
    }
    if (rc < 0) {
        try {
            core::logger("io").warn("closing hdf5 id {} (type {}) failed: {}", id,
                                    static_cast<int>(type), hdf5ErrorText());
        } catch (...) {  // logging must not throw out of a close
        }
    }
}

void FdTraits::close(int fd) noexcept {
    if (::close(fd) != 0) {
        const int err = errno;
        try {
            core::logger("io").warn("close(fd {}) failed: {}", fd, std::strerror(err));
        } catch (...) {
        }
    }
}

void quietHdf5() noexcept { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

namespace {

struct WalkState {
    std::string text;
    int entries = 0;
};

herr_t walkError(unsigned /*n*/, const H5E_error2_t* err, void* data) {
    auto* state = static_cast<WalkState*>(data);
    if (state->entries++ >= 4) return 0;  // the most specific entries carry the cause
    if (!state->text.empty()) state->text += "; ";
    state->text += err->func_name != nullptr ? err->func_name : "?";
    state->text += ": ";
    state->text += err->desc != nullptr ? err->desc : "";
    return 0;
}

}  // namespace

std::string hdf5ErrorText() {
    WalkState state;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walkError, &state);
    H5Eclear2(H5E_DEFAULT);
    if (state.text.empty()) return "no hdf5 error detail";
    std::replace(state.text.begin(), state.text.end(), '\n', ' ');  // ctime() in sec2 messages
    return state.text;
}

Status hdf5Error(const char* file, int line, const std::string& what, const std::string& path) {
    return makeError(StatusCode::kIoError, file, line,
                     fmt::format("{} '{}': {}", what, path, hdf5ErrorText()));
}

bool looksLikeStorageFull(const std::string& message) noexcept {
    return message.find("No space left on device") != std::string::npos ||
           message.find("Disk quota exceeded") != std::string::npos ||
           message.find("errno = 28") != std::string::npos;
}

Status fsyncPath(const std::string& path) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
        return STRATA_ERROR(StatusCode::kIoError, "open '{}' for fsync: {}", path,
                            std::strerror(errno));
    }
    if (::fsync(fd.get()) != 0) {
        return STRATA_ERROR(StatusCode::kIoError, "fsync '{}': {}", path, std::strerror(errno));
    }
    return Status::ok();
}

Status fsyncDirectory(const std::string& path) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) {
        return STRATA_ERROR(StatusCode::kIoError, "open directory '{}' for fsync: {}", path,
                            std::strerror(errno));
    }
    if (::fsync(fd.get()) != 0) {
        return STRATA_ERROR(StatusCode::kIoError, "fsync directory '{}': {}", path,
                            std::strerror(errno));
    }
    return Status::ok();
}

}  // namespace strata::io

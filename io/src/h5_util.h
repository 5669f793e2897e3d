// Private HDF5 and POSIX helpers of io/: RAII owners for HDF5 ids and file descriptors, the HDF5
// error stack as text, and the fsync steps of the segment commit protocol.
// Thread-safety: free functions; the HDF5 error stack and its auto-print setting are per thread in
// the threadsafe library, so quietHdf5() is called on entry of every public store call.
#pragma once

#include <hdf5.h>

#include <string>

#include "strata/core/status.h"
#include "strata/core/unique_handle.h"

namespace strata::io {

// Any HDF5 id (file, dataset, dataspace, attribute, property list, datatype): closed with the
// matching H5?close; a failed close is logged, never thrown.
struct H5IdTraits {
    using Handle = hid_t;
    static hid_t invalid() noexcept { return H5I_INVALID_HID; }
    static void close(hid_t id) noexcept;
};
using H5Id = core::UniqueHandle<H5IdTraits>;

struct FdTraits {
    using Handle = int;
    static int invalid() noexcept { return -1; }
    static void close(int fd) noexcept;
};
using Fd = core::UniqueHandle<FdTraits>;

// Turns off HDF5's automatic printing of error stacks for the calling thread.
void quietHdf5() noexcept;

// The calling thread's HDF5 error stack, most specific entry first ("func: desc; ..."), then
// clears it. "no hdf5 error detail" when the stack is empty.
std::string hdf5ErrorText();

// kIoError "<what> '<path>': <hdf5 error text>" (and clears the error stack).
Status hdf5Error(const char* file, int line, const std::string& what, const std::string& path);
#define STRATA_H5_ERROR(what, path) ::strata::io::hdf5Error(__FILE__, __LINE__, (what), (path))

// True when an error message says the file system is full (ENOSPC or EDQUOT text).
bool looksLikeStorageFull(const std::string& message) noexcept;

// fsync of a file by path (opened read-only) or of a directory. kIoError names path and errno.
Status fsyncPath(const std::string& path);
Status fsyncDirectory(const std::string& path);

}  // namespace strata::io

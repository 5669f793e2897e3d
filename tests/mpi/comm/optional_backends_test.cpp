// Unit tests (no MPI) of comm's optional back ends as a build without them has them: comm/ucx and
// comm/nccl are always built, and their stubs answer kNotSupported before any collective, so
// that consumers need no #if. This binary (comm_stub_test) is built from the stub sources in every
// build; the real transport and loader are tested by the MPI and CUDA suites.
#include <gtest/gtest.h>

#include <memory>

#include "strata/comm/mpi_comm.h"
#include "strata/comm/nccl/striped_loader.h"
#include "strata/comm/ucx/transport.h"
#include "strata/kernels/backend.h"

namespace strata::comm {
namespace {

TEST(OptionalBackends, WithoutUcxTheTransportIsNotSupported) {
    EXPECT_FALSE(ucx::available());
    const MpiComm none;  // the stub starts no collective, so MPI need not run
    auto t = ucx::UcxTransport::create(none);
    ASSERT_FALSE(t.isOk());
    EXPECT_EQ(t.status().code(), StatusCode::kNotSupported);
    EXPECT_NE(t.status().message().find("UCX"), std::string::npos) << t.status().toString();
}

TEST(OptionalBackends, WithoutNcclTheStripedLoaderIsNotSupported) {
    EXPECT_FALSE(nccl::available());
    auto backend = kernels::Backend::create(kernels::BackendKind::kCpu, {});
    ASSERT_TRUE(backend.isOk()) << backend.status().toString();
    const MpiComm none;  // no collective before the answer
    auto loader = nccl::StripedLoader::create(**backend, none, 1 << 20);
    ASSERT_FALSE(loader.isOk());
    EXPECT_EQ(loader.status().code(), StatusCode::kNotSupported);
    EXPECT_EQ(nccl::newUniqueId().status().code(), StatusCode::kNotSupported);
    auto joined = nccl::StripedLoader::create(**backend, nccl::NcclUniqueIdBytes{}, 0, 1, 1 << 20);
    EXPECT_EQ(joined.status().code(), StatusCode::kNotSupported);
}

}  // namespace
}  // namespace strata::comm

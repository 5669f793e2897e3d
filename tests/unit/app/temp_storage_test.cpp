// Issue 15: every failing or killed strata-run leaked its /tmp/strata-* directory. The directory is
// named after host and pid, so that a later run on the host can remove those of dead processes.
#include "strata/app/temp_storage.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

namespace strata::app {
namespace {

namespace fs = std::filesystem;

class TempStorageTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ =
            fs::temp_directory_path() / ("strata_temp_storage_test_" + std::to_string(::getpid()));
        fs::remove_all(dir_);
        fs::create_directories(dir_);
    }
    void TearDown() override { fs::remove_all(dir_); }

    // A pid that names no process: a child that has exited and been reaped.
    static pid_t deadPid() {
        const pid_t child = ::fork();
        if (child == 0) ::_exit(0);
        int status = 0;
        ::waitpid(child, &status, 0);
        return child;
    }

    fs::path makeDir(const std::string& name) const {
        const fs::path p = dir_ / name;
        fs::create_directories(p / "r0");
        std::ofstream(p / "r0" / "segment.h5") << "pages";
        return p;
    }

    fs::path dir_;
};

TEST_F(TempStorageTest, DirectoryIsNamedAfterHostAndPid) {
    auto made = makeTempStorageDir(dir_.string());
    ASSERT_TRUE(made.isOk()) << made.status().toString();
    const std::string name = fs::path(*made).filename().string();
    const std::string want =
        "strata-" + tempStorageHostName() + "-" + std::to_string(::getpid()) + "-";
    EXPECT_EQ(name.substr(0, want.size()), want) << name;
    EXPECT_EQ(name.size(), want.size() + 6) << name;
    EXPECT_TRUE(fs::is_directory(*made));
    // This process is alive: its directory is not stale.
    EXPECT_EQ(removeStaleTempStorageDirs(dir_.string()), 0u);
    EXPECT_TRUE(fs::is_directory(*made));

    auto missing = makeTempStorageDir((dir_ / "no-such-parent").string());
    ASSERT_FALSE(missing.isOk());
    EXPECT_EQ(missing.status().code(), StatusCode::kIoError);
    EXPECT_NE(missing.status().message().find("no-such-parent"), std::string::npos);
}

TEST_F(TempStorageTest, RemovesOnlyDirectoriesOfDeadProcessesOfThisHost) {
    const std::string host = tempStorageHostName();
    const pid_t dead = deadPid();
    const fs::path stale = makeDir("strata-" + host + "-" + std::to_string(dead) + "-Ab12Cd");
    const fs::path live = makeDir("strata-" + host + "-" + std::to_string(::getpid()) + "-Ef34Gh");
    const fs::path other_host =
        makeDir("strata-other-host.example-" + std::to_string(dead) + "-Ij56Kl");
    const fs::path old_style = makeDir("strata-Mn78Op");
    const fs::path not_a_dir = dir_ / ("strata-" + host + "-" + std::to_string(dead) + "-Qr90St");
    std::ofstream(not_a_dir) << "a file";

    EXPECT_EQ(removeStaleTempStorageDirs(dir_.string()), 1u);
    EXPECT_FALSE(fs::exists(stale));
    EXPECT_TRUE(fs::exists(live / "r0" / "segment.h5"));
    EXPECT_TRUE(fs::exists(other_host / "r0" / "segment.h5"));
    EXPECT_TRUE(fs::exists(old_style / "r0" / "segment.h5"));
    EXPECT_TRUE(fs::is_regular_file(not_a_dir));
    EXPECT_EQ(removeStaleTempStorageDirs((dir_ / "missing").string()), 0u);
}

TEST_F(TempStorageTest, OwnedDirectoryIsRemovedOnRelease) {
    auto made = makeTempStorageDir(dir_.string());
    ASSERT_TRUE(made.isOk()) << made.status().toString();
    std::ofstream(fs::path(*made) / "page") << "x";
    ownTempStorageDir(*made);
    releaseTempStorageDir();
    EXPECT_FALSE(fs::exists(*made));
    releaseTempStorageDir();  // idempotent: nothing owned any more
}

// The clean stop (armCleanStop) in a child process, as strata-run's ranks see it: the watcher
// thread, an owned directory, a signal sent to the process. The child's exit status comes back.
class CleanStopTest : public TempStorageTest {
protected:
    using Clock = std::chrono::steady_clock;

    // Forks a child that owns a fresh directory, arms the clean stop with `bound_s` and runs
    // `body` (which must end the child); returns its waitpid status and sets *seconds.
    template <typename Body>
    int runChild(double bound_s, Body body, double* seconds) {
        auto made = makeTempStorageDir(dir_.string());
        EXPECT_TRUE(made.isOk()) << made.status().toString();
        owned_ = *made;
        const auto t0 = Clock::now();
        const pid_t child = ::fork();
        if (child == 0) {
            startTerminationWatcher();
            ownTempStorageDir(owned_);
            armCleanStop(bound_s);
            body();
            ::_exit(99);  // the body must not return
        }
        int status = 0;
        ::waitpid(child, &status, 0);
        *seconds = std::chrono::duration<double>(Clock::now() - t0).count();
        return status;
    }

    // In the child: waits up to 30 s for the watcher to record a signal.
    static bool waitForStopSignal(int sig) {
        const auto deadline = Clock::now() + std::chrono::seconds(30);
        while (stopSignal() != sig) {
            if (Clock::now() > deadline) return false;
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        return true;
    }

    std::string owned_;
};

TEST_F(CleanStopTest, FirstSignalOnlyAsksAndTheRunEndsItself) {
    double seconds = 0;
    const int status = runChild(
        60.0,
        [this] {
            if (stopSignal() != 0) ::_exit(10);
            ::kill(::getpid(), SIGTERM);
            if (!waitForStopSignal(SIGTERM)) ::_exit(11);
            if (!fs::exists(owned_)) ::_exit(12);  // still there while the run stops
            releaseTempStorageDir();
            ::_exit(128 + stopSignal());
        },
        &seconds);
    ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
    EXPECT_EQ(WEXITSTATUS(status), 128 + SIGTERM);
    EXPECT_FALSE(fs::exists(owned_));
}

TEST_F(CleanStopTest, NoStopWithinTheBoundEndsTheProcessAndRemovesTheDirectory) {
    double seconds = 0;
    const int status = runChild(
        0.5,
        [] {
            ::kill(::getpid(), SIGINT);
            std::this_thread::sleep_for(std::chrono::seconds(120));  // never notices the stop
        },
        &seconds);
    ASSERT_TRUE(WIFSIGNALED(status)) << "status " << status;
    EXPECT_EQ(WTERMSIG(status), SIGINT);
    EXPECT_FALSE(fs::exists(owned_));
    EXPECT_GE(seconds, 0.5);
    EXPECT_LT(seconds, 60.0);  // the bound, not the child's sleep, ended it
}

TEST_F(CleanStopTest, SecondSignalEndsTheProcessAtOnce) {
    double seconds = 0;
    const int status = runChild(
        300.0,
        [] {
            ::kill(::getpid(), SIGTERM);
            if (!waitForStopSignal(SIGTERM)) ::_exit(11);
            ::kill(::getpid(), SIGHUP);
            std::this_thread::sleep_for(std::chrono::seconds(120));
        },
        &seconds);
    ASSERT_TRUE(WIFSIGNALED(status)) << "status " << status;
    EXPECT_EQ(WTERMSIG(status), SIGHUP);
    EXPECT_FALSE(fs::exists(owned_));
    EXPECT_LT(seconds, 60.0);
}

}  // namespace
}  // namespace strata::app

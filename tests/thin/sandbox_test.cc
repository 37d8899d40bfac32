// The guest's file-system view, tested against real host directories.
#include "thin/sandbox.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>

namespace vessel::thin {
namespace {

TEST(Normalize, IsLexicalAndNeverClimbsAboveRoot) {
    EXPECT_EQ(Sandbox::normalize("/", "a/b"), "/a/b");
    EXPECT_EQ(Sandbox::normalize("/x/y", "../z"), "/x/z");
    EXPECT_EQ(Sandbox::normalize("/x", "/abs//p/./q/"), "/abs/p/q");
    EXPECT_EQ(Sandbox::normalize("/", "../../../etc/passwd"), "/etc/passwd");
    EXPECT_EQ(Sandbox::normalize("/a", "../../.."), "/");
    EXPECT_EQ(Sandbox::normalize("/a/b", ""), "/a/b");
    EXPECT_EQ(Sandbox::normalize("/", "."), "/");
}

TEST(Classify, OnlyFiveDevicesAndNothingElseOfDevProcSys) {
    for (const char* d : {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"})
        EXPECT_EQ(Sandbox::classify(d), Sandbox::Special::kDevice) << d;
    for (const char* h : {"/dev/kvm", "/dev/sda", "/proc/self", "/proc/1/mem", "/sys/kernel", "/dev/null/x"})
        EXPECT_EQ(Sandbox::classify(h), Sandbox::Special::kHidden) << h;
    for (const char* n : {"/", "/devices", "/procfs", "/system", "/home/dev/null"})
        EXPECT_EQ(Sandbox::classify(n), Sandbox::Special::kNone) << n;
}

class SandboxFs : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/vessel-sandbox-test-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        base_ = tmpl;
        namespace fs = std::filesystem;
        fs::create_directories(base_ + "/root/sub");
        fs::create_directories(base_ + "/outside");
        fs::create_directories(base_ + "/rw");
        write(base_ + "/root/sub/in.txt", "in");
        write(base_ + "/outside/secret", "secret");
        fs::create_symlink(base_ + "/outside/secret", base_ + "/root/abs");
        fs::create_symlink("../outside/secret", base_ + "/root/rel");
        fs::create_symlink("../../../..", base_ + "/root/sub/up");
        fs::create_symlink(base_ + "/outside", base_ + "/rw/out");
        auto sb = Sandbox::create(base_ + "/root", {{base_ + "/rw", "/data/rw"}});
        ASSERT_TRUE(sb.has_value()) << sb.error().message;
        sb_ = std::make_unique<Sandbox>(std::move(*sb));
    }
    void TearDown() override { std::filesystem::remove_all(base_); }
    static void write(const std::string& p, const std::string& s) {
        int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(::write(fd, s.data(), s.size()), static_cast<ssize_t>(s.size()));
        ::close(fd);
    }
    std::string base_;
    std::unique_ptr<Sandbox> sb_;
};

TEST_F(SandboxFs, LocatePicksTheLongestMount) {
    auto l = sb_->locate("/data/rw/x/y");
    EXPECT_TRUE(l.mount->writable);
    EXPECT_EQ(l.rel, "x/y");
    EXPECT_EQ(sb_->locate("/data/rw").rel, ".");
    EXPECT_FALSE(sb_->locate("/data/rwx").mount->writable);  // a prefix is not a path component
    EXPECT_EQ(sb_->locate("/").rel, ".");
}

TEST_F(SandboxFs, SymlinksOutOfAMountStayInside) {
    for (const char* p : {"/abs", "/rel", "/sub/up/outside/secret", "/data/rw/out/secret"}) {
        auto fd = sb_->open(p, O_RDONLY, 0);
        ASSERT_FALSE(fd.has_value()) << p << " opened";
        EXPECT_EQ(fd.error().sys_errno, ENOENT) << p;
        EXPECT_FALSE(sb_->open_path(p, false).has_value()) << p;
    }
    auto in = sb_->open("/sub/in.txt", O_RDONLY, 0);
    EXPECT_TRUE(in.has_value());
}

TEST_F(SandboxFs, WritesNeedAWritableMount) {
    auto r = sb_->open("/new", O_WRONLY | O_CREAT, 0644);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().sys_errno, EROFS);
    r = sb_->open("/sub/in.txt", O_RDWR, 0);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().sys_errno, EROFS);
    // O_CREAT of an existing file on a read-only mount is an ordinary open.
    EXPECT_TRUE(sb_->open("/sub/in.txt", O_RDONLY | O_CREAT, 0644).has_value());
    EXPECT_TRUE(sb_->open("/data/rw/new", O_WRONLY | O_CREAT, 0644).has_value());
    EXPECT_TRUE(std::filesystem::exists(base_ + "/rw/new"));
    // Creating through a symlink that points out lands inside or fails.
    (void)sb_->open("/data/rw/out/created", O_WRONLY | O_CREAT, 0644);
    EXPECT_FALSE(std::filesystem::exists(base_ + "/outside/created"));
    std::string name;
    auto parent = sb_->open_parent("/sub/x", name, true);
    ASSERT_FALSE(parent.has_value());
    EXPECT_EQ(parent.error().sys_errno, EROFS);
    parent = sb_->open_parent("/data/rw/x", name, true);
    ASSERT_TRUE(parent.has_value());
    EXPECT_EQ(name, "x");
    EXPECT_FALSE(sb_->open_parent("/data/rw", name, true).has_value());  // a mount point
    EXPECT_FALSE(sb_->open_parent("/", name, true).has_value());
}

TEST_F(SandboxFs, DevicesAreSyntheticAndNothingElseUnderDev) {
    auto z = sb_->open("/dev/zero", O_RDONLY, 0);
    ASSERT_TRUE(z.has_value());
    char c = 1;
    EXPECT_EQ(::read(z->get(), &c, 1), 1);
    EXPECT_EQ(c, 0);
    auto kvm = sb_->open("/dev/kvm", O_RDWR, 0);
    ASSERT_FALSE(kvm.has_value());
    EXPECT_EQ(kvm.error().sys_errno, ENOENT);
    EXPECT_FALSE(sb_->open("/proc/self/environ", O_RDONLY, 0).has_value());
}

TEST(SandboxHostRoot, HostKernelFileSystemsAreNeverReached) {
    // With the host's "/" as the root, /etc/mtab is a symlink into /proc and
    // /dev, /proc, /sys are the real mounts: all must stay invisible.
    auto sb = Sandbox::create("/", {});
    ASSERT_TRUE(sb.has_value());
    for (const char* p : {"/proc", "/sys", "/dev", "/etc/mtab", "/proc/self/status", "/dev/kvm"}) {
        EXPECT_FALSE(sb->open(p, O_RDONLY, 0).has_value()) << p;
        EXPECT_FALSE(sb->open_path(p, false).has_value()) << p;
    }
    EXPECT_TRUE(sb->open("/etc/passwd", O_RDONLY, 0).has_value());
    EXPECT_TRUE(sb->open("/dev/null", O_WRONLY, 0).has_value());
}

TEST(SandboxCreate, BadFlagsAreUsageErrorsNotNotFound) {
    auto r = Sandbox::create("/nonexistent-root", {});
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().sys_errno, ENOENT);  // ENOENT would read as "program not found"
    EXPECT_NE(r.error().message.find("--root"), std::string::npos);
    r = Sandbox::create("", {{"/nonexistent-rw", "/x"}});
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().sys_errno, ENOENT);
    EXPECT_FALSE(Sandbox::create("", {{"/tmp", "relative"}}).has_value());
    EXPECT_FALSE(Sandbox::create("", {{"/tmp", "/proc"}}).has_value());
    EXPECT_FALSE(Sandbox::create("", {{"/tmp", "/dev/null"}}).has_value());
    EXPECT_FALSE(Sandbox::create("", {{"/tmp", "/x"}, {"/tmp", "/x/"}}).has_value());
}

}  // namespace
}  // namespace vessel::thin

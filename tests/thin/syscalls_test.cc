// System-call handlers driven directly, without KVM: guest memory and page
// tables are real, the vCPU is a stub. Hostile arguments must come back as
// errno values, never reach the host or crash the VMM.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "thin/process.h"

namespace vessel::thin {
namespace {

constexpr uint64_t kScratch = 0x1000'0000;   // 64 KiB read-write
constexpr uint64_t kReadOnly = 0x2000'0000;  // one read-only page
constexpr uint64_t kUnmapped = 0x3000'0000;

struct StubCpu : CpuAccess {
    uint64_t fs = 0, gs = 0;
    bool set_fs_base(uint64_t b) override { return fs = b, true; }
    bool set_gs_base(uint64_t b) override { return gs = b, true; }
    uint64_t fs_base() override { return fs; }
    uint64_t gs_base() override { return gs; }
};

class Syscalls : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/vessel-syscalls-test-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        std::filesystem::create_directories(dir_ + "/root/d");
        std::filesystem::create_directories(dir_ + "/rw");
        int fd = ::open((dir_ + "/root/file").c_str(), O_WRONLY | O_CREAT, 0644);
        ASSERT_EQ(::write(fd, "content", 7), 7);
        ::close(fd);
        auto m = memory::GuestMemory::create(16 << 20);
        ASSERT_TRUE(m.has_value());
        mem_ = std::make_unique<memory::GuestMemory>(std::move(*m));
        as_ = std::make_unique<memory::AddressSpace>(*mem_, 0x1000);
        ASSERT_TRUE(as_->init().has_value());
        ASSERT_TRUE(as_->map_fixed(kScratch, 16 * 4096, memory::kProtRead | memory::kProtWrite).has_value());
        ASSERT_TRUE(as_->map_fixed(kReadOnly, 4096, memory::kProtRead).has_value());
        ASSERT_TRUE(as_->map_fixed(0x40'0000, 4096, memory::kProtRead | memory::kProtWrite).has_value());
        auto sb = Sandbox::create(dir_ + "/root", {{dir_ + "/rw", "/w"}});
        ASSERT_TRUE(sb.has_value()) << sb.error().message;
        ProcessOptions o;
        o.uid = ::getuid();
        o.gid = ::getgid();
        o.argv = {"prog", "-x"};
        o.envp = {"A=1", "B=2"};
        o.comm = "prog";
        p_ = std::make_unique<Process>(*as_, std::move(*sb), cpu_, o);
        p_->set_brk_start(0x40'1000);
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }

    // A string placed in scratch memory, at slot `i` (1 KiB each).
    uint64_t str(const std::string& s, int i = 0) {
        uint64_t va = kScratch + 1024 * static_cast<uint64_t>(i);
        EXPECT_TRUE(as_->view().write(va, s.c_str(), s.size() + 1));
        return va;
    }
    int64_t call(uint64_t nr, uint64_t a = 0, uint64_t b = 0, uint64_t c = 0, uint64_t d = 0, uint64_t e = 0,
                 uint64_t f = 0) {
        return p_->handle({nr, {a, b, c, d, e, f}});
    }

    std::string dir_;
    StubCpu cpu_;
    std::unique_ptr<memory::GuestMemory> mem_;
    std::unique_ptr<memory::AddressSpace> as_;
    std::unique_ptr<Process> p_;
};

// A thread (clone with CLONE_VM alone) is refused and named in the summary;
// a child that ends hands its counts to its parent (absorb_counts).
TEST_F(Syscalls, RefusedThreadsAreNamedAndChildrensCountsAbsorbed) {
    EXPECT_EQ(call(SYS_clone, CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD), -ENOSYS);
    EXPECT_EQ(call(SYS_clone, CLONE_SIGHAND), -EINVAL);  // without CLONE_VM, as Linux
    EXPECT_EQ(p_->unsupported_summary(), "threads (clone with CLONE_VM) x1");
    EXPECT_EQ(p_->unsupported_calls(), 1u);
    EXPECT_EQ(call(SYS_ptrace), -ENOSYS);
    EXPECT_EQ(call(SYS_getpid), 1);
    auto sb = Sandbox::create(dir_ + "/root", {});
    ASSERT_TRUE(sb) << sb.error().message;
    auto other = std::make_unique<Process>(*as_, std::move(*sb), cpu_, ProcessOptions{});
    other->absorb_counts(*p_);
    EXPECT_EQ(other->unsupported_calls(), 2u);
    EXPECT_EQ(other->calls(SYS_getpid), 1u);
    EXPECT_EQ(other->unsupported_summary(), "ptrace x1, threads (clone with CLONE_VM) x1");
}

TEST_F(Syscalls, UnsupportedCallsAreENOSYSAndCounted) {
    EXPECT_EQ(call(SYS_ptrace), -ENOSYS);
    EXPECT_EQ(call(1000), -ENOSYS);
    EXPECT_EQ(call(~0ull), -ENOSYS);
    EXPECT_EQ(call(SYS_io_uring_setup), -ENOSYS);
    EXPECT_EQ(p_->unsupported_calls(), 4u);
    EXPECT_EQ(call(SYS_getpid), 1);
    EXPECT_EQ(p_->unsupported_calls(), 4u);
    // Named most frequent first; numbers past the table are counted apart.
    EXPECT_EQ(call(SYS_io_uring_setup), -ENOSYS);
    EXPECT_EQ(call(SYS_rseq, 0, 0, 0, 0), -ENOSYS);  // glibc expects this refusal: not named
    EXPECT_EQ(p_->unsupported_summary(), "io_uring_setup x2, ptrace x1, 2 more with unknown numbers");
    // fork in a process outside a VM (no tree to add a child to): refused.
    EXPECT_EQ(call(SYS_fork), -ENOSYS);
}

TEST_F(Syscalls, BadPointersAreEFAULT) {
    EXPECT_EQ(call(SYS_open, kUnmapped, O_RDONLY), -EFAULT);
    EXPECT_EQ(call(SYS_open, ~0ull, O_RDONLY), -EFAULT);
    int64_t fd = call(SYS_open, str("/file"), O_RDONLY);
    ASSERT_GE(fd, 0);
    EXPECT_EQ(call(SYS_read, fd, kReadOnly, 4), -EFAULT);  // not writable by the guest
    EXPECT_EQ(call(SYS_read, fd, kUnmapped, 4), -EFAULT);
    EXPECT_EQ(call(SYS_read, fd, ~0ull - 2, 4), -EFAULT);  // wraps
    EXPECT_EQ(call(SYS_fstat, fd, kReadOnly), -EFAULT);
    EXPECT_EQ(call(SYS_stat, str("/file"), kUnmapped), -EFAULT);
    int64_t out = call(SYS_open, str("/w/out"), O_CREAT | O_WRONLY, 0644);
    ASSERT_GE(out, 0);
    EXPECT_EQ(call(SYS_write, out, kUnmapped, 10), -EFAULT);
    EXPECT_EQ(call(SYS_readv, fd, kUnmapped, 2), -EFAULT);
    EXPECT_EQ(call(SYS_readv, fd, kScratch, 1ull << 40), -EINVAL);
    EXPECT_EQ(call(SYS_getcwd, kReadOnly, 100), -EFAULT);
    EXPECT_EQ(call(SYS_uname, kReadOnly), -EFAULT);
    EXPECT_EQ(call(SYS_clock_gettime, CLOCK_REALTIME, kUnmapped), -EFAULT);
    EXPECT_EQ(call(SYS_pipe2, kReadOnly, 0), -EFAULT);
    EXPECT_EQ(p_->fds().entries().size(), 2u);  // the failed pipe2 left nothing behind
    // A read that runs off the end of the mapping returns what fitted.
    EXPECT_EQ(call(SYS_read, fd, kScratch + 16 * 4096 - 3, 7), 3);
}

// Found by fuzz/sys_memory_fuzz: growing a mapping in place looked up every
// page of the new range, so a guest asking for terabytes kept its VMM busy
// for minutes.
TEST_F(Syscalls, MremapGrowingByTerabytesAnswersAtOnce) {
    auto start = std::chrono::steady_clock::now();
    int64_t r = call(SYS_mremap, kReadOnly, 4096, 1ull << 46, 0);
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
    EXPECT_TRUE(r == -ENOMEM || r == static_cast<int64_t>(kReadOnly)) << r;
    // Growing into the next mapping is refused without MREMAP_MAYMOVE.
    EXPECT_EQ(call(SYS_mremap, kScratch, 16 * 4096, 1ull << 30, 0), -ENOMEM);
}

TEST_F(Syscalls, PathLengthsAreBounded) {
    std::string longname(5000, 'a');
    EXPECT_EQ(call(SYS_open, str(longname.substr(0, 200)), O_RDONLY), -ENOENT);
    EXPECT_EQ(call(SYS_open, str(longname.substr(0, 300)), O_RDONLY), -ENAMETOOLONG);  // NAME_MAX
    EXPECT_TRUE(as_->view().write(kScratch, longname.c_str(), longname.size() + 1));
    EXPECT_EQ(call(SYS_open, kScratch, O_RDONLY), -ENAMETOOLONG);
    EXPECT_EQ(call(SYS_open, str(""), O_RDONLY), -ENOENT);
}

TEST_F(Syscalls, ReadlinkOfANonSymlinkIsEINVAL) {
    EXPECT_EQ(call(SYS_readlink, str("/file"), kScratch + 4096, 100), -EINVAL);
    EXPECT_EQ(call(SYS_readlink, str("/missing"), kScratch + 4096, 100), -ENOENT);
    EXPECT_EQ(call(SYS_readlink, str(""), kScratch + 4096, 100), -ENOENT);
    int64_t fd = call(SYS_open, str("/file"), O_RDONLY);
    EXPECT_EQ(call(SYS_readlinkat, fd, str(""), kScratch + 4096, 100), -ENOENT);
    ASSERT_EQ(::symlink("file", (dir_ + "/rw/l").c_str()), 0);
    EXPECT_EQ(call(SYS_readlink, str("/w/l"), kScratch + 4096, 100), 4);
}

TEST_F(Syscalls, MkdirOfAMountPointOrRootIsEEXIST) {
    EXPECT_EQ(call(SYS_mkdir, str("/w"), 0755), -EEXIST);
    EXPECT_EQ(call(SYS_mkdir, str("/w/"), 0755), -EEXIST);
    EXPECT_EQ(call(SYS_mkdir, str("/"), 0755), -EEXIST);
    EXPECT_EQ(call(SYS_mkdir, str("/w/new"), 0755), 0);
    EXPECT_TRUE(std::filesystem::is_directory(dir_ + "/rw/new"));
    EXPECT_EQ(call(SYS_rmdir, str("/w")), -EBUSY);
}

TEST_F(Syscalls, ChownOnlyToTheGuestsOwnIds) {
    ASSERT_GE(call(SYS_open, str("/w/f"), O_CREAT | O_WRONLY, 0644), 0);
    uint64_t uid = ::getuid(), gid = ::getgid();
    EXPECT_EQ(call(SYS_chown, str("/w/f"), uid, gid), 0);
    EXPECT_EQ(call(SYS_chown, str("/w/f"), ~0u, ~0u), 0);  // -1: no change
    EXPECT_EQ(call(SYS_lchown, str("/w/f"), uid, ~0u), 0);
    EXPECT_EQ(call(SYS_chown, str("/w/f"), uid + 1, gid), -EPERM);
    EXPECT_EQ(call(SYS_chown, str("/w/f"), uid, gid + 1), -EPERM);
    EXPECT_EQ(call(SYS_fchownat, AT_FDCWD, str("/w/f"), 12345, gid, 0), -EPERM);
    EXPECT_EQ(call(SYS_chown, str("/file"), uid, gid), -EROFS);
    int64_t fd = call(SYS_open, str("/w/f"), O_RDONLY);
    EXPECT_EQ(call(SYS_fchown, fd, uid, gid), 0);
    EXPECT_EQ(call(SYS_fchown, fd, uid + 7, gid), -EPERM);
    struct stat st;
    ASSERT_EQ(::stat((dir_ + "/rw/f").c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, uid);
}

TEST_F(Syscalls, ExitStatusIsMaskedTo8Bits) {
    call(SYS_exit_group, 0x1234);
    EXPECT_TRUE(p_->exited());
    EXPECT_EQ(p_->exit_status(), 0x34);
}

TEST_F(Syscalls, BrkGrowsAndShrinksButNeverIntoAMapping) {
    uint64_t start = call(SYS_brk, 0);
    EXPECT_EQ(start, 0x40'1000u);
    EXPECT_EQ(static_cast<uint64_t>(call(SYS_brk, start + 10000)), start + 10000);
    EXPECT_TRUE(as_->view().write(start + 9999, "x", 1));
    EXPECT_EQ(static_cast<uint64_t>(call(SYS_brk, start + 100)), start + 100);
    EXPECT_FALSE(as_->view().write(start + 9999, "x", 1));
    EXPECT_EQ(static_cast<uint64_t>(call(SYS_brk, kScratch + 4096)), start + 100);  // would swallow scratch
    EXPECT_EQ(static_cast<uint64_t>(call(SYS_brk, 1ull << 50)), start + 100);
}

// The short forms share their code with the long ones (sys_fd.cc, sys_path.cc).
TEST_F(Syscalls, PipeAndChmodBehaveLikePipe2AndFchmodat) {
    ASSERT_EQ(call(SYS_pipe, kScratch), 0);
    int32_t fds[2];
    ASSERT_TRUE(as_->view().read(kScratch, fds, sizeof fds));
    EXPECT_EQ(call(SYS_write, fds[1], str("hi", 1), 2), 2);
    EXPECT_EQ(call(SYS_read, fds[0], kScratch + 4096, 2), 2);
    EXPECT_EQ(call(SYS_fcntl, fds[0], F_GETFD), 0);  // pipe: no O_CLOEXEC
    EXPECT_EQ(call(SYS_pipe, kReadOnly), -EFAULT);
    int64_t fd = call(SYS_open, str("/w/m"), O_WRONLY | O_CREAT, 0600);
    ASSERT_GE(fd, 0);
    EXPECT_EQ(call(SYS_chmod, str("/w/m"), 0640), 0);
    struct stat st;
    ASSERT_EQ(::stat((dir_ + "/rw/m").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0640u);
    EXPECT_EQ(call(SYS_fchmodat, static_cast<uint64_t>(AT_FDCWD), str("/w/m"), 0604), 0);
    ASSERT_EQ(::stat((dir_ + "/rw/m").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0604u);
    EXPECT_EQ(call(SYS_chmod, str("/file"), 0600), -EROFS);
}

// A hole the guest punches in the heap pages mapped ahead of the break must
// be seen (Process::handle recomputes the heap's end after munmap: the
// kRemaps effect), or brk would hand out unmapped memory.
TEST_F(Syscalls, BrkRemapsAHoleUnmappedAheadOfTheBreak) {
    uint64_t start = call(SYS_brk, 0);
    EXPECT_EQ(static_cast<uint64_t>(call(SYS_brk, start + 4096)), start + 4096);
    EXPECT_EQ(call(SYS_munmap, start + 8192, 4096), 0);
    EXPECT_FALSE(as_->view().write(start + 8192, "x", 1));
    EXPECT_EQ(static_cast<uint64_t>(call(SYS_brk, start + 12288)), start + 12288);
    EXPECT_TRUE(as_->view().write(start + 12287, "x", 1));
}

// --trace-syscalls prints each call by its table entry's trace format.
TEST_F(Syscalls, TraceLinesFollowTheTablesFormats) {
    char* text = nullptr;
    size_t size = 0;
    std::FILE* out = ::open_memstream(&text, &size);
    ASSERT_NE(out, nullptr);
    auto sb = Sandbox::create(dir_ + "/root", {});
    ASSERT_TRUE(sb.has_value());
    ProcessOptions o;
    o.trace = true;
    o.trace_out = out;
    Process traced(*as_, std::move(*sb), cpu_, o);
    const uint64_t path = str("/file");
    const int64_t fd = traced.handle({SYS_openat, {static_cast<uint64_t>(AT_FDCWD), path, O_RDONLY, 0, 0, 0}});
    ASSERT_GE(fd, 0);
    traced.handle({SYS_read, {static_cast<uint64_t>(fd), kScratch + 4096, 7, 0, 0, 0}});
    traced.handle({SYS_ptrace, {}});
    traced.handle({SYS_rseq, {}});
    traced.handle({SYS_sched_yield, {}});  // accepted without effect
    std::fclose(out);
    const std::string trace(text, size);
    std::free(text);
    EXPECT_NE(trace.find("openat(AT_FDCWD, \"/file\", 0x0, 00) = " + std::to_string(fd) + "\n"), std::string::npos)
        << trace;
    EXPECT_NE(trace.find("read(" + std::to_string(fd) + ", 0x10001000, 7) = 7\n"), std::string::npos) << trace;
    EXPECT_NE(trace.find("ptrace(0x0, 0x0, 0x0, 0x0, 0x0, 0x0) = -1 ENOSYS (Function not implemented) [unsupported]\n"),
              std::string::npos)
        << trace;
    // The expected refusal and the call accepted without effect are marked
    // apart from the real blocker.
    EXPECT_NE(trace.find("rseq("), std::string::npos) << trace;
    EXPECT_NE(trace.find("[unsupported, expected]\n"), std::string::npos) << trace;
    EXPECT_NE(trace.find("[stub]\n"), std::string::npos) << trace;
}

TEST_F(Syscalls, ArchPrctlGoesToTheCpu) {
    EXPECT_EQ(call(SYS_arch_prctl, 0x1002 /* SET_FS */, 0x7000), 0);
    EXPECT_EQ(cpu_.fs, 0x7000u);
    EXPECT_EQ(call(SYS_arch_prctl, 0x1003 /* GET_FS */, kScratch), 0);
    uint64_t v = 0;
    EXPECT_TRUE(as_->view().read(kScratch, &v, 8));
    EXPECT_EQ(v, 0x7000u);
    EXPECT_EQ(call(SYS_arch_prctl, 0x1002, 1ull << 47), -EPERM);
    EXPECT_EQ(call(SYS_arch_prctl, 0x1003, kReadOnly), -EFAULT);
}

// busybox asks for its name after an error (prctl PR_GET_NAME); before
// prctl had a handler that read "vessel: unsupported system calls".
TEST_F(Syscalls, PrctlKeepsWhatItSetsAndRefusesWhatLinuxRefuses) {
    char name[16];
    EXPECT_EQ(call(157, PR_GET_NAME, kScratch), 0);
    ASSERT_TRUE(as_->view().read(kScratch, name, sizeof name));
    EXPECT_STREQ(name, "prog");
    EXPECT_EQ(call(157, PR_SET_NAME, str("a-name-longer-than-fifteen", 1)), 0);
    EXPECT_EQ(call(157, PR_GET_NAME, kScratch), 0);
    ASSERT_TRUE(as_->view().read(kScratch, name, sizeof name));
    EXPECT_STREQ(name, "a-name-longer-t");                               // cut to 15 bytes, as Linux does
    EXPECT_EQ(call(89, str("/proc/self/comm"), kScratch, 64), -EINVAL);  // not a link; the file:
    int fd = static_cast<int>(call(2, str("/proc/self/comm"), O_RDONLY));
    ASSERT_GE(fd, 0);
    EXPECT_EQ(call(0, fd, kScratch, 64), 16);
    ASSERT_TRUE(as_->view().read(kScratch, name, 16));
    EXPECT_EQ(std::string(name, 16), "a-name-longer-t\n");

    EXPECT_EQ(call(157, PR_SET_PDEATHSIG, 9), 0);
    EXPECT_EQ(call(157, PR_GET_PDEATHSIG, kScratch), 0);
    int v = 0;
    ASSERT_TRUE(as_->view().read_obj(kScratch, v));
    EXPECT_EQ(v, 9);
    EXPECT_EQ(call(157, PR_SET_PDEATHSIG, 65), -EINVAL);
    EXPECT_EQ(call(157, PR_GET_DUMPABLE), 1);
    EXPECT_EQ(call(157, PR_SET_DUMPABLE, 2), -EINVAL);
    EXPECT_EQ(call(157, PR_SET_DUMPABLE, 0), 0);
    EXPECT_EQ(call(157, PR_GET_DUMPABLE), 0);
    EXPECT_EQ(call(157, PR_GET_NO_NEW_PRIVS), 0);
    EXPECT_EQ(call(157, PR_SET_NO_NEW_PRIVS, 1, 1), -EINVAL);
    EXPECT_EQ(call(157, PR_SET_NO_NEW_PRIVS, 1), 0);
    EXPECT_EQ(call(157, PR_GET_NO_NEW_PRIVS), 1);
    EXPECT_EQ(call(157, PR_CAPBSET_READ, 0), 0);
    EXPECT_EQ(call(157, PR_CAPBSET_READ, 1000), -EINVAL);
    EXPECT_EQ(call(157, PR_GET_SECCOMP), 0);
    EXPECT_EQ(call(157, PR_GET_NAME, kUnmapped), -EFAULT);
    EXPECT_EQ(call(157, PR_SET_NAME, kUnmapped), -EFAULT);
    EXPECT_EQ(call(157, PR_GET_PDEATHSIG, kReadOnly), -EFAULT);
    EXPECT_EQ(call(157, 0xdead), -EINVAL);
    EXPECT_EQ(p_->unsupported_calls(), 0u);
}

// Signals the guest sends itself (kill, tkill, tgkill): its own pid only;
// they wait while blocked, then SIG_IGN and default-ignore drop them,
// default-terminate ends the process as killed by them, and a handler
// (which cannot run yet) is counted as unsupported, never silently lost.
TEST_F(Syscalls, SignalsToItselfTakeTheirActionOnceUnblocked) {
    EXPECT_EQ(call(SYS_kill, 2, SIGTERM), -ESRCH);
    EXPECT_EQ(call(SYS_kill, 1, 65), -EINVAL);
    EXPECT_EQ(call(SYS_kill, 1, 0), 0);
    EXPECT_EQ(call(SYS_tgkill, 1, 2, SIGTERM), -ESRCH);
    EXPECT_EQ(call(SYS_tgkill, 0, 1, SIGTERM), -EINVAL);
    EXPECT_EQ(call(SYS_tkill, -1, SIGTERM), -EINVAL);
    EXPECT_EQ(call(SYS_kill, 1, SIGCHLD), 0);  // default: ignored
    EXPECT_FALSE(p_->exited());

    kernel_sigaction_t act{};
    act.handler = 1;  // SIG_IGN
    ASSERT_TRUE(as_->view().write_obj(kScratch, act));
    EXPECT_EQ(call(SYS_rt_sigaction, SIGUSR1, kScratch, 0, 8), 0);
    EXPECT_EQ(call(SYS_tgkill, 1, 1, SIGUSR1), 0);
    EXPECT_FALSE(p_->exited());
    act.handler = 0x401000;  // a handler: not run yet, and said so
    ASSERT_TRUE(as_->view().write_obj(kScratch, act));
    EXPECT_EQ(call(SYS_rt_sigaction, SIGUSR2, kScratch, 0, 8), 0);
    EXPECT_EQ(call(SYS_tkill, 1, SIGUSR2), 0);
    EXPECT_FALSE(p_->exited());
    EXPECT_EQ(p_->unsupported_calls(), 1u);
    EXPECT_NE(p_->unsupported_summary().find("SIGUSR2"), std::string::npos) << p_->unsupported_summary();

    uint64_t set = 1ull << (SIGTERM - 1);
    ASSERT_TRUE(as_->view().write_obj(kScratch, set));
    EXPECT_EQ(call(SYS_rt_sigprocmask, SIG_BLOCK, kScratch, 0, 8), 0);
    EXPECT_EQ(call(SYS_kill, 0, SIGTERM), 0);  // its own group
    EXPECT_FALSE(p_->exited()) << "a blocked signal waits";
    EXPECT_EQ(p_->pending_signals(), set);
    EXPECT_EQ(call(SYS_rt_sigprocmask, SIG_UNBLOCK, kScratch, 0, 8), 0);
    EXPECT_TRUE(p_->exited());
    EXPECT_EQ(p_->killed_by(), SIGTERM);
    EXPECT_EQ(p_->exit_status(), 128 + SIGTERM);
}

// ppoll, pselect6 and epoll_pwait's signal mask holds while they wait: a
// blocked, pending signal it lets in ends the call at once with EINTR
// (then the caller's mask is back once it is delivered); a ready
// descriptor wins, and the call's mask is gone when it returns.
TEST_F(Syscalls, WaitsWithASignalMaskLetPendingSignalsIn) {
    const uint64_t term = 1ull << (SIGTERM - 1), mask_at = kScratch, list = kScratch + 64, ts_at = kScratch + 128;
    ASSERT_TRUE(as_->view().write_obj(mask_at, term));
    ASSERT_EQ(call(SYS_rt_sigprocmask, SIG_BLOCK, mask_at, 0, 8), 0);
    ASSERT_EQ(call(SYS_kill, 1, SIGTERM), 0);
    ASSERT_EQ(p_->pending_signals(), term);
    ASSERT_EQ(call(SYS_pipe2, kScratch + 256, O_NONBLOCK), 0);
    int fds[2];
    as_->view().read(kScratch + 256, fds, sizeof fds);
    pollfd f{fds[0], POLLIN, 0};
    as_->view().write(list, &f, sizeof f);
    const timespec five_s{5, 0};
    as_->view().write(ts_at, &five_s, sizeof five_s);
    const uint64_t keep_term = term, let_all = 0;
    // A ready descriptor: returned, and SIGTERM stays pending and blocked.
    as_->view().write(kScratch + 512, "x", 1);
    ASSERT_EQ(call(SYS_write, fds[1], kScratch + 512, 1), 1);
    as_->view().write_obj(kScratch + 16, let_all);
    EXPECT_EQ(call(SYS_ppoll, list, 1, ts_at, kScratch + 16, 8), 1);
    EXPECT_FALSE(p_->exited());
    EXPECT_EQ(p_->pending_signals(), term);
    ASSERT_EQ(call(SYS_read, fds[0], kScratch + 512, 1), 1);
    // A mask that keeps SIGTERM blocked waits (here: 5 ms).
    const timespec five_ms{0, 5'000'000};
    as_->view().write(ts_at, &five_ms, sizeof five_ms);
    as_->view().write_obj(kScratch + 24, keep_term);
    EXPECT_EQ(call(SYS_ppoll, list, 1, ts_at, kScratch + 24, 8), 0);
    EXPECT_FALSE(p_->exited());
    // Nothing ready and SIGTERM let in: EINTR at once, and it kills.
    as_->view().write(ts_at, &five_s, sizeof five_s);
    EXPECT_EQ(call(SYS_ppoll, list, 1, ts_at, kScratch + 16, 8), -EINTR);
    EXPECT_TRUE(p_->exited());
    EXPECT_EQ(p_->killed_by(), SIGTERM);
}

// Pid 1 leads group and session 1 and has no children: the group and
// wait calls answer as Linux answers such a process.
TEST_F(Syscalls, GroupsSessionsAndWaitsOfALoneFirstProcess) {
    EXPECT_EQ(call(SYS_getpgrp), 1);
    EXPECT_EQ(call(SYS_getpgid, 0), 1);
    EXPECT_EQ(call(SYS_getsid, 1), 1);
    EXPECT_EQ(call(SYS_getpgid, 2), -ESRCH);
    EXPECT_EQ(call(SYS_setpgid, 0, -1), -EINVAL);
    EXPECT_EQ(call(SYS_setpgid, 3, 0), -ESRCH);
    EXPECT_EQ(call(SYS_setpgid, 0, 0), -EPERM);
    EXPECT_EQ(call(SYS_setsid), -EPERM);
    EXPECT_EQ(call(SYS_wait4, -1, kScratch, WNOHANG, 0), -ECHILD);
    EXPECT_EQ(call(SYS_wait4, -1, kScratch, 0x1000, 0), -EINVAL);
    EXPECT_EQ(call(SYS_wait4, 0x80000000u, kScratch, 0, 0), -ESRCH);
    EXPECT_EQ(call(SYS_waitid, P_ALL, 0, kScratch, WEXITED, 0), -ECHILD);
    EXPECT_EQ(call(SYS_waitid, P_ALL, 0, kScratch, WNOHANG, 0), -EINVAL);
    EXPECT_EQ(call(SYS_waitid, P_PID, 0, kScratch, WEXITED, 0), -EINVAL);
    EXPECT_EQ(call(SYS_waitid, P_PIDFD, 3, kScratch, WEXITED, 0), -EBADF);
    EXPECT_EQ(call(SYS_waitid, 9, 0, kScratch, WEXITED, 0), -EINVAL);
    const uint64_t cpu0 = 1, none = 0;
    as_->view().write_obj(kScratch, cpu0);
    as_->view().write_obj(kScratch + 8, none);
    EXPECT_EQ(call(SYS_sched_setaffinity, 0, 8, kScratch), 0);
    EXPECT_EQ(call(SYS_sched_setaffinity, 0, 8, kScratch + 8), -EINVAL);
    EXPECT_EQ(call(SYS_sched_setaffinity, 2, 8, kScratch), -ESRCH);
    EXPECT_EQ(call(SYS_sched_setaffinity, 0, 8, kUnmapped), -EFAULT);
    EXPECT_EQ(call(SYS_getcpu, kScratch, kScratch + 4, 0), 0);
    EXPECT_EQ(call(SYS_getcpu, kUnmapped, 0, 0), -EFAULT);
    EXPECT_EQ(call(SYS_getrusage, RUSAGE_SELF, kScratch), 0);
    EXPECT_EQ(call(SYS_getrusage, 5, kScratch), -EINVAL);
    EXPECT_EQ(call(SYS_getrusage, RUSAGE_CHILDREN, kUnmapped), -EFAULT);
    EXPECT_GT(call(SYS_times, kScratch), 0);
    EXPECT_EQ(call(SYS_times, kUnmapped), -EFAULT);
}

// The guest's files show no extended attributes: a get is ENODATA, a list
// empty, a change EOPNOTSUPP; the file must exist and the name be 1..255
// bytes, as Linux checks.
TEST_F(Syscalls, ExtendedAttributesAreNoneToSee) {
    const uint64_t buf = kScratch + 8192;
    EXPECT_EQ(call(SYS_getxattr, str("/file"), str("user.a", 1), buf, 64), -ENODATA);
    EXPECT_EQ(call(SYS_lgetxattr, str("/file"), str("user.a", 1), buf, 64), -ENODATA);
    EXPECT_EQ(call(SYS_getxattr, str("/none"), str("user.a", 1), buf, 64), -ENOENT);
    EXPECT_EQ(call(SYS_getxattr, str("/file"), str("", 1), buf, 64), -ERANGE);
    EXPECT_EQ(call(SYS_getxattr, str("/file"), str(std::string(256, 'n'), 1), buf, 64), -ERANGE);
    EXPECT_EQ(call(SYS_getxattr, str("/file"), kUnmapped, buf, 64), -EFAULT);
    EXPECT_EQ(call(SYS_listxattr, str("/file"), buf, 64), 0);
    EXPECT_EQ(call(SYS_setxattr, str("/file"), str("user.a", 1), buf, 1, 0), -EOPNOTSUPP);
    EXPECT_EQ(call(SYS_removexattr, str("/file"), str("user.a", 1)), -EOPNOTSUPP);
    int64_t fd = call(SYS_open, str("/file"), O_RDONLY);
    ASSERT_GE(fd, 0);
    EXPECT_EQ(call(SYS_fgetxattr, fd, str("user.a", 1), buf, 64), -ENODATA);
    EXPECT_EQ(call(SYS_flistxattr, fd, buf, 64), 0);
    EXPECT_EQ(call(SYS_fsetxattr, 999, str("user.a", 1), buf, 1, 0), -EBADF);
}

TEST_F(Syscalls, DescriptorEdgeCases) {
    EXPECT_EQ(call(SYS_close, 1ull << 40), -EBADF);
    EXPECT_EQ(call(SYS_dup2, 0, 1ull << 40), -EBADF);
    EXPECT_EQ(call(SYS_fcntl, 0, F_DUPFD, 1ull << 40), -EBADF);  // fd 0 is not attached here
    int64_t fd = call(SYS_open, str("/file"), O_RDONLY);
    EXPECT_EQ(call(SYS_fcntl, fd, F_DUPFD, FdTable::kMaxFds), -EINVAL);
    EXPECT_EQ(call(SYS_dup3, fd, fd, 0), -EINVAL);
    EXPECT_EQ(call(SYS_getdents64, fd, kScratch, 4096), -ENOTDIR);
    int64_t d = call(SYS_open, str("/d"), O_RDONLY | O_DIRECTORY);
    ASSERT_GE(d, 0);
    EXPECT_EQ(call(SYS_read, d, kScratch, 10), -EISDIR);
    EXPECT_GT(call(SYS_getdents64, d, kScratch, 1ull << 40), 0);  // a huge count is capped, not trusted
    EXPECT_EQ(call(SYS_ioctl, fd, 0x5401 /* TCGETS */, kScratch), -ENOTTY);
}

// Metadata changes through a descriptor obey the read-only root exactly like
// those through a path; set-ID bits never reach host files.
TEST_F(Syscalls, DescriptorsCannotChangeTheReadOnlyRoot) {
    struct stat before {};
    ASSERT_EQ(::stat((dir_ + "/root/file").c_str(), &before), 0);
    int64_t fd = call(SYS_open, str("/file"), O_RDONLY);
    ASSERT_GE(fd, 0);
    EXPECT_EQ(call(SYS_utimensat, static_cast<uint64_t>(fd), 0, 0, 0), -EROFS);  // futimens(fd, NULL)
    EXPECT_EQ(call(SYS_fchmod, static_cast<uint64_t>(fd), 0777), -EROFS);
    EXPECT_EQ(call(SYS_fchown, static_cast<uint64_t>(fd), ::getuid(), ::getgid()), -EROFS);
    struct stat after {};
    ASSERT_EQ(::stat((dir_ + "/root/file").c_str(), &after), 0);
    EXPECT_EQ(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
    EXPECT_EQ(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
    EXPECT_EQ(after.st_mode, before.st_mode);

    int64_t out = call(SYS_open, str("/w/suid"), O_CREAT | O_WRONLY, 06755);
    ASSERT_GE(out, 0);
    EXPECT_EQ(call(SYS_fchmod, static_cast<uint64_t>(out), 04755), 0);
    EXPECT_EQ(call(SYS_chmod, str("/w/suid"), 02755), 0);
    EXPECT_EQ(call(SYS_mkdir, str("/w/sgid-dir"), 02755), 0);
    struct stat st {};
    ASSERT_EQ(::stat((dir_ + "/rw/suid").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & (S_ISUID | S_ISGID), 0u);
    ASSERT_EQ(::stat((dir_ + "/rw/sgid-dir").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & (S_ISUID | S_ISGID), 0u);
}

// Issue 16, item 7: file gaps real programs found.

TEST_F(Syscalls, MkdirOfAnExistingDirectoryOnAReadOnlyMountIsEEXIST) {
    EXPECT_EQ(call(SYS_mkdir, str("/d"), 0755), -EEXIST);  // `mkdir -p /d/x` goes on
    EXPECT_EQ(call(SYS_mkdir, str("/d/"), 0755), -EEXIST);
    EXPECT_EQ(call(SYS_mkdir, str("/file"), 0755), -EEXIST);  // any file, as Linux
    EXPECT_EQ(call(SYS_mkdir, str("/new"), 0755), -EROFS);    // a new name still cannot be made
}

TEST_F(Syscalls, HardLinksStayInsideOneWritableMount) {
    std::string rw = dir_ + "/rw";
    std::filesystem::create_directories(rw + "/sub");
    { std::ofstream(rw + "/a") << "data"; }
    ASSERT_EQ(call(SYS_link, str("/w/a"), str("/w/b", 1)), 0);
    struct stat a, b;
    ASSERT_EQ(::stat((rw + "/a").c_str(), &a), 0);
    ASSERT_EQ(::stat((rw + "/b").c_str(), &b), 0);
    EXPECT_EQ(a.st_ino, b.st_ino);
    EXPECT_EQ(a.st_nlink, 2u);
    EXPECT_EQ(call(SYS_link, str("/w/a"), str("/w/b", 1)), -EEXIST);
    EXPECT_EQ(call(SYS_link, str("/file"), str("/w/c", 1)), -EXDEV);   // from the read-only root
    EXPECT_EQ(call(SYS_link, str("/w/a"), str("/c", 1)), -EROFS);      // into it
    EXPECT_EQ(call(SYS_link, str("/w/sub"), str("/w/d", 1)), -EPERM);  // a directory
    EXPECT_EQ(call(SYS_link, str("/w/none"), str("/w/e", 1)), -ENOENT);
    // linkat: AT_SYMLINK_FOLLOW links what the link names, resolved in the
    // sandbox: an absolute target stays inside the mount, never the host's.
    ASSERT_EQ(::symlink("a", (rw + "/to-a").c_str()), 0);
    ASSERT_EQ(::symlink((dir_ + "/root/file").c_str(), (rw + "/to-host").c_str()), 0);
    EXPECT_EQ(call(SYS_linkat, AT_FDCWD, str("/w/to-a"), AT_FDCWD, str("/w/f", 1), AT_SYMLINK_FOLLOW), 0);
    struct stat f;
    ASSERT_EQ(::lstat((rw + "/f").c_str(), &f), 0);
    EXPECT_EQ(f.st_ino, a.st_ino) << "the file, not the symlink";
    EXPECT_EQ(call(SYS_linkat, AT_FDCWD, str("/w/to-host"), AT_FDCWD, str("/w/g", 1), AT_SYMLINK_FOLLOW), -ENOENT);
    EXPECT_EQ(call(SYS_linkat, AT_FDCWD, str("/w/to-a"), AT_FDCWD, str("/w/h", 1), 0), 0);
    ASSERT_EQ(::lstat((rw + "/h").c_str(), &f), 0);
    EXPECT_TRUE(S_ISLNK(f.st_mode)) << "without the flag, the symlink itself";
    EXPECT_EQ(call(SYS_linkat, AT_FDCWD, str("/w/a"), AT_FDCWD, str("/w/i", 1), AT_EMPTY_PATH), -ENOENT);
    EXPECT_EQ(call(SYS_linkat, AT_FDCWD, str("/w/a"), AT_FDCWD, str("/w/i", 1), 0x8000), -EINVAL);
    EXPECT_EQ(call(SYS_link, kUnmapped, str("/w/j", 1)), -EFAULT);
}

TEST_F(Syscalls, TheGuestHasNoSupplementaryGroups) {
    EXPECT_EQ(call(SYS_getgroups, 0, 0), 0);
    EXPECT_EQ(call(SYS_getgroups, 16, kScratch), 0);
    EXPECT_EQ(call(SYS_getgroups, ~0ull, kScratch), -EINVAL);
    EXPECT_EQ(call(SYS_setgroups, 1, kScratch), -EPERM);
    EXPECT_EQ(call(SYS_setgroups, 1u << 20, kScratch), -EINVAL);
    // Dropping them all: allowed to uid 0 only (this test's guest has the
    // uid of whoever runs the test).
    EXPECT_EQ(call(SYS_setgroups, 0, 0), ::getuid() == 0 ? 0 : -EPERM);
}

TEST_F(Syscalls, MunmapUnmapsThePartOfARangeAboveMmapMinAddr) {
    constexpr uint64_t kMin = memory::AddressSpace::kMmapMin;
    ASSERT_TRUE(as_->map_fixed(kMin, 4 * 4096, memory::kProtRead | memory::kProtWrite).has_value());
    EXPECT_EQ(call(SYS_munmap, 0, kMin), 0);  // nothing of the guest's there
    EXPECT_TRUE(as_->is_mapped(kMin, 4 * 4096));
    EXPECT_EQ(call(SYS_munmap, 0, kMin + 2 * 4096), 0);
    EXPECT_FALSE(as_->is_mapped(kMin, 4096));
    EXPECT_FALSE(as_->is_mapped(kMin + 4096, 4096));
    EXPECT_TRUE(as_->is_mapped(kMin + 2 * 4096, 2 * 4096)) << "beyond the range: kept";
}

// Issue 16, item 6: a /proc of the VM's own, nothing from the host's.

TEST_F(Syscalls, ProcFilesDescribeTheVmNotTheHost) {
    auto read_all = [&](const std::string& path) {
        int64_t fd = call(SYS_open, str(path), O_RDONLY);
        if (fd < 0) return "error " + std::to_string(fd);
        std::string out;
        for (;;) {
            int64_t n = call(SYS_read, fd, kScratch + 4096, 4096);
            if (n <= 0) break;
            std::string chunk(static_cast<size_t>(n), '\0');
            as_->view().read(kScratch + 4096, chunk.data(), chunk.size());
            out += chunk;
        }
        call(SYS_close, fd);
        return out;
    };
    std::string meminfo = read_all("/proc/meminfo");
    EXPECT_NE(meminfo.find("MemTotal:          16384 kB"), std::string::npos) << meminfo;  // the VM's 16 MiB
    EXPECT_NE(read_all("/proc/self/status").find("Pid:\t1\n"), std::string::npos);
    EXPECT_EQ(read_all("/proc/1/stat").substr(0, 11), "1 (prog) R ");
    EXPECT_EQ(read_all("/proc/self/cmdline"), std::string("prog\0-x\0", 8));
    EXPECT_EQ(read_all("/proc/self/environ"), std::string("A=1\0B=2\0", 8));
    EXPECT_EQ(read_all("/proc/self/comm"), "prog\n");
    std::string maps = read_all("/proc/self/maps");
    EXPECT_NE(maps.find("010000000-"), std::string::npos) << maps;  // the scratch mapping, kScratch
    std::string mounts = read_all("/proc/mounts");
    EXPECT_NE(mounts.find("vessel / vessel ro"), std::string::npos) << mounts;
    EXPECT_NE(mounts.find("vessel /w vessel rw"), std::string::npos) << mounts;
    // mountinfo as proc(5) lays it out (df and findmnt read it): ids, the
    // device, root, mount point, options, "-", type, source, options.
    std::string info = read_all("/proc/self/mountinfo");
    EXPECT_NE(info.find("1 1 0:101 / / ro,nosuid,nodev - vessel vessel ro\n"), std::string::npos) << info;
    EXPECT_NE(info.find(" / /w rw,nosuid,nodev - vessel vessel rw\n"), std::string::npos) << info;
    EXPECT_NE(info.find(" / /proc ro,nosuid,nodev,noexec - proc proc ro\n"), std::string::npos) << info;
    EXPECT_EQ(read_all("/proc/sys/kernel/ostype"), "Linux\n");
    EXPECT_EQ(read_all("/proc/cpuinfo").find("processor\t: 0"), 0u);
    // Nothing else of the host's /proc, and nothing writable.
    EXPECT_EQ(call(SYS_open, str("/proc/version_signature"), O_RDONLY), -ENOENT);
    EXPECT_EQ(call(SYS_open, str("/proc/2/status"), O_RDONLY), -ENOENT);
    EXPECT_EQ(call(SYS_open, str("/proc/sys/kernel/pid_max"), O_WRONLY), -EACCES);
    EXPECT_EQ(call(SYS_open, str("/proc/meminfo"), O_RDONLY | O_CREAT, 0644), -EACCES);
    int64_t fd = call(SYS_open, str("/proc/meminfo"), O_RDONLY);
    ASSERT_GE(fd, 0);
    EXPECT_EQ(call(SYS_write, fd, kScratch, 1), -EBADF);
    // stat sees a file; readlink answers the process links.
    EXPECT_EQ(call(SYS_stat, str("/proc/uptime"), kScratch + 8192), 0);
    EXPECT_EQ(call(SYS_readlink, str("/proc/self"), kScratch + 8192, 64), 1);
    EXPECT_EQ(call(SYS_readlink, str("/proc/self/cwd"), kScratch + 8192, 64), 1);  // "/"
    EXPECT_EQ(call(SYS_readlink, str("/proc/self/fd/" + std::to_string(fd)), kScratch + 8192, 64),
              static_cast<int64_t>(std::string("/proc/meminfo").size()));
    EXPECT_EQ(call(SYS_readlink, str("/proc/meminfo"), kScratch + 8192, 64), -EINVAL);
    EXPECT_EQ(call(SYS_readlink, str("/proc/self/fd/999"), kScratch + 8192, 64), -ENOENT);
}

TEST_F(Syscalls, ProcDirectoriesListTheVmsOwnEntries) {
    // getdents64 of a guest directory: the names, in order.
    auto names = [&](const std::string& path) {
        std::vector<std::string> out;
        int64_t fd = call(SYS_open, str(path), O_RDONLY | O_DIRECTORY);
        if (fd < 0) return std::vector<std::string>{"error " + std::to_string(fd)};
        for (;;) {
            int64_t n = call(SYS_getdents64, fd, kScratch + 4096, 100);  // small: several calls
            if (n <= 0) {
                if (n < 0) out.push_back("error " + std::to_string(n));
                break;
            }
            std::vector<char> buf(static_cast<size_t>(n));
            as_->view().read(kScratch + 4096, buf.data(), buf.size());
            for (size_t at = 0; at < buf.size();) {
                uint16_t reclen;
                std::memcpy(&reclen, &buf[at + 16], 2);
                out.push_back(std::string(&buf[at + 19]));
                at += reclen;
            }
        }
        call(SYS_close, fd);
        return out;
    };
    using V = std::vector<std::string>;
    EXPECT_EQ(names("/proc"), (V{".", "..", "1", "self", "sys", "cpuinfo", "filesystems", "loadavg", "meminfo",
                                 "mounts", "stat", "uptime"}));
    EXPECT_EQ(names("/proc/sys/kernel"), (V{".", "..", "hostname", "osrelease", "ostype", "pid_max"}));
    EXPECT_EQ(names("/proc/self"), (V{".", "..", "cmdline", "comm", "environ", "maps", "mounts", "mountinfo", "stat",
                                      "status", "cwd", "fd"}));
    int64_t held = call(SYS_open, str("/file"), O_RDONLY);
    ASSERT_GE(held, 0);
    EXPECT_EQ(names("/proc/1/fd"), (V{".", "..", std::to_string(held), std::to_string(held + 1)}))
        << "the open file and the directory being read";
    // Every file listed opens; directories refuse what they must.
    for (const auto& n : names("/proc"))
        if (n != "." && n != ".." && n != "self") {
            EXPECT_GE(call(SYS_open, str("/proc/" + n), O_RDONLY), 0) << n;
        }
    EXPECT_EQ(call(SYS_open, str("/proc/meminfo"), O_RDONLY | O_DIRECTORY), -ENOTDIR);
    EXPECT_EQ(call(SYS_open, str("/proc/sys"), O_WRONLY), -EISDIR);
    EXPECT_EQ(call(SYS_open, str("/proc/nothing"), O_RDONLY | O_DIRECTORY), -ENOENT);
    // A directory stats as one, and rewinds.
    int64_t fd = call(SYS_open, str("/proc"), O_RDONLY | O_DIRECTORY);
    ASSERT_GE(fd, 0);
    struct stat st;
    ASSERT_EQ(call(SYS_fstat, fd, kScratch + 8192), 0);
    as_->view().read(kScratch + 8192, &st, sizeof st);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    EXPECT_GT(call(SYS_getdents64, fd, kScratch + 4096, 4096), 0);
    EXPECT_EQ(call(SYS_getdents64, fd, kScratch + 4096, 4096), 0);
    EXPECT_EQ(call(SYS_lseek, fd, 0, SEEK_SET), 0);
    EXPECT_GT(call(SYS_getdents64, fd, kScratch + 4096, 4096), 0);
    EXPECT_EQ(call(SYS_lseek, fd, 0, SEEK_SET), 0);
    EXPECT_EQ(call(SYS_getdents64, fd, kScratch + 4096, 8), -EINVAL);  // not even one record fits
    EXPECT_EQ(call(SYS_getdents64, fd, kReadOnly, 4096), -EFAULT);
    EXPECT_EQ(call(SYS_stat, str("/proc/self"), kScratch + 8192), 0);
}

// Issue 17, item 2 (event loops), the single-threaded part: poll, ppoll,
// select and pselect6 on the guest's descriptors.
TEST_F(Syscalls, PollFamilyWaitsOnTheGuestsDescriptors) {
    ASSERT_EQ(call(SYS_pipe2, kScratch + 8192, O_NONBLOCK), 0);
    int fds[2];
    as_->view().read(kScratch + 8192, fds, sizeof fds);
    const uint64_t list = kScratch + 12288;
    auto put = [&](std::vector<pollfd> v) { as_->view().write(list, v.data(), v.size() * sizeof(pollfd)); };
    auto revents = [&](int i) {
        pollfd f;
        as_->view().read(list + i * sizeof(pollfd), &f, sizeof f);
        return f.revents;
    };
    // Nothing to read yet; the write end is writable; a closed descriptor
    // is POLLNVAL; a negative one is skipped.
    put({{fds[0], POLLIN, 0}, {fds[1], POLLOUT, 0}, {77, POLLIN, 0}, {-1, POLLIN, 0}});
    EXPECT_EQ(call(SYS_poll, list, 4, 0), 2);
    EXPECT_EQ(revents(0), 0);
    EXPECT_EQ(revents(1), POLLOUT);
    EXPECT_EQ(revents(2), POLLNVAL);
    EXPECT_EQ(revents(3), 0);
    // A byte makes the read end ready, for poll and ppoll alike.
    as_->view().write(kScratch, "x", 1);
    ASSERT_EQ(call(SYS_write, fds[1], kScratch, 1), 1);
    put({{fds[0], POLLIN, 0}});
    EXPECT_EQ(call(SYS_poll, list, 1, -1), 1);  // would wait for ever otherwise
    EXPECT_EQ(revents(0), POLLIN);
    timespec ts{5, 0};
    as_->view().write(kScratch + 16384, &ts, sizeof ts);
    EXPECT_EQ(call(SYS_ppoll, list, 1, kScratch + 16384, 0, 8), 1);
    // A timeout: waited, and the time left (none) stored back.
    ASSERT_EQ(call(SYS_read, fds[0], kScratch, 1), 1);
    ts = {0, 20'000'000};
    as_->view().write(kScratch + 16384, &ts, sizeof ts);
    auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(call(SYS_ppoll, list, 1, kScratch + 16384, 0, 8), 0);
    EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(19));
    as_->view().read(kScratch + 16384, &ts, sizeof ts);
    EXPECT_EQ(ts.tv_sec, 0);
    EXPECT_LT(ts.tv_nsec, 20'000'000);
    // Hostile arguments.
    EXPECT_EQ(call(SYS_poll, list, FdTable::kMaxFds + 1, 0), -EINVAL);
    EXPECT_EQ(call(SYS_poll, kUnmapped, 1, 0), -EFAULT);
    EXPECT_EQ(call(SYS_poll, kReadOnly, 1, 0), -EFAULT) << "revents cannot be stored";
    EXPECT_EQ(call(SYS_ppoll, list, 1, kUnmapped, 0, 8), -EFAULT);
    ts = {0, 1'000'000'000};
    as_->view().write(kScratch + 16384, &ts, sizeof ts);
    EXPECT_EQ(call(SYS_ppoll, list, 1, kScratch + 16384, 0, 8), -EINVAL);
    EXPECT_EQ(call(SYS_ppoll, list, 1, 0, kScratch, 7), -EINVAL) << "sigsetsize";
    EXPECT_EQ(call(SYS_poll, 0, 0, 0), 0) << "no descriptors: a plain sleep";
}

TEST_F(Syscalls, SelectIsPollWithBitSets) {
    ASSERT_EQ(call(SYS_pipe2, kScratch + 8192, O_NONBLOCK), 0);
    int fds[2];
    as_->view().read(kScratch + 8192, fds, sizeof fds);
    const uint64_t rd = kScratch + 12288, wr = rd + 128, tv_at = rd + 256;
    auto set = [&](uint64_t at, std::initializer_list<int> bits) {
        fd_set s;
        FD_ZERO(&s);
        for (int b : bits) FD_SET(b, &s);
        as_->view().write(at, &s, sizeof s);
    };
    auto isset = [&](uint64_t at, int b) {
        fd_set s;
        as_->view().read(at, &s, sizeof s);
        return FD_ISSET(b, &s) != 0;
    };
    int n = std::max(fds[0], fds[1]) + 1;
    set(rd, {fds[0]});
    set(wr, {fds[1]});
    timeval tv{0, 0};
    as_->view().write(tv_at, &tv, sizeof tv);
    EXPECT_EQ(call(SYS_select, n, rd, wr, 0, tv_at), 1);
    EXPECT_FALSE(isset(rd, fds[0]));
    EXPECT_TRUE(isset(wr, fds[1]));
    as_->view().write(kScratch, "x", 1);
    ASSERT_EQ(call(SYS_write, fds[1], kScratch, 1), 1);
    set(rd, {fds[0]});
    set(wr, {fds[1]});
    EXPECT_EQ(call(SYS_select, n, rd, wr, 0, 0), 2);
    EXPECT_TRUE(isset(rd, fds[0]));
    // pselect6 the same, with a timespec and the {mask, size} pair.
    set(rd, {fds[0]});
    timespec ts{1, 0};
    as_->view().write(tv_at, &ts, sizeof ts);
    uint64_t sig[2] = {0, 8};
    as_->view().write(rd + 512, sig, sizeof sig);
    EXPECT_EQ(call(SYS_pselect6, n, rd, 0, 0, tv_at, rd + 512), 1);
    // A descriptor that is not open is EBADF for select (POLLNVAL for poll).
    set(rd, {60});
    EXPECT_EQ(call(SYS_select, 61, rd, 0, 0, 0), -EBADF);
    EXPECT_EQ(call(SYS_select, -1, 0, 0, 0, 0), -EINVAL);
    EXPECT_EQ(call(SYS_select, FD_SETSIZE + 1, 0, 0, 0, 0), -EINVAL);
    EXPECT_EQ(call(SYS_select, n, kUnmapped, 0, 0, 0), -EFAULT);
    tv = {0, 1'000'000};
    as_->view().write(tv_at, &tv, sizeof tv);
    EXPECT_EQ(call(SYS_select, 0, 0, 0, 0, tv_at), -EINVAL) << "tv_usec out of range";
}

TEST_F(Syscalls, EpollEventfdAndTimerfdAreHostDescriptorsOfTheSameKind) {
    int64_t ep = call(SYS_epoll_create1, EPOLL_CLOEXEC);
    ASSERT_GE(ep, 0);
    int64_t ev = call(SYS_eventfd2, 0, EFD_NONBLOCK);
    ASSERT_GE(ev, 0);
    const uint64_t event_at = kScratch + 8192, out = kScratch + 12288;
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.u64 = 0x1122334455667788;  // the guest's, handed back untouched
    as_->view().write(event_at, &e, sizeof e);
    ASSERT_EQ(call(SYS_epoll_ctl, ep, EPOLL_CTL_ADD, ev, event_at), 0);
    EXPECT_EQ(call(SYS_epoll_ctl, ep, EPOLL_CTL_ADD, ev, event_at), -EEXIST);
    EXPECT_EQ(call(SYS_epoll_wait, ep, out, 8, 0), 0);
    // An eventfd write makes it readable; the wait says so with our data.
    uint64_t one = 1;
    as_->view().write(kScratch, &one, sizeof one);
    ASSERT_EQ(call(SYS_write, ev, kScratch, 8), 8);
    ASSERT_EQ(call(SYS_epoll_wait, ep, out, 8, -1), 1);
    epoll_event got;
    as_->view().read(out, &got, sizeof got);
    EXPECT_EQ(got.events, uint32_t{EPOLLIN});
    EXPECT_EQ(got.data.u64, 0x1122334455667788u);
    EXPECT_EQ(call(SYS_epoll_pwait, ep, out, 8, 0, 0, 8), 1);
    // Reading the count empties it again.
    ASSERT_EQ(call(SYS_read, ev, kScratch, 8), 8);
    EXPECT_EQ(call(SYS_epoll_wait, ep, out, 8, 0), 0);
    // timerfd: armed for 10 ms, readable after, with the expiry count.
    int64_t tf = call(SYS_timerfd_create, CLOCK_MONOTONIC, TFD_NONBLOCK);
    ASSERT_GE(tf, 0);
    itimerspec its{{0, 0}, {0, 10'000'000}};
    as_->view().write(kScratch + 16384, &its, sizeof its);
    ASSERT_EQ(call(SYS_timerfd_settime, tf, 0, kScratch + 16384, 0), 0);
    e.data.u64 = 7;
    as_->view().write(event_at, &e, sizeof e);
    ASSERT_EQ(call(SYS_epoll_ctl, ep, EPOLL_CTL_ADD, tf, event_at), 0);
    timespec ts{2, 0};
    as_->view().write(kScratch + 20480, &ts, sizeof ts);
    ASSERT_EQ(call(SYS_epoll_pwait2, ep, out, 8, kScratch + 20480, 0, 8), 1);
    as_->view().read(out, &got, sizeof got);
    EXPECT_EQ(got.data.u64, 7u);
    EXPECT_EQ(call(SYS_read, tf, kScratch, 8), 8);
    EXPECT_EQ(call(SYS_timerfd_gettime, tf, kScratch + 16384), 0);
    // Closing the guest's last descriptor of a file drops it from the set.
    ASSERT_EQ(call(SYS_close, ev), 0);
    ASSERT_EQ(call(SYS_close, tf), 0);
    EXPECT_EQ(call(SYS_epoll_wait, ep, out, 8, 0), 0);
    // Hostile arguments.
    EXPECT_EQ(call(SYS_epoll_wait, ep, out, 0, 0), -EINVAL);
    EXPECT_EQ(call(SYS_epoll_wait, ep, kReadOnly, 1, 0), -EFAULT);
    EXPECT_EQ(call(SYS_epoll_wait, 77, out, 1, 0), -EBADF);
    EXPECT_EQ(call(SYS_epoll_ctl, ep, EPOLL_CTL_ADD, ep, event_at), -EINVAL);
    EXPECT_EQ(call(SYS_epoll_ctl, ep, EPOLL_CTL_ADD, 0, kUnmapped), -EFAULT);
    EXPECT_EQ(call(SYS_epoll_create1, 1), -EINVAL);
    EXPECT_EQ(call(SYS_epoll_create, 0), -EINVAL);
    EXPECT_EQ(call(SYS_eventfd2, 0, 0x7), -EINVAL);
    EXPECT_EQ(call(SYS_timerfd_create, CLOCK_PROCESS_CPUTIME_ID, 0), -EINVAL);
    EXPECT_EQ(call(SYS_epoll_pwait, ep, out, 1, 0, kScratch, 4), -EINVAL) << "sigsetsize";
    ts = {0, 2'000'000'000};
    as_->view().write(kScratch + 20480, &ts, sizeof ts);
    EXPECT_EQ(call(SYS_epoll_pwait2, ep, out, 1, kScratch + 20480, 0, 8), -EINVAL);
    // A snapshot names what it cannot hold.
    auto snap = p_->capture();
    ASSERT_FALSE(snap.has_value());
    EXPECT_NE(snap.error().message.find("is an epoll set"), std::string::npos) << snap.error().message;
    // A regular file cannot be watched, as on Linux.
    int64_t file = call(SYS_open, str("/file"), O_RDONLY);
    ASSERT_GE(file, 0);
    EXPECT_EQ(call(SYS_epoll_ctl, ep, EPOLL_CTL_ADD, file, event_at), -EPERM);
}

// Issue 17, sockets: the AF_UNIX pairs event loops make to wake themselves.
TEST_F(Syscalls, SocketPairsCarryStreamsAndDatagrams) {
    const uint64_t sv = kScratch + 8192;
    ASSERT_EQ(call(SYS_socketpair, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    int s[2];
    as_->view().read(sv, s, sizeof s);
    as_->view().write(kScratch, "hello", 5);
    EXPECT_EQ(call(SYS_sendto, s[0], kScratch, 5, MSG_DONTWAIT, 0, 0), 5);
    EXPECT_EQ(call(SYS_recvfrom, s[1], kScratch + 100, 64, 0, 0, 0), 5);
    char got[6] = {};
    as_->view().read(kScratch + 100, got, 5);
    EXPECT_STREQ(got, "hello");
    // read/write work on them too (they are descriptors like any other).
    EXPECT_EQ(call(SYS_write, s[1], kScratch, 5), 5);
    EXPECT_EQ(call(SYS_read, s[0], kScratch + 100, 64), 5);
    // getsockopt: the type; an option outside the list is refused.
    const uint64_t val = kScratch + 200, len = kScratch + 300;
    uint32_t room = 4;
    as_->view().write(len, &room, sizeof room);
    ASSERT_EQ(call(SYS_getsockopt, s[0], SOL_SOCKET, SO_TYPE, val, len), 0);
    int type;
    as_->view().read(val, &type, sizeof type);
    EXPECT_EQ(type, SOCK_STREAM);
    EXPECT_EQ(call(SYS_getsockopt, s[0], SOL_SOCKET, SO_PEERCRED, val, len), -ENOPROTOOPT);
    EXPECT_EQ(call(SYS_setsockopt, s[0], SOL_SOCKET, SO_SNDBUF, val, 4), 0);
    // A closed peer is EPIPE for the guest, not a SIGPIPE for the VMM.
    ASSERT_EQ(call(SYS_close, s[1]), 0);
    EXPECT_EQ(call(SYS_sendto, s[0], kScratch, 5, 0, 0, 0), -EPIPE);

    // Datagrams keep their boundaries, even sent from two iovecs.
    ASSERT_EQ(call(SYS_socketpair, AF_UNIX, SOCK_DGRAM, 0, sv), 0);
    as_->view().read(sv, s, sizeof s);
    iovec two[2] = {{reinterpret_cast<void*>(kScratch), 3}, {reinterpret_cast<void*>(kScratch + 3), 2}};
    as_->view().write(kScratch + 400, two, sizeof two);
    msghdr m{};
    m.msg_iov = reinterpret_cast<iovec*>(kScratch + 400);
    m.msg_iovlen = 2;
    as_->view().write(kScratch + 500, &m, sizeof m);
    EXPECT_EQ(call(SYS_sendmsg, s[0], kScratch + 500, 0), 5);
    EXPECT_EQ(call(SYS_sendto, s[0], kScratch, 1, 0, 0, 0), 1);
    EXPECT_EQ(call(SYS_recvfrom, s[1], kScratch + 100, 64, 0, 0, 0), 5) << "one datagram";
    EXPECT_EQ(call(SYS_recvfrom, s[1], kScratch + 100, 64, 0, 0, 0), 1);
    // recvmsg writes back msg_flags and no control data.
    EXPECT_EQ(call(SYS_sendto, s[0], kScratch, 5, 0, 0, 0), 5);
    m.msg_iov = reinterpret_cast<iovec*>(kScratch + 400);
    m.msg_iovlen = 1;
    m.msg_controllen = 99;
    as_->view().write(kScratch + 500, &m, sizeof m);
    EXPECT_EQ(call(SYS_recvmsg, s[1], kScratch + 500, 0), 3);
    as_->view().read(kScratch + 500, &m, sizeof m);
    EXPECT_EQ(m.msg_controllen, 0u);
    EXPECT_EQ(m.msg_flags & MSG_TRUNC, MSG_TRUNC) << "5 bytes into 3";

    // Refused: other families, addresses, control messages, bad pointers.
    EXPECT_EQ(call(SYS_socketpair, AF_INET, SOCK_STREAM, 0, sv), -EAFNOSUPPORT);
    EXPECT_EQ(call(SYS_socketpair, AF_UNIX, 77, 0, sv), -EINVAL);
    EXPECT_EQ(call(SYS_socketpair, AF_UNIX, SOCK_STREAM, 0, kReadOnly), -EFAULT);
    EXPECT_EQ(call(SYS_sendto, s[0], kScratch, 1, 0, kScratch, 16), -EISCONN);
    m.msg_controllen = 16;
    m.msg_control = reinterpret_cast<void*>(kScratch);
    as_->view().write(kScratch + 500, &m, sizeof m);
    EXPECT_EQ(call(SYS_sendmsg, s[0], kScratch + 500, 0), -EOPNOTSUPP);
    EXPECT_EQ(call(SYS_sendmsg, s[0], kUnmapped, 0), -EFAULT);
    EXPECT_EQ(call(SYS_sendto, s[0], kUnmapped, 8, 0, 0, 0), -EFAULT);
    EXPECT_EQ(call(SYS_recvfrom, s[1], kReadOnly, 8, MSG_DONTWAIT, 0, 0), -EFAULT);
    EXPECT_EQ(call(SYS_sendto, s[0], kScratch, 1, 0x40000000, 0, 0), -EOPNOTSUPP) << "an unknown flag";
    EXPECT_EQ(call(SYS_shutdown, 77, SHUT_RDWR), -EBADF);
}

}  // namespace
}  // namespace vessel::thin

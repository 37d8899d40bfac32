// The declarative syscall table (src/thin/syscall_table.inc): numbers and
// names, the effect bits Process::handle acts on, and the typed argument
// views' positions. No KVM needed.
#include <fcntl.h>
#include <sys/syscall.h>

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "thin/syscall_table.h"

namespace vessel::thin {
namespace {

std::set<std::string> calls_with(uint8_t effect_bit) {
    std::set<std::string> out;
    for (unsigned nr = 0; nr < kMaxSyscall; ++nr)
        if (const SyscallInfo* info = syscall_table().find(nr); info->effect & effect_bit) out.emplace(info->name);
    return out;
}

TEST(SyscallTable, IndexedByLinuxNumbers) {
    EXPECT_EQ(syscall_table().find(SYS_read)->name, "read");
    EXPECT_EQ(syscall_table().find(SYS_faccessat2)->name, "faccessat2");
    EXPECT_EQ(syscall_table().find(SYS_exit_group)->name, "exit_group");
    for (unsigned nr = 0; nr < kMaxSyscall; ++nr) EXPECT_EQ(syscall_table().find(nr)->nr, nr);
    EXPECT_EQ(syscall_table().find(kMaxSyscall), nullptr);
    EXPECT_EQ(syscall_table().find(~0ull), nullptr);
}

TEST(SyscallTable, CallsWithoutHandlerAreUnsupportedButNamed) {
    const SyscallInfo* ptrace = syscall_table().find(SYS_ptrace);
    EXPECT_EQ(ptrace->handler, nullptr);
    EXPECT_EQ(ptrace->status, SyscallStatus::kUnsupported);
    EXPECT_EQ(syscall_name(SYS_ptrace), "ptrace");
    EXPECT_EQ(status_name(ptrace->status), "unsupported");
    EXPECT_EQ(syscall_name(1000), "unknown");
}

TEST(SyscallTable, EveryEntryIsComplete) {
    for (unsigned nr = 0; nr < kMaxSyscall; ++nr) {
        const SyscallInfo* info = syscall_table().find(nr);
        if (!info->handler) {
            EXPECT_EQ(info->effect, kSettles) << nr;
            continue;
        }
        EXPECT_NE(info->status, SyscallStatus::kUnsupported) << info->name;
        EXPECT_LE(info->args.size(), 6u) << info->name;
        // What is missing from a partial or stub call is worth a line.
        if (info->status != SyscallStatus::kFull) {
            EXPECT_FALSE(info->note.empty()) << info->name;
        }
    }
}

// The effect bits replace two switches Process::handle had on the number;
// these are the sets those switches listed.
TEST(SyscallTable, EffectsAreTheCallsThatTouchTheEntryCodesState) {
    EXPECT_EQ(calls_with(kRemaps), (std::set<std::string>{"mmap", "munmap", "mprotect", "mremap"}));
    EXPECT_EQ(calls_with(kMovesBreak), (std::set<std::string>{"brk"}));
    EXPECT_EQ(calls_with(kWindowSafeElsewhere), (std::set<std::string>{"write", "writev", "pwrite64"}));
    // ... and the signal and timer calls added since, which touch no file or mapping.
    EXPECT_EQ(calls_with(kWindowSafe),
              (std::set<std::string>{
                  "pread64",       "fstat",         "newfstatat",      "statx",     "clock_gettime", "gettimeofday",
                  "time",          "nanosleep",     "clock_nanosleep", "getrandom", "sched_yield",   "rt_sigprocmask",
                  "rt_sigaction",  "getpid",        "gettid",          "getppid",   "getuid",        "geteuid",
                  "getgid",        "getegid",       "getgroups",       "uname",     "getcwd",        "pause",
                  "rt_sigsuspend", "rt_sigpending", "alarm",           "getitimer", "setitimer"}));
}

TEST(SyscallArgsViews, NameTheRegistersLinuxUses) {
    const SyscallArgs pread{SYS_pread64, {3, 0x1000, 10, ~0ull, 0, 0}};
    EXPECT_EQ(IoArgs(pread).fd(), 3u);
    EXPECT_EQ(IoArgs(pread).buf(), 0x1000u);
    EXPECT_EQ(IoArgs(pread).count(), 10u);
    EXPECT_EQ(IoArgs(pread).offset(), -1);
    // A directory descriptor is the register's low 32 bits, signed: AT_FDCWD.
    const SyscallArgs openat{SYS_openat, {0xffffff9c, 0x2000, O_RDONLY, 0644, 0, 0}};
    EXPECT_EQ(OpenatArgs(openat).dirfd(), AT_FDCWD);
    EXPECT_EQ(OpenatArgs(openat).path(), 0x2000u);
    EXPECT_EQ(OpenatArgs(openat).mode(), 0644u);
    // A plain descriptor stays the full register, for file_of() to refuse.
    const SyscallArgs close{SYS_close, {1ull << 40, 0, 0, 0, 0, 0}};
    EXPECT_EQ(FdArgs(close).fd(), 1ull << 40);
    const SyscallArgs renameat2{SYS_renameat2, {1, 2, 3, 4, 5, 0}};
    EXPECT_EQ(RenameatArgs(renameat2).olddirfd(), 1);
    EXPECT_EQ(RenameatArgs(renameat2).oldpath(), 2u);
    EXPECT_EQ(RenameatArgs(renameat2).newdirfd(), 3);
    EXPECT_EQ(RenameatArgs(renameat2).newpath(), 4u);
    EXPECT_EQ(RenameatArgs(renameat2).flags(), 5u);
    const SyscallArgs statx{SYS_statx, {1, 2, 3, 4, 5, 0}};
    EXPECT_EQ(StatxArgs(statx).flags(), 3u);
    EXPECT_EQ(StatxArgs(statx).mask(), 4u);
    EXPECT_EQ(StatxArgs(statx).buf(), 5u);
}

}  // namespace
}  // namespace vessel::thin

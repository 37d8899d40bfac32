// Runs a thin guest's system calls from fuzz input against a real Process
// (thin/process.h) without KVM, as tests/thin/syscalls_test.cc does: guest
// memory and page tables are real, the vCPU is a stub, files live in a
// scratch sandbox. One family's calls (thin/syscall_table.inc) per target.
#pragma once

#include <fcntl.h>
#include <sys/syscall.h>
#include <time.h>

#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string_view>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "thin/process.h"
#include "thin/syscall_table.h"

namespace vessel::fuzz {

inline constexpr uint64_t kScratch = 0x1000'0000;  // 64 KiB read-write
inline constexpr uint64_t kScratchSize = 16 * 4096;
inline constexpr uint64_t kReadOnly = 0x2000'0000;  // one read-only page
inline constexpr uint64_t kUnmapped = 0x3000'0000;
inline constexpr uint64_t kBrk = 0x40'0000;
inline constexpr uint64_t kBadPointers[] = {kReadOnly, kUnmapped, ~uint64_t{0}, kScratch + kScratchSize - 1};

struct StubCpu : thin::CpuAccess {
    uint64_t fs = 0, gs = 0;
    bool set_fs_base(uint64_t b) override { return fs = b, true; }
    bool set_gs_base(uint64_t b) override { return gs = b, true; }
    uint64_t fs_base() override { return fs; }
    uint64_t gs_base() override { return gs; }
};

// The calls of one source file of the thin layer, by the handler that
// serves them (an alias such as geteuid goes with getuid's handler).
enum class Family { kFiles, kMemory, kProcess, kTime };

inline Family family_of(std::string_view handler) {
    static constexpr std::string_view kMemory[] = {"sys_brk",      "sys_mmap",   "sys_munmap",
                                                   "sys_mprotect", "sys_mremap", "sys_madvise"};
    static constexpr std::string_view kTime[] = {"sys_clock_gettime", "sys_clock_getres", "sys_gettimeofday",
                                                 "sys_time",          "sys_nanosleep",    "sys_clock_nanosleep"};
    // sys_process.cc: everything about the process that is not time or memory.
    static constexpr std::string_view kProcess[] = {"sys_exit",        "sys_getpid",          "sys_getppid",
                                                    "sys_getuid",      "sys_getgroups",       "sys_setgroups",
                                                    "sys_getgid",      "sys_set_tid_address", "sys_set_robust_list",
                                                    "sys_arch_prctl",  "sys_rt_sigaction",    "sys_rt_sigprocmask",
                                                    "sys_sigaltstack", "sys_uname",           "sys_prlimit64",
                                                    "sys_getrlimit",   "sys_sched_yield",     "sys_sched_getaffinity",
                                                    "sys_futex",       "sys_umask",           "sys_getrandom",
                                                    "sys_sysinfo",     "sys_prctl",           "sys_kill",
                                                    "sys_tkill",       "sys_tgkill"};
    for (auto h : kMemory)
        if (h == handler) return Family::kMemory;
    for (auto h : kTime)
        if (h == handler) return Family::kTime;
    for (auto h : kProcess)
        if (h == handler) return Family::kProcess;
    return Family::kFiles;  // sys_rw, sys_stat, sys_path, sys_fd
}

// The numbers of `family`'s calls, from syscall_table.inc.
inline std::vector<uint64_t> family_numbers(Family family) {
    struct Entry {
        uint64_t nr;
        std::string_view handler;
    };
#define SYSCALL(nr, name, handler, View, trace, status, effect, note) Entry{nr, #handler},
    static constexpr Entry kEntries[] = {
#include "thin/syscall_table.inc"
    };
#undef SYSCALL
    std::vector<uint64_t> out;
    for (const Entry& e : kEntries)
        if (family_of(e.handler) == family) out.push_back(e.nr);
    return out;
}

// Keeps the harness from blocking, not the code from failing: pipes are
// non-blocking (a guest's blocking read of an empty pipe it holds both
// ends of would wait forever, on a real kernel too), and sleeps and waits
// for descriptors end at once.
inline void make_nonblocking(thin::SyscallArgs& args, memory::AddressSpace& as) {
    uint64_t(&a)[6] = args.a;
    if (args.nr == SYS_pipe) args = {SYS_pipe2, {a[0], 0, 0, 0, 0, 0}};
    if (args.nr == SYS_eventfd) args = {SYS_eventfd2, {a[0], 0, 0, 0, 0, 0}};
    const uint64_t nr = args.nr;
    if (nr == SYS_pipe2 || nr == SYS_eventfd2 || nr == SYS_timerfd_create || nr == SYS_socketpair)
        a[1] |= O_NONBLOCK;  // SOCK_NONBLOCK, EFD_NONBLOCK and TFD_NONBLOCK are O_NONBLOCK
    if (nr == SYS_fcntl && a[1] == F_SETFL) a[2] |= O_NONBLOCK;
    // Waits for descriptors end at once: a zero timeout (a zero timespec or
    // timeval at kScratch + 64 for the calls that take a pointer).
    if (nr == SYS_poll) a[2] = 0;
    if (nr == SYS_epoll_wait || nr == SYS_epoll_pwait) a[3] = 0;
    if (nr == SYS_ppoll || nr == SYS_select || nr == SYS_pselect6 || nr == SYS_epoll_pwait2) {
        const timespec zero{0, 0};
        (void)as.view().write(kScratch + 64, &zero, sizeof zero);
        a[nr == SYS_ppoll ? 2 : nr == SYS_epoll_pwait2 ? 3 : 4] = kScratch + 64;
    }
    uint64_t* req = nr == SYS_nanosleep ? &a[0] : nr == SYS_clock_nanosleep ? &a[2] : nullptr;
    if (req && *req >= kScratch && *req < kScratch + kScratchSize) {
        timespec ts{0, 1000};
        (void)as.view().write(kScratch, &ts, sizeof ts);
        *req = kScratch;
        if (nr == SYS_clock_nanosleep) a[1] = 0;  // relative, so 1 µs
    }
}

// A fresh guest: 8 MiB of memory with the test's mappings, and a Process
// whose sandbox is a scratch root (a file and a directory) and an empty
// writable mount at /w.
struct ThinGuest {
    ThinGuest() {
        static const std::string root = scratch_dir() + "/root", rw = scratch_dir() + "/rw";
        std::filesystem::remove_all(rw);
        std::filesystem::create_directories(rw);
        if (!std::filesystem::exists(root + "/file")) {
            std::filesystem::create_directories(root + "/d");
            const uint8_t content[] = "content";
            write_file(root + "/file", content);
        }
        auto m = memory::GuestMemory::create(8 << 20);
        if (!m) std::abort();
        mem = std::make_unique<memory::GuestMemory>(std::move(*m));
        as = std::make_unique<memory::AddressSpace>(*mem, 0x1000);
        if (!as->init() || !as->map_fixed(kScratch, kScratchSize, memory::kProtRead | memory::kProtWrite) ||
            !as->map_fixed(kReadOnly, 4096, memory::kProtRead) ||
            !as->map_fixed(kBrk, 4096, memory::kProtRead | memory::kProtWrite))
            std::abort();
        auto sandbox = thin::Sandbox::create(root, {{rw, "/w"}});
        if (!sandbox) std::abort();
        thin::ProcessOptions o;
        o.uid = ::getuid();
        o.gid = ::getgid();
        process = std::make_unique<thin::Process>(*as, std::move(*sandbox), cpu, o);
        process->set_brk_start(kBrk + 0x1000);
    }
    StubCpu cpu;
    std::unique_ptr<memory::GuestMemory> mem;
    std::unique_ptr<memory::AddressSpace> as;
    std::unique_ptr<thin::Process> process;
};

inline void run_syscalls(Family family, const uint8_t* data, size_t size) {
    static const std::vector<uint64_t> numbers = family_numbers(family);
    ThinGuest g;
    memory::AddressSpace& as = *g.as;
    thin::Process& p = *g.process;

    FuzzedDataProvider in(data, size);
    // Scratch memory first: paths, structs and buffers the calls point at.
    auto bytes = in.ConsumeBytes<uint8_t>(in.ConsumeIntegralInRange<size_t>(0, 1024));
    if (!bytes.empty() && !as.view().write(kScratch, bytes.data(), bytes.size())) std::abort();
    for (int calls = 0; calls < 32 && in.remaining_bytes() && !p.exited(); ++calls) {
        thin::SyscallArgs args{numbers[in.ConsumeIntegralInRange<size_t>(0, numbers.size() - 1)], {}};
        for (auto& a : args.a) {
            switch (in.ConsumeIntegralInRange<int>(0, 4)) {
                case 0: a = in.ConsumeIntegralInRange<uint64_t>(0, 16); break;  // fds, small flags
                case 1: a = kScratch + in.ConsumeIntegralInRange<uint64_t>(0, kScratchSize); break;
                case 2: a = in.PickValueInArray(kBadPointers); break;
                case 3: a = in.ConsumeIntegral<uint32_t>(); break;
                default: a = in.ConsumeIntegral<uint64_t>(); break;
            }
        }
        make_nonblocking(args, as);
        int64_t r = p.handle(args);
        FUZZ_CHECK(r >= -4095);  // a result or -errno, never a wild negative
    }
}

}  // namespace vessel::fuzz

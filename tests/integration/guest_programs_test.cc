// The guest test programs (tests/guest/*.c), each built with glibc and with
// musl, run natively first — proving the expectations are Linux's — and then
// inside `vessel run`.
#include <fcntl.h>
#include <pty.h>
#include <signal.h>
#include <sys/auxv.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <regex>

#include "harness.h"

namespace vessel::test {
namespace {

class GuestProgram : public ::testing::TestWithParam<std::string> {
protected:
    void SetUp() override { REQUIRE_KVM(); }
    std::string prog(const std::string& name) {
        std::string p = guest_program(name, GetParam());
        if (!exists(p))
            ADD_FAILURE() << p << " was not built (is " << GetParam() << " installed? musl-gcc comes "
                          << "from the Debian package musl-tools)";
        return p;
    }
    // `vessel run`, for a dynamic flavour with its loader and libc in the
    // guest's root.
    RunResult vessel(const std::vector<std::string>& args, const std::vector<std::string>& command,
                     const RunOptions& options = {}) {
        return run_vessel(with_libraries(args), command, options);
    }
    // A dynamic flavour's libraries, copied into the test's --root (at the
    // paths the loader looks for), or into a root made for them.
    std::vector<std::string> with_libraries(std::vector<std::string> args) {
        const std::string& flavour = GetParam();
        if (!flavour.ends_with("-dyn")) return args;
        const std::vector<std::string> libs =
            flavour == "musl-dyn"
                ? std::vector<std::string>{"/lib/ld-musl-x86_64.so.1"}
                : std::vector<std::string>{"/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/libc.so.6"};
        auto root = std::find(args.begin(), args.end(), "--root");
        if (root == args.end() || root + 1 == args.end()) {
            if (!lib_root_) lib_root_.emplace();
            args.insert(args.begin(), {"--root", lib_root_->path()});
            root = args.begin();
        }
        for (const auto& lib : libs) {
            const std::string to = *(root + 1) + lib;
            std::filesystem::create_directories(std::filesystem::path(to).parent_path());
            std::filesystem::copy_file(lib, to, std::filesystem::copy_options::skip_existing);
        }
        return args;
    }

private:
    std::optional<TempDir> lib_root_;
};

// Both runs must exit 0 and report "N checks, 0 failed".
void expect_passed(const RunResult& r, const std::string& what) {
    EXPECT_EQ(r.status, 0) << what << "\nstdout:\n" << r.out << "\nstderr:\n" << r.err;
    EXPECT_NE(r.out.find(" 0 failed"), std::string::npos) << what << "\nstdout:\n" << r.out << "\nstderr:\n" << r.err;
}

// A read-only data tree as files.c expects it.
void make_data(const std::string& dir) {
    make_dirs(dir + "/sub");
    write_file(dir + "/hello.txt", "hello world\n");
    write_file(dir + "/sub/a.txt", "A\n");
    ASSERT_EQ(::symlink("hello.txt", (dir + "/link").c_str()), 0);
}

TEST_P(GuestProgram, Files) {
    TempDir t;
    make_data(t / "root/data");
    make_dirs(t / "native");
    make_dirs(t / "work");
    std::string p = prog("files");
    expect_passed(run({p, t / "native", t / "root/data"}), "native");
    expect_passed(vessel({"--root", t / "root", "--rw", t / "work" + ":/w"}, {p, "/w", "/data", "vessel"}), "vessel");
    // What the guest did in /w really happened in the host directory.
    EXPECT_TRUE(exists(t / "work/rw.txt"));
    EXPECT_EQ(describe_tree(t / "native"), describe_tree(t / "work"));
}

TEST_P(GuestProgram, Fds) {
    std::string p = prog("fds");
    expect_passed(run({p}), "native");
    expect_passed(vessel({}, {p}), "vessel");
}

TEST_P(GuestProgram, FdsOnTerminal) {
    // TCGETS and TIOCGWINSZ are answered from the real terminal on stdin.
    int master, slave;
    winsize ws{};
    ws.ws_row = 33;
    ws.ws_col = 77;
    ASSERT_EQ(::openpty(&master, &slave, nullptr, nullptr, &ws), 0);
    std::string p = prog("fds");
    RunOptions o;
    o.stdin_fd = slave;
    expect_passed(run({p, "tty", "33", "77"}, o), "native");
    expect_passed(vessel({}, {p, "tty", "33", "77"}, o), "vessel");
    ::close(master);
    ::close(slave);
}

// Small reads served from the read-ahead window, and calls answered by the
// guest-side entry code, look exactly like Linux's (tests/guest/readahead.c).
TEST_P(GuestProgram, ReadAheadAndGuestEntry) {
    TempDir t;
    make_dirs(t / "native");
    make_dirs(t / "work");
    std::string p = prog("readahead");
    expect_passed(run({p, t / "native"}), "native");
    expect_passed(vessel({"--rw", t / "work" + ":/w"}, {p, "/w"}), "vessel");
    // Every call still reaches the trace when tracing: the entry code sends
    // them all to the VMM then.
    auto traced = vessel({"--trace-syscalls", "--rw", t / "work" + ":/w"}, {p, "/w"});
    expect_passed(traced, "vessel --trace-syscalls");
    size_t getuids = 0;
    for (size_t at = 0; (at = traced.err.find("getuid()", at)) != std::string::npos; ++at) ++getuids;
    EXPECT_GE(getuids, 2u) << traced.err.substr(0, 2000);
}

TEST_P(GuestProgram, Memory) {
    TempDir t;
    std::string pattern;
    for (int i = 0; i < 5000; ++i) pattern += static_cast<char>(i % 251);
    make_dirs(t / "root");
    write_file(t / "root/pattern.bin", pattern);
    std::string p = prog("memory");
    expect_passed(run({p, t / "root/pattern.bin"}), "native");
    expect_passed(vessel({"--root", t / "root"}, {p, "/pattern.bin"}), "vessel");
    EXPECT_EQ(read_file(t / "root/pattern.bin"), pattern);  // private mappings never write back
}

TEST_P(GuestProgram, Time) {
    std::string p = prog("time");
    expect_passed(run({p}), "native");
    expect_passed(vessel({}, {p}), "vessel");
}

// Clocks read often: most answered in the guest from the TSC, the rest by
// the VMM; never backwards, the two sources in agreement (tests/guest/clocks.c).
TEST_P(GuestProgram, Clocks) {
    std::string p = prog("clocks");
    expect_passed(run({p}), "native");
    expect_passed(vessel({}, {p, "vessel"}, with_timeout(60)), "vessel");
}

TEST_P(GuestProgram, Process) {
    std::string p = prog("process");
    std::string uid = std::to_string(::getuid()), gid = std::to_string(::getgid());
    expect_passed(run({p, uid, gid}), "native");
    const std::string hwcap2 = "HOST_HWCAP2=" + std::to_string(::getauxval(AT_HWCAP2));
    // Twice: the second start maps the cached image, whose "/proc/self/exe"
    // strings the guest-side entry answers readlink for (tests/guest/process.c).
    expect_passed(vessel({"--env", hwcap2}, {p, uid, gid, "vessel"}), "vessel");
    expect_passed(vessel({"--env", hwcap2}, {p, uid, gid, "vessel"}), "vessel, cached image");
}

// A thin guest sees one CPUID, the host's own, whether its `cpuid` site was
// rewritten or not, and every feature it reports works (tests/guest/cpuid.c).
// Rewritten sites answer from the host table the VMM keeps per boot in the
// cache directory, without leaving the guest: an answer planted there
// reaches the rewritten site. An un-rewritten site runs the instruction: on
// a host that traps it at CPL3 it sees the planted answer too (the vCPU's
// table is built from the same table), on one that does not, the CPU's own.
// Either kind of host passes; the program says which it ran on, and
// tests/kvm/cpuid_table_test.cc checks the trapping kind's table on both.
TEST_P(GuestProgram, Cpuid) {
    std::string p = prog("cpuid");
    expect_passed(run({p}), "native");
    TempDir cache;
    RunOptions o;
    o.env = fixed_env();
    o.env.push_back("VESSEL_CACHE_DIR=" + cache.path());
    expect_passed(vessel({}, {p}, o), "vessel");
    std::string table;
    for (const auto& e : std::filesystem::directory_iterator(cache.path()))
        if (e.path().filename().string().rfind("host-cpuid-", 0) == 0) table = e.path();
    ASSERT_FALSE(table.empty()) << "no host CPUID table in " << cache.path();
    std::string data = read_file(table);
    const uint32_t vssl = 0x4c535356;
    uint32_t real = 0;
    for (size_t at = 16; at + 24 <= data.size(); at += 24) {
        uint32_t leaf;
        std::memcpy(&leaf, &data[at], 4);
        if (leaf != 0x80000002) continue;
        std::memcpy(&real, &data[at + 8], 4);
        std::memcpy(&data[at + 8], &vssl, 4);
    }
    ASSERT_NE(real, 0u) << "no leaf 0x80000002 in " << table;
    ASSERT_NE(real, vssl);
    write_file(table, data);
    char real_hex[16];
    std::snprintf(real_hex, sizeof real_hex, "%x", real);
    auto planted = vessel({}, {p, "brand", "4c535356", real_hex}, o);
    expect_passed(planted, "vessel, planted answer");
    RecordProperty("un_rewritten_cpuid", planted.out);
}

TEST_P(GuestProgram, ExitStatusIsTheProgramsOwn) {
    std::string p = prog("process");
    for (const char* how : {"exit", "exit_group"}) {
        for (int status : {0, 3, 42, 255}) {
            auto r = vessel({}, {p, how, std::to_string(status)});
            EXPECT_EQ(r.status, status) << how << " " << status << "\n" << r.err;
            EXPECT_EQ(r.err, "") << how;
        }
    }
}

// A program that fails after calls Vessel lacks gets one line naming them;
// one that succeeds gets none (and glibc's expected rseq refusal is never
// named: the exit tests above see an empty stderr).
TEST_P(GuestProgram, AFailureAfterUnsupportedCallsNamesThem) {
    std::string p = prog("process");
    auto r = vessel({}, {p, "unsupported", "3"});
    EXPECT_EQ(r.status, 3) << r.err;
    EXPECT_EQ(r.err, "vessel: unsupported system calls: io_uring_setup x2 (--trace-syscalls shows where)\n");
    r = vessel({}, {p, "unsupported", "0"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.err, "");
}

// A program that fails after guest memory ran out is told which flag helps
// (natively the same allocation succeeds).
TEST_P(GuestProgram, RunningOutOfGuestMemorySaysToRaiseMem) {
    std::string p = prog("process");
    EXPECT_EQ(run({p, "big-alloc", "256"}).status, 0);
    auto r = vessel({}, {p, "big-alloc", "256"});
    EXPECT_EQ(r.status, 3);
    EXPECT_EQ(r.err, "vessel: the guest's memory (--mem 64M) ran out 1 time: an allocation failed; raise --mem\n");
    r = vessel({}, {p, "big-alloc", "8"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.err, "");
}

// A fault kills the guest as Linux kills a process: the same signal (the
// exit status 128 + it, as a shell reports it) as the program run natively,
// and one line naming the signal and what faulted, like the kernel's log.
TEST_P(GuestProgram, CrashesEndLikeNativeWithOneLine) {
    std::string p = prog("crash");
    const std::regex line(R"(vessel: guest crashed: SIG[A-Z]+: [^\n]+ at rip=0x[0-9a-f]+ rsp=0x[0-9a-f]+\n)");
    const std::map<std::string, std::string> says = {{"null", "SIGSEGV: page fault: read of unmapped address 0x0"},
                                                     {"write-ro", "SIGSEGV: page fault: write of protected address"},
                                                     {"ud2", "SIGILL: invalid opcode"},
                                                     {"hlt", "SIGSEGV: general protection fault"},
                                                     {"int3", "SIGTRAP: breakpoint"},
                                                     {"divide", "SIGFPE: divide error"},
                                                     {"jump-wild",
                                                      "SIGSEGV: page fault: instruction fetch of unmapped "
                                                      "address 0xdead0000"}};
    for (const auto& [mode, what] : says) {
        auto native = run({p, mode});
        ASSERT_GT(native.signal, 0) << mode << " did not crash natively";
        auto r = vessel({}, {p, mode}, with_timeout(20));
        EXPECT_EQ(r.status, 128 + native.signal) << mode << "\n" << r.err;
        EXPECT_TRUE(std::regex_match(r.err, line)) << mode << ": stderr is not one diagnostic line:\n" << r.err;
        EXPECT_NE(r.err.find(what), std::string::npos) << mode << ": " << r.err;
        EXPECT_EQ(r.out, "crash: " + mode + "\n") << mode;  // output before the fault is kept
    }
    // Signals a program sends itself: killed by the same signal as natively
    // (abort() raises SIGABRT with every signal blocked, then unblocks it),
    // or, when ignored, not at all.
    for (const char* mode : {"abort", "raise-term"}) {
        auto native = run({p, mode});
        ASSERT_GT(native.signal, 0) << mode << " did not die natively";
        auto r = vessel({}, {p, mode}, with_timeout(20));
        EXPECT_EQ(r.status, 128 + native.signal) << mode << "\n" << r.err;
        EXPECT_EQ(r.err, std::string("vessel: guest killed by SIG") + sigabbrev_np(native.signal) + "\n") << mode;
    }
    auto ignored = vessel({}, {p, "ignored"}, with_timeout(20));
    EXPECT_EQ(ignored.status, run({p, "ignored"}).status) << ignored.err;
    EXPECT_EQ(ignored.status, 0) << ignored.err;
    EXPECT_EQ(ignored.err, "");
    // A `syscall` written at run time, which no rewrite covered, is a system
    // call as natively: it enters the entry code through MSR_LSTAR (at CPL3
    // under PVM, at CPL0 on VT-x/AMD-V; docs/thin-vm.md).
    EXPECT_EQ(run({p, "stray-syscall"}).status, 42);
    auto r = vessel({}, {p, "stray-syscall"}, with_timeout(20));
    EXPECT_EQ(r.status, 42) << r.err;
    EXPECT_EQ(r.err, "");
}

// Signal handlers run as under Linux (tests/guest/signals.c): the frame,
// siginfo, masks, SA_NODEFER/SA_RESETHAND/SA_ONSTACK, registers changed in
// the frame, faults recovered or resumed, FPU and SSE state kept across a
// handler. A frame the handler corrupted, or a fault inside a SIGSEGV
// handler, kills the process with SIGSEGV as natively.
TEST_P(GuestProgram, SignalHandlers) {
    std::string p = prog("signals");
    expect_passed(run({p}), "native");
    expect_passed(vessel({}, {p}, with_timeout(60)), "vessel");
    expect_passed(run({p, "jit-restorer"}), "native, jit-restorer");
    expect_passed(vessel({}, {p, "jit-restorer"}, with_timeout(60)), "vessel, jit-restorer");
    for (const char* mode : {"bad-frame", "wild-frame", "nested-fault"}) {
        auto native = run({p, mode});
        EXPECT_EQ(native.signal, SIGSEGV) << mode;
        auto r = vessel({}, {p, mode}, with_timeout(20));
        EXPECT_EQ(r.status, 128 + SIGSEGV) << mode << "\n" << r.err;
        EXPECT_NE(r.err.find("SIGSEGV"), std::string::npos) << mode << ": " << r.err;
    }
}

// Signals from outside the VM (the terminal's Ctrl-C, `kill`, the daemon's
// `vessel kill`) are the guest's, as natively (tests/guest/signals.c,
// wait-read and spin): a handler interrupts a blocking read with EINTR, or
// the read goes on with SA_RESTART; an ignored signal changes nothing; a
// default SIGTERM kills with 143; a guest computing in a loop is stopped
// to run its handler; one sigwaitinfo waits for is taken by it, blocked or
// not (the handler does not run), or by a
// handler while ppoll's mask lets it in; SIGWINCH (the
// terminal's size) is ignored unless handled.
TEST_P(GuestProgram, SignalsFromOutsideReachTheGuest) {
    std::string p = prog("signals");
    static TempDir cache;
    RunOptions o;
    o.env = fixed_env();
    o.env.push_back("VESSEL_CACHE_DIR=" + cache.path());
    struct Case {
        const char *sig, *mode, *how, *expect;
    };
    for (const Case& c :
         {Case{"INT", "wait-read", "eintr", "read: EINTR, handler ran 1"},
          Case{"INT", "wait-read", "restart", "read 5 bytes, handler ran 1"},
          Case{"INT", "wait-read", "ignore", "read 5 bytes, handler ran 0"},
          Case{"TERM", "wait-read", "default", "status=143"}, Case{"INT", "spin", "eintr", "spun until handler ran 1"},
          Case{"INT", "sigwait", "", "sigwaitinfo: SIGINT, SI_USER yes, handler ran 0"},
          Case{"INT", "sigwait", "unblocked", "sigwaitinfo: SIGINT, SI_USER yes, handler ran 0"},
          Case{"INT", "wait-read", "masked", "ppoll: EINTR, handler ran 1, SIGINT blocked after: yes"},
          Case{"WINCH", "wait-read", "eintr", "read: EINTR, handler ran 1"},
          Case{"WINCH", "wait-read", "default", "read 5 bytes, handler ran 0"}}) {
        auto native = run_signalled(c.sig, {p, c.mode, c.how}, o);
        auto guest = run_signalled(c.sig, vessel_run_argv({p, c.mode, c.how}, with_libraries({})), o);
        EXPECT_NE(native.out.find(c.expect), std::string::npos) << c.mode << " " << c.how << ":\n" << native.out;
        EXPECT_EQ(guest.out, native.out) << c.mode << " " << c.how << "\n" << guest.err;
    }
}

// execve (tests/guest/exec.c), against native: errors leave the caller as
// it was (ENOENT, EACCES for a directory or a file without an execute bit,
// ENOEXEC, EFAULT); the new program keeps the pid, the mask, pending and
// ignored signals and descriptors without close-on-exec, and loses its
// handlers and close-on-exec descriptors; a `#!` script runs its
// interpreter (here the program itself) with the line's argument. The
// programs started by execve are not rewritten: their calls come through
// MSR_LSTAR. (--root /: the program finds itself, and a dynamic one its
// libraries, where the host has them.)
TEST_P(GuestProgram, SignalfdReadsBlockedSignals) {
    std::string p = prog("signalfd");
    expect_passed(run({p}), "native");
    expect_passed(vessel({}, {p}), "vessel");
}

// fork and its relatives (tests/guest/fork.c), against native: the child's
// memory is a copy, statuses reach wait4 and waitid, pipes and file offsets
// are shared, kill and SIGCHLD cross between processes, posix_spawn works,
// and 200 processes one after another reuse their vCPUs and memory.
TEST_P(GuestProgram, ForkMakesProcessesAsOnLinux) {
    std::string p = prog("fork");
    expect_passed(run({p, p}), "native");
    expect_passed(run_vessel({"--root", "/"}, {p, p}, with_timeout(120)), "vessel");
    // Zombies keep their pids, as on Linux: with --pids 4, a process that
    // never reaps makes 3 children, then fork fails.
    auto z = run_vessel({"--root", "/", "--pids", "4"}, {p, p, "zombies"});
    EXPECT_EQ(z.out, "zombies: 3\n") << z.err;
}

TEST_P(GuestProgram, ExecveReplacesTheProgramAsOnLinux) {
    std::string p = prog("exec");
    TempDir native_dir, guest_dir;
    expect_passed(run({p, "start", native_dir.path()}), "native");
    expect_passed(run_vessel({"--root", "/", "--rw", guest_dir.path() + ":/w"}, {p, "start", "/w"}, with_timeout(60)),
                  "vessel");
}

// A guest that scribbles on the shared page of its guest-side entry can
// crash itself, never the VMM: every value the VMM reads there is checked
// (tests/guest/hostile_entry.c).
TEST_P(GuestProgram, HostileSharedPageHurtsOnlyTheGuest) {
    TempDir t;
    make_dirs(t / "work");
    std::string p = prog("hostile_entry");
    const std::regex line("vessel: guest crashed: [^\n]*\n");
    for (const char* mode : {"window", "handler", "data"}) {
        auto r = vessel({"--rw", t / "work" + ":/w"}, {p, "/w", mode}, with_timeout(20));
        EXPECT_EQ(r.status, 139) << mode << "\n" << r.out << r.err;
        EXPECT_TRUE(std::regex_match(r.err, line)) << mode << ": stderr is not one diagnostic line:\n" << r.err;
    }
    expect_passed(vessel({"--rw", t / "work" + ":/w"}, {p, "/w", "bounds"}), "bounds");
}

TEST_P(GuestProgram, EscapeAttemptsFail) {
    TempDir t;
    std::string outside = t / "outside";
    make_dirs(outside);
    make_dirs(t / "root");
    make_dirs(t / "work");
    write_file(outside + "/secret.txt", "TOP-SECRET\n");
    ASSERT_EQ(::symlink((outside + "/secret.txt").c_str(), (t / "root/abs_link").c_str()), 0);
    ASSERT_EQ(::symlink("../outside/secret.txt", (t / "root/rel_link").c_str()), 0);
    ASSERT_EQ(::symlink("..", (t / "root/dir_up").c_str()), 0);
    ASSERT_EQ(::symlink(outside.c_str(), (t / "root/dir_abs").c_str()), 0);
    ASSERT_EQ(::symlink(outside.c_str(), (t / "work/out_link").c_str()), 0);
    write_file(t / "work/file.txt", "movable\n");
    std::string before = describe_tree(outside, true);

    auto r = vessel({"--root", t / "root", "--rw", t / "work" + ":/w"}, {prog("escape"), outside});
    expect_passed(r, "vessel");
    EXPECT_EQ(r.out.find("ESCAPED"), std::string::npos) << r.out;
    // Nothing outside changed: no file created, moved, truncated or removed.
    EXPECT_EQ(describe_tree(outside, true), before);
    EXPECT_EQ(read_file(outside + "/secret.txt"), "TOP-SECRET\n");
    EXPECT_FALSE(exists(t / "moved.txt"));
    EXPECT_FALSE(exists(t / "root/planted"));
}

// glibc, musl, glibc as a static PIE (ET_DYN: loaded at a bias, with its
// stub area after it), and both dynamically linked (their loader from the
// guest's root, their libc mapped by it).
std::string flavour_name(const ::testing::TestParamInfo<std::string>& info) {
    static const std::map<std::string, std::string> names = {{"gcc", "glibc"},
                                                             {"musl", "musl"},
                                                             {"gcc-pie", "glibc_static_pie"},
                                                             {"gcc-dyn", "glibc_dynamic"},
                                                             {"musl-dyn", "musl_dynamic"}};
    return names.at(info.param);
}
INSTANTIATE_TEST_SUITE_P(Libc, GuestProgram, ::testing::Values("gcc", "musl", "gcc-pie", "gcc-dyn", "musl-dyn"),
                         flavour_name);

}  // namespace
}  // namespace vessel::test

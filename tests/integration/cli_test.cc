// `vessel run` as a user meets it: exit statuses, one-line errors for hosts
// without KVM and for files that cannot be loaded, the rewrite cache.
#include <elf.h>
#include <linux/kvm.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <random>
#include <regex>
#include <thread>

#include "harness.h"
#include "loader/rewriter.h"
#include "machine/control.h"
#include "machine/thin_vm.h"

namespace vessel::test {
namespace {

constexpr const char* kBusybox = "/bin/busybox";

// stderr is exactly one "vessel: ..." line.
::testing::AssertionResult one_error_line(const RunResult& r) {
    static const std::regex line(R"(vessel: [^\n]+\n)");
    if (std::regex_match(r.err, line)) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "stderr is not one 'vessel: ...' line:\n" << r.err;
}

RunResult run_with_env(std::vector<std::string> extra_env, const std::vector<std::string>& argv) {
    RunOptions o;
    o.env = fixed_env();
    o.env.insert(o.env.end(), extra_env.begin(), extra_env.end());
    return run(argv, o);
}

TEST(Cli, UnknownCommandIsNamedWithStatus2) {
    auto r = run({vessel_path(), "rnu", kBusybox, "true"});
    EXPECT_EQ(r.status, 2);
    EXPECT_TRUE(one_error_line(r));
    EXPECT_NE(r.err.find("unknown command 'rnu'"), std::string::npos) << r.err;
}

TEST(Cli, MissingKvmIsOneLineAndStatus2) {
    auto r = run_with_env({"VESSEL_KVM_DEVICE=/nonexistent/kvm"}, {vessel_path(), "run", kBusybox, "true"});
    EXPECT_EQ(r.status, 2);
    EXPECT_TRUE(one_error_line(r));
    EXPECT_NE(r.err.find("KVM is not available"), std::string::npos) << r.err;
}

TEST(Cli, KvmDeviceThatIsNotKvmIsStatus2) {
    auto r = run_with_env({"VESSEL_KVM_DEVICE=/dev/null"}, {vessel_path(), "run", kBusybox, "true"});
    EXPECT_EQ(r.status, 2);
    EXPECT_TRUE(one_error_line(r));
}

TEST(Cli, KvmPermissionDeniedIsOneLineAndStatus2) {
    TempDir t;
    std::string dev = t / "kvm";
    write_file(dev, "", 0);
    std::vector<std::string> argv = {vessel_path(), "run", kBusybox, "true"};
    std::vector<std::string> env = {"VESSEL_KVM_DEVICE=" + dev};
    if (::geteuid() == 0) {
        // Root opens any file: drop to nobody, for whom the mode-000 node (and
        // root's 0600 /dev/kvm) is closed.
        ASSERT_TRUE(exists("/usr/bin/setpriv")) << "setpriv (util-linux) is needed to test as root";
        argv.insert(argv.begin(), {"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"});
        ::chmod(t.path().c_str(), 0755);
    }
    auto r = run_with_env(env, argv);
    EXPECT_EQ(r.status, 2) << r.err;
    EXPECT_TRUE(one_error_line(r));
    EXPECT_NE(r.err.find("permission denied"), std::string::npos) << r.err;
}

TEST(Cli, UsageErrorsAreStatus2) {
    EXPECT_EQ(run({vessel_path()}).status, 2);
    EXPECT_EQ(run({vessel_path(), "run"}).status, 2);
    for (std::vector<std::string> args : std::vector<std::vector<std::string>>{{"--mem", "lots"},
                                                                               {"--mem", "0"},
                                                                               {"--rw", "nocolon"},
                                                                               {"--rw", "/nonexistent-dir:/x"},
                                                                               {"--root", "/nonexistent-dir"},
                                                                               {"--env", "=x"},
                                                                               {"--env-file", "/nonexistent-file"},
                                                                               {"--env-file", "/dev/null"}}) {
        std::vector<std::string> argv = {vessel_path(), "run"};
        argv.insert(argv.end(), args.begin(), args.end());
        argv.insert(argv.end(), {kBusybox, "true"});
        auto r = run(argv);
        EXPECT_EQ(r.status, 2) << args[0] << " " << args[1];
        EXPECT_TRUE(one_error_line(r)) << args[0] << " " << args[1];
    }
}

// --env-file: KEY=VALUE lines or NUL-separated entries (as vesseld writes
// them, values with newlines included); --env overrides the file.
TEST(Cli, EnvFileReachesTheGuestAndEnvOverridesIt) {
    REQUIRE_KVM();
    TempDir t;
    write_file(t.path() + "/lines", "# comment\nA=1\nB=two words\n\n");
    write_file(t.path() + "/nul", std::string("A=1\0B=line\nbreak\0", 17));
    auto r = run_vessel({"--env-file", t.path() + "/lines", "--env", "A=9"}, {kBusybox, "env"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("A=9\n"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("B=two words\n"), std::string::npos) << r.out;
    r = run_vessel({"--env-file", t.path() + "/nul"}, {kBusybox, "env"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("B=line\nbreak\n"), std::string::npos) << r.out;
}

// --workdir is the guest's working directory, a path it sees; --user its
// credentials (numbers: the guest's /etc/passwd names them, not the host's).
TEST(Cli, WorkdirAndUserSetTheGuestsDirectoryAndCredentials) {
    REQUIRE_KVM();
    auto r = run_vessel({"--root", "/", "--workdir", "/etc"}, {kBusybox, "pwd"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "/etc\n");
    r = run_vessel({"--root", "/", "--workdir", "/etc"}, {kBusybox, "cat", "hostname"});  // relative to it
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, read_file("/etc/hostname"));
    for (auto [user, uid, gid] :
         {std::tuple{"1234:5678", "1234\n", "5678\n"}, std::tuple{"4321", "4321\n", "4321\n"}}) {
        r = run_vessel({"--user", user}, {kBusybox, "id", "-u"});
        EXPECT_EQ(r.status, 0) << r.err;
        EXPECT_EQ(r.out, uid) << user;
        r = run_vessel({"--user", user}, {kBusybox, "id", "-g"});
        EXPECT_EQ(r.out, gid) << user << r.err;
    }
    // Mistakes: one line, status 2.
    r = run_vessel({"--root", "/", "--workdir", "/nonexistent"}, {kBusybox, "true"});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("--workdir /nonexistent: No such file or directory"), std::string::npos) << r.err;
    EXPECT_TRUE(one_error_line(r)) << r.err;
    r = run_vessel({"--root", "/", "--workdir", "/etc/hostname"}, {kBusybox, "true"});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("Not a directory"), std::string::npos) << r.err;
    r = run_vessel({"--user", "nobody"}, {kBusybox, "true"});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("--user nobody: expected UID[:GID], numbers"), std::string::npos) << r.err;
}

// --pids bounds the processes alive at once: a fork past it fails with
// EAGAIN (busybox sh: "can't fork"), and the VM goes on; out of range is a
// usage error.
TEST(Cli, PidsBoundsTheProcessesAliveAtOnce) {
    REQUIRE_KVM();
    const std::string script = "sleep 0.3 & sleep 0.3 & wait; echo done";
    auto r = run_vessel({"--root", "/", "--pids", "3"}, {kBusybox, "sh", "-c", script});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "done\n");
    r = run_vessel({"--root", "/", "--pids", "2"}, {kBusybox, "sh", "-c", script});
    EXPECT_NE(r.err.find("can't fork"), std::string::npos) << r.err;
    r = run_vessel({"--pids", "0"}, {kBusybox, "true"});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("--pids: between 1 and 4096"), std::string::npos) << r.err;
    EXPECT_TRUE(one_error_line(r)) << r.err;
}

TEST(Cli, ProgramNotFoundIs127) {
    REQUIRE_KVM();
    auto r = run_vessel({}, {"/nonexistent/program"});
    EXPECT_EQ(r.status, 127);
    EXPECT_TRUE(one_error_line(r));
}

TEST(Cli, RunsAProgramWithArgumentsAndEnvironment) {
    REQUIRE_KVM();
    auto r = run_vessel({"--env", "GREETING=hi there"},
                        {kBusybox, "sh", "-c", "echo \"$GREETING\" \"$0\" $#", "a0", "x", "--mem"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "hi there a0 2\n");
}

TEST(Cli, TraceSyscallsPrintsEachCall) {
    REQUIRE_KVM();
    auto r = run_vessel({"--trace-syscalls"}, {kBusybox, "echo", "traced"});
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(r.out, "traced\n");
    EXPECT_NE(r.err.find("write(1, \"traced\\n\", 7) = 7"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("exit_group(0)"), std::string::npos) << r.err;
}

// ---- Files that are not loadable static executables -------------------------

std::string static_program() { return read_file(guest_program("process", "gcc")); }

Elf64_Ehdr& header(std::string& elf) { return *reinterpret_cast<Elf64_Ehdr*>(elf.data()); }
Elf64_Phdr* phdrs(std::string& elf) { return reinterpret_cast<Elf64_Phdr*>(elf.data() + header(elf).e_phoff); }
Elf64_Phdr* nth_load(std::string& elf, int n) {
    for (int i = 0; i < header(elf).e_phnum; ++i)
        if (phdrs(elf)[i].p_type == PT_LOAD && n-- == 0) return &phdrs(elf)[i];
    return nullptr;
}

struct BadElf {
    std::string name;
    std::function<void(std::string&)> mutate;
    std::string message;  // expected in the error line
};

std::vector<BadElf> bad_elves() {
    return {
        {"empty", [](std::string& e) { e.clear(); }, "empty file"},
        {"text", [](std::string& e) { e = "echo hi\n"; }, "not an ELF file"},
        {"truncated_header", [](std::string& e) { e.resize(40); }, "truncated ELF header"},
        {"truncated_phdrs", [](std::string& e) { e.resize(80); }, "truncated program header table"},
        {"truncated_segments", [](std::string& e) { e.resize(e.size() / 3); }, "truncated"},
        {"elf32", [](std::string& e) { header(e).e_ident[EI_CLASS] = ELFCLASS32; }, "not a 64-bit ELF"},
        {"big_endian", [](std::string& e) { header(e).e_ident[EI_DATA] = ELFDATA2MSB; }, "little-endian"},
        {"wrong_machine", [](std::string& e) { header(e).e_machine = EM_AARCH64; }, "not an x86-64 executable"},
        {"relocatable", [](std::string& e) { header(e).e_type = ET_REL; }, "not an executable"},
        {"bad_phentsize", [](std::string& e) { header(e).e_phentsize = 12; }, "program header size"},
        {"no_phdrs", [](std::string& e) { header(e).e_phnum = 0; }, "no program headers"},
        {"phoff_past_end", [](std::string& e) { header(e).e_phoff = e.size() - 10; }, "truncated program header"},
        {"many_phdrs", [](std::string& e) { header(e).e_phnum = 0xffff; }, "program header"},
        {"overlapping_segments", [](std::string& e) { nth_load(e, 1)->p_vaddr = nth_load(e, 0)->p_vaddr; },
         "overlapping"},
        {"kernel_address", [](std::string& e) { nth_load(e, 0)->p_vaddr = 0xffff800000000000ull; },
         "outside the user address"},
        {"wrapping_segment", [](std::string& e) { nth_load(e, 0)->p_memsz = ~0ull - 0x1000; },
         "outside the user address"},
        {"filesz_beyond_memsz", [](std::string& e) { nth_load(e, 0)->p_filesz = nth_load(e, 0)->p_memsz + 1; },
         "file size exceeds"},
        {"segment_offset_past_end", [](std::string& e) { nth_load(e, 1)->p_offset = e.size() + 4096; },
         "past the end of the file"},
        {"misaligned", [](std::string& e) { nth_load(e, 0)->p_vaddr += 1; }, "misaligned"},
        {"entry_outside", [](std::string& e) { header(e).e_entry = 0x10; }, "entry point"},
        {"no_loads",
         [](std::string& e) {
             for (int i = 0; i < header(e).e_phnum; ++i)
                 if (phdrs(e)[i].p_type == PT_LOAD) phdrs(e)[i].p_type = PT_NOTE;
         },
         "no loadable segments"},
        {"below_mmap_min",
         [](std::string& e) {
             // Slide the whole image down to address 0.
             uint64_t base = nth_load(e, 0)->p_vaddr & ~0xfffull;
             for (int i = 0; i < header(e).e_phnum; ++i)
                 if (phdrs(e)[i].p_vaddr >= base) phdrs(e)[i].p_vaddr -= base;
             header(e).e_entry -= base;
         },
         "below 64 KiB"},
        {"interpreter",
         [](std::string& e) {
             for (int i = 0; i < header(e).e_phnum; ++i)
                 if (phdrs(e)[i].p_type == PT_NOTE || phdrs(e)[i].p_type == PT_GNU_STACK) {
                     phdrs(e)[i].p_type = PT_INTERP;  // a note or nothing: no path
                     return;
                 }
         },
         "PT_INTERP"},
    };
}

void PrintTo(const BadElf& b, std::ostream* os) { *os << b.name; }

class MalformedElf : public ::testing::TestWithParam<BadElf> {
protected:
    void SetUp() override { REQUIRE_KVM(); }
};

TEST_P(MalformedElf, IsRefusedWithOneLineAndStatus126) {
    std::string elf = static_program();
    ASSERT_GT(elf.size(), 4096u) << "guest program missing";
    GetParam().mutate(elf);
    TempDir t;
    write_file(t / "prog", elf, 0755);
    auto r = run_vessel({}, {t / "prog"}, with_timeout(20));
    EXPECT_EQ(r.signal, 0) << "vessel itself crashed";
    EXPECT_EQ(r.status, 126) << r.err;
    EXPECT_TRUE(one_error_line(r));
    EXPECT_NE(r.err.find(GetParam().message), std::string::npos) << r.err;
}

INSTANTIATE_TEST_SUITE_P(Inputs, MalformedElf, ::testing::ValuesIn(bad_elves()),
                         [](const auto& info) { return info.param.name; });

TEST(Cli, HugeSegmentIsAClearErrorNotACrash) {
    REQUIRE_KVM();
    std::string elf = static_program();
    Elf64_Phdr* last = nullptr;
    for (int i = 0; nth_load(elf, i); ++i) last = nth_load(elf, i);
    last->p_memsz = 1ull << 45;  // 32 TiB of bss: fits the address range, not the VM
    TempDir t;
    write_file(t / "prog", elf, 0755);
    auto r = run_vessel({}, {t / "prog"}, with_timeout(30));
    EXPECT_EQ(r.signal, 0);
    EXPECT_TRUE(r.status == 126 || r.status == 2) << r.status << " " << r.err;
    EXPECT_TRUE(one_error_line(r));
    EXPECT_NE(r.err.find("too large"), std::string::npos) << r.err;
}

// A dynamic program's loader comes from the guest's file system: without
// it, the error Linux's execve gives (ENOENT), naming it and the flag.
TEST(Cli, DynamicExecutableWithoutItsInterpreterIs127) {
    REQUIRE_KVM();
    auto r = run_vessel({}, {"/bin/ls"});
    EXPECT_EQ(r.status, 127);
    EXPECT_TRUE(one_error_line(r));
    EXPECT_NE(r.err.find("its interpreter /lib64/ld-linux-x86-64.so.2: No such file or directory"), std::string::npos)
        << r.err;
    EXPECT_NE(r.err.find("--root"), std::string::npos) << r.err;
    r = run_vessel({}, {"/tmp"});  // a directory
    EXPECT_EQ(r.status, 126);
    EXPECT_TRUE(one_error_line(r));
}

// Debian's own dynamically linked programs, with the host's / as the
// guest's root, print what they print natively.
TEST(Cli, DebianDynamicProgramsMatchNative) {
    REQUIRE_KVM();
    TempDir t;
    std::string text;
    for (int i = 0; i < 2000; ++i) text += std::to_string((i * 7919) % 1000) + " line\n";
    write_file(t / "input.txt", text);
    const std::vector<std::vector<std::string>> commands = {
        {"/usr/bin/sort", "-n", t / "input.txt"},
        {"/usr/bin/sha256sum", t / "input.txt"},
        {"/usr/bin/awk", "{ s += $1 } END { print s, NR }", t / "input.txt"},
        {"/usr/bin/sed", "-n", "s/^9\\(.*\\) line$/\\1/p", t / "input.txt"},
        {"/usr/bin/ls", "-l", "--time-style=+%s", t.path()},
        // Symbolic links of the host's root (on 9p, in the nested machine,
        // the link's own fstatfs fails: its directory's is used).
        {"/usr/bin/readlink", "-f", "/lib64/ld-linux-x86-64.so.2"},
        {"/usr/bin/df", "--output=target", "/"},
    };
    for (const auto& c : commands) {
        auto native = run(c);
        auto guest = run_vessel({"--root", "/"}, c);
        EXPECT_EQ(guest.status, native.status) << c[0] << "\n" << guest.err;
        EXPECT_EQ(guest.out, native.out) << c[0] << "\n" << guest.err;
        EXPECT_FALSE(native.out.empty()) << c[0];
    }
}

// What Linux's loader says when a library is missing, and LD_LIBRARY_PATH
// finding one elsewhere.
TEST(Cli, MissingLibraryAndLdLibraryPathBehaveAsOnLinux) {
    REQUIRE_KVM();
    TempDir t;
    make_dirs(t / "root/lib64");
    make_dirs(t / "root/opt/lib");
    std::filesystem::copy_file("/lib64/ld-linux-x86-64.so.2", t / "root/lib64/ld-linux-x86-64.so.2");
    const std::string prog = guest_program("time", "gcc-dyn");
    auto r = run_vessel({"--root", t / "root"}, {prog});
    EXPECT_EQ(r.status, 127);
    EXPECT_NE(r.err.find("error while loading shared libraries: libc.so.6: cannot open shared object file: No such "
                         "file or directory"),
              std::string::npos)
        << r.err;
    std::filesystem::copy_file("/lib/x86_64-linux-gnu/libc.so.6", t / "root/opt/lib/libc.so.6");
    EXPECT_EQ(run_vessel({"--root", t / "root"}, {prog}).status, 127);
    r = run_vessel({"--root", t / "root", "--env", "LD_LIBRARY_PATH=/opt/lib"}, {prog});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find(" 0 failed"), std::string::npos) << r.out;
}

// With --root, an absolute PROGRAM in the guest's file system is that
// file; one that is not there is a host path.
TEST(Cli, ProgramIsLookedUpInTheGuestsFileSystemFirst) {
    REQUIRE_KVM();
    TempDir t;
    make_dirs(t / "root/opt/bin");
    std::filesystem::copy_file(kBusybox, t / "root/opt/bin/busybox");
    ASSERT_FALSE(exists("/opt/bin/busybox"));
    auto r = run_vessel({"--root", t / "root"}, {"/opt/bin/busybox", "echo", "from the root"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "from the root\n");
    r = run_vessel({"--root", t / "root"}, {kBusybox, "echo", "from the host"});
    EXPECT_EQ(r.out, "from the host\n") << r.err;
    r = run_vessel({"--root", t / "root"}, {"/opt/bin/missing"});
    EXPECT_EQ(r.status, 127);
    EXPECT_NE(r.err.find("in the guest's file system, nor on the host"), std::string::npos) << r.err;
}

// A #! script runs as natively: its interpreter from the guest's file
// system, with the line's argument, the script's path and the arguments.
TEST(Cli, ScriptsRunTheirInterpreterAsOnLinux) {
    REQUIRE_KVM();
    TempDir t;
    const std::string script = t / "script";
    write_file(script, std::string("#!") + kBusybox + " sh\necho \"$0\" \"$#\" \"$@\"\n", 0755);
    auto native = run({script, "a b", "c"});
    ASSERT_EQ(native.status, 0) << native.err;
    auto guest = run_vessel({"--root", "/"}, {script, "a b", "c"});
    EXPECT_EQ(guest.status, 0) << guest.err;
    EXPECT_EQ(guest.out, native.out);
    // The interpreter reads the script where the guest sees it: a script
    // only the host has cannot run.
    auto r = run_vessel({}, {script});
    EXPECT_EQ(r.status, 126);
    EXPECT_TRUE(one_error_line(r));
    EXPECT_NE(r.err.find("#! script runs from the guest's file system"), std::string::npos) << r.err;
    make_dirs(t / "root");
    write_file(t / "root/bad", "#!/no/such/interpreter\n", 0755);
    r = run_vessel({"--root", t / "root"}, {"/bad"});
    EXPECT_EQ(r.status, 127);
    EXPECT_NE(r.err.find("its interpreter /no/such/interpreter: No such file or directory"), std::string::npos)
        << r.err;
}

TEST(Cli, RandomlyCorruptedHeadersNeverCrashVessel) {
    REQUIRE_KVM();
    const std::string good = static_program();
    const auto& eh = *reinterpret_cast<const Elf64_Ehdr*>(good.data());
    const size_t span = eh.e_phoff + eh.e_phnum * sizeof(Elf64_Phdr);
    std::mt19937 rng(20240611);  // fixed: a failure must reproduce
    TempDir t;
    for (int i = 0; i < 40; ++i) {
        std::string elf = good;
        for (int k = 0; k < 4; ++k) elf[rng() % span] = static_cast<char>(rng());
        write_file(t / "prog", elf, 0755);
        auto r = run_vessel({}, {t / "prog", "exit", "7"}, with_timeout(10));
        EXPECT_EQ(r.signal, 0) << "mutation " << i << ": vessel killed by signal";
        // Whatever the status (refused, ran and exited with any status, a
        // guest crash, or a corrupted program looping until the timeout), a
        // refusal or a guest crash is reported in one line.
        const bool crashed = r.status == 128 + SIGSEGV || r.status == 128 + SIGILL || r.status == 128 + SIGFPE ||
                             r.status == 128 + SIGBUS || r.status == 128 + SIGTRAP;
        if (r.status == 126 || crashed) {
            EXPECT_TRUE(one_error_line(r)) << "mutation " << i;
        }
    }
}

// ---- Start times --------------------------------------------------------------

// now_rfc3339 does its own calendar arithmetic (no time zone database); it
// must agree with the C library's UTC conversion, across a second boundary.
TEST(StartTime, Rfc3339AgreesWithGmtime) {
    for (int attempt = 0; attempt < 3; ++attempt) {
        time_t before = ::time(nullptr);
        std::string ours = now_rfc3339();
        time_t after = ::time(nullptr);
        if (before != after) continue;
        tm t;
        ::gmtime_r(&before, &t);
        char want[40];
        std::strftime(want, sizeof want, "%Y-%m-%dT%H:%M:%SZ", &t);
        EXPECT_EQ(ours, want);
        return;
    }
    FAIL() << "the clock crossed a second boundary three times in a row";
}

// ---- The rewrite cache ------------------------------------------------------

TEST(RewriteCache, SecondStartSkipsTheDecoderAndBadEntriesAreIgnored) {
    REQUIRE_KVM();
    TempDir cache;
    machine::ThinVmConfig cfg;
    cfg.program = kBusybox;
    cfg.argv = {kBusybox, "true"};
    cfg.cache_dir = cache.path();
    auto start = [&] {
        auto vm = machine::ThinVm::create(cfg);
        EXPECT_TRUE(vm.has_value()) << (vm ? "" : vm.error().message);
        if (!vm) return machine::ThinVm::Stats{};
        auto out = (*vm)->run();
        EXPECT_TRUE(out.has_value());
        if (out) {
            EXPECT_EQ(out->status, 0);
        }
        return (*vm)->stats();
    };
    auto first = start();
    EXPECT_FALSE(first.rewrite_cache_hit);
    EXPECT_GT(first.rewritten_sites, 100u);
    auto second = start();
    EXPECT_TRUE(second.rewrite_cache_hit);
    EXPECT_EQ(second.rewritten_sites, first.rewritten_sites);
    // The second start mapped the cached, already rewritten image.
    struct stat st;
    ASSERT_EQ(::stat(kBusybox, &st), 0);
    auto image = loader::open_cached_image(loader::RewriteCache(cache.path()), loader::FileIdentity::of(st));
    ASSERT_TRUE(image.has_value()) << "no rewritten image cached";
    EXPECT_EQ(image->sites, first.rewritten_sites);

    // The cache may keep more than one key per file (content hash, file
    // identity): every entry in the directory is corrupted alike.
    std::vector<std::string> entries;
    for (const auto& e : std::filesystem::recursive_directory_iterator(cache.path()))
        if (e.is_regular_file()) entries.push_back(e.path());
    ASSERT_FALSE(entries.empty()) << "nothing was cached in " << cache.path();
    const std::string entry = entries.front();
    const std::string good = read_file(entry);
    std::vector<std::pair<std::string, std::string>> corruptions = {
        {"garbage", "this is not a cache entry at all"},
        {"truncated", good.substr(0, good.size() / 2)},
        {"empty", ""},
        {"offset_not_a_syscall",
         [&] {
             std::string e = good;
             uint64_t off = 0;  // the ELF magic is not a syscall instruction
             std::memcpy(e.data() + 24, &off, 8);
             return e;
         }()},
        {"offset_past_the_file",
         [&] {
             std::string e = good;
             uint64_t off = ~0ull - 1;
             std::memcpy(e.data() + 24, &off, 8);
             return e;
         }()},
        {"huge_count",
         [&] {
             std::string e = good;
             uint64_t n = ~0ull / 8;
             std::memcpy(e.data() + 16, &n, 8);
             return e;
         }()},
    };
    for (const auto& [name, bytes] : corruptions) {
        for (const auto& e : entries) write_file(e, bytes);
        auto s = start();
        EXPECT_FALSE(s.rewrite_cache_hit) << name;
        EXPECT_EQ(s.rewritten_sites, first.rewritten_sites) << name;
        EXPECT_TRUE(read_file(entry) == good) << name << ": the entry was not rebuilt";
        // And through the CLI, the program still runs right.
        for (const auto& e : entries) write_file(e, bytes);
        RunOptions o;
        o.env = fixed_env();
        o.env.push_back("VESSEL_CACHE_DIR=" + cache.path());
        auto r = run({vessel_path(), "run", kBusybox, "echo", "still fine"}, o);
        EXPECT_EQ(r.status, 0) << name << ": " << r.err;
        EXPECT_EQ(r.out, "still fine\n") << name;
    }
}

// The per-boot CPUID cache: a table that does not start with leaf 0 (such
// as one written skewed by four bytes, as an earlier build did) is replaced.
TEST(CpuidCache, AnImplausibleTableIsRewritten) {
    REQUIRE_KVM();
    TempDir cache;
    std::string boot_id = read_file("/proc/sys/kernel/random/boot_id");
    while (!boot_id.empty() && boot_id.back() == '\n') boot_id.pop_back();
    const std::string path = cache.path() + "/cpuid2-" + boot_id;
    RunOptions o;
    o.env = fixed_env();
    o.env.push_back("VESSEL_CACHE_DIR=" + cache.path());
    auto r = run({vessel_path(), "run", kBusybox, "true"}, o);
    ASSERT_EQ(r.status, 0) << r.err;
    // KVM answers with the APIC ID of the host CPU that asked, so tables
    // written on different CPUs differ: check the shape, not the bytes.
    auto plausible = [](const std::string& table) {
        kvm_cpuid_entry2 first{};
        if (table.size() < sizeof first || table.size() % sizeof first) return false;
        std::memcpy(&first, table.data(), sizeof first);
        return first.function == 0 && first.index == 0 && first.eax >= 1;  // eax: the highest basic leaf
    };
    const std::string good = read_file(path);
    ASSERT_TRUE(plausible(good));
    const std::string skewed = std::string(4, '\0') + good.substr(0, good.size() - 4);
    ASSERT_FALSE(plausible(skewed));
    write_file(path, skewed);
    r = run({vessel_path(), "run", kBusybox, "true"}, o);
    EXPECT_EQ(r.status, 0) << r.err;
    const std::string now = read_file(path);
    EXPECT_NE(now, skewed) << "the skewed table was kept";
    EXPECT_TRUE(plausible(now));
}

// `vessel run` exits before its VM is torn down. Jailed, the jail's parent
// leaves as soon as the VMM has the status and the VMM tears down after it;
// without the jail, a helper sharing the VMM's descriptor table closes them
// (the VM's teardown) after it. Either way one process is left, and it ends
// cleanly: killed (as a helper would be, were it left in the VMM's pid
// namespace) is a failure.
TEST(DetachedTeardown, AHelperClosesTheVmAfterVesselExits) {
    REQUIRE_KVM();
    for (const std::vector<std::string>& jail : {std::vector<std::string>{}, {"--no-jail"}}) {
        ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);  // orphans come to this test
        std::vector<std::string> argv = {vessel_path(), "run"};
        argv.insert(argv.end(), jail.begin(), jail.end());
        argv.insert(argv.end(), {kBusybox, "true"});
        auto r = run(argv);
        ASSERT_EQ(r.status, 0) << r.err;
        int ws = 0;
        pid_t helper = 0;
        for (int i = 0; i < 500 && helper == 0; ++i) {
            helper = ::waitpid(-1, &ws, WNOHANG | __WALL);
            if (helper == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        ::prctl(PR_SET_CHILD_SUBREAPER, 0);
        ASSERT_GT(helper, 0) << "nothing was left to tear the VM down" << (jail.empty() ? "" : " (--no-jail)");
        EXPECT_TRUE(WIFEXITED(ws) && WEXITSTATUS(ws) == 0) << ws << (jail.empty() ? "" : " (--no-jail)");
        EXPECT_EQ(::waitpid(-1, &ws, WNOHANG | __WALL), -1) << "more than one process was left";
    }
}

// `vessel` is a static PIE: no dynamic loader on the cold-start path
// (no PT_INTERP), and still position-independent (ET_DYN) for ASLR.
TEST(VesselBinary, IsAStaticPie) {
#ifdef VESSEL_SANITIZE_BUILD
    GTEST_SKIP() << "a property of the release build: ASan's and UBSan's runtimes cannot be linked into a static "
                    "executable, so the sanitizer build links vessel as an ordinary PIE";
#endif
    const std::string elf = read_file(vessel_path());
    Elf64_Ehdr eh{};
    ASSERT_GE(elf.size(), sizeof eh);
    std::memcpy(&eh, elf.data(), sizeof eh);
    EXPECT_EQ(eh.e_type, ET_DYN) << "not position-independent: the VMM would lose ASLR";
    ASSERT_EQ(eh.e_phentsize, sizeof(Elf64_Phdr));
    ASSERT_LE(eh.e_phoff + uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr), elf.size());
    for (unsigned i = 0; i < eh.e_phnum; ++i) {
        Elf64_Phdr ph{};
        std::memcpy(&ph, elf.data() + eh.e_phoff + i * sizeof ph, sizeof ph);
        EXPECT_NE(ph.p_type, PT_INTERP) << "dynamically linked: ld.so runs at every start";
    }
}

// The decoder runs as the vessel-decode helper next to vessel. Without it,
// a cold start is one error line and status 2, and a warm one still runs;
// what a helper writes is checked like a cache entry.
TEST(Decoder, RunsBesideVesselAndItsOutputIsChecked) {
    REQUIRE_KVM();
    TempDir bin, cache, cold;
    const std::string lone = bin / "vessel";
    std::filesystem::copy_file(vessel_path(), lone);
    RunOptions warm;
    warm.env = fixed_env();
    warm.env.push_back("VESSEL_CACHE_DIR=" + cache.path());
    ASSERT_EQ(run({vessel_path(), "run", kBusybox, "true"}, warm).status, 0);  // fills the cache
    auto r = run({lone, "run", kBusybox, "echo", "warm"}, warm);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "warm\n");

    RunOptions o;
    o.env = fixed_env();
    o.env.push_back("VESSEL_CACHE_DIR=" + cold.path());
    r = run({lone, "run", kBusybox, "true"}, o);
    EXPECT_EQ(r.status, 2);
    EXPECT_TRUE(one_error_line(r));
    EXPECT_NE(r.err.find("vessel-decode"), std::string::npos) << r.err;

    // A helper that claims a site where busybox has no syscall (offset 0,
    // the ELF magic): rejected, nothing is patched, status 2.
    write_file(bin / "vessel-decode",
               "#!/bin/sh\n"
               "size=$(stat -L -c %s /proc/self/fd/3)\n"
               "printf 'VSLRW003'\n"
               "for v in $size 1 0; do printf \"$(printf '\\\\%03o' $(for i in 0 8 16 24 32 40 48 56; do echo $(( (v "
               ">> i) & 255 )); done))\"; done\n");
    ASSERT_EQ(::chmod((bin / "vessel-decode").c_str(), 0755), 0);
    r = run({lone, "run", kBusybox, "true"}, o);
    EXPECT_EQ(r.status, 2) << r.out << r.err;
    EXPECT_NE(r.err.find("no usable list of sites"), std::string::npos) << r.err;
}

TEST(RewriteCache, UnusableCacheDirectoryStillRuns) {
    REQUIRE_KVM();
    RunOptions o;
    o.env = fixed_env();
    o.env.push_back("VESSEL_CACHE_DIR=/dev/null/not-a-dir");
    auto r = run({vessel_path(), "run", kBusybox, "echo", "ok"}, o);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "ok\n");
}

}  // namespace
}  // namespace vessel::test

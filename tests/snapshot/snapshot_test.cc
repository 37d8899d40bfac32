// Pause, snapshot, kill and restore thin VMs through the control API, and
// refuse damaged snapshots. Runs real VMs on /dev/kvm.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "api/http.h"
#include "machine/thin_vm.h"
#include "state/format.h"

extern char** environ;

namespace vessel {
namespace {

namespace fs = std::filesystem;
using api::json;

const std::string kVessel = VESSEL_BINARY_DIR "/bin/vessel";
const std::string kCounter = COUNTER_GUEST;
const std::string kCounterDyn = COUNTER_DYN_GUEST;

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

class Vessel {
public:
    // Starts `vessel ARGS...` with stdout to `out` and stderr to `err`.
    Vessel(const std::vector<std::string>& args, const std::string& out, const std::string& err) {
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        std::vector<char*> argv;
        std::vector<std::string> all = {kVessel};
        all.insert(all.end(), args.begin(), args.end());
        for (auto& a : all) argv.push_back(a.data());
        argv.push_back(nullptr);
        // Its own process group: kill9() reaches the jailed VMM as well as
        // the jail's parent.
        posix_spawnattr_t attr;
        posix_spawnattr_init(&attr);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
        posix_spawnattr_setpgroup(&attr, 0);
        EXPECT_EQ(posix_spawn(&pid_, kVessel.c_str(), &fa, &attr, argv.data(), environ), 0);
        posix_spawnattr_destroy(&attr);
        posix_spawn_file_actions_destroy(&fa);
    }
    ~Vessel() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            wait();
        }
    }
    int wait() {
        int status = 0;
        if (pid_ > 0 && ::waitpid(pid_, &status, 0) == pid_) pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    // Kills vessel and its VMM. With `sock`, also waits (up to 5 s) until
    // the VMM's API socket refuses connections: the VMM dies a little
    // after the parent, and a next VMM must not meet the old one there.
    void kill9(const std::string& sock = {}) {
        if (pid_ > 0) ::kill(-pid_, SIGKILL);
        wait();
        for (int i = 0; !sock.empty() && i < 500; ++i) {
            auto state = api::probe_socket(sock);
            if (!state || *state != api::SocketState::kLive) return;
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }
    // For a failure message: "running", or how it ended.
    std::string state() {
        int status = 0;
        if (pid_ <= 0 || ::waitpid(pid_, &status, WNOHANG) != pid_) return "running";
        pid_ = -1;
        return WIFEXITED(status) ? "exited with " + std::to_string(WEXITSTATUS(status))
                                 : "killed by signal " + std::to_string(WTERMSIG(status));
    }

private:
    pid_t pid_ = -1;
};

// Runs vessel to completion; returns its status, stdout into `out`.
int run_vessel(const std::vector<std::string>& args, std::string& out, std::string& err, const fs::path& dir) {
    Vessel v(args, dir / "run.out", dir / "run.err");
    int status = v.wait();
    out = read_file(dir / "run.out");
    err = read_file(dir / "run.err");
    return status;
}

api::Response call(const std::string& sock, const std::string& method, const std::string& path,
                   const json* body = nullptr) {
    auto r = api::call(sock, method, path, body, std::chrono::seconds(30));
    EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message);
    if (r) return *r;
    api::Response failed;
    failed.status = 599;
    return failed;
}

bool wait_for_socket(const std::string& path) {
    for (int i = 0; i < 500; ++i) {
        if (api::call(path, "GET", "/vm", nullptr, std::chrono::milliseconds(500))) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
}

// Waits until `file` has at least `lines` lines.
void wait_for_lines(const std::string& file, int lines) {
    for (int i = 0; i < 1000; ++i) {
        std::string s = read_file(file);
        if (std::count(s.begin(), s.end(), '\n') >= lines) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    FAIL() << file << " never reached " << lines << " lines";
}

class SnapshotTest : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_EQ(::access("/dev/kvm", R_OK | W_OK), 0) << "these tests need a usable /dev/kvm";
        dir_ = fs::temp_directory_path() / ("vessel-snapshot-test-" + std::to_string(::getpid()) + "-" +
                                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir_);
        fs::create_directories(dir_ / "rw");
        sock_ = (dir_ / "api.sock").string();
    }
    void TearDown() override { fs::remove_all(dir_); }

    // What an uninterrupted run prints.
    // `run OPTIONS... GUEST...`: vessel's arguments for running `guest`.
    static std::vector<std::string> run_args(std::vector<std::string> options, const std::vector<std::string>& guest) {
        options.insert(options.begin(), "run");
        options.insert(options.end(), guest.begin(), guest.end());
        return options;
    }
    std::string reference(const std::vector<std::string>& args) {
        std::string out, err;
        EXPECT_EQ(run_vessel(args, out, err, dir_), 0) << err;
        return out;
    }

    // `lines`: how many the uninterrupted run prints (24 steps, then what
    // `guest_options` add).
    void expect_restored_run_matches(const std::vector<std::string>& options, const std::string& program,
                                     const std::vector<std::string>& guest_options = {}, int lines = 24);

    // Pauses the VM serving sock_, checks it says so, snapshots it into
    // dir_/snap and kills it: what a restore then starts from. The
    // snapshot's reply, or nullopt (the failure recorded) when it failed.
    std::optional<json> snapshot_and_kill(Vessel& vm) {
        EXPECT_EQ(call(sock_, "PUT", "/vm/pause").status, 200);
        EXPECT_EQ(call(sock_, "GET", "/vm").body["state"], "paused");
        json body = {{"path", (dir_ / "snap").string()}};
        auto snap = call(sock_, "PUT", "/vm/snapshot", &body);
        EXPECT_EQ(snap.status, 200) << snap.body.dump();
        vm.kill9(sock_);
        if (snap.status != 200) return std::nullopt;
        return snap.body;
    }

    fs::path dir_;
    std::string sock_;
};

// `vessel run --api-sock` serves the API, confines itself and only then
// starts the vCPU loop: a pause in between (vesseld pauses a VM it has just
// created) waits for the loop and pauses it, instead of "VM is created".
TEST_F(SnapshotTest, PauseBeforeTheVcpuLoopStartsWaitsForIt) {
    ::setenv("VESSEL_CACHE_DIR", (dir_ / "cache").c_str(), 1);
    machine::ThinVmConfig config;
    config.program = kCounter;
    config.argv = {kCounter, "1", "0"};
    config.mem_size = 16 << 20;
    auto vm = machine::ThinVm::create(config);
    ASSERT_TRUE(vm.has_value()) << vm.error().message;
    Result<> paused = fail("not called"), resumed = fail("not called");
    std::thread control([&] {
        paused = (*vm)->pause();
        if (paused) resumed = (*vm)->resume();
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the pause is waiting now
    auto outcome = (*vm)->run();
    control.join();
    EXPECT_TRUE(paused.has_value()) << paused.error().message;
    EXPECT_TRUE(resumed.has_value()) << resumed.error().message;
    ASSERT_TRUE(outcome.has_value()) << outcome.error().message;
    EXPECT_EQ(outcome->status, 0) << outcome->diagnostic;
}

// A pause kicks the vCPU out of the host's nanosleep (EINTR); after the
// resume the guest makes the call again and sleeps its full time. On
// VT-x/AMD-V KVM steps past the `out` only at the next KVM_RUN: stepping
// the guest back before that put it one byte before the `out`, and its
// sleep returned at once.
TEST_F(SnapshotTest, AHostCallInterruptedByAPauseIsMadeAgain) {
    ::setenv("VESSEL_CACHE_DIR", (dir_ / "cache").c_str(), 1);
    machine::ThinVmConfig config;
    config.program = kCounter;
    config.argv = {kCounter, "1", "1500"};  // one step, then a 1.5 s nanosleep
    config.mem_size = 16 << 20;
    auto vm = machine::ThinVm::create(config);
    ASSERT_TRUE(vm.has_value()) << vm.error().message;
    Result<> paused = fail("not called"), resumed = fail("not called");
    std::thread control([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(500));  // well into the sleep
        paused = (*vm)->pause();
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        if (paused) resumed = (*vm)->resume();
    });
    const auto start = std::chrono::steady_clock::now();
    auto outcome = (*vm)->run();
    const auto ran = std::chrono::steady_clock::now() - start;
    control.join();
    EXPECT_TRUE(paused.has_value()) << paused.error().message;
    EXPECT_TRUE(resumed.has_value()) << resumed.error().message;
    ASSERT_TRUE(outcome.has_value()) << outcome.error().message;
    EXPECT_EQ(outcome->status, 0) << outcome->diagnostic;
    // The sleep began again at the resume (600 ms in): at least 2.1 s in all.
    EXPECT_GE(ran, std::chrono::milliseconds(2000));
}

// Pauses, snapshots and kills a VM running `guest` (vessel options
// `options`) after 8 of its 24 lines, restores it, and checks the whole
// output (and its log in /rw) against an uninterrupted run.
void SnapshotTest::expect_restored_run_matches(const std::vector<std::string>& options, const std::string& program,
                                               const std::vector<std::string>& guest_options, int lines) {
    std::vector<std::string> guest = {program, "24", "20", "/rw/log"};
    guest.insert(guest.end(), guest_options.begin(), guest_options.end());
    std::vector<std::string> opts = options;
    opts.insert(opts.end(), {"--rw", (dir_ / "rw").string() + ":/rw"});
    std::string expected = reference(run_args(opts, guest));
    ASSERT_EQ(std::count(expected.begin(), expected.end(), '\n'), lines) << expected;
    fs::remove(dir_ / "rw" / "log");

    opts.insert(opts.end(), {"--api-sock", sock_, "--snapshot-dir", dir_.string()});
    Vessel vm(run_args(opts, guest), dir_ / "part1.out", dir_ / "part1.err");
    ASSERT_TRUE(wait_for_socket(sock_));
    wait_for_lines(dir_ / "part1.out", 8);
    auto snap = snapshot_and_kill(vm);
    ASSERT_TRUE(snap);
    EXPECT_GT((*snap)["pages"].get<uint64_t>(), 0u);

    std::string out, err;
    ASSERT_EQ(run_vessel({"restore", (dir_ / "snap").string()}, out, err, dir_), 0) << err;
    EXPECT_EQ(read_file(dir_ / "part1.out") + out, expected);
    // The guest's own file descriptor survived too: its log is complete.
    const std::string steps = expected.substr(0, std::min(expected.find("timer armed"), expected.find("/proc/self")));
    EXPECT_EQ(read_file(dir_ / "rw" / "log"), steps);
}

TEST_F(SnapshotTest, PausedSnapshottedKilledRestoredRunMatchesUninterrupted) {
    expect_restored_run_matches({}, kCounter);
}

// The same for a dynamically linked program: its loader and libc are in
// guest memory like the rest.
TEST_F(SnapshotTest, ADynamicProgramIsRestoredLikeAStaticOne) {
    expect_restored_run_matches({"--root", "/"}, kCounterDyn);
}

// A signal pending (blocked) when the snapshot is taken is still pending
// after the restore, and the timer is still armed (counter.c, -signals):
// the handler runs once unblocked, as in a run never stopped.
TEST_F(SnapshotTest, APendingSignalAndTheTimerSurviveARestore) {
    expect_restored_run_matches({}, kCounter, {"-signals"}, 26);
}

// A program that ran execve before the snapshot is that program after the
// restore: /proc/self/cmdline, comm and environ show the exec'd program's
// (they showed the first program's: the VM's command line).
TEST_F(SnapshotTest, AnExecdProgramKeepsItsArgumentsAcrossARestore) {
    expect_restored_run_matches({"--root", "/"}, kCounter, {"-exec"}, 27);
}

// Two VMs restored from one snapshot draw different random bytes: the
// guest-side entry's pool of host randomness, in guest memory when the
// snapshot is taken, is refilled at every restore.
TEST_F(SnapshotTest, RestoredVmsDoNotShareRandomBytes) {
    std::vector<std::string> guest = {kCounter, "40", "20", "-random"};
    Vessel vm(run_args({"--api-sock", sock_, "--snapshot-dir", dir_.string()}, guest), dir_ / "part1.out",
              dir_ / "part1.err");
    ASSERT_TRUE(wait_for_socket(sock_));
    wait_for_lines(dir_ / "part1.out", 8);
    ASSERT_TRUE(snapshot_and_kill(vm));

    std::string a, b, err;
    ASSERT_EQ(run_vessel({"restore", (dir_ / "snap").string()}, a, err, dir_), 0) << err;
    ASSERT_EQ(run_vessel({"restore", (dir_ / "snap").string()}, b, err, dir_), 0) << err;
    auto random_lines = [](const std::string& out) {
        std::vector<std::string> lines;
        std::istringstream in(out);
        for (std::string l; std::getline(in, l);)
            if (l.size() == 32) lines.push_back(l);
        return lines;
    };
    const auto ra = random_lines(a), rb = random_lines(b);
    ASSERT_FALSE(ra.empty());
    ASSERT_EQ(ra.size(), rb.size());
    for (size_t i = 0; i < ra.size(); ++i) EXPECT_NE(ra[i], rb[i]) << "line " << i << " repeats after a restore";
}

// glibc's readlink("/proc/self/exe") uses the string in the program's
// read-only data, which the cached image records: the guest-side entry
// answers it (ENOENT) without an exit, and counts it.
TEST_F(SnapshotTest, ReadlinkOfProcSelfExeStaysInTheGuest) {
    std::vector<std::string> guest = {kCounter, "20", "20", "-readlink"};
    std::string expected = reference(run_args({}, guest));  // also fills the rewrite cache
    Vessel vm(run_args({"--api-sock", sock_, "--snapshot-dir", dir_.string()}, guest), dir_ / "out", dir_ / "err");
    ASSERT_TRUE(wait_for_socket(sock_));
    wait_for_lines(dir_ / "out", 8);
    EXPECT_EQ(call(sock_, "PUT", "/vm/pause").status, 200);
    auto m = call(sock_, "GET", "/vm/metrics");
    const uint64_t readlinks = m.body["syscalls"].value("readlink", 0ull);
    EXPECT_GE(readlinks, 70u) << m.body.dump();
    EXPECT_LT(m.body["exits"]["io"].get<uint64_t>(), readlinks) << "readlink left the guest: " << m.body.dump();
    EXPECT_EQ(call(sock_, "PUT", "/vm/resume").status, 200);
    EXPECT_EQ(vm.wait(), 0);
    EXPECT_EQ(read_file(dir_ / "out"), expected);
}

// The guest reads a file in small pieces, so a read-ahead window (guest
// memory, and a host file offset ahead of the guest's) is live when the
// snapshot is taken; the restored run must read on exactly where it was.
// The reads answered in the guest are counted in the metrics.
TEST_F(SnapshotTest, LiveReadAheadWindowSurvivesARestore) {
    std::string input;
    for (int i = 0; i < 40 * 256; ++i) input += static_cast<char>((i * 7) ^ (i >> 8));
    std::ofstream(dir_ / "rw" / "input", std::ios::binary) << input;
    std::vector<std::string> guest = {kCounter, "30", "20", "-read", "/rw/input"};
    const std::string rw = (dir_ / "rw").string() + ":/rw";
    std::string expected = reference(run_args({"--rw", rw}, guest));
    ASSERT_EQ(std::count(expected.begin(), expected.end(), '\n'), 30);

    Vessel vm(run_args({"--api-sock", sock_, "--snapshot-dir", dir_.string(), "--rw", rw}, guest), dir_ / "part1.out",
              dir_ / "part1.err");
    ASSERT_TRUE(wait_for_socket(sock_));
    wait_for_lines(dir_ / "part1.out", 8);
    EXPECT_EQ(call(sock_, "PUT", "/vm/pause").status, 200);
    auto m = call(sock_, "GET", "/vm/metrics");
    EXPECT_GE(m.body["syscalls"].value("read", 0ull), 8u) << m.body.dump();
    uint64_t calls = 0;
    for (const auto& [name, n] : m.body["syscalls"].items()) calls += n.get<uint64_t>();
    EXPECT_GE(calls, m.body["exits"]["io"].get<uint64_t>() + 6) << "reads did not stay in the guest: " << m.body.dump();
    // glibc's start-up rseq, answered -ENOSYS in the guest, still counts as unsupported.
    EXPECT_GE(m.body["syscalls"].value("rseq", 0ull), 1u) << m.body.dump();
    EXPECT_GE(m.body["unsupported_syscalls"].get<uint64_t>(), 1u) << m.body.dump();
    json body = {{"path", (dir_ / "snap").string()}};
    ASSERT_EQ(call(sock_, "PUT", "/vm/snapshot", &body).status, 200);
    vm.kill9(sock_);

    std::string out, err;
    ASSERT_EQ(run_vessel({"restore", (dir_ / "snap").string()}, out, err, dir_), 0) << err;
    EXPECT_EQ(read_file(dir_ / "part1.out") + out, expected);
}

TEST_F(SnapshotTest, DiffSnapshotChainRestoresToTheLatestState) {
    std::vector<std::string> guest = {kCounter, "30", "20"};
    std::string expected = reference(run_args({}, guest));

    Vessel vm(run_args({"--api-sock", sock_, "--snapshot-dir", dir_.string()}, guest), dir_ / "part1.out",
              dir_ / "part1.err");
    ASSERT_TRUE(wait_for_socket(sock_));
    wait_for_lines(dir_ / "part1.out", 5);
    ASSERT_EQ(call(sock_, "PUT", "/vm/pause").status, 200);
    json full = {{"path", (dir_ / "base").string()}, {"type", "full"}};
    ASSERT_EQ(call(sock_, "PUT", "/vm/snapshot", &full).status, 200);
    ASSERT_EQ(call(sock_, "PUT", "/vm/resume").status, 200);
    wait_for_lines(dir_ / "part1.out", 12);
    ASSERT_EQ(call(sock_, "PUT", "/vm/pause").status, 200);
    json diff = {{"path", (dir_ / "diff1").string()}, {"type", "diff"}};
    auto d = call(sock_, "PUT", "/vm/snapshot", &diff);
    ASSERT_EQ(d.status, 200) << d.body.dump();
    EXPECT_EQ(d.body["parent"], (dir_ / "base").string());
    // A diff holds far less than the whole guest memory.
    EXPECT_LT(d.body["memory_bytes"].get<uint64_t>(), 64ull << 20);
    vm.kill9(sock_);

    std::string out, err;
    ASSERT_EQ(run_vessel({"restore", (dir_ / "diff1").string()}, out, err, dir_), 0) << err;
    EXPECT_EQ(read_file(dir_ / "part1.out") + out, expected);
}

TEST_F(SnapshotTest, RestoredVmCanBeSnapshottedAgain) {
    std::vector<std::string> guest = {kCounter, "20", "20"};
    std::string expected = reference(run_args({}, guest));

    Vessel first(run_args({"--api-sock", sock_, "--snapshot-dir", dir_.string()}, guest), dir_ / "p1.out",
                 dir_ / "p1.err");
    ASSERT_TRUE(wait_for_socket(sock_));
    wait_for_lines(dir_ / "p1.out", 4);
    ASSERT_EQ(call(sock_, "PUT", "/vm/pause").status, 200);
    json s1 = {{"path", (dir_ / "s1").string()}};
    ASSERT_EQ(call(sock_, "PUT", "/vm/snapshot", &s1).status, 200);
    first.kill9(sock_);

    Vessel second({"restore", "--api-sock", sock_, "--snapshot-dir", dir_.string(), (dir_ / "s1").string()},
                  dir_ / "p2.out", dir_ / "p2.err");
    ASSERT_TRUE(wait_for_socket(sock_));
    EXPECT_EQ(call(sock_, "GET", "/vm").body["restored_from"], (dir_ / "s1").string());
    wait_for_lines(dir_ / "p2.out", 5);
    ASSERT_EQ(call(sock_, "PUT", "/vm/pause").status, 200);
    json s2 = {{"path", (dir_ / "s2").string()}, {"type", "full"}};
    ASSERT_EQ(call(sock_, "PUT", "/vm/snapshot", &s2).status, 200);
    second.kill9(sock_);

    std::string out, err;
    ASSERT_EQ(run_vessel({"restore", (dir_ / "s2").string()}, out, err, dir_), 0) << err;
    EXPECT_EQ(read_file(dir_ / "p1.out") + read_file(dir_ / "p2.out") + out, expected);
}

// A jailed VMM reaches no host path but its --snapshot-dir: a snapshot by
// path elsewhere is refused (403, saying how), and the same directory
// passed with the request as a descriptor is written, and restores.
TEST_F(SnapshotTest, AJailedVmmSnapshotsIntoADirectoryPassedToIt) {
    std::vector<std::string> guest = {kCounter, "20", "20"};
    std::string expected = reference(run_args({}, guest));
    Vessel vm({"run", "--api-sock", sock_, kCounter, "20", "20"}, dir_ / "p1.out", dir_ / "p1.err");
    ASSERT_TRUE(wait_for_socket(sock_));
    wait_for_lines(dir_ / "p1.out", 4);
    ASSERT_EQ(call(sock_, "PUT", "/vm/pause").status, 200);
    const std::string where = (dir_ / "passed").string();
    json body = {{"path", where}};
    auto refused = call(sock_, "PUT", "/vm/snapshot", &body);
    EXPECT_EQ(refused.status, 403) << refused.body.dump();
    EXPECT_NE(refused.body.dump().find("SCM_RIGHTS"), std::string::npos) << refused.body.dump();
    fs::create_directory(where);
    Fd dir(::open(where.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    auto taken = api::call(sock_, "PUT", "/vm/snapshot", &body, std::chrono::seconds(30), dir.get());
    ASSERT_TRUE(taken.has_value()) << taken.error().message;
    ASSERT_EQ(taken->status, 200) << taken->body.dump();
    EXPECT_EQ(taken->body["path"], where);
    vm.kill9(sock_);
    std::string out, err;
    ASSERT_EQ(run_vessel({"restore", where}, out, err, dir_), 0) << err;
    EXPECT_EQ(read_file(dir_ / "p1.out") + out, expected);
}

// A full snapshot of a VM restored from a diff holds every page: those the
// base image had, those the diff brought (first touched after the base was
// taken) and those written since the restore.
TEST_F(SnapshotTest, FullSnapshotOfAVmRestoredFromADiffIsComplete) {
    std::vector<std::string> guest = {kCounter, "24", "20", "-grow"};
    std::string expected = reference(run_args({}, guest));

    Vessel first(run_args({"--api-sock", sock_, "--snapshot-dir", dir_.string()}, guest), dir_ / "p1.out",
                 dir_ / "p1.err");
    ASSERT_TRUE(wait_for_socket(sock_));
    wait_for_lines(dir_ / "p1.out", 3);
    ASSERT_EQ(call(sock_, "PUT", "/vm/pause").status, 200);
    json base = {{"path", (dir_ / "base").string()}};
    ASSERT_EQ(call(sock_, "PUT", "/vm/snapshot", &base).status, 200);
    ASSERT_EQ(call(sock_, "PUT", "/vm/resume").status, 200);
    wait_for_lines(dir_ / "p1.out", 9);
    ASSERT_EQ(call(sock_, "PUT", "/vm/pause").status, 200);
    json diff = {{"path", (dir_ / "diff").string()}, {"type", "diff"}};
    ASSERT_EQ(call(sock_, "PUT", "/vm/snapshot", &diff).status, 200);
    first.kill9(sock_);

    Vessel second({"restore", "--api-sock", sock_, "--snapshot-dir", dir_.string(), (dir_ / "diff").string()},
                  dir_ / "p2.out", dir_ / "p2.err");
    ASSERT_TRUE(wait_for_socket(sock_)) << "vessel restore " << second.state() << ": " << read_file(dir_ / "p2.err");
    wait_for_lines(dir_ / "p2.out", 3);
    ASSERT_EQ(call(sock_, "PUT", "/vm/pause").status, 200);
    json full = {{"path", (dir_ / "full").string()}};
    ASSERT_EQ(call(sock_, "PUT", "/vm/snapshot", &full).status, 200);
    second.kill9(sock_);

    std::string out, err;
    ASSERT_EQ(run_vessel({"restore", (dir_ / "full").string()}, out, err, dir_), 0) << err;
    EXPECT_EQ(read_file(dir_ / "p1.out") + read_file(dir_ / "p2.out") + out, expected);
}

TEST_F(SnapshotTest, ApiRefusesWrongStatesAndBadBodies) {
    Vessel vm({"run", "--api-sock", sock_, "--snapshot-dir", dir_.string(), kCounter, "400", "20"}, dir_ / "o",
              dir_ / "e");
    ASSERT_TRUE(wait_for_socket(sock_));
    wait_for_lines(dir_ / "o", 1);                            // the metrics below expect a write
    EXPECT_EQ(call(sock_, "PUT", "/vm/resume").status, 409);  // running
    json body = {{"path", (dir_ / "snap").string()}};
    EXPECT_EQ(call(sock_, "PUT", "/vm/snapshot", &body).status, 409);  // not paused
    EXPECT_FALSE(fs::exists(dir_ / "snap" / "state.bin"));
    ASSERT_EQ(call(sock_, "PUT", "/vm/pause").status, 200);
    EXPECT_EQ(call(sock_, "PUT", "/vm/pause").status, 409);  // already paused
    json unknown = {{"path", (dir_ / "x").string()}, {"compress", true}};
    EXPECT_EQ(call(sock_, "PUT", "/vm/snapshot", &unknown).status, 400);
    json wrong_type = {{"path", 42}};
    EXPECT_EQ(call(sock_, "PUT", "/vm/snapshot", &wrong_type).status, 400);
    json bad_kind = {{"path", (dir_ / "x").string()}, {"type", "partial"}};
    EXPECT_EQ(call(sock_, "PUT", "/vm/snapshot", &bad_kind).status, 400);
    json diff_first = {{"path", (dir_ / "x").string()}, {"type", "diff"}};
    EXPECT_EQ(call(sock_, "PUT", "/vm/snapshot", &diff_first).status, 422);  // no parent yet
    ASSERT_EQ(call(sock_, "PUT", "/vm/snapshot", &body).status, 200);
    EXPECT_EQ(call(sock_, "PUT", "/vm/snapshot", &body).status, 409);  // never overwritten
    EXPECT_EQ(call(sock_, "GET", "/vm/nonsense").status, 404);
    EXPECT_EQ(call(sock_, "DELETE", "/vm").status, 405);
    auto m = call(sock_, "GET", "/vm/metrics");
    EXPECT_GT(m.body["exits"]["io"].get<uint64_t>(), 0u);
    EXPECT_GT(m.body["syscalls"].value("write", 0ull), 0u);
    EXPECT_GT(m.body["io_bytes"]["write"].get<uint64_t>(), 0u);
    EXPECT_GT(m.body["guest_memory_touched_bytes"].get<uint64_t>(), 4u << 20);
    ASSERT_EQ(call(sock_, "PUT", "/vm/resume").status, 200);
    EXPECT_EQ(call(sock_, "PUT", "/vm/shutdown").status, 202);
    EXPECT_EQ(vm.wait(), 143);
}

TEST_F(SnapshotTest, PipesCannotBeSnapshottedAndTheVmCarriesOn) {
    Vessel vm({"run", "--api-sock", sock_, "--snapshot-dir", dir_.string(), kCounter, "400", "20", "-pipe"}, dir_ / "o",
              dir_ / "e");
    ASSERT_TRUE(wait_for_socket(sock_));
    wait_for_lines(dir_ / "o", 1);  // the pipe exists before the first line
    ASSERT_EQ(call(sock_, "PUT", "/vm/pause").status, 200);
    json body = {{"path", (dir_ / "snap").string()}};
    auto r = call(sock_, "PUT", "/vm/snapshot", &body);
    EXPECT_EQ(r.status, 409) << r.body.dump();
    EXPECT_NE(r.body["error"]["message"].get<std::string>().find("pipe"), std::string::npos) << r.body.dump();
    EXPECT_FALSE(fs::exists(dir_ / "snap"));  // nothing half-written left behind
    EXPECT_EQ(call(sock_, "PUT", "/vm/resume").status, 200);
    EXPECT_EQ(call(sock_, "GET", "/vm").body["state"], "running");
}

// A VM running more than one process pauses and resumes as one (every
// process stops), reports its process count, and refuses a snapshot with a
// clear 409 that leaves nothing behind; the processes carry on after.
TEST_F(SnapshotTest, AProcessTreePausesAsOneAndRefusesASnapshot) {
    const std::string script = "sleep 2 & echo started; wait; echo done";
    Vessel vm({"run", "--api-sock", sock_, "--snapshot-dir", dir_.string(), "--root", "/", "/bin/busybox", "sh", "-c",
               script},
              dir_ / "o", dir_ / "e");
    ASSERT_TRUE(wait_for_socket(sock_));
    wait_for_lines(dir_ / "o", 1);
    ASSERT_EQ(call(sock_, "PUT", "/vm/pause").status, 200);
    EXPECT_EQ(call(sock_, "GET", "/vm/metrics").body["processes"], 2);
    json body = {{"path", (dir_ / "snap").string()}};
    auto r = call(sock_, "PUT", "/vm/snapshot", &body);
    EXPECT_EQ(r.status, 409) << r.body.dump();
    EXPECT_NE(r.body["error"]["message"].get<std::string>().find("2 processes"), std::string::npos) << r.body.dump();
    EXPECT_FALSE(fs::exists(dir_ / "snap"));
    EXPECT_EQ(call(sock_, "PUT", "/vm/resume").status, 200);
    EXPECT_EQ(vm.wait(), 0);
    EXPECT_EQ(read_file(dir_ / "o"), "started\ndone\n");
}

// A restored VM makes processes and runs new programs: a pipeline and an
// exec after the restore. (Before, an exec there ran the new program
// through KVM's stale translations of the old one's pages: freed pages of
// RAM restored copy-on-write were cleared without telling KVM.)
TEST_F(SnapshotTest, ARestoredVmForksAndExecs) {
    const std::string script =
        "echo started; i=0; while [ $i -lt 3000000 ]; do i=$((i+1)); done; "
        "echo $(echo after-restore $i) | cat; exec /bin/busybox echo exec-ok";
    Vessel vm({"run", "--api-sock", sock_, "--snapshot-dir", dir_.string(), "--root", "/", "/bin/busybox", "sh", "-c",
               script},
              dir_ / "o", dir_ / "e");
    ASSERT_TRUE(wait_for_socket(sock_));
    wait_for_lines(dir_ / "o", 1);
    ASSERT_TRUE(snapshot_and_kill(vm));
    std::string out, err;
    ASSERT_EQ(run_vessel({"restore", (dir_ / "snap").string()}, out, err, dir_), 0) << err;
    EXPECT_EQ(out, "after-restore 3000000\nexec-ok\n") << err;
}

class DamagedSnapshotTest : public SnapshotTest {
protected:
    void SetUp() override {
        SnapshotTest::SetUp();
        Vessel vm({"run", "--api-sock", sock_, "--snapshot-dir", dir_.string(), kCounter, "400", "20"}, dir_ / "o",
                  dir_ / "e");
        ASSERT_TRUE(wait_for_socket(sock_));
        ASSERT_EQ(call(sock_, "PUT", "/vm/pause").status, 200);
        json body = {{"path", (dir_ / "good").string()}};
        ASSERT_EQ(call(sock_, "PUT", "/vm/snapshot", &body).status, 200);
    }
    // Copies the good snapshot, damages the copy, and expects restore to fail
    // with status 2 and one line naming the problem.
    void expect_refused(const std::function<void(const fs::path&)>& damage, const std::string& message) {
        fs::path bad = dir_ / "bad";
        fs::remove_all(bad);
        fs::copy(dir_ / "good", bad);
        damage(bad);
        std::string out, err;
        EXPECT_EQ(run_vessel({"restore", bad.string()}, out, err, dir_), 2) << err;
        EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
        EXPECT_NE(err.find(message), std::string::npos) << err;
    }
    static void truncate_to(const fs::path& p, uintmax_t size) { fs::resize_file(p, size); }
    static void flip_byte(const fs::path& p, size_t offset) {
        std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
        f.seekg(static_cast<std::streamoff>(offset));
        char c;
        f.get(c);
        f.seekp(static_cast<std::streamoff>(offset));
        f.put(static_cast<char>(c ^ 0x5a));
    }
};

TEST_F(DamagedSnapshotTest, TruncatedStateFile) {
    expect_refused([](const fs::path& d) { truncate_to(d / "state.bin", fs::file_size(d / "state.bin") / 2); },
                   "truncated or damaged");
    expect_refused([](const fs::path& d) { truncate_to(d / "state.bin", 10); }, "truncated");
}

TEST_F(DamagedSnapshotTest, CorruptedStateFile) {
    for (size_t off : {40ul, 200ul, 1000ul})
        expect_refused([off](const fs::path& d) { flip_byte(d / "state.bin", off); }, "corrupted");
}

TEST_F(DamagedSnapshotTest, NewerFormatVersion) {
    expect_refused(
        [](const fs::path& d) {
            std::fstream f(d / "state.bin", std::ios::in | std::ios::out | std::ios::binary);
            f.seekp(8);
            uint32_t v = state::kFormatVersion + 1;
            f.write(reinterpret_cast<const char*>(&v), 4);
        },
        "newer than this vessel supports");
}

TEST_F(DamagedSnapshotTest, NotASnapshot) {
    expect_refused([](const fs::path& d) { std::ofstream(d / "state.bin") << "hello, world, this is not it"; },
                   "not a Vessel snapshot");
    expect_refused([](const fs::path& d) { fs::remove(d / "state.bin"); }, "No such file");
}

TEST_F(DamagedSnapshotTest, ConsoleFlagIsForFullMachines) {
    std::string out, err;
    EXPECT_EQ(
        run_vessel({"restore", "--console", "file:" + (dir_ / "c").string(), (dir_ / "good").string()}, out, err, dir_),
        2);
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
    EXPECT_NE(err.find("--console applies to full machines"), std::string::npos) << err;
}

TEST_F(DamagedSnapshotTest, ThinSnapshotPosingAsAFullMachine) {
    expect_refused(
        [](const fs::path& d) {
            auto sections = state::read_state_file((d / "state.bin").string());
            ASSERT_TRUE(sections);
            auto& c = (*sections)[state::Section::kConfig];
            json j = json::parse(c.begin(), c.end());
            EXPECT_EQ(j["kind"], "thin");
            j["kind"] = "full";
            std::string text = j.dump();
            c.assign(text.begin(), text.end());
            ASSERT_TRUE(state::write_state_file((d / "state.bin").string(), *sections));
        },
        "snapshot is missing section 6");
}

TEST_F(DamagedSnapshotTest, MissingOrTruncatedMemoryImage) {
    expect_refused([](const fs::path& d) { fs::remove(d / "memory.img"); }, "memory.img");
    expect_refused([](const fs::path& d) { truncate_to(d / "memory.img", 1 << 20); }, "truncated");
}

}  // namespace
}  // namespace vessel

// The jail, entered for real (root, no KVM needed): from inside, nothing of
// the host is reachable and no privilege comes back; from outside, the
// parent mirrors how the VMM ended.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <optional>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "base/fd.h"
#include "expect_jailed.h"
#include "jail/jail.h"

namespace vessel::jail {
namespace {

namespace fs = std::filesystem;

// Runs `vmm` as a VMM would run: in a fresh process that enters the
// namespaces (the parent of that process mirrors its ending) and returns
// the wait status seen from outside.
// `as_user` (if set): the process first becomes that user (uid = gid), as
// `vessel run` started by someone other than root.
int run_jailed(const std::function<int()>& vmm, std::function<void()> after_exit = {},
               std::optional<uid_t> as_user = std::nullopt) {
    pid_t pid = ::fork();
    if (pid == 0) {
        if (as_user && (::setgroups(0, nullptr) != 0 || ::setresgid(*as_user, *as_user, *as_user) != 0 ||
                        ::setresuid(*as_user, *as_user, *as_user) != 0))
            ::_exit(89);
        // Dumpable again, as a process the user started is (the uid change
        // cleared it, and with it the right to write /proc/self/uid_map).
        if (as_user) ::prctl(PR_SET_DUMPABLE, 1);
        if (auto r = enter_namespaces(after_exit); !r) {
            std::fprintf(stderr, "%s\n", r.error().message.c_str());
            ::_exit(90);
        }
        ::_exit(vmm());
    }
    int ws = 0;
    ::waitpid(pid, &ws, 0);
    return ws;
}

class Jail : public ::testing::Test {
protected:
    void SetUp() override {
        if (::geteuid() != 0) GTEST_FAIL() << "the jail needs root (as vessel run does); run the suite as root";
        dir_ = fs::temp_directory_path() / ("vessel-jail-test-" + std::to_string(::getpid()));
        fs::create_directories(dir_ / "root" / "bin");
        fs::create_directories(dir_ / "rw");
        std::ofstream(dir_ / "root" / "bin" / "hello") << "hi\n";
        report_ = dir_ / "rw" / "report.json";
    }
    void TearDown() override { fs::remove_all(dir_); }

    // Locks a jail holding root (read-only) and rw (writable), runs
    // `inside` there and writes its JSON to rw/report.json.
    nlohmann::json locked(Options o, const std::function<nlohmann::json()>& inside,
                          std::optional<uid_t> as_user = std::nullopt) {
        int ws = run_jailed(
            [&] {
                Fd root(::open((dir_ / "root").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
                Fd rw(::open((dir_ / "rw").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
                if (auto r = lock(o, {{root.get(), sandbox_target(0), false}, {rw.get(), sandbox_target(1), true}});
                    !r) {
                    std::fprintf(stderr, "%s\n", r.error().message.c_str());
                    return 91;
                }
                std::ofstream out(sandbox_target(1) + "/report.json");
                out << inside().dump();
                return out.good() ? 0 : 92;
            },
            {}, as_user);
        EXPECT_TRUE(WIFEXITED(ws) && WEXITSTATUS(ws) == 0) << "wait status " << ws;
        std::ifstream in(report_);
        if (!in) return nullptr;
        return nlohmann::json::parse(in, nullptr, false);
    }

    fs::path dir_, report_;
};

TEST_F(Jail, NothingOfTheHostIsReachableAndNoPrivilegeComesBack) {
    auto report = locked({}, [] { return nlohmann::json::parse(probe().to_json()); });
    test::expect_jailed(report);
    std::printf("inside the jail: %s\n", report.dump().c_str());
}

// Jailed VMMs join one network namespace made once per boot (a setns
// instead of a namespace of their own each: ~0.6 ms and a teardown less),
// not the host's, with no interface up (the probe's connect finds the
// network unreachable).
TEST_F(Jail, VmmsShareOneIsolatedNetworkNamespaceThatIsNotTheHosts) {
    auto netns_of_a_jailed_vmm = [&] {
        auto report = locked({}, [] {
            auto p = nlohmann::json::parse(probe().to_json());
            p["netns"] = fs::read_symlink("/proc/self/ns/net").string();
            return p;
        });
        test::expect_jailed(report);
        return report.is_object() ? report.value("netns", "") : "";
    };
    const std::string first = netns_of_a_jailed_vmm(), second = netns_of_a_jailed_vmm();
    EXPECT_FALSE(first.empty());
    EXPECT_EQ(first, second);
    EXPECT_NE(first, fs::read_symlink("/proc/self/ns/net").string());
    struct stat kept;
    ASSERT_EQ(::stat("/run/vessel/netns-isolated", &kept), 0) << "the shared namespace is kept there";
    EXPECT_EQ("net:[" + std::to_string(kept.st_ino) + "]", first);
}

// The probe is worth something only if it sees what an unjailed process
// reaches: the same checks, run outside, must flag the host.
TEST_F(Jail, TheProbeSeesTheHostFromOutside) {
    Probe outside = probe();
    EXPECT_TRUE(outside.host_files_visible);
    EXPECT_GT(outside.processes_visible, 1);
    EXPECT_TRUE(outside.has_capabilities);
    EXPECT_TRUE(outside.can_mount);
    EXPECT_TRUE(outside.network_reachable);
}

// Not root: a user namespace of its own gives the same jail (devices then
// bound from the host's /dev, as mknod is refused there).
TEST_F(Jail, AnUnprivilegedUserGetsTheSameJailThroughAUserNamespace) {
    fs::permissions(dir_, fs::perms::all);
    fs::permissions(dir_ / "rw", fs::perms::all);
    auto report = locked(
        {},
        [] {
            auto p = nlohmann::json::parse(probe().to_json());
            Fd null(::open("/dev/null", O_WRONLY | O_CLOEXEC));
            p["null_writable"] = null && ::write(null.get(), "x", 1) == 1;
            p["uid"] = ::getuid();
            return p;
        },
        65534);
    test::expect_jailed(report);
    EXPECT_EQ(report["null_writable"], true);
    EXPECT_EQ(report["uid"], 65534) << "the user's own uid, mapped to itself";
}

TEST_F(Jail, BindsAreWhatTheMachineNamedWithTheirModes) {
    auto report = locked({}, [] {
        std::string hello;
        std::ifstream(sandbox_target(0) + "/bin/hello") >> hello;
        bool ro_write = ::open((sandbox_target(0) + "/new").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600) >= 0;
        bool rw_write = ::open((sandbox_target(1) + "/new").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600) >= 0;
        Fd null(::open("/dev/null", O_WRONLY | O_CLOEXEC));
        bool null_ok = null && ::write(null.get(), "x", 1) == 1;
        return nlohmann::json{{"hello", hello}, {"ro_write", ro_write}, {"rw_write", rw_write}, {"null", null_ok}};
    });
    EXPECT_EQ(report["hello"], "hi");
    EXPECT_EQ(report["ro_write"], false) << "the read-only bind must refuse writes";
    EXPECT_EQ(report["rw_write"], true);
    EXPECT_EQ(report["null"], true);
    EXPECT_TRUE(fs::exists(dir_ / "rw" / "new"));
    EXPECT_FALSE(fs::exists(dir_ / "root" / "new"));
}

TEST_F(Jail, RunsAsTheUserAskedForWithoutAWayBack) {
    fs::permissions(dir_ / "rw", fs::perms::all);  // the user writes its report there
    Options o;
    o.uid = 65534;
    o.gid = 65534;
    auto report = locked(o, [] {
        auto p = nlohmann::json::parse(probe().to_json());
        p["uid"] = ::getuid();
        p["gid"] = ::getgid();
        p["groups"] = ::getgroups(0, nullptr);
        return p;
    });
    EXPECT_EQ(report["uid"], 65534);
    EXPECT_EQ(report["gid"], 65534);
    EXPECT_EQ(report["groups"], 0);
    EXPECT_EQ(report["can_become_root"], false);
    EXPECT_EQ(report["has_capabilities"], false);
}

TEST_F(Jail, LimitsAreSet) {
    Options o;
    o.nofile = 64;
    o.fsize = 4096;
    auto report = locked(o, [] {
        struct rlimit nofile, fsize;
        ::getrlimit(RLIMIT_NOFILE, &nofile);
        ::getrlimit(RLIMIT_FSIZE, &fsize);
        return nlohmann::json{{"nofile", nofile.rlim_max}, {"fsize", fsize.rlim_max}};
    });
    EXPECT_EQ(report["nofile"], 64);
    EXPECT_EQ(report["fsize"], 4096);
}

TEST_F(Jail, ThreadsStartedEarlierAreRefused) {
    int ws = run_jailed([] {
        pthread_t t;
        ::pthread_create(
            &t, nullptr,
            [](void*) -> void* {
                ::pause();
                return nullptr;
            },
            nullptr);
        auto r = lock({}, {});
        return !r && r.error().message.find("threads") != std::string::npos ? 0 : 1;
    });
    EXPECT_TRUE(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
}

TEST(JailParent, MirrorsTheVmmsExitStatus) {
    int ws = run_jailed([] { return 7; });
    ASSERT_TRUE(WIFEXITED(ws));
    EXPECT_EQ(WEXITSTATUS(ws), 7);
}

TEST(JailParent, LeavesAtOnceWithAnAnnouncedStatus) {
    int ws = run_jailed([] {
        announce_exit(3);
        ::sleep(30);  // the teardown the parent does not wait for
        return 99;
    });
    ASSERT_TRUE(WIFEXITED(ws));
    EXPECT_EQ(WEXITSTATUS(ws), 3);
}

// A crash: pid 1 takes a fault's signal like any process (a signal it sent
// itself, like raise(SIGKILL), it would ignore).
TEST(JailParent, DiesOfTheSignalThatKilledTheVmm) {
    int ws = run_jailed([] {
        struct rlimit none {
            0, 0
        };
        ::setrlimit(RLIMIT_CORE, &none);
        __builtin_trap();
        return 0;
    });
    ASSERT_TRUE(WIFSIGNALED(ws));
    EXPECT_EQ(WTERMSIG(ws), SIGILL);
}

// The VMM is pid 1 of its namespace, which ignores default-action signals:
// a stop signal sent to the parent must still end both, as that signal.
TEST(JailParent, AStopSignalEndsTheVmm) {
    int ready[2];
    ASSERT_EQ(::pipe(ready), 0);
    pid_t pid = ::fork();
    if (pid == 0) {
        ::close(ready[0]);
        if (!enter_namespaces()) ::_exit(90);
        ::write(ready[1], "r", 1);
        for (;;) ::pause();
    }
    ::close(ready[1]);
    char c;
    ASSERT_EQ(::read(ready[0], &c, 1), 1);
    ::close(ready[0]);
    ::kill(pid, SIGTERM);
    int ws = 0;
    ::waitpid(pid, &ws, 0);
    ASSERT_TRUE(WIFSIGNALED(ws));
    EXPECT_EQ(WTERMSIG(ws), SIGTERM);
}

// The state letter of /proc/PID/stat ('T' stopped, 'S' sleeping...).
char state_of(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(in, line);
    auto close = line.rfind(')');
    return close == std::string::npos || close + 2 >= line.size() ? '?' : line[close + 2];
}

// Ctrl-Z: the VMM (pid 1 of its namespace ignores SIGTSTP) stops with its
// parent, and both go on with SIGCONT.
TEST(JailParent, JobControlStopsAndContinuesTheVmm) {
    pid_t pid = ::fork();
    if (pid == 0) {
        if (!enter_namespaces()) ::_exit(90);
        for (;;) ::pause();
    }
    pid_t vmm = 0;
    for (int i = 0; i < 200 && !vmm; ++i) {
        std::ifstream children("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
        if (!(children >> vmm)) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ASSERT_GT(vmm, 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // its handlers are in place
    ::kill(pid, SIGTSTP);
    int ws = 0;
    ASSERT_EQ(::waitpid(pid, &ws, WUNTRACED), pid);
    EXPECT_TRUE(WIFSTOPPED(ws));
    for (int i = 0; i < 100 && state_of(vmm) != 'T'; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_EQ(state_of(vmm), 'T') << "the VMM stopped too";
    ::kill(pid, SIGCONT);
    for (int i = 0; i < 100 && state_of(vmm) == 'T'; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_NE(state_of(vmm), 'T') << "and goes on";
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &ws, 0);
}

TEST(JailParent, RunsItsCleanupAfterTheVmm) {
    std::string marker = fs::temp_directory_path() / ("vessel-jail-after-" + std::to_string(::getpid()));
    int ws = run_jailed([] { return 0; }, [marker] { std::ofstream(marker) << "x"; });
    EXPECT_TRUE(WIFEXITED(ws));
    EXPECT_TRUE(fs::exists(marker));
    fs::remove(marker);
}

}  // namespace
}  // namespace vessel::jail

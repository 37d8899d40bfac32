// vesseld end to end: VMs through the API and the CLI, crash isolation,
// daemon restart, strict validation and a malformed-request storm.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "../api/malformed.h"
#include "../common/jailed_vmm.h"
#include "../full/boot_harness.h"
#include "api/http.h"
#include "base/fd.h"
#include "cgroup2_mount.h"
#include "daemon/store.h"
#include "vesseld_process.h"

namespace {

using vessel::Fd;
using namespace vessel::testing;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

const std::string kCrash = std::string(VESSEL_BINARY_DIR) + "/guest/crash-gcc";

using vessel::test::raw_exchange;  // raw bytes to the daemon; what came back

class DaemonTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = make_temp_dir("vesseld-test");
        ASSERT_FALSE(dir_.empty()) << std::strerror(errno);
        ASSERT_EQ(::access("/dev/kvm", R_OK | W_OK), 0) << "/dev/kvm is not usable: these tests boot real VMs";
        d_ = std::make_unique<Vesseld>(dir_);
    }
    void TearDown() override {
        // Leave nothing running: remove every VM, then stop the daemon.
        if (d_) d_->remove_all_vms();
        d_.reset();
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    std::string dir_;
    std::unique_ptr<Vesseld> d_;
};

TEST_F(DaemonTest, CreateListInspectLogsStopRemove) {
    auto echo = d_->create("/bin/busybox", {"echo", "hi"}, "echo1");
    auto sleeper = d_->create("/bin/busybox", {"sleep", "30"}, "sleeper");
    auto done = d_->wait_state(echo["id"], "exited");
    EXPECT_EQ(done["exit_status"], 0);
    auto logs = d_->call("GET", "/vms/echo1/logs");
    EXPECT_EQ(logs.status, 200);
    EXPECT_EQ(logs.raw, "hi\n");

    auto list = d_->call("GET", "/vms");
    ASSERT_EQ(list.body["vms"].size(), 2u);
    auto vm = d_->get("sleeper");
    EXPECT_EQ(vm["state"], "running");
    EXPECT_EQ(vm["id"], sleeper["id"]);
    EXPECT_TRUE(vm["cgroup"]["mode"] == "v1" || vm["cgroup"]["mode"] == "v2" || vm["cgroup"]["mode"] == "none");
    for (const auto& p : vm["cgroup"]["paths"]) EXPECT_TRUE(fs::exists(p.get<std::string>())) << p;

    auto stop = d_->call("PUT", "/vms/sleeper/stop", json_ptr{{"timeout_s", 5}});
    EXPECT_EQ(stop.status, 200) << stop.body.dump();
    EXPECT_EQ(stop.body["state"], "exited");
    EXPECT_EQ(d_->call("PUT", "/vms/sleeper/stop").status, 409);
    auto paths = d_->get("sleeper")["cgroup"]["paths"];
    EXPECT_EQ(d_->call("DELETE", "/vms/sleeper").status, 200);
    EXPECT_EQ(d_->call("GET", "/vms/sleeper").status, 404);
    for (const auto& p : paths) EXPECT_FALSE(fs::exists(p.get<std::string>())) << p;
}

TEST_F(DaemonTest, KillMarksExitAndRmNeedsForce) {
    auto vm = d_->create("/bin/busybox", {"sleep", "30"});
    std::string id = vm["id"];
    EXPECT_EQ(d_->call("DELETE", "/vms/" + id).status, 409);
    auto k = d_->call("PUT", "/vms/" + id + "/kill");
    EXPECT_EQ(k.status, 200);
    EXPECT_EQ(k.body["state"], "exited");
    EXPECT_EQ(k.body["exit_signal"], 9);
    EXPECT_EQ(k.body["exit_status"], 137);
    auto again = d_->create("/bin/busybox", {"sleep", "30"});
    EXPECT_EQ(d_->call("DELETE", "/vms/" + again["id"].get<std::string>() + "?force=true").status, 200);
}

TEST_F(DaemonTest, CrashedOrKilledVmsAffectNobodyElse) {
    auto a = d_->create("/bin/busybox", {"sleep", "30"});
    auto b = d_->create("/bin/busybox", {"sleep", "30"});
    ASSERT_TRUE(fs::exists(kCrash)) << kCrash << " missing (target vessel_guest_programs)";
    auto crash = d_->create(kCrash, {"ud2"});
    auto crashed = d_->wait_state(crash["id"], "exited");
    EXPECT_EQ(crashed["exit_status"], 128 + SIGILL);  // as Linux ends a process on #UD
    // kill -9 of one VMM process from outside the daemon.
    ASSERT_EQ(::kill(b["pid"].get<int>(), SIGKILL), 0);
    auto killed = d_->wait_state(b["id"], "exited");
    EXPECT_EQ(killed["exit_signal"], 9);
    EXPECT_EQ(d_->get(a["id"])["state"], "running");
    EXPECT_EQ(::kill(a["pid"].get<int>(), 0), 0);
    EXPECT_TRUE(d_->alive());
    EXPECT_EQ(d_->call("GET", "/healthz").status, 200);
    auto c = d_->create("/bin/busybox", {"echo", "still"});
    EXPECT_EQ(d_->wait_state(c["id"], "exited")["exit_status"], 0);
}

TEST_F(DaemonTest, RestartKeepsTrackWithoutRestarting) {
    auto keep = d_->create("/bin/busybox", {"sleep", "30"}, "keep");
    auto dies = d_->create("/bin/busybox", {"sleep", "30"}, "dies");
    auto done = d_->create("/bin/busybox", {"echo", "x"}, "done");
    d_->wait_state(done["id"], "exited");
    d_->stop(SIGKILL);
    // While the daemon is away, one VM ends.
    ::kill(dies["pid"].get<int>(), SIGKILL);
    std::this_thread::sleep_for(100ms);
    d_->start();
    auto k = d_->get("keep");
    EXPECT_EQ(k["state"], "running");
    EXPECT_EQ(k["pid"], keep["pid"]);  // the same process: nothing restarted
    EXPECT_TRUE(k["adopted"].get<bool>());
    EXPECT_EQ(d_->get("dies")["state"], "exited");
    EXPECT_EQ(d_->get("done")["state"], "exited");
    EXPECT_EQ(d_->get("done")["exit_status"], 0);
    auto list = d_->call("GET", "/vms");
    EXPECT_EQ(list.body["vms"].size(), 3u);
    // Still controllable, and its death is noticed without waitpid.
    auto stop = d_->call("PUT", "/vms/keep/stop", json_ptr{{"timeout_s", 3}});
    EXPECT_EQ(stop.status, 200);
    EXPECT_EQ(d_->wait_state(keep["id"], "exited")["state"], "exited");
    EXPECT_TRUE(gone(keep["pid"].get<int>()));
}

// The daemon records a VM before spawning its VMM and again, with the pid,
// right after. If it dies in between, the next instance finds the VMM by the
// VESSEL_VM_ID in its environment (there is no pid file to go by).
TEST_F(DaemonTest, RestartFindsAVmmWhosePidWasNeverRecorded) {
    auto vm = d_->create("/bin/busybox", {"sleep", "30"}, "unrecorded");
    std::string id = vm["id"];
    int pid = vm["pid"];
    d_->stop(SIGKILL);
    {
        auto store = vessel::daemon::Store::open(dir_ + "/state/vessel.db");
        ASSERT_TRUE(store) << store.error().message;
        auto records = (*store)->load_all();
        ASSERT_TRUE(records);
        ASSERT_EQ(records->size(), 1u);
        json r = records->front();
        r["pid"] = 0;
        r["starttime"] = 0;
        r["state"] = "creating";
        r["started_at"] = "";
        ASSERT_TRUE((*store)->put(id, "unrecorded", r));
    }
    EXPECT_FALSE(fs::exists(dir_ + "/state/vms/" + id + "/pid"));
    d_->start();
    auto again = d_->get("unrecorded");
    EXPECT_EQ(again["state"], "running") << again.dump();
    EXPECT_EQ(again["pid"], pid);
    EXPECT_TRUE(again["adopted"].get<bool>());
    EXPECT_EQ(d_->call("PUT", "/vms/unrecorded/kill").status, 200);
    EXPECT_EQ(d_->wait_state(id, "exited")["state"], "exited");
    EXPECT_TRUE(gone(pid));
}

// VM directories are spread over ext4's block groups (chattr +T on
// STATE/vms): packed into one group, their inodes cost up to 1.4 ms each on a
// file system without a journal when VMs churn (docs/daemon.md).
TEST_F(DaemonTest, VmDirectoriesAreSpreadOverBlockGroups) {
    struct statfs fs {};
    ASSERT_EQ(::statfs(dir_.c_str(), &fs), 0);
    if (fs.f_type != EXT4_SUPER_MAGIC) GTEST_SKIP() << dir_ << " is not on ext2/3/4, which alone has the flag";
    Fd vms(::open((dir_ + "/state/vms").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(vms);
    int flags = 0;
    ASSERT_EQ(::ioctl(vms.get(), FS_IOC_GETFLAGS, &flags), 0) << std::strerror(errno);
    EXPECT_TRUE(flags & FS_TOPDIR_FL) << "STATE/vms lacks the T attribute (lsattr -d)";
}

// Without cgroups a VM runs unlimited, and says so; a limit asked for is
// refused rather than ignored.
TEST_F(DaemonTest, WithoutCgroupsExplicitLimitsAreRefused) {
    fs::create_directories(dir_ + "/nocg");
    Vesseld nocg(dir_ + "/nocg", {"--no-cgroups"});
    EXPECT_EQ(nocg.call("GET", "/healthz").body["cgroup_mode"], "none");
    json limited = {{"program", "/bin/busybox"}, {"args", {"true"}}, {"limits", {{"pids", 16}}}};
    auto r = nocg.call("POST", "/vms", &limited);
    EXPECT_EQ(r.status, 422) << r.body.dump();
    std::string msg = r.body["error"].value("message", "");
    EXPECT_NE(msg.find("limits.pids: cannot be enforced: vesseld runs with --no-cgroups"), std::string::npos) << msg;
    auto vm = nocg.create("/bin/busybox", {"sleep", "30"});
    EXPECT_EQ(vm["cgroup"]["mode"], "none");
    EXPECT_EQ(vm["cgroup"]["unenforced"], json::array({"memory", "pids"})) << vm.dump();
    EXPECT_EQ(nocg.call("DELETE", "/vms/" + vm["id"].get<std::string>() + "?force=true").status, 200);
}

// A VMM creates its API socket (bind) a moment before it listens, and
// POST /vms answers on the first. A stand-in VMM that stretches that moment
// to 50 ms: a pause sent at once must still reach it.
TEST_F(DaemonTest, VmmCallsWaitOutTheGapBetweenBindAndListen) {
    std::string fake = dir_ + "/fake-vessel";
    std::ofstream(fake) << R"(#!/usr/bin/python3
import json, socket, sys, time
args = sys.argv[1:]
if "--help" in args:
    print("run restore --api-sock")
    sys.exit(0)
s = socket.socket(socket.AF_UNIX)
s.bind(args[args.index("--api-sock") + 1])
time.sleep(0.05)
s.listen(8)
while True:
    c, _ = s.accept()
    request = b""
    while b"\r\n\r\n" not in request:
        chunk = c.recv(4096)
        if not chunk:
            break
        request += chunk
    body = json.dumps({"state": "paused" if b"/vm/pause" in request else "running"})
    c.sendall(("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
               "Connection: close\r\n\r\n%s" % (len(body), body)).encode())
    c.close()
)";
    ASSERT_EQ(::chmod(fake.c_str(), 0755), 0);
    fs::create_directories(dir_ + "/fake");
    Vesseld d(dir_ + "/fake", {"--vessel", fake});
    ASSERT_TRUE(d.call("GET", "/healthz").body.value("vmm_api", false));
    auto vm = d.create("/bin/busybox", {"sleep", "30"}, "slow-listener");
    auto paused = d.call("PUT", "/vms/slow-listener/pause");
    EXPECT_EQ(paused.status, 200) << paused.body.dump();
    EXPECT_EQ(paused.body["state"], "paused");
    EXPECT_EQ(d.call("DELETE", "/vms/slow-listener?force=true").status, 200);
}

TEST_F(DaemonTest, StrictValidation) {
    auto post = [&](const std::string& body) {
        auto j = json::parse(body);
        return d_->call("POST", "/vms", &j);
    };
    auto expect_error = [](const vessel::api::Response& r, int status) {
        EXPECT_EQ(r.status, status) << r.body.dump();
        EXPECT_TRUE(r.body.contains("error") && r.body["error"].contains("code")) << r.body.dump();
    };
    expect_error(post(R"({"program":"/bin/busybox","bogus":1})"), 400);
    expect_error(post(R"({"program":42})"), 400);
    expect_error(post(R"({"program":"/bin/busybox","args":"sleep"})"), 400);
    expect_error(post(R"({"program":"/bin/busybox","args":[1]})"), 400);
    expect_error(post(R"({"args":["x"]})"), 400);
    expect_error(post(R"({"program":"/bin/busybox","mem":"lots"})"), 422);
    expect_error(post(R"({"program":"/bin/busybox","mem":"128G"})"), 422);
    expect_error(post(R"({"program":"/bin/busybox","name":"../etc"})"), 422);
    expect_error(post(R"({"program":"/bin/busybox","limits":{"cpus":"two"}})"), 400);
    expect_error(post(R"({"program":"/bin/busybox","limits":{"pids":1}})"), 422);
    expect_error(post(R"({"program":"/bin/busybox","env":{"A":1}})"), 400);
    expect_error(post(R"({"program":"/bin/busybox","rw":[{"host":"/tmp"}]})"), 400);
    auto vm = d_->create("/bin/busybox", {"sleep", "30"}, "v");
    expect_error(d_->call("PUT", "/vms/v/resume"), 409);
    expect_error(post(R"({"program":"/bin/busybox","name":"v"})"), 409);
    expect_error(d_->call("PUT", "/vms/v/snapshot", json_ptr{{"path", "/tmp/x"}}), 409);
    expect_error(d_->call("PUT", "/vms/v/snapshot", json_ptr{{"path", "/tmp/x"}, {"extra", 1}}), 400);
    expect_error(d_->call("PUT", "/vms/v/kill", json_ptr{{"signal", "NOPE"}}), 422);
    expect_error(d_->call("PUT", "/vms/v/pause", json_ptr{{"x", 1}}), 400);
    expect_error(d_->call("GET", "/vms/nope"), 404);
    expect_error(d_->call("PATCH", "/vms/v"), 405);
    expect_error(d_->call("GET", "/vms/v/logs?offset=abc"), 400);
    // Oversized: sent raw (api::call waits for its timeout when the server
    // answers 413 before reading the whole body).
    std::string big = json{{"program", "/bin/busybox"}, {"args", {std::string(100 * 1024, 'a')}}}.dump();
    std::string answer = raw_exchange(d_->socket(),
                                      "POST /vms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                      "Content-Length: " +
                                          std::to_string(big.size()) + "\r\n\r\n" + big);
    EXPECT_EQ(answer.substr(0, 12), "HTTP/1.1 413") << answer;
    EXPECT_NE(answer.find("\"error\""), std::string::npos) << answer;
}

TEST_F(DaemonTest, SurvivesAThousandMalformedRequests) {
    auto vm = d_->create("/bin/busybox", {"sleep", "30"}, "target");
    std::mt19937 rng(20261121);
    auto pick = [&](const std::vector<std::string>& v) { return v[rng() % v.size()]; };
    auto garbage = [&](size_t n) {
        std::string s(n, '\0');
        for (auto& c : s) c = static_cast<char>(rng() % 256);
        return s;
    };
    std::vector<std::string> methods = {"GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS", "FOO", "get"};
    std::vector<std::string> paths = {"/vms",
                                      "/vms/target",
                                      "/vms/target/pause",
                                      "/vms/target/resume",
                                      "/vms/target/snapshot",
                                      "/vms/restore",
                                      "/vms/target/kill?x=1",
                                      "/vms/%00/logs",
                                      "/vms/target/stop",
                                      "/metrics?a",
                                      "/healthz?z=1",
                                      "/" + std::string(300, 'a'),
                                      "/vms/target/logs?tail=-1",
                                      "/nope",
                                      "//vms//"};
    std::vector<std::string> bodies = {R"({"program":"/bin/busybox","unknown":true})",
                                       R"({"program":["x"]})",
                                       R"({"program":"/bin/busybox","mem":-1})",
                                       R"({"path":5})",
                                       R"({"path":"/tmp/s","type":"half"})",
                                       R"({"timeout_s":"soon"})",
                                       R"({"signal":9})",
                                       R"([1,2,3])",
                                       R"("str")",
                                       R"({"a":)",
                                       "null",
                                       R"({"program":"/bin/busybox","limits":{"cpus":-1}})",
                                       R"({"program":"/bin/busybox","args":[null]})",
                                       R"({"force":true})"};
    int answered = 0;
    for (int i = 0; i < 1000; ++i) {
        std::string req;
        int kind = static_cast<int>(rng() % 6);
        std::string method = pick(methods), path = pick(paths);
        std::string body = kind == 0 ? garbage(rng() % 200) : kind == 1 ? std::string(70 * 1024, '{') : pick(bodies);
        if (kind == 5) {
            // Truncated HTTP: a request line or header cut short.
            req = method + " " + path + " HTTP/1.1\r\nContent-Length: 100\r\n\r\n" + body.substr(0, body.size() / 2);
            req = req.substr(0, rng() % req.size());
        } else if (kind == 4) {
            req = garbage(1 + rng() % 300);
        } else {
            req = method + " " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
                  std::to_string(body.size()) + "\r\n\r\n" + body;
        }
        std::string answer = raw_exchange(d_->socket(), req);
        ASSERT_NE(answer, "CONNECT FAILED") << "request " << i << " — daemon log: " << d_->log();
        if (answer.empty()) continue;  // e.g. nothing parseable arrived
        ++answered;
        int status = std::atoi(answer.substr(9, 3).c_str());
        auto pos = answer.find("\r\n\r\n");
        ASSERT_NE(pos, std::string::npos) << answer;
        std::string resp_body = answer.substr(pos + 4);
        if (status >= 400) {
            EXPECT_LT(status, 500) << req.substr(0, 200) << " → " << answer;
            auto j = json::parse(resp_body, nullptr, false);
            EXPECT_TRUE(!j.is_discarded() && j.contains("error")) << answer;
        } else {
            // The few well-formed reads (GET /vms ...) are fine, but no VM
            // may be created or changed by garbage.
            EXPECT_EQ(method == "GET" || method == "get" || kind == 4 ? true : status < 300, true);
        }
    }
    EXPECT_GT(answered, 500);
    EXPECT_TRUE(d_->alive());
    EXPECT_EQ(d_->call("GET", "/healthz").status, 200);
    EXPECT_EQ(d_->get("target")["state"], "running");
    EXPECT_EQ(d_->call("GET", "/vms").body["vms"].size(), 1u);
}

TEST_F(DaemonTest, CliVerbs) {
    auto vm = d_->create("/bin/busybox", {"sleep", "30"}, "clivm");
    auto echo = d_->create("/bin/busybox", {"echo", "from-cli"}, "cliecho");
    d_->wait_state(echo["id"], "exited");
    auto [st, out] = d_->cli("ps");
    EXPECT_EQ(st, 0) << out;
    EXPECT_NE(out.find("clivm"), std::string::npos) << out;
    EXPECT_EQ(out.find("cliecho"), std::string::npos) << out;
    std::tie(st, out) = d_->cli("ps -a -q");
    EXPECT_NE(out.find(echo["id"].get<std::string>()), std::string::npos) << out;
    std::tie(st, out) = d_->cli("inspect clivm");
    EXPECT_EQ(st, 0);
    EXPECT_EQ(json::parse(out)["name"], "clivm");
    std::tie(st, out) = d_->cli("logs cliecho");
    EXPECT_EQ(out, "from-cli\n");
    std::tie(st, out) = d_->cli("logs -f cliecho");
    EXPECT_EQ(out, "from-cli\n");
    std::tie(st, out) = d_->cli("stats --no-stream");
    EXPECT_EQ(st, 0) << out;
    EXPECT_NE(out.find("clivm"), std::string::npos) << out;
    {  // PROCS: the guest processes (ID NAME STATE CPU MEM / LIMIT PIDS PROCS ...)
        std::istringstream row(out.substr(out.find(vm["id"].get<std::string>())));
        std::vector<std::string> f(9);
        for (auto& x : f) row >> x;
        EXPECT_NE(out.find("PROCS"), std::string::npos) << out;
        EXPECT_EQ(f[8], "1") << out;
    }
    std::tie(st, out) = d_->cli("resume clivm");
    EXPECT_EQ(st, 1) << out;
    EXPECT_NE(out.find("needs a paused VM"), std::string::npos) << out;
    std::tie(st, out) = d_->cli("stop -t 2 clivm");
    EXPECT_EQ(st, 0) << out;
    std::tie(st, out) = d_->cli("rm clivm cliecho");
    EXPECT_EQ(st, 0) << out;
    std::tie(st, out) = d_->cli("ps -a -q");
    EXPECT_EQ(out, "");
    std::tie(st, out) = d_->cli("ps --host-socket /nonexistent/vesseld.sock");
    EXPECT_EQ(st, 2);
    EXPECT_NE(out.find("cannot reach vesseld at /nonexistent/vesseld.sock"), std::string::npos) << out;
}

TEST_F(DaemonTest, PrometheusMetrics) {
    auto vm = d_->create("/bin/busybox", {"sleep", "30"}, "m1");
    auto r = d_->call("GET", "/metrics");
    EXPECT_EQ(r.status, 200);
    EXPECT_NE(r.content_type.find("version=0.0.4"), std::string::npos);
    EXPECT_NE(r.raw.find("# TYPE vessel_vms gauge"), std::string::npos) << r.raw;
    EXPECT_NE(r.raw.find("vessel_vm_up{vm=\"" + vm["id"].get<std::string>() + "\",name=\"m1\"} 1"), std::string::npos)
        << r.raw;
    auto s = d_->call("GET", "/vms/m1/stats");
    EXPECT_EQ(s.status, 200);
    EXPECT_TRUE(s.body["cpu_ns"].is_number()) << s.body.dump();
}

// vesseld --vmm-user: every jailed VMM runs as that user and group, and
// snapshots into its VM's snapshot directory, which is theirs.
TEST_F(DaemonTest, VmmsRunAsTheUserTheDaemonNames) {
    d_.reset();
    d_ = std::make_unique<Vesseld>(dir_, std::vector<std::string>{"--vmm-user", "65534:65534"});
    auto vm = d_->create("/bin/busybox", {"sleep", "30"}, "u");
    const auto info = d_->get("u");
    ASSERT_TRUE(info["snapshot_dir"].is_string()) << info.dump();
    const pid_t vmm = vessel::testing::jailed_vmm(info["pid"].get<int>());
    std::string uid, gid;
    std::ifstream status("/proc/" + std::to_string(vmm) + "/status");
    for (std::string l; std::getline(status, l);) {
        if (l.rfind("Uid:", 0) == 0) uid = l.substr(4);
        if (l.rfind("Gid:", 0) == 0) gid = l.substr(4);
    }
    EXPECT_EQ(uid, "\t65534\t65534\t65534\t65534");
    EXPECT_EQ(gid, "\t65534\t65534\t65534\t65534");
    EXPECT_EQ(d_->call("PUT", "/vms/u/pause").status, 200);
    const std::string snap = info["snapshot_dir"].get<std::string>() + "/s1";
    auto sn = d_->call("PUT", "/vms/u/snapshot", json_ptr{{"path", snap}});
    EXPECT_EQ(sn.status, 200) << sn.body.dump();
    struct stat st {};
    ASSERT_EQ(::stat((snap + "/memory.img").c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 65534u);
}

// Needs the VMM control API (`vessel run --api-sock`).
TEST_F(DaemonTest, PauseResumeSnapshotThroughTheVmmApi) {
    auto h = d_->call("GET", "/healthz");
    ASSERT_TRUE(h.body["vmm_api"].get<bool>())
        << "`vessel run --help` does not list --api-sock yet: the VMM control API has not landed, so pause, "
           "resume, snapshot and VMM metrics cannot be tested";
    auto vm = d_->create("/bin/busybox", {"sleep", "30"}, "p");
    EXPECT_EQ(d_->call("PUT", "/vms/p/pause").body["state"], "paused");
    EXPECT_EQ(d_->call("PUT", "/vms/p/pause").status, 409);
    // The VMM is jailed (its snapshot_dir is the one path it reaches); the
    // daemon passes any other directory to it as a descriptor.
    EXPECT_TRUE(d_->get("p")["snapshot_dir"].is_string()) << "vessel runs jailed by default";
    std::string snap = dir_ + "/snap";
    auto sn = d_->call("PUT", "/vms/p/snapshot", json_ptr{{"path", snap}, {"type", "full"}});
    EXPECT_EQ(sn.status, 200) << sn.body.dump();
    EXPECT_TRUE(sn.body["memory_bytes"].is_number());
    EXPECT_EQ(d_->call("PUT", "/vms/p/resume").body["state"], "running");
    auto m = d_->call("GET", "/vms/p/metrics");
    EXPECT_EQ(m.status, 200);
    EXPECT_TRUE(m.body["exits"].is_object()) << m.body.dump();
    auto prom = d_->call("GET", "/metrics");
    EXPECT_NE(prom.raw.find("vessel_vm_syscalls_total{"), std::string::npos);
    auto restored = d_->call("POST", "/vms/restore", json_ptr{{"path", snap}, {"name", "p2"}});
    EXPECT_EQ(restored.status, 201) << restored.body.dump();
    EXPECT_EQ(restored.body["restored_from"], snap);
}

// A full machine (Debian's kernel, early boot) snapshotted by `vessel boot`'s
// own API is restored under the daemon: it keeps booting, its console goes to
// the VM's console log, and the daemon pauses, snapshots and removes it.
TEST_F(DaemonTest, FullMachineSnapshotRestoresUnderTheDaemon) {
    namespace t = vessel::testing;
    std::string why;
    const std::string kernel = t::kernel_dir(why);
    ASSERT_FALSE(kernel.empty()) << why;
    const std::string console = dir_ + "/boot.console", sock = dir_ + "/boot.sock", snap = dir_ + "/fullsnap";
    {
        t::VesselProcess boot({"boot", "--console", "file:" + console, "--api-sock", sock, "--snapshot-dir", dir_,
                               "--kernel", kernel + "/vmlinux", "--mem", "256M", "--cmdline",
                               "console=ttyS0 earlyprintk=serial,ttyS0,115200 reboot=k panic=1 pci=off"},
                              dir_ + "/boot.err");
        ASSERT_TRUE(t::wait_for([&] { return t::read_file(console).find("Linux version") != std::string::npos; }, 180))
            << t::tail(t::read_file(console)) << t::read_file(dir_ + "/boot.err");
        auto paused = vessel::api::call(sock, "PUT", "/vm/pause", nullptr, 20s);
        ASSERT_TRUE(paused && paused->status == 200);
        auto taken = vessel::api::call(sock, "PUT", "/vm/snapshot", json_ptr{{"path", snap}}, 60s);
        ASSERT_TRUE(taken && taken->status == 200) << (taken ? taken->body.dump() : taken.error().message);
    }  // vessel boot is killed here

    auto vm = d_->call("POST", "/vms/restore", json_ptr{{"path", snap}, {"name", "full"}});
    ASSERT_EQ(vm.status, 201) << vm.body.dump();
    EXPECT_EQ(vm.body["state"], "running");
    // The kernel carries on: lines it prints after the snapshot point, with
    // their timestamps, reach the VM's console log.
    const std::string log = vm.body["console_log"];
    const std::regex kernel_line(R"(\[ *[0-9]+\.[0-9]{6}\] )");
    EXPECT_TRUE(t::wait_for([&] { return std::regex_search(t::read_file(log), kernel_line); }, 120))
        << "restored console:\n"
        << t::tail(t::read_file(log)) << "\ndaemon log:\n"
        << d_->log();
    EXPECT_EQ(d_->call("PUT", "/vms/full/pause").body["state"], "paused");
    auto again = d_->call("PUT", "/vms/full/snapshot", json_ptr{{"path", dir_ + "/fullsnap2"}});
    EXPECT_EQ(again.status, 200) << again.body.dump();
    EXPECT_EQ(d_->call("DELETE", "/vms/full?force=true").status, 200);
}

// A guest that touches more memory than its VM's cgroup allows: the kernel's
// OOM killer ends the VMM, and the VM says so (tests/daemon/state_test.cc
// checks the same with a stand-in VMM, without KVM).
TEST_F(DaemonTest, AVmKilledByItsMemoryLimitSaysSo) {
    auto h = d_->call("GET", "/healthz").body;
    bool memory = false;
    for (const auto& c : h["cgroup_controllers"]) memory |= c == "memory";
    ASSERT_TRUE(memory) << "needs a memory controller (cgroup v1 or delegated v2): " << h.dump();
    json body = {{"name", "oom"},
                 {"program", "/bin/busybox"},
                 {"args", {"dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"}},
                 {"mem", "512M"},
                 {"limits", {{"memory", "64M"}}}};
    auto r = d_->call("POST", "/vms", &body);
    ASSERT_EQ(r.status, 201) << r.body.dump();
    auto vm = d_->wait_state(r.body["id"], "exited", 60s);
    EXPECT_EQ(vm["exit_signal"], 9) << vm.dump();
    EXPECT_TRUE(vm["oom_killed"].get<bool>()) << vm.dump();
    std::string error = vm.value("error", "");
    EXPECT_NE(error.find("the VM reached its memory limit of 67108864 bytes (limits.memory)"), std::string::npos)
        << error;
    auto [st, ps] = d_->cli("ps -a");
    EXPECT_NE(ps.find("137 oom"), std::string::npos) << ps;
}

// The cgroup v2 path on the host's real cgroup2 hierarchy, through a private
// mount of it given as --cgroup-root. On the CI machines that hierarchy
// offers none of cpu, memory and pids (they are bound to v1): the test then
// checks that this is reported and that explicit limits are refused; where
// they are offered, it checks the limits written instead.
class DaemonCgroupV2Test : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_EQ(::access("/dev/kvm", R_OK | W_OK), 0) << "/dev/kvm is not usable: these tests boot real VMs";
        ASSERT_TRUE(mount_.ok()) << mount_.error() << " (the test mounts a cgroup2 hierarchy of its own: run as root)";
        mount_.remove_at_end(Vesseld::cgroup_parent());
        dir_ = make_temp_dir("vesseld-cg2-test");
        ASSERT_FALSE(dir_.empty()) << std::strerror(errno);
        d_ = std::make_unique<Vesseld>(dir_, std::vector<std::string>{"--cgroup-root", mount_.path()});
        ASSERT_TRUE(d_->alive()) << d_->log();
        parent_ = mount_.path() + "/" + Vesseld::cgroup_parent();
        std::istringstream offered(slurp(mount_.path() + "/cgroup.controllers"));
        std::set<std::string> have;
        for (std::string c; offered >> c;) have.insert(c);
        for (const char* c : {"cpu", "memory", "pids"})
            if (!have.count(c)) lacking_.push_back(c);
    }
    void TearDown() override {
        if (d_) d_->remove_all_vms();
        d_.reset();
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    bool lacks(const std::string& c) const { return std::find(lacking_.begin(), lacking_.end(), c) != lacking_.end(); }
    // The processes in a group, less kernel threads: KVM adds one of its
    // own per VM (kvm-nx-lpage-recovery-PID) to the group of the VM's maker.
    static std::set<int> user_processes(const std::string& group) {
        std::set<int> pids;
        std::istringstream procs(slurp(group + "/cgroup.procs"));
        for (int pid; procs >> pid;)
            if (parent_of(pid) != 2) pids.insert(pid);  // kthreadd's children are kernel threads
        return pids;
    }
    // The VMM `pid` vesseld started and its jailed child (jail/: the VMM
    // proper, pid 1 of its namespaces).
    static std::set<int> vmm_processes(int pid) {
        std::set<int> pids = {pid};
        for (const auto& e : fs::directory_iterator("/proc")) {
            int other = std::atoi(e.path().filename().c_str());
            if (other > 0 && parent_of(other) == pid) pids.insert(other);
        }
        return pids;
    }
    static int parent_of(int pid) {
        std::istringstream status(slurp("/proc/" + std::to_string(pid) + "/status"));
        for (std::string line; std::getline(status, line);)
            if (line.rfind("PPid:", 0) == 0) return std::atoi(line.c_str() + 5);
        return -1;
    }

    size_t groups() const {
        size_t n = 0;
        for (const auto& e : fs::directory_iterator(parent_)) n += e.is_directory();
        return n;
    }

    PrivateCgroup2Mount mount_;  // declared first: goes last, after the daemon
    std::string dir_, parent_;
    std::vector<std::string> lacking_;
    std::unique_ptr<Vesseld> d_;
};

TEST_F(DaemonCgroupV2Test, EachVmInItsOwnGroupAndMissingControllersReported) {
    auto h = d_->call("GET", "/healthz").body;
    EXPECT_EQ(h["cgroup_mode"], "v2") << h.dump();
    EXPECT_EQ(h["cgroup_controllers"].size(), 3 - lacking_.size()) << h.dump();
    if (!lacking_.empty()) {
        std::string note = h["cgroup_note"].is_string() ? h["cgroup_note"].get<std::string>() : "";
        EXPECT_NE(note.find("offers no"), std::string::npos) << note;
        EXPECT_NE(note.find(mount_.path()), std::string::npos) << note;
        for (const auto& c : lacking_) EXPECT_NE(note.find(c), std::string::npos) << c << " not named in: " << note;
        std::string log = d_->log();
        auto at = log.find("vesseld: warning: the cgroup v2 hierarchy at " + parent_ + " has no ");
        ASSERT_NE(at, std::string::npos) << log;
        std::string line = log.substr(at, log.find('\n', at) - at);
        for (const auto& c : lacking_) EXPECT_NE(line.find(c), std::string::npos) << c << " not named in: " << line;
    }

    auto a = d_->create("/bin/busybox", {"sleep", "30"}, "a");
    auto b = d_->create("/bin/busybox", {"sleep", "30"}, "b");
    for (const auto& vm : {a, b}) {
        std::string id = vm["id"], group = parent_ + "/" + id;
        int pid = vm["pid"];
        EXPECT_EQ(vm["cgroup"]["mode"], "v2");
        EXPECT_EQ(vm["cgroup"]["paths"], json::array({group}));
        // The VMM alone (its jail's two processes), in a group of its own.
        EXPECT_EQ(user_processes(group), vmm_processes(pid));
        std::string seen = slurp("/proc/" + std::to_string(pid) + "/cgroup");
        EXPECT_NE(seen.find("0::/" + Vesseld::cgroup_parent() + "/" + id + "\n"), std::string::npos) << seen;
        // The default memory and pids limits, where they cannot be applied, say so.
        json unenforced = json::array();
        for (const char* c : {"memory", "pids"})
            if (lacks(c)) unenforced.push_back(c);
        EXPECT_EQ(vm["cgroup"]["unenforced"], unenforced) << vm.dump();
    }
    EXPECT_EQ(groups(), 2u);

    // A limit the caller asks for is applied, or the VM is not created.
    json limited = {{"program", "/bin/busybox"},
                    {"args", {"sleep", "30"}},
                    {"mem", "16M"},
                    {"limits", {{"cpus", 0.5}, {"memory", "256M"}, {"pids", 40}}}};
    auto r = d_->call("POST", "/vms", &limited);
    if (!lacking_.empty()) {
        EXPECT_EQ(r.status, 422) << r.body.dump();
        std::string msg = r.body["error"].value("message", "");
        for (const auto& c : lacking_) {
            EXPECT_NE(msg.find("limits." + (c == "cpu" ? std::string("cpus") : c)), std::string::npos) << msg;
            EXPECT_NE(msg.find(c), std::string::npos) << msg;
        }
        EXPECT_NE(msg.find("controller"), std::string::npos) << msg;
        EXPECT_EQ(groups(), 2u);  // nothing was made for it
    } else {
        ASSERT_EQ(r.status, 201) << r.body.dump();
        std::string group = parent_ + "/" + r.body["id"].get<std::string>();
        EXPECT_EQ(slurp(group + "/cpu.max"), "50000 100000\n");
        EXPECT_EQ(slurp(group + "/memory.max"), "268435456\n");
        EXPECT_EQ(slurp(group + "/pids.max"), "40\n");
        EXPECT_EQ(d_->call("DELETE", "/vms/" + r.body["id"].get<std::string>() + "?force=true").status, 200);
    }

    // rm takes the group with it, and only that one.
    EXPECT_EQ(d_->call("DELETE", "/vms/a?force=true").status, 200);
    EXPECT_FALSE(fs::exists(parent_ + "/" + a["id"].get<std::string>()));
    EXPECT_TRUE(fs::exists(parent_ + "/" + b["id"].get<std::string>()));

    // A daemon that stops leaves the parent group to VMs that outlive it, and
    // removes it once none is left.
    d_->stop(SIGTERM);
    EXPECT_TRUE(fs::exists(parent_));
    d_->start();
    EXPECT_EQ(d_->call("DELETE", "/vms/b?force=true").status, 200);
    d_->stop(SIGTERM);
    EXPECT_FALSE(fs::exists(parent_));
    d_->start();  // and makes it again
    auto c = d_->create("/bin/busybox", {"sleep", "30"}, "c");
    EXPECT_EQ(user_processes(parent_ + "/" + c["id"].get<std::string>()), vmm_processes(c["pid"].get<int>()));
}

}  // namespace

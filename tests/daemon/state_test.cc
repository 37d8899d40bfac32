// vesseld's state without KVM: who may read it, records on a full disk, VMMs
// without a record, stray VM directories, and what a VM's limits did to it.
// The VMM is a stand-in that runs the VM's program natively (fake_vessel()).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>

#include "../base/file_test_util.h"
#include "daemon/store.h"
#include "vesseld_process.h"

namespace {

using vessel::daemon::Store;
using namespace vessel::testing;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

gid_t group_of(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path << ": " << std::strerror(errno);
    return st.st_gid;
}

size_t count(const std::string& haystack, const std::string& needle) {
    size_t n = 0;
    for (size_t at = haystack.find(needle); at != std::string::npos; at = haystack.find(needle, at + 1)) ++n;
    return n;
}

class StateTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = make_temp_dir("vesseld-state-test");
        ASSERT_FALSE(dir_.empty()) << std::strerror(errno);
        state_ = dir_ + "/state";
        fake_ = dir_ + "/fake-vessel";
        // `vessel run --mem BYTES PROGRAM ARGS...` (the daemon runs it with
        // --vmm-api no): note the VM, then run PROGRAM natively, named like a
        // VMM so a restarted daemon takes it for one.
        std::ofstream(fake_) << "#!/bin/bash\n"
                                "echo \"$VESSEL_VM_ID\" >> " +
                                    dir_ +
                                    "/spawned\n"
                                    "shift 3\n"
                                    "exec -a vessel-fake-vmm \"$@\"\n";
        ASSERT_EQ(::chmod(fake_.c_str(), 0755), 0);
    }
    void TearDown() override {
        if (d_) d_->remove_all_vms();
        d_.reset();
        if (mounted_) ::umount2(state_.c_str(), MNT_DETACH);
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    void start(std::vector<std::string> extra = {"--no-cgroups"}) {
        extra.insert(extra.end(), {"--vessel", fake_, "--vmm-api", "no"});
        d_ = std::make_unique<Vesseld>(dir_, extra);
        ASSERT_TRUE(d_->alive()) << d_->log();
    }
    std::string spawned() const { return slurp(dir_ + "/spawned"); }
    json sleeper(const std::string& name) { return d_->create("/bin/sleep", {"600"}, name); }

    // STATE on a tmpfs of `bytes`, in a mount namespace of the test process's
    // own (the daemon, its child, shares it): the mount goes with the process
    // whatever happens.
    void mount_small_state(size_t bytes) {
        ASSERT_EQ(::unshare(CLONE_NEWNS), 0) << std::strerror(errno) << " (this test needs root)";
        ASSERT_EQ(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), 0) << std::strerror(errno);
        fs::create_directories(state_);
        std::string options = "size=" + std::to_string(bytes) + ",mode=0755";
        ASSERT_EQ(::mount("tmpfs", state_.c_str(), "tmpfs", 0, options.c_str()), 0) << std::strerror(errno);
        mounted_ = true;
    }
    // Writes STATE/filler until the file system is full.
    void fill() {
        int fd = ::open((state_ + "/filler").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        ASSERT_GE(fd, 0);
        std::string chunk(4096, 'x');
        while (::write(fd, chunk.data(), chunk.size()) > 0) {
        }
        EXPECT_EQ(errno, ENOSPC);
        ::close(fd);
    }
    void make_room() { ASSERT_EQ(::unlink((state_ + "/filler").c_str()), 0); }

    std::string dir_, state_, fake_;
    bool mounted_ = false;
    std::unique_ptr<Vesseld> d_;
};

// ---- who may read the state ----

TEST_F(StateTest, AFreshStateIsPrivateToTheDaemon) {
    start();
    EXPECT_EQ(mode_of(state_), 0700u);
    EXPECT_EQ(mode_of(state_ + "/vms"), 0700u);
    for (const char* f : {"vessel.db", "vessel.db-wal", "vessel.db-shm"})
        EXPECT_EQ(mode_of(state_ + "/" + f), 0600u) << f;
    auto vm = sleeper("private");
    EXPECT_EQ(mode_of(vm["dir"]), 0700u);
    EXPECT_EQ(mode_of(vm["console_log"]), 0600u);
    // What the database holds: the environment of every VM.
    json body = {{"program", "/bin/sleep"}, {"args", {"600"}}, {"env", {{"TOKEN", "s3cret"}}}};
    EXPECT_EQ(d_->call("POST", "/vms", &body).status, 201);
    EXPECT_EQ(mode_of(state_ + "/vessel.db-wal"), 0600u);
}

TEST_F(StateTest, TheStateOfAnEarlierVersionIsTightenedAtStartAndLogged) {
    const std::string id = "0123456789ab", vm_dir = state_ + "/vms/" + id;
    fs::create_directories(vm_dir);
    {
        auto store = Store::open(state_ + "/vessel.db");
        ASSERT_TRUE(store) << store.error().message;
        json record = {{"id", id}, {"name", "old"}, {"dir", vm_dir}, {"state", "exited"}};
        ASSERT_TRUE((*store)->put(id, "old", record));
    }
    std::ofstream(vm_dir + "/console.log") << "output of an old VM\n";
    ASSERT_EQ(::chmod(state_.c_str(), 0755), 0);
    ASSERT_EQ(::chmod((state_ + "/vms").c_str(), 0755), 0);
    ASSERT_EQ(::chmod(vm_dir.c_str(), 0750), 0);
    ASSERT_EQ(::chmod((vm_dir + "/console.log").c_str(), 0644), 0);
    ASSERT_EQ(::chmod((state_ + "/vessel.db").c_str(), 0644), 0);

    start();
    EXPECT_EQ(mode_of(state_), 0700u);
    EXPECT_EQ(mode_of(state_ + "/vms"), 0700u);
    EXPECT_EQ(mode_of(vm_dir), 0700u);
    EXPECT_EQ(mode_of(vm_dir + "/console.log"), 0600u);
    for (const char* f : {"vessel.db", "vessel.db-wal", "vessel.db-shm"})
        EXPECT_EQ(mode_of(state_ + "/" + f), 0600u) << f;
    std::string log = d_->log();
    EXPECT_NE(log.find("state permissions: " + state_ + ": mode 0755 → 0700"), std::string::npos) << log;
    EXPECT_NE(log.find("state permissions: " + state_ + "/vms: mode 0755 → 0700"), std::string::npos) << log;
    EXPECT_NE(log.find("state permissions: " + state_ + "/vessel.db: mode 0644 → 0600"), std::string::npos) << log;
    EXPECT_NE(log.find("1 VM directory set to 0700 and 1 console log to 0600"), std::string::npos) << log;
    EXPECT_EQ(d_->get("old")["state"], "exited");  // the record is read as before

    // Already tight: nothing to say the next time.
    d_->stop(SIGTERM);
    std::ofstream(dir_ + "/vesseld.log", std::ios::trunc).flush();
    d_->start();
    EXPECT_EQ(d_->log().find("state permissions"), std::string::npos) << d_->log();
}

TEST_F(StateTest, AStateGroupMayReadTheDirectoriesAndLogsButNotTheDatabase) {
    const gid_t group = 65534;  // nogroup on Debian; a number is accepted as well as a name
    start({"--no-cgroups", "--state-group", std::to_string(group)});
    EXPECT_EQ(mode_of(state_), 0750u);
    EXPECT_EQ(group_of(state_), group);
    EXPECT_EQ(mode_of(state_ + "/vms"), 02750u);
    EXPECT_EQ(group_of(state_ + "/vms"), group);
    EXPECT_EQ(mode_of(state_ + "/vessel.db"), 0600u);
    auto vm = sleeper("shared");
    EXPECT_EQ(mode_of(vm["dir"]), 02750u);
    EXPECT_EQ(group_of(vm["dir"]), group);
    EXPECT_EQ(mode_of(vm["console_log"]), 0640u);
    EXPECT_EQ(group_of(vm["console_log"]), group);

    // Without the flag the next start takes the group's access away again.
    d_->remove_all_vms();
    auto second = sleeper("second");
    d_->stop(SIGTERM);
    d_ = nullptr;
    start();
    EXPECT_EQ(mode_of(state_), 0700u);
    EXPECT_EQ(mode_of(state_ + "/vms"), 0700u);
    EXPECT_EQ(mode_of(second["dir"]), 0700u);
    EXPECT_EQ(mode_of(second["console_log"]), 0600u);

    // An unknown group is refused at start.
    std::string cmd = kBin + "vesseld --state-dir " + dir_ + "/other --socket " + dir_ +
                      "/other.sock --no-cgroups --vmm-api no --vessel " + fake_ +
                      " --state-group no-such-group-here 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    char buf[512] = {};
    size_t n = std::fread(buf, 1, sizeof buf - 1, p);
    int status = ::pclose(p);
    EXPECT_EQ(WEXITSTATUS(status), 1);
    EXPECT_NE(std::string(buf, n).find("--state-group no-such-group-here: no such group"), std::string::npos) << buf;
}

// ---- a full state disk ----

TEST_F(StateTest, OnAFullDiskPostVmsAnswers507BeforeStartingAnything) {
    mount_small_state(2 << 20);
    start();
    fill();
    json body = {{"program", "/bin/sleep"}, {"args", {"600"}}, {"name", "no-room"}};
    auto r = d_->call("POST", "/vms", &body);
    EXPECT_EQ(r.status, 507) << r.body.dump();
    EXPECT_EQ(r.body["error"].value("code", ""), "insufficient_storage") << r.body.dump();
    std::string msg = r.body["error"].value("message", "");
    EXPECT_NE(msg.find("VM not started: its record could not be written"), std::string::npos) << msg;
    EXPECT_NE(msg.find("database or disk is full"), std::string::npos) << msg;
    EXPECT_NE(msg.find("free space on the file system of " + state_), std::string::npos) << msg;
    // The record failed before the spawn: the stand-in VMM never ran, and
    // nothing of the VM is left.
    EXPECT_EQ(spawned(), "");
    EXPECT_TRUE(fs::is_empty(state_ + "/vms"));
    EXPECT_TRUE(d_->call("GET", "/vms").body["vms"].empty());
    EXPECT_EQ(d_->call("GET", "/vms/no-room").status, 404);

    make_room();
    auto vm = sleeper("no-room");  // the name was released
    for (int i = 0; i < 100 && spawned().empty(); ++i) std::this_thread::sleep_for(20ms);
    EXPECT_EQ(spawned(), vm["id"].get<std::string>() + "\n");  // the stand-in does run when it should
}

TEST_F(StateTest, ExitRecordsAreKeptAndWrittenOnceThereIsRoom) {
    mount_small_state(2 << 20);
    start();
    auto a = sleeper("a"), b = sleeper("b");
    fill();
    for (const auto& vm : {a, b}) {
        ASSERT_EQ(::kill(vm["pid"].get<int>(), SIGKILL), 0);
        EXPECT_EQ(d_->wait_state(vm["id"], "exited")["exit_signal"], 9);
    }
    std::string log = d_->log();
    EXPECT_EQ(count(log, "kept in memory and written again"), 1u) << log;  // logged once
    EXPECT_NE(log.find("database or disk is full"), std::string::npos) << log;

    make_room();
    for (int i = 0; i < 100 && d_->log().find("written to the database now") == std::string::npos; ++i)
        std::this_thread::sleep_for(50ms);
    EXPECT_NE(d_->log().find("VM records kept in memory are written to the database now"), std::string::npos)
        << d_->log();
    d_->stop(SIGKILL);  // no chance to write anything more
    auto store = Store::open(state_ + "/vessel.db");
    ASSERT_TRUE(store) << store.error().message;
    auto records = (*store)->load_all();
    ASSERT_TRUE(records);
    ASSERT_EQ(records->size(), 2u);
    for (const auto& r : *records) {
        EXPECT_EQ(r["state"], "exited") << r.dump();
        EXPECT_EQ(r["exit_signal"], 9) << r.dump();
    }
}

TEST_F(StateTest, TheStoreKeepsChangesItCannotWriteUntilFlush) {
    mount_small_state(1 << 20);
    auto opened = Store::open(state_ + "/vessel.db");
    ASSERT_TRUE(opened) << opened.error().message;
    auto& store = *opened;
    json running = {{"state", "running"}};
    ASSERT_TRUE(store->put("aaaaaaaaaaaa", "a", running));
    ASSERT_TRUE(store->put("bbbbbbbbbbbb", "b", running));
    fill();

    auto strict = store->put("cccccccccccc", "c", running);
    ASSERT_FALSE(strict);
    EXPECT_EQ(strict.error().sys_errno, ENOSPC) << strict.error().message;
    EXPECT_EQ(store->unsaved(), 0u);  // put() is all or nothing
    EXPECT_FALSE(store->save("aaaaaaaaaaaa", "a", {{"state", "exited"}, {"exit_status", 1}}));
    EXPECT_FALSE(store->save("aaaaaaaaaaaa", "a", {{"state", "exited"}, {"exit_status", 2}}));  // replaces
    EXPECT_FALSE(store->forget("bbbbbbbbbbbb"));
    EXPECT_EQ(store->unsaved(), 2u);
    EXPECT_EQ(store->flush(), 2u);  // still full

    make_room();
    EXPECT_EQ(store->flush(), 0u);
    store.reset();
    auto again = Store::open(state_ + "/vessel.db");
    ASSERT_TRUE(again);
    auto records = (*again)->load_all();
    ASSERT_TRUE(records);
    ASSERT_EQ(records->size(), 1u);
    EXPECT_EQ((*records)[0], (json{{"state", "exited"}, {"exit_status", 2}}));
}

// ---- VMMs without a record ----

TEST_F(StateTest, AVmmWithoutARecordIsListedAsOrphanedAndCanBeRemoved) {
    start();
    auto vm = sleeper("unrecorded");
    std::string id = vm["id"];
    int pid = vm["pid"];
    // A VMM of another daemon: the same kind of environment, another console.
    pid_t foreign = ::fork();
    if (foreign == 0) {
        ::setpgid(0, 0);
        int out = ::open((dir_ + "/foreign.log").c_str(), O_WRONLY | O_CREAT, 0600);
        ::dup2(out, 1);
        char* argv[] = {const_cast<char*>("vessel-foreign"), const_cast<char*>("600"), nullptr};
        char* envp[] = {const_cast<char*>("VESSEL_VM_ID=ffffffffffff"), nullptr};
        ::execve("/bin/sleep", argv, envp);
        ::_exit(127);
    }
    d_->stop(SIGKILL);
    {
        auto store = Store::open(state_ + "/vessel.db");
        ASSERT_TRUE(store) << store.error().message;
        ASSERT_TRUE((*store)->remove(id));  // as if it had never been written
    }
    d_->start();
    auto list = d_->call("GET", "/vms").body["vms"];
    ASSERT_EQ(list.size(), 1u) << list.dump();
    EXPECT_EQ(list[0]["id"], id);
    EXPECT_EQ(list[0]["state"], "orphaned");
    EXPECT_EQ(list[0]["pid"], pid);
    EXPECT_NE(list[0]["error"].get<std::string>().find("no record"), std::string::npos) << list[0].dump();
    EXPECT_EQ(d_->call("GET", "/vms?state=orphaned").body["vms"].size(), 1u);
    EXPECT_EQ(d_->call("GET", "/healthz").body["vms"]["orphaned"], 1);
    EXPECT_NE(d_->log().find("VM " + id + ": orphaned"), std::string::npos) << d_->log();
    EXPECT_TRUE(fs::exists(vm["dir"].get<std::string>()));  // not taken for a stray directory
    auto [st, ps] = d_->cli("ps");
    EXPECT_EQ(st, 0) << ps;
    EXPECT_NE(ps.find(id), std::string::npos) << ps;
    EXPECT_NE(ps.find("orphaned"), std::string::npos) << ps;

    EXPECT_EQ(d_->call("DELETE", "/vms/" + id).status, 409);
    auto stop = d_->call("PUT", "/vms/" + id + "/stop", json_ptr{{"timeout_s", 5}});
    EXPECT_EQ(stop.status, 200) << stop.body.dump();
    EXPECT_EQ(stop.body["state"], "exited");
    EXPECT_TRUE(gone(pid));
    EXPECT_EQ(d_->call("DELETE", "/vms/" + id).status, 200);
    EXPECT_FALSE(fs::exists(vm["dir"].get<std::string>()));

    EXPECT_FALSE(gone(foreign));  // not this daemon's: left alone
    ::kill(foreign, SIGKILL);
    ::waitpid(foreign, nullptr, 0);
}

// ---- stray VM directories ----

TEST_F(StateTest, StrayVmDirectoriesAreRemovedAtStartAndNothingElse) {
    const std::string vms = state_ + "/vms";
    fs::create_directories(vms);
    fs::create_directories(dir_ + "/outside");
    std::ofstream(dir_ + "/outside/precious") << "keep me\n";
    ASSERT_EQ(::chmod((dir_ + "/outside/precious").c_str(), 0644), 0);
    fs::create_directories(vms + "/aaaaaaaaaaa1");  // empty: removed
    fs::create_directories(vms + "/bbbbbbbbbbb2");
    std::ofstream(vms + "/bbbbbbbbbbb2/console.log").flush();  // empty log: removed
    fs::create_directories(vms + "/ccccccccccc3");
    std::ofstream(vms + "/ccccccccccc3/console.log") << "a VM ran\n";        // kept
    fs::create_directories(vms + "/notes");                                  // not a VM id: kept
    fs::create_directory_symlink(dir_ + "/outside", vms + "/ddddddddddd4");  // a link: kept
    fs::create_directories(vms + "/eeeeeeeeeee5");
    fs::create_symlink(dir_ + "/outside/precious", vms + "/eeeeeeeeeee5/console.log");  // kept
    fs::create_directories(vms + "/111111111111");                                      // recorded: kept
    {
        auto store = Store::open(state_ + "/vessel.db");
        ASSERT_TRUE(store);
        json record = {{"id", "111111111111"}, {"name", "kept"}, {"dir", vms + "/111111111111"}, {"state", "exited"}};
        ASSERT_TRUE((*store)->put("111111111111", "kept", record));
    }

    start();
    EXPECT_FALSE(fs::exists(vms + "/aaaaaaaaaaa1"));
    EXPECT_FALSE(fs::exists(vms + "/bbbbbbbbbbb2"));
    EXPECT_TRUE(fs::exists(vms + "/ccccccccccc3/console.log"));
    EXPECT_TRUE(fs::exists(vms + "/notes"));
    EXPECT_TRUE(fs::is_symlink(vms + "/ddddddddddd4"));
    EXPECT_TRUE(fs::is_symlink(vms + "/eeeeeeeeeee5/console.log"));
    EXPECT_TRUE(fs::exists(vms + "/111111111111"));
    EXPECT_EQ(slurp(dir_ + "/outside/precious"), "keep me\n");
    EXPECT_EQ(mode_of(dir_ + "/outside/precious"), 0644u);  // not made private through the link either
    std::string log = d_->log();
    EXPECT_NE(log.find("removed " + vms + "/aaaaaaaaaaa1: no VM record points to it"), std::string::npos) << log;
    EXPECT_NE(log.find("removed " + vms + "/bbbbbbbbbbb2: no VM record points to it"), std::string::npos) << log;
    EXPECT_NE(log.find(vms + "/ccccccccccc3: no VM record points to it, but it holds a console log with output"),
              std::string::npos)
        << log;
    EXPECT_NE(log.find(vms + "/ddddddddddd4: no VM record points to it, but it is not a directory"), std::string::npos)
        << log;
    EXPECT_NE(log.find(vms + "/eeeeeeeeeee5: no VM record points to it, but it holds console.log"), std::string::npos)
        << log;
    EXPECT_EQ(count(log, "removed "), 2u) << log;
}

// ---- why a VM died: its cgroup's counters (the host's real hierarchy) ----

class LimitTest : public StateTest {
protected:
    void SetUp() override {
        StateTest::SetUp();
        start({});  // cgroups as detected
        auto h = d_->call("GET", "/healthz").body;
        auto ctrls = h["cgroup_controllers"];
        bool memory = false, pids = false;
        for (const auto& c : ctrls) memory |= c == "memory", pids |= c == "pids";
        ASSERT_TRUE(memory && pids) << "these tests need the memory and pids controllers (run as root on a host "
                                       "with cgroup v1 or delegated v2): "
                                    << h.dump();
    }
    json run(const std::string& python, const json& limits) {
        json body = {{"program", "/usr/bin/python3"}, {"args", {"-c", python}}, {"limits", limits}};
        auto r = d_->call("POST", "/vms", &body);
        EXPECT_EQ(r.status, 201) << r.body.dump();
        return d_->wait_state(r.body.value("id", ""), "exited", 30s);
    }
};

TEST_F(LimitTest, AVmKilledByItsMemoryLimitSaysSo) {
    auto vm = run("b = b'x' * (512 << 20)", {{"memory", "32M"}});
    EXPECT_EQ(vm["exit_signal"], 9) << vm.dump();
    EXPECT_TRUE(vm["oom_killed"].get<bool>()) << vm.dump();
    EXPECT_FALSE(vm["pids_limit_reached"].get<bool>()) << vm.dump();
    std::string error = vm["error"];
    EXPECT_NE(error.find("the VM reached its memory limit of 33554432 bytes (limits.memory) and the kernel's OOM "
                         "killer killed its VMM"),
              std::string::npos)
        << error;
    auto [st, ps] = d_->cli("ps -a");
    EXPECT_NE(ps.find("137 oom"), std::string::npos) << ps;

    // A VM killed by someone else is not taken for one.
    auto other = sleeper("killed");
    ASSERT_EQ(::kill(other["pid"].get<int>(), SIGKILL), 0);
    auto killed = d_->wait_state(other["id"], "exited");
    EXPECT_FALSE(killed["oom_killed"].get<bool>()) << killed.dump();
    EXPECT_EQ(killed["error"], "the VMM process was killed by signal Killed");
}

TEST_F(LimitTest, AVmStoppedByItsPidsLimitSaysSo) {
    auto vm =
        run("import os, sys, time\n"
            "for i in range(32):\n"
            "    try:\n"
            "        if os.fork() == 0:\n"
            "            time.sleep(2)\n"
            "            os._exit(0)\n"
            "    except OSError:\n"
            "        sys.exit(3)\n",
            {{"pids", 8}});
    EXPECT_EQ(vm["exit_status"], 3) << vm.dump();
    EXPECT_TRUE(vm["pids_limit_reached"].get<bool>()) << vm.dump();
    EXPECT_FALSE(vm["oom_killed"].get<bool>()) << vm.dump();
    std::string error = vm.value("error", "");
    EXPECT_NE(error.find("the VM reached its pids limit of 8 (limits.pids)"), std::string::npos) << vm.dump();
    auto [st, ps] = d_->cli("ps -a");
    EXPECT_NE(ps.find("3 pids"), std::string::npos) << ps;
}

}  // namespace

// The cgroup v2 limit writer against a directory tree laid out like cgroupfs
// (the values and the controller enabling it writes), and spawn() into real
// v2 groups of a private cgroup2 mount (the child is inside before it runs).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "cgroup2_mount.h"
#include "daemon/cgroups.h"
#include "daemon/process.h"

namespace {

namespace fs = std::filesystem;
using vessel::daemon::CgroupJoin;
using vessel::daemon::Cgroups;
using vessel::daemon::Limits;
using vessel::daemon::Placement;

std::string slurp(const std::string& path) {
    std::ifstream in(path);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void put(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// A fake cgroup2 tree: what the kernel would show at ROOT, and the interface
// files it would create in a new group (the writer never creates files).
class FakeCgroup2 : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/vessel-fake-cgroup-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        root_ = tmpl;
        group(root_);
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(root_, ec);
    }
    void offer(const std::string& controllers) { put(root_ + "/cgroup.controllers", controllers + "\n"); }
    static void group(const std::string& dir) {
        fs::create_directories(dir);
        for (const char* f :
             {"cgroup.procs", "cgroup.subtree_control", "cpu.max", "memory.max", "memory.swap.max", "pids.max"})
            put(dir + "/" + f, "");
    }
    std::string root_;
};

TEST_F(FakeCgroup2, EnablesControllersAndWritesExactLimits) {
    offer("cpuset cpu io memory hugetlb pids rdma misc");
    group(root_ + "/vessel");
    auto c = Cgroups::open_v2(root_, "vessel");
    ASSERT_TRUE(c) << c.error().message;
    EXPECT_EQ(c->mode(), "v2");
    EXPECT_EQ(c->reason(), "");
    EXPECT_EQ(c->controllers(), (std::vector<std::string>{"cpu", "memory", "pids"}));
    EXPECT_EQ(c->bases(), (std::vector<std::string>{root_ + "/vessel"}));
    // Both levels delegate exactly the three controllers the limits need.
    EXPECT_EQ(slurp(root_ + "/cgroup.subtree_control"), "+cpu +memory +pids");
    EXPECT_EQ(slurp(root_ + "/vessel/cgroup.subtree_control"), "+cpu +memory +pids");

    std::string vm = root_ + "/vessel/vm1";
    group(vm);
    CgroupJoin join;
    auto p = c->create("vm1", Limits{1.5, 256ull << 20, 32}, join);
    ASSERT_TRUE(p) << p.error().message;
    EXPECT_EQ(slurp(vm + "/cpu.max"), "150000 100000");
    EXPECT_EQ(slurp(vm + "/memory.max"), "268435456");
    EXPECT_EQ(slurp(vm + "/memory.swap.max"), "0");
    EXPECT_EQ(slurp(vm + "/pids.max"), "32");
    EXPECT_EQ(slurp(vm + "/cgroup.procs"), "");  // the child joins, not the writer
    EXPECT_EQ(p->mode, "v2");
    EXPECT_EQ(p->paths, (std::vector<std::string>{vm}));
    EXPECT_EQ(p->memory_path, vm);
    EXPECT_EQ(p->pids_path, vm);
    EXPECT_TRUE(p->unenforced.empty());
    EXPECT_TRUE(join.v2_dir.valid());
    EXPECT_EQ(join.procs.size(), 1u);

    // The smallest quota the validator lets through, and no limit at all.
    std::string vm2 = root_ + "/vessel/vm2";
    group(vm2);
    CgroupJoin join2;
    ASSERT_TRUE(c->create("vm2", Limits{0.01, std::nullopt, std::nullopt}, join2));
    EXPECT_EQ(slurp(vm2 + "/cpu.max"), "1000 100000");
    EXPECT_EQ(slurp(vm2 + "/memory.max"), "");
    EXPECT_EQ(slurp(vm2 + "/memory.swap.max"), "");
    EXPECT_EQ(slurp(vm2 + "/pids.max"), "");
}

TEST_F(FakeCgroup2, MissingControllersAreNamedAndTheirFilesLeftAlone) {
    offer("memory hugetlb");
    group(root_ + "/vessel");
    auto c = Cgroups::open_v2(root_, "vessel");
    ASSERT_TRUE(c) << c.error().message;
    EXPECT_EQ(c->controllers(), (std::vector<std::string>{"memory"}));
    EXPECT_EQ(slurp(root_ + "/cgroup.subtree_control"), "+memory");
    EXPECT_EQ(slurp(root_ + "/vessel/cgroup.subtree_control"), "+memory");
    EXPECT_NE(c->reason().find("offers no cpu, pids controller"), std::string::npos) << c->reason();
    EXPECT_NE(c->reason().find(root_), std::string::npos) << c->reason();
    EXPECT_EQ(c->missing(Limits{2.0, 1ull << 30, 100}), (std::vector<std::string>{"cpu", "pids"}));
    EXPECT_TRUE(c->missing(Limits{std::nullopt, 1ull << 30, std::nullopt}).empty());

    std::string vm = root_ + "/vessel/vm1";
    group(vm);
    CgroupJoin join;
    auto p = c->create("vm1", Limits{2.0, 1ull << 30, 100}, join);
    ASSERT_TRUE(p) << p.error().message;
    EXPECT_EQ(slurp(vm + "/memory.max"), "1073741824");
    EXPECT_EQ(slurp(vm + "/cpu.max"), "");
    EXPECT_EQ(slurp(vm + "/pids.max"), "");
    EXPECT_EQ(p->unenforced, (std::vector<std::string>{"cpu", "pids"}));
    EXPECT_EQ(p->memory_path, vm);
    EXPECT_EQ(p->pids_path, "");
}

TEST_F(FakeCgroup2, NoUsableControllerAtAll) {
    offer("hugetlb");
    group(root_ + "/vessel");
    auto c = Cgroups::open_v2(root_, "vessel");
    ASSERT_TRUE(c) << c.error().message;
    EXPECT_TRUE(c->controllers().empty());
    EXPECT_EQ(slurp(root_ + "/cgroup.subtree_control"), "");  // nothing to enable: nothing written
    EXPECT_NE(c->reason().find("offers no cpu, memory, pids controller (it has: hugetlb)"), std::string::npos)
        << c->reason();
    EXPECT_EQ(c->missing(Limits{1.0, 1, 1}), (std::vector<std::string>{"cpu", "memory", "pids"}));
}

TEST_F(FakeCgroup2, RefusesWhatIsNotACgroup2Directory) {
    auto gone = Cgroups::open_v2(root_ + "/nonexistent", "vessel");
    ASSERT_FALSE(gone);
    EXPECT_NE(gone.error().message.find("cgroup.controllers"), std::string::npos) << gone.error().message;
    offer("cpu memory pids");
    auto plain = Cgroups::at_root(root_, "vessel");  // laid out right, but not cgroupfs
    ASSERT_FALSE(plain);
    EXPECT_NE(plain.error().message.find("not a cgroup2 file system"), std::string::npos) << plain.error().message;
}

// What a VM's limits did to it, from its group's counters as cgroup v2 shows them.
TEST_F(FakeCgroup2, LimitEventsFromMemoryAndPidsEvents) {
    offer("cpu memory pids");
    group(root_ + "/vessel");
    auto c = Cgroups::open_v2(root_, "vessel");
    ASSERT_TRUE(c) << c.error().message;
    std::string vm = root_ + "/vessel/0123456789ab";
    group(vm);
    CgroupJoin join;
    auto p = c->create("0123456789ab", Limits{std::nullopt, 64ull << 20, 16}, join);
    ASSERT_TRUE(p) << p.error().message;

    // Without the counter files (kernels before them): nothing to tell.
    auto none = Cgroups::limit_events(*p);
    EXPECT_FALSE(none.oom_kills);
    EXPECT_FALSE(none.pids_limit_hits);
    EXPECT_FALSE(none.oom_killed(true));
    EXPECT_FALSE(none.pids_limit_reached());

    put(vm + "/memory.events", "low 0\nhigh 0\nmax 12\noom 1\noom_kill 0\noom_group_kill 0\n");
    put(vm + "/pids.events", "max 0\n");
    auto calm = Cgroups::limit_events(*p);
    EXPECT_EQ(calm.oom_kills, 0u);
    EXPECT_FALSE(calm.oom_killed(true));  // an OOM without a kill, and a SIGKILL from elsewhere
    EXPECT_EQ(calm.pids_limit_hits, 0u);
    EXPECT_FALSE(calm.pids_limit_reached());

    put(vm + "/memory.events", "low 0\nhigh 0\nmax 40\noom 2\noom_kill 1\noom_group_kill 0\n");
    put(vm + "/pids.events", "max 3\n");
    auto hit = Cgroups::limit_events(*p);
    EXPECT_EQ(hit.oom_kills, 1u);
    EXPECT_TRUE(hit.oom_killed(true));
    EXPECT_TRUE(hit.oom_killed(false));  // a helper of the VMM was the one killed
    EXPECT_EQ(hit.pids_limit_hits, 3u);
    EXPECT_TRUE(hit.pids_limit_reached());

    // A VMM found without a record gets its group back by its id.
    auto found = c->existing("0123456789ab");
    EXPECT_EQ(found.mode, "v2");
    EXPECT_EQ(found.paths, (std::vector<std::string>{vm}));
    EXPECT_EQ(found.memory_path, vm);
    EXPECT_EQ(found.pids_path, vm);
    EXPECT_TRUE(c->existing("ba9876543210").paths.empty());
}

// The same counters as cgroup v1 shows them: memory.oom_control's oom_kill
// (Linux 4.13+), else memory.failcnt with a SIGKILL.
TEST(LimitEvents, CgroupV1Counters) {
    char tmpl[] = "/tmp/vessel-fake-cgroup-v1-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    std::string root = tmpl;
    fs::create_directories(root + "/memory/vm");
    fs::create_directories(root + "/pids/vm");
    Placement p{"v1", {root + "/memory/vm", root + "/pids/vm"}, root + "/memory/vm", root + "/pids/vm", {}};

    put(root + "/memory/vm/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n");
    put(root + "/memory/vm/memory.failcnt", "7\n");
    put(root + "/pids/vm/pids.events", "max 0\n");
    auto e = Cgroups::limit_events(p);
    EXPECT_EQ(e.oom_kills, 1u);
    EXPECT_EQ(e.memory_limit_hits, 7u);
    EXPECT_TRUE(e.oom_killed(true));
    EXPECT_FALSE(e.pids_limit_reached());

    put(root + "/memory/vm/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n");
    EXPECT_FALSE(Cgroups::limit_events(p).oom_killed(true));  // the counter says no: failcnt is not asked

    // Older kernels: no oom_kill line; usage at the limit and a SIGKILL is taken for an OOM kill.
    put(root + "/memory/vm/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n");
    auto old = Cgroups::limit_events(p);
    EXPECT_FALSE(old.oom_kills);
    EXPECT_TRUE(old.oom_killed(true));
    EXPECT_FALSE(old.oom_killed(false));
    put(root + "/memory/vm/memory.failcnt", "0\n");
    EXPECT_FALSE(Cgroups::limit_events(p).oom_killed(true));

    put(root + "/pids/vm/pids.events", "max 2\n");
    EXPECT_TRUE(Cgroups::limit_events(p).pids_limit_reached());
    EXPECT_FALSE(Cgroups::limit_events(Placement{}).oom_killed(true));  // no groups at all
    std::error_code ec;
    fs::remove_all(root, ec);
}

TEST(Placement, JsonRoundTrip) {
    Placement p{"v2", {"/sys/fs/cgroup/vessel/ab"}, "/sys/fs/cgroup/vessel/ab", "", {"pids"}};
    auto q = Placement::from_json(p.to_json());
    EXPECT_EQ(q.mode, p.mode);
    EXPECT_EQ(q.paths, p.paths);
    EXPECT_EQ(q.memory_path, p.memory_path);
    EXPECT_EQ(q.pids_path, p.pids_path);
    EXPECT_EQ(q.unenforced, p.unenforced);
    EXPECT_TRUE(Placement::from_json({{"mode", "v1"}}).unenforced.empty());  // records of older daemons
}

// Real groups: a child started by spawn() reports, as its very first act,
// the group it is in.
class SpawnIntoCgroup2 : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(mount_.ok()) << mount_.error() << " — this test needs root and a kernel with cgroup2";
        parent_ = "vessel-unit-" + std::to_string(::getpid());
        mount_.remove_at_end(parent_);
        auto c = Cgroups::open_v2(mount_.path(), parent_);
        ASSERT_TRUE(c) << c.error().message;
        cgroups_ = std::move(*c);
        char tmpl[] = "/tmp/vessel-spawn-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    // Runs `cat /proc/self/cgroup` in a new group `id`; returns its output.
    std::string cgroup_seen_by_child(const std::string& id, bool clone_into) {
        CgroupJoin join;
        auto placed = cgroups_.create(id, {}, join);
        EXPECT_TRUE(placed) << placed.error().message;
        if (!placed) return "";
        if (!clone_into) join.v2_dir.reset();  // the cgroup.procs way
        vessel::daemon::SpawnRequest r;
        r.path = "/bin/cat";
        r.argv = {"cat", "/proc/self/cgroup"};
        r.console = dir_ + "/" + id + ".out";
        r.cgroups = &join;
        auto child = vessel::daemon::spawn(r);
        EXPECT_TRUE(child) << child.error().message;
        if (!child) return "";
        int status = 0;
        EXPECT_EQ(::waitpid(child->pid, &status, 0), child->pid);
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
        Cgroups::remove(*placed);
        EXPECT_FALSE(fs::exists(placed->paths.front()));
        return slurp(r.console);
    }
    PrivateCgroup2Mount mount_;
    std::string parent_, dir_;
    Cgroups cgroups_;
};

TEST_F(SpawnIntoCgroup2, BornInItsGroup) {
    std::string seen = cgroup_seen_by_child("born", true);
    EXPECT_NE(seen.find("0::/" + parent_ + "/born\n"), std::string::npos) << seen;
}

TEST_F(SpawnIntoCgroup2, JoinsThroughCgroupProcsBeforeExec) {
    std::string seen = cgroup_seen_by_child("joined", false);
    EXPECT_NE(seen.find("0::/" + parent_ + "/joined\n"), std::string::npos) << seen;
}

}  // namespace

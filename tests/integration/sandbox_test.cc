// What the guest can see: only --root (read-only) and --rw directories, with
// `..`, absolute and relative symlinks contained, and never the host's /proc,
// /sys or /dev. Driven through busybox, as a user would.
#include <unistd.h>

#include "harness.h"

namespace vessel::test {
namespace {

constexpr const char* kBusybox = "/bin/busybox";

class Sandbox : public ::testing::Test {
protected:
    void SetUp() override {
        REQUIRE_KVM();
        make_dirs(t_ / "outside");
        write_file(t_ / "outside/secret.txt", "TOP-SECRET\n");
        make_dirs(t_ / "root/sub");
        write_file(t_ / "root/inside.txt", "inside\n");
        ::symlink((t_ / "outside/secret.txt").c_str(), (t_ / "root/abs_link").c_str());
        ::symlink("../outside/secret.txt", (t_ / "root/rel_link").c_str());
        ::symlink("../../../../../../../../../..", (t_ / "root/sub/up").c_str());
        ::symlink("/proc/self/environ", (t_ / "root/proc_link").c_str());
        ::symlink("/etc/passwd", (t_ / "root/passwd_link").c_str());
        make_dirs(t_ / "work");
        ::symlink((t_ / "outside").c_str(), (t_ / "work/out").c_str());
    }

    RunResult cat(const std::string& path) {
        return run_vessel({"--root", t_ / "root", "--rw", t_ / "work" + ":/w"}, {kBusybox, "cat", path});
    }
    TempDir t_;
};

TEST_F(Sandbox, RootIsVisible) {
    auto r = cat("/inside.txt");
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "inside\n");
    r = cat("sub/../inside.txt");
    EXPECT_EQ(r.out, "inside\n");
}

TEST_F(Sandbox, PathsOutsideTheRootFail) {
    for (const std::string& p :
         std::vector<std::string>{"../outside/secret.txt", "/../../../../outside/secret.txt", "/abs_link", "/rel_link",
                                  "/sub/up/outside/secret.txt", "/w/out/secret.txt", "/w/../../outside/secret.txt",
                                  "/passwd_link", "/etc/passwd", "/proc_link", t_ / "outside/secret.txt"}) {
        auto r = cat(p);
        EXPECT_EQ(r.status, 1) << p << ": " << r.out;
        EXPECT_EQ(r.out.find("TOP-SECRET"), std::string::npos) << p;
        EXPECT_NE(r.err.find("No such file or directory"), std::string::npos) << p << ": " << r.err;
    }
}

TEST_F(Sandbox, HostProcSysAndDevAreNeverVisible) {
    for (const char* p : {"/proc/kcore", "/sys/kernel/notes", "/dev/kvm", "/dev/mem", "/dev/tty", "/dev/sda",
                          "/dev/fd/0", "/dev/shm"}) {
        auto r = cat(p);
        EXPECT_NE(r.status, 0) << p;
        EXPECT_EQ(r.out, "") << p;
    }
    // Even when the root is the host's own "/", whose /etc/mtab is a symlink
    // into /proc and whose /dev, /proc and /sys are the real ones.
    for (const char* p : {"/proc/kallsyms", "/sys/kernel/notes", "/dev/kvm"}) {
        auto r = run_vessel({"--root", "/"}, {kBusybox, "cat", p});
        EXPECT_NE(r.status, 0) << p;
        EXPECT_EQ(r.out, "") << p;
    }
    // A process's own files are the guest's (thin/procfs.h), not the VMM's.
    std::string env;
    for (const auto& e : fixed_env()) env += e + '\0';
    for (const std::vector<std::string>& root : {std::vector<std::string>{"--root", t_ / "root"}, {"--root", "/"}}) {
        EXPECT_EQ(run_vessel(root, {kBusybox, "cat", "/proc/self/environ"}).out, env);
        EXPECT_EQ(run_vessel(root, {kBusybox, "cat", "/proc/1/cmdline"}).out,
                  std::string(kBusybox) + '\0' + "cat" + '\0' + "/proc/1/cmdline" + '\0');
    }
    // The /proc files a thin guest has are the VM's own (thin/procfs.h): its
    // one vCPU, its mounts, its one process.
    auto cpuinfo = run_vessel({"--root", "/"}, {kBusybox, "cat", "/proc/cpuinfo"});
    EXPECT_EQ(cpuinfo.status, 0) << cpuinfo.err;
    EXPECT_NE(cpuinfo.out.find("Vessel thin vCPU"), std::string::npos) << cpuinfo.out;
    EXPECT_EQ(cpuinfo.out.find("processor\t: 1"), std::string::npos) << "one vCPU";
    auto mtab = run_vessel({"--root", "/"}, {kBusybox, "cat", "/proc/mounts"});
    EXPECT_EQ(mtab.status, 0) << mtab.err;
    EXPECT_EQ(mtab.out, "vessel / vessel ro,nosuid,nodev 0 0\nproc /proc proc ro,nosuid,nodev,noexec 0 0\n");
    for (const char* d : {"/sys", "/dev"}) {
        auto r = run_vessel({"--root", "/"}, {kBusybox, "ls", d});
        EXPECT_EQ(r.out, "") << d << " lists host entries";
    }
    auto proc = run_vessel({"--root", "/"}, {kBusybox, "ls", "/proc"});
    EXPECT_EQ(proc.out, "1\ncpuinfo\nfilesystems\nloadavg\nmeminfo\nmounts\nself\nstat\nsys\nuptime\n")
        << "the VM's own /proc, not the host's";
}

TEST_F(Sandbox, SyntheticDevices) {
    auto r = run_vessel({}, {kBusybox, "head", "-c", "16", "/dev/zero"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, std::string(16, '\0'));
    r = run_vessel({}, {kBusybox, "head", "-c", "64", "/dev/urandom"});
    EXPECT_EQ(r.out.size(), 64u);
    r = run_vessel({}, {kBusybox, "head", "-c", "64", "/dev/random"});
    EXPECT_EQ(r.out.size(), 64u);
    r = run_vessel({}, {kBusybox, "cat", "/dev/null"});
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(r.out, "");
    r = run_vessel({}, {kBusybox, "cp", "/dev/zero", "/dev/full"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("No space left on device"), std::string::npos) << r.err;
    r = run_vessel({}, {kBusybox, "sh", "-c", "echo hi > /dev/null"});  // busybox sh, no fork needed
    EXPECT_EQ(r.status, 0) << r.err;
}

TEST_F(Sandbox, DefaultRootIsEmpty) {
    auto r = run_vessel({}, {kBusybox, "ls", "-A", "/"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "");
    r = run_vessel({}, {kBusybox, "cat", "/etc/passwd"});
    EXPECT_EQ(r.status, 1);
}

TEST_F(Sandbox, RootIsReadOnlyAndRwDirsAreWritable) {
    auto r = run_vessel({"--root", t_ / "root"}, {kBusybox, "touch", "/new.txt"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("Read-only file system"), std::string::npos) << r.err;
    EXPECT_FALSE(exists(t_ / "root/new.txt"));
    r = run_vessel({"--root", t_ / "root"}, {kBusybox, "rm", "/inside.txt"});
    EXPECT_EQ(r.status, 1);
    EXPECT_TRUE(exists(t_ / "root/inside.txt"));
    r = run_vessel({"--root", t_ / "root", "--rw", t_ / "work" + ":/w"}, {kBusybox, "cp", "/inside.txt", "/w/copy"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(read_file(t_ / "work/copy"), "inside\n");
    // A write through a symlink that points out of the writable directory lands inside it or fails.
    r = run_vessel({"--root", t_ / "root", "--rw", t_ / "work" + ":/w"},
                   {kBusybox, "cp", "/inside.txt", "/w/out/secret.txt"});
    EXPECT_NE(r.status, 0);
    EXPECT_EQ(read_file(t_ / "outside/secret.txt"), "TOP-SECRET\n");
    // Moving a file out of a writable directory into the read-only root fails.
    r = run_vessel({"--root", t_ / "root", "--rw", t_ / "work" + ":/w"}, {kBusybox, "mv", "/w/copy", "/moved"});
    EXPECT_NE(r.status, 0);
    EXPECT_FALSE(exists(t_ / "root/moved"));
    EXPECT_TRUE(exists(t_ / "work/copy"));
}

}  // namespace
}  // namespace vessel::test

// Boots Debian's kernel with `vessel boot` and reads the serial console.
//
// On PVM hosts (see docs/boot.md) guest kernel code is emulated instruction
// by instruction, so the test asks only for what early boot prints: the
// banner, the command line and the e820 map; then it stops the VM. The
// kernel comes from scripts/fetch-test-kernel (apt-get download into a cache).
// No KVM or no kernel is a failure, not a skip.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>

#include "../common/jailed_vmm.h"
#include "api/http.h"
#include "boot_harness.h"
#include "machine/full_vm.h"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using vessel::testing::kernel_dir;
using vessel::testing::kVessel;
using vessel::testing::read_file;
using vessel::testing::tail;
using vessel::testing::wait_for;
constexpr int kBannerTimeoutSeconds = 180;

struct BootResult {
    std::string console, stderr_text;
    int status = -1;         // vessel's exit status
    bool found_all = false;  // every wanted line appeared before the deadline
    double seconds = 0;
};

// Runs vessel boot with the console in a file until every string in `want`
// shows up (or the deadline passes), then stops it with SIGTERM.
BootResult boot(const std::vector<std::string>& args, const std::vector<std::string>& want,
                int timeout_seconds = kBannerTimeoutSeconds) {
    char dir_template[] = "/tmp/vessel-boot-test.XXXXXX";
    std::string dir = ::mkdtemp(dir_template);
    std::string console = dir + "/console", err = dir + "/stderr";
    std::vector<std::string> argv = {"boot", "--console", "file:" + console};
    argv.insert(argv.end(), args.begin(), args.end());

    auto start = std::chrono::steady_clock::now();
    vessel::testing::VesselProcess vm(argv, err);
    BootResult r;
    while (true) {
        r.console = read_file(console);
        r.found_all = true;
        for (const auto& w : want) r.found_all = r.found_all && r.console.find(w) != std::string::npos;
        if ((r.found_all && !want.empty()) || vm.poll() >= 0) break;
        if (std::chrono::steady_clock::now() - start > std::chrono::seconds(timeout_seconds)) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    if (vm.poll() < 0) {
        vm.signal(SIGTERM);
        // A clean stop takes milliseconds; give a loaded machine some slack.
        if (vm.wait(10) < 0) {
            vm.kill9();
            r.stderr_text = "(vessel did not stop on SIGTERM; killed) ";
        }
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    r.status = vm.poll();
    r.console = read_file(console);
    r.stderr_text += read_file(err);
    ::unlink(console.c_str());
    ::unlink(err.c_str());
    ::rmdir(dir.c_str());
    return r;
}

class FullBoot : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_EQ(::access("/dev/kvm", R_OK | W_OK), 0)
            << "/dev/kvm is missing or not accessible: the full-machine boot test needs KVM";
        ASSERT_EQ(::access(kVessel.c_str(), X_OK), 0) << kVessel << " was not built";
        std::string why;
        dir_ = kernel_dir(why);
        ASSERT_FALSE(dir_.empty()) << why;
    }
    std::string dir_;
};

// The marker proves the console shows *our* command line, not a default.
const std::string kCmdline =
    "console=ttyS0 earlyprintk=serial,ttyS0,115200 reboot=k panic=1 pci=off vessel.test=banner";
const std::vector<std::string> kEarlyLines = {"Linux version ", "Command line: " + kCmdline, "BIOS-e820: [mem ",
                                              "] usable"};

void expect_banner(const BootResult& r) {
    EXPECT_TRUE(r.found_all) << "after " << r.seconds << " s the console lacks the early boot lines.\n"
                             << "console tail:\n"
                             << tail(r.console) << "\nvessel stderr:\n"
                             << r.stderr_text;
    // Stopped by the test's SIGTERM: Vessel's Ctrl-C status.
    EXPECT_EQ(r.status, 130) << r.stderr_text;
}

}  // namespace

// `vessel boot --api-sock` serves the API before its vCPUs start: a pause in
// between waits for them and pauses the machine, instead of "VM is created".
TEST_F(FullBoot, PauseBeforeTheVcpusStartWaitsForThem) {
    std::string why;
    const std::string dir = kernel_dir(why);
    ASSERT_FALSE(dir.empty()) << why;
    char dir_template[] = "/tmp/vessel-boot-test.XXXXXX";
    const std::string tmp = ::mkdtemp(dir_template);
    vessel::machine::FullVmConfig config;
    config.kernel = dir + "/vmlinux";
    config.mem_size = 128ull << 20;
    config.console = {vessel::machine::ConsoleSpec::Kind::kFile, tmp + "/console"};
    auto vm = vessel::machine::FullVm::create(config);
    ASSERT_TRUE(vm.has_value()) << vm.error().message;
    vessel::Result<> paused = vessel::fail("not called"), resumed = vessel::fail("not called");
    std::thread control([&] {
        paused = (*vm)->pause();
        if (paused) resumed = (*vm)->resume();
        (*vm)->shutdown();
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the pause is waiting now
    auto outcome = (*vm)->run();
    control.join();
    EXPECT_TRUE(paused.has_value()) << paused.error().message;
    EXPECT_TRUE(resumed.has_value()) << resumed.error().message;
    EXPECT_TRUE(outcome.has_value()) << outcome.error().message;
    vm->reset();
    std::filesystem::remove_all(tmp);
}

TEST_F(FullBoot, VmlinuxPvhEntryReachesBannerAndE820) {
    // Wait for the exact RAM line too: the VM is stopped as soon as every
    // awaited line is on the console, and this one comes after the first e820 line.
    const std::string ram = "BIOS-e820: [mem 0x0000000000100000-0x000000000fffffff] usable";
    auto lines = kEarlyLines;
    lines.push_back(ram);
    auto r = boot({"--kernel", dir_ + "/vmlinux", "--cmdline", kCmdline, "--mem", "256M"}, lines);
    expect_banner(r);
    EXPECT_NE(r.console.find(ram), std::string::npos) << tail(r.console);
}

TEST_F(FullBoot, Vmlinux64BitEntryReachesBanner) {
    auto r = boot({"--kernel", dir_ + "/vmlinux", "--boot-entry", "linux64", "--cmdline", kCmdline, "--mem", "256M",
                   "--cpus", "2"},
                  kEarlyLines);
    expect_banner(r);
}

TEST_F(FullBoot, InitrdIsPassedToTheKernel) {
    // Any bytes will do: the kernel reserves the initrd range early and says so
    // only later, so check the e820 still shows RAM and that loading worked.
    char path[] = "/tmp/vessel-initrd.XXXXXX";
    int fd = ::mkstemp(path);
    ASSERT_GE(fd, 0);
    std::string data(1 << 20, '\0');
    ASSERT_EQ(::write(fd, data.data(), data.size()), ssize_t(data.size()));
    ::close(fd);
    auto r = boot({"--kernel", dir_ + "/vmlinux", "--initrd", path, "--cmdline", kCmdline, "-v"}, kEarlyLines);
    ::unlink(path);
    expect_banner(r);
    EXPECT_NE(r.stderr_text.find("initrd 1024 KiB"), std::string::npos) << r.stderr_text;
}

TEST_F(FullBoot, RefusesANonKernelFile) {
    auto r = boot({"--kernel", "/etc/hostname"}, {}, 30);
    EXPECT_EQ(r.status, 126) << r.stderr_text;
    EXPECT_NE(r.stderr_text.find("vessel: /etc/hostname: not a Linux kernel"), std::string::npos) << r.stderr_text;
}

// A full machine's VMM runs under its seccomp filter on every thread, and
// each vCPU thread and the I/O thread under one more of their own
// (jail/seccomp.h).
TEST_F(FullBoot, RunsUnderTheSeccompFiltersWithOneMoreOnVcpuAndIoThreads) {
    namespace t = vessel::testing;
    char tmpl[] = "/tmp/vessel-boot-seccomp.XXXXXX";
    const std::string dir = ::mkdtemp(tmpl);
    const std::string console = dir + "/console";
    t::VesselProcess vm({"boot", "--console", "file:" + console, "--cpus", "2", "--kernel", dir_ + "/vmlinux",
                         "--cmdline", kCmdline, "--mem", "128M"},
                        dir + "/stderr");
    ASSERT_TRUE(t::wait_for([&] { return t::read_file(console).find("Linux version") != std::string::npos; }, 180))
        << t::read_file(dir + "/stderr");
    const pid_t vmm = t::jailed_vmm(vm.pid());
    auto field = [](const std::string& status_file, const std::string& name) {
        std::ifstream in(status_file);
        for (std::string l; std::getline(in, l);)
            if (l.rfind(name + ":", 0) == 0) return l.substr(l.find_first_not_of(" \t", name.size() + 1));
        return std::string("?");
    };
    const std::string task = "/proc/" + std::to_string(vmm) + "/task/";
    const std::string main_filters = field(task + std::to_string(vmm) + "/status", "Seccomp_filters");
    EXPECT_EQ(field(task + std::to_string(vmm) + "/status", "Seccomp"), "2");
    int vcpus = 0, io = 0;
    std::string names;  // the threads', for the message
    for (const auto& e : std::filesystem::directory_iterator(task)) {
        const std::string status = e.path().string() + "/status";
        EXPECT_EQ(field(status, "Seccomp"), "2") << e.path();
        const std::string comm = t::read_file(e.path().string() + "/comm");
        names += comm;
        if (comm.rfind("vcpu", 0) != 0 && comm != "io\n") continue;
        vcpus += comm.rfind("vcpu", 0) == 0;
        io += comm == "io\n";
        EXPECT_EQ(field(status, "Seccomp_filters"), std::to_string(std::stoi(main_filters) + 1)) << comm;
    }
    EXPECT_EQ(io, 1) << names;
    EXPECT_EQ(vcpus, 2) << names;
    vm.kill9();
    std::filesystem::remove_all(dir);
}

// Each virtio device takes one of the I/O APIC's pins from 5 up: the
// twentieth has none left, and the error says how many fit.
TEST_F(FullBoot, MoreVirtioDevicesThanIrqsAreRefused) {
    char tmpl[] = "/tmp/vessel-boot-disks.XXXXXX";
    const std::string dir = ::mkdtemp(tmpl);
    const std::string disk = dir + "/disk.img";
    std::ofstream(disk).close();
    std::filesystem::resize_file(disk, 1 << 20);
    std::vector<std::string> args = {"--kernel", dir_ + "/vmlinux", "--cmdline", kCmdline, "--mem", "128M"};
    for (int i = 0; i < 20; ++i) args.insert(args.end(), {"--disk", disk + ",ro"});
    auto r = boot(args, {}, 60);
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.stderr_text.find("too many virtio devices (at most 19)"), std::string::npos) << r.stderr_text;
    std::filesystem::remove_all(dir);
}

namespace vessel {
namespace {

// The control API of a full machine: pause stops the guest (its console
// stops growing), resume lets it go on, metrics count its exits, a snapshot
// needs a paused machine, shutdown stops it (status 130). Snapshots and
// restore themselves: full_snapshot_test.cc.
TEST_F(FullBoot, ControlApiPausesResumesAndStops) {
    char tmpl[] = "/tmp/vessel-boot-api.XXXXXX";
    std::string dir = ::mkdtemp(tmpl);
    std::string console = dir + "/console", sock = dir + "/api.sock";
    vessel::testing::VesselProcess vm({"boot", "--console", "file:" + console, "--api-sock", sock, "--snapshot-dir",
                                       dir, "--kernel", dir_ + "/vmlinux", "--cmdline", kCmdline, "--mem", "256M"},
                                      dir + "/stderr");
    auto call = [&](const char* method, const char* path, const api::json* body = nullptr) {
        auto r = api::call(sock, method, path, body, std::chrono::seconds(20));
        EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message);
        api::Response failed;
        failed.status = 599;
        return r ? *r : failed;
    };
    ASSERT_TRUE(
        wait_for([&] { return read_file(console).find("Linux version") != std::string::npos; }, kBannerTimeoutSeconds))
        << tail(read_file(console));
    EXPECT_EQ(call("GET", "/vm").body["state"], "running");
    api::json body = {{"path", dir + "/snap"}};
    EXPECT_EQ(call("PUT", "/vm/snapshot", &body).status, 409);  // running
    ASSERT_EQ(call("PUT", "/vm/pause").status, 200);
    EXPECT_EQ(call("GET", "/vm").body["state"], "paused");
    size_t paused_at = read_file(console).size();
    std::this_thread::sleep_for(std::chrono::seconds(2));
    EXPECT_EQ(read_file(console).size(), paused_at) << "the console grew while paused";
    auto metrics = call("GET", "/vm/metrics");
    EXPECT_GT(metrics.body["exits"]["io"].get<uint64_t>(), 0u);
    EXPECT_GT(metrics.body["vcpu_time_ns"].get<uint64_t>(), 0u);
    EXPECT_EQ(call("PUT", "/vm/snapshot", &body).status, 200);
    EXPECT_EQ(call("PUT", "/vm/snapshot", &body).status, 409);  // never overwritten
    EXPECT_EQ(call("PUT", "/vm/pause").status, 409);
    ASSERT_EQ(call("PUT", "/vm/resume").status, 200);
    EXPECT_TRUE(wait_for([&] { return read_file(console).size() > paused_at; }, 120)) << "no output after resume";
    EXPECT_EQ(call("PUT", "/vm/shutdown").status, 202);
    EXPECT_EQ(vm.wait(30), 130);
    std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace vessel

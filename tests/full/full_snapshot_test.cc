// Snapshots of a full machine booting Debian's kernel: pause, snapshot (full,
// then diff), kill -9, `vessel restore`, and the kernel carries on booting
// where it stopped — new lines, the printk clock going on from the snapshot.
//
// On PVM hosts the kernel is emulated and slow, and stops for good after
// about a minute (`lock cmpxchg16b`, docs/boot.md), so the snapshots are
// taken in the first lines of the boot and every wait is generous. No KVM
// or no kernel is a failure, not a skip.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "api/http.h"
#include "boot_harness.h"
#include "state/format.h"

namespace vessel {
namespace {

namespace fs = std::filesystem;
using api::json;
using testing::kernel_dir;
using testing::read_file;
using testing::tail;
using testing::VesselProcess;
using testing::wait_for;

const std::string kCmdline = "console=ttyS0 earlyprintk=serial,ttyS0,115200 reboot=k panic=1 pci=off";

struct Line {
    double time = -1;  // printk timestamp, -1 when the line has none
    std::string text;  // after the timestamp
};

// The complete lines of a console (a trailing partial line is left out).
std::vector<Line> lines_of(const std::string& console) {
    std::vector<Line> out;
    size_t pos = 0;
    for (size_t nl; (nl = console.find('\n', pos)) != std::string::npos; pos = nl + 1) {
        std::string l = console.substr(pos, nl - pos);
        Line line{-1, l};
        size_t close = l.find("] ");
        if (l.size() > 2 && l[0] == '[' && close != std::string::npos) {
            char* end = nullptr;
            double t = std::strtod(l.c_str() + 1, &end);
            if (end && *end == ']') {
                line.time = t;
                line.text = l.substr(close + 2);
            }
        }
        out.push_back(line);
    }
    return out;
}

size_t count_lines(const std::string& file) {
    std::string s = read_file(file);
    return static_cast<size_t>(std::count(s.begin(), s.end(), '\n'));
}

double last_time(const std::vector<Line>& lines) {
    double t = -1;
    for (const auto& l : lines) t = std::max(t, l.time);
    return t;
}

class FullSnapshot : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_EQ(::access("/dev/kvm", R_OK | W_OK), 0)
            << "/dev/kvm is missing or not accessible: the full-machine snapshot test needs KVM";
        ASSERT_EQ(::access(testing::kVessel.c_str(), X_OK), 0) << testing::kVessel << " was not built";
        std::string why;
        kernel_ = kernel_dir(why);
        ASSERT_FALSE(kernel_.empty()) << why;
        dir_ = fs::temp_directory_path() / ("vessel-full-snapshot-" + std::to_string(::getpid()));
        fs::remove_all(dir_);
        fs::create_directories(dir_);
    }
    void TearDown() override { fs::remove_all(dir_); }

    std::string path(const std::string& name) const { return (dir_ / name).string(); }

    api::Response call(const std::string& sock, const char* method, const char* target, const json* body = nullptr) {
        auto r = api::call(sock, method, target, body, std::chrono::seconds(60));
        EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message);
        api::Response failed;
        failed.status = 599;
        return r ? *r : failed;
    }
    bool socket_up(const std::string& sock) {
        return wait_for([&] { return api::call(sock, "GET", "/vm", nullptr, std::chrono::seconds(2)).has_value(); },
                        60);
    }

    // Restores `snapshot` with a new console and API socket, waits for
    // `want` new complete lines and checks the machine carried on from the
    // point the snapshot was taken: `before` is the console as it was then.
    // `later`, if given, is what the original machine printed after that
    // point: the restored one must print the same next line.
    void restore_and_expect_progress(const std::string& snapshot, const std::string& before, const std::string& name,
                                     size_t want, const std::string& later = {}) {
        SCOPED_TRACE("restore of " + snapshot);
        std::string console = path(name + ".console"), sock = path(name + ".sock"), err = path(name + ".err");
        VesselProcess vm(
            {"restore", "--console", "file:" + console, "--api-sock", sock, "--snapshot-dir", dir_.string(), snapshot},
            err);
        ASSERT_TRUE(socket_up(sock)) << read_file(err);
        auto info = call(sock, "GET", "/vm");
        EXPECT_EQ(info.body["state"], "running");
        EXPECT_EQ(info.body["restored_from"], snapshot);
        EXPECT_EQ(info.body["program"], kernel_ + "/vmlinux");
        bool grew = wait_for([&] { return count_lines(console) >= want || vm.poll() >= 0; }, 150);
        std::string after = read_file(console);
        ASSERT_TRUE(grew && count_lines(console) >= want)
            << "the restored machine printed " << count_lines(console) << " lines (wanted " << want << ")\n"
            << after << "\nvessel stderr:\n"
            << read_file(err);

        // The first output finishes the line the machine was in the middle
        // of, if any, then comes what followed it in the original boot.
        size_t cut = before.rfind('\n');
        std::string partial = cut == std::string::npos ? before : before.substr(cut + 1);
        auto old_lines = lines_of(before);
        auto new_lines = lines_of(partial + after);
        ASSERT_FALSE(new_lines.empty());
        auto original = lines_of(later);
        if (original.size() > old_lines.size()) {
            EXPECT_EQ(new_lines.front().text, original[old_lines.size()].text) << "not where the original went on";
        }
        for (const auto& l : new_lines)
            EXPECT_TRUE(
                std::none_of(old_lines.begin(), old_lines.end(), [&](const Line& o) { return o.text == l.text; }))
                << "printed again after the restore: " << l.text;
        // printk time goes on from the snapshot: kvmclock was restored, not restarted.
        double last_before = last_time(old_lines);
        ASSERT_GT(last_before, 0) << "no timestamps before the snapshot:\n" << before;
        double previous = last_before;
        for (const auto& l : new_lines) {
            if (l.time < 0) continue;
            EXPECT_GE(l.time, previous) << "time went backwards: " << l.text << "\nbefore:\n"
                                        << tail(before, 3) << "after:\n"
                                        << after;
            previous = l.time;
        }
        EXPECT_GT(previous, last_before);
        // Far less than a restart would show, far more than nothing.
        EXPECT_LT(new_lines.front().time, last_before + 60) << new_lines.front().text;

        EXPECT_EQ(call(sock, "PUT", "/vm/shutdown").status, 202);
        EXPECT_EQ(vm.wait(60), 130) << read_file(err);
    }

    std::string kernel_;
    fs::path dir_;
};

TEST_F(FullSnapshot, PausedSnapshottedKilledRestoredKernelCarriesOnBooting) {
    // A disk and an entropy device come along: their transports are saved
    // and restored too, and the disk is checked when restoring.
    std::string disk = path("disk.img");
    std::ofstream(disk).close();
    fs::resize_file(disk, 1 << 20);
    std::string console = path("boot.console"), sock = path("boot.sock"), err = path("boot.err");
    VesselProcess vm(
        {"boot", "--api-sock", sock, "--snapshot-dir", dir_.string(), "--console", "file:" + console, "--kernel",
         kernel_ + "/vmlinux", "--mem", "256M", "--cmdline", kCmdline, "--disk", disk, "--rng"},
        err);
    // Early, but once kvmclock runs: lines before it are all stamped 0.
    ASSERT_TRUE(wait_for(
        [&] { return (count_lines(console) >= 10 && last_time(lines_of(read_file(console))) > 0) || vm.poll() >= 0; },
        180))
        << "no early boot lines:\n"
        << read_file(console) << "\nvessel stderr:\n"
        << read_file(err);
    ASSERT_LT(vm.poll(), 0) << read_file(err);

    // A full snapshot of the paused machine.
    json full = {{"path", path("full")}};
    EXPECT_EQ(call(sock, "PUT", "/vm/snapshot", &full).status, 409) << "snapshot of a running machine";
    ASSERT_EQ(call(sock, "PUT", "/vm/pause").status, 200);
    auto a = call(sock, "PUT", "/vm/snapshot", &full);
    ASSERT_EQ(a.status, 200) << a.body.dump();
    EXPECT_EQ(a.body["type"], "full");
    EXPECT_TRUE(a.body["parent"].is_null());
    EXPECT_GT(a.body["pages"].get<uint64_t>(), 1000u);  // the kernel image at least
    std::string at_full = read_file(console);
    ASSERT_EQ(call(sock, "PUT", "/vm/resume").status, 200);

    // A few lines later, a diff on top of it; then the VMM dies.
    size_t lines_at_full = count_lines(console);
    ASSERT_TRUE(wait_for([&] { return count_lines(console) >= lines_at_full + 3 || vm.poll() >= 0; }, 120))
        << "no progress after resume:\n"
        << tail(read_file(console)) << read_file(err);
    ASSERT_EQ(call(sock, "PUT", "/vm/pause").status, 200);
    json diff = {{"path", path("diff")}, {"type", "diff"}};
    auto b = call(sock, "PUT", "/vm/snapshot", &diff);
    ASSERT_EQ(b.status, 200) << b.body.dump();
    EXPECT_EQ(b.body["type"], "diff");
    EXPECT_EQ(b.body["parent"], path("full"));
    EXPECT_GT(b.body["pages"].get<uint64_t>(), 0u);
    EXPECT_LT(b.body["pages"].get<uint64_t>(), a.body["pages"].get<uint64_t>());
    std::string at_diff = read_file(console);
    vm.kill9();

    // The diff (its chain: full + diff), then the full snapshot on its own.
    restore_and_expect_progress(path("diff"), at_diff, "from-diff", 3);
    restore_and_expect_progress(path("full"), at_full, "from-full", 3, at_diff);

    // The disk must be the one the machine had.
    auto refused = [&](const std::string& why) {
        VesselProcess r({"restore", "--console", "file:" + path("refused.console"), path("diff")}, path("refused.err"));
        EXPECT_EQ(r.wait(60), 2);
        std::string e = read_file(path("refused.err"));
        EXPECT_EQ(std::count(e.begin(), e.end(), '\n'), 1) << e;
        EXPECT_NE(e.find(why), std::string::npos) << e;
    };
    fs::resize_file(disk, 2 << 20);
    refused("disk " + disk + " changed size since the snapshot (1048576 bytes then, 2097152 now)");
    fs::rename(disk, disk + ".moved");
    refused("disk " + disk + " of the snapshot is missing");
}

// A damaged or doctored full snapshot fails with one line, never a crash.
TEST_F(FullSnapshot, DoctoredSnapshotsAreRefused) {
    std::string console = path("boot.console"), sock = path("boot.sock"), err = path("boot.err");
    VesselProcess vm({"boot", "--api-sock", sock, "--snapshot-dir", dir_.string(), "--console", "file:" + console,
                      "--kernel", kernel_ + "/vmlinux", "--mem", "128M", "--cmdline", kCmdline},
                     err);
    ASSERT_TRUE(socket_up(sock)) << read_file(err);
    ASSERT_EQ(call(sock, "PUT", "/vm/pause").status, 200);
    json body = {{"path", path("good")}};
    ASSERT_EQ(call(sock, "PUT", "/vm/snapshot", &body).status, 200);
    json diff = {{"path", path("good-diff")}, {"type", "diff"}};
    ASSERT_EQ(call(sock, "PUT", "/vm/snapshot", &diff).status, 200);
    vm.kill9();

    // Rewrites one section of a copy of the good snapshot (checksums intact).
    auto doctor = [&](state::Section section, auto&& change, const std::string& why) {
        SCOPED_TRACE(why);
        fs::path bad = dir_ / "bad";
        fs::remove_all(bad);
        fs::copy(dir_ / "good", bad);
        auto sections = state::read_state_file((bad / "state.bin").string());
        ASSERT_TRUE(sections);
        change((*sections)[section]);
        ASSERT_TRUE(state::write_state_file((bad / "state.bin").string(), *sections));
        VesselProcess r({"restore", "--console", "file:" + path("bad.console"), bad.string()}, path("bad.err"));
        EXPECT_EQ(r.wait(60), 2);
        std::string e = read_file(path("bad.err"));
        EXPECT_EQ(std::count(e.begin(), e.end(), '\n'), 1) << e;
        EXPECT_NE(e.find(why), std::string::npos) << e;
    };
    auto edit_config = [](auto&& f) {
        return [f](std::vector<uint8_t>& bytes) {
            json j = json::parse(bytes.begin(), bytes.end());
            f(j);
            std::string s = j.dump();
            bytes.assign(s.begin(), s.end());
        };
    };
    doctor(state::Section::kConfig, edit_config([](json& j) { j["cpus"] = 2; }), "1 vCPU records for 2 vCPUs");
    doctor(state::Section::kConfig, edit_config([](json& j) { j["mem_bytes"] = 96 << 20; }),
           "memory size disagrees with the layout");
    doctor(state::Section::kConfig, edit_config([](json& j) { j["cpus"] = 100000; }), "for 100000 vCPUs");
    doctor(state::Section::kConfig, edit_config([](json& j) { j["kernel_cmdline"] = "console=ttyS0 other"; }),
           "the re-created devices do not match");
    doctor(state::Section::kConfig, edit_config([](json& j) { j.erase("devices"); }), "snapshot config:");
    doctor(
        state::Section::kVcpus, [](std::vector<uint8_t>& b) { b[0] = 7; }, "7 vCPU records for 1 vCPUs");
    doctor(
        state::Section::kVcpus, [](std::vector<uint8_t>& b) { b.resize(b.size() - 5); }, "vCPU state");
    doctor(
        state::Section::kMachine, [](std::vector<uint8_t>& b) { b.resize(100); },
        "in-kernel device state is malformed");
    doctor(
        state::Section::kDevices, [](std::vector<uint8_t>& b) { b.resize(b.size() / 2); }, "state is malformed");
    // The untouched diff restores (its chain back to `good`).
    VesselProcess chained({"restore", "--console", "file:" + path("chain.console"), "--api-sock", path("chain.sock"),
                           "--snapshot-dir", dir_.string(), path("good-diff")},
                          path("chain.err"));
    EXPECT_TRUE(socket_up(path("chain.sock"))) << read_file(path("chain.err"));
    EXPECT_EQ(call(path("chain.sock"), "PUT", "/vm/shutdown").status, 202);
    EXPECT_EQ(chained.wait(60), 130) << read_file(path("chain.err"));
}

}  // namespace
}  // namespace vessel

// vesseld as a child process of a test, on a socket and state directory of
// the test's own, and the calls tests make to it.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "api/http.h"

namespace vessel::testing {

using json = nlohmann::json;
using namespace std::chrono_literals;

inline const std::string kBin = std::string(VESSEL_BINARY_DIR) + "/bin/";
// A body for a call (kept alive for the statement).
struct json_ptr {
    json j;
    json_ptr(std::initializer_list<nlohmann::detail::json_ref<json>> init) : j(init) {}
    operator const json*() const { return &j; }
};

// A new directory /tmp/PREFIX-XXXXXX for one test; "" (errno set) if it could not be made.
inline std::string make_temp_dir(const std::string& prefix) {
    std::string path = "/tmp/" + prefix + "-XXXXXX";
    return ::mkdtemp(path.data()) ? path : "";
}

// A file's bytes ("" when it cannot be read). A /proc file of a process
// that ends while it is read fails with ESRCH, which libstdc++'s streams
// throw from: read() instead (a test walking /proc while other tests start
// and end processes died of that in CI).
inline std::string slurp(const std::string& path) {
    std::string out;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return out;
    char buf[4096];
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
    ::close(fd);
    return out;
}

// The process has ended (it may linger as a zombie of whoever adopted it).
inline bool gone(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(in, line)) return true;
    auto p = line.rfind(')');
    return p != std::string::npos && p + 2 < line.size() && (line[p + 2] == 'Z' || line[p + 2] == 'X');
}

class Vesseld {
public:
    explicit Vesseld(const std::string& dir, std::vector<std::string> extra = {})
        : dir_(dir), socket_(dir + "/d.sock"), extra_(std::move(extra)) {
        start();
    }
    ~Vesseld() { stop(SIGTERM); }
    void start() {
        std::vector<std::string> args = {"vesseld",       "--socket",        socket_,        "--state-dir",
                                         dir_ + "/state", "--cgroup-parent", cgroup_parent()};
        args.insert(args.end(), extra_.begin(), extra_.end());
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        pid_ = ::fork();
        if (pid_ == 0) {
            std::string log = dir_ + "/vesseld.log";
            FILE* f = std::freopen(log.c_str(), "a", stderr);
            (void)f;
            ::execv((kBin + "vesseld").c_str(), argv.data());
            ::_exit(127);
        }
        // Up to 60 s: a loaded CI machine (the nested machine's QEMU beside
        // this test) once took more than 5 s to start it; a vesseld that
        // exits is reported at once.
        const auto deadline = std::chrono::steady_clock::now() + 60s;
        while (std::chrono::steady_clock::now() < deadline) {
            auto r = vessel::api::call(socket_, "GET", "/healthz", nullptr, 1s);
            if (r && r->status == 200) return;
            if (!alive()) {
                ADD_FAILURE() << "vesseld exited before answering on " << socket_ << "; log: " << log();
                pid_ = -1;
                return;
            }
            std::this_thread::sleep_for(10ms);
        }
        ADD_FAILURE() << "vesseld did not answer on " << socket_ << " within 60 s; log: " << log();
    }
    void stop(int sig) {
        if (pid_ <= 0) return;
        ::kill(pid_, sig);
        int st;
        ::waitpid(pid_, &st, 0);
        pid_ = -1;
    }
    bool alive() const {
        int st;
        return pid_ > 0 && ::waitpid(pid_, &st, WNOHANG) == 0;
    }
    std::string log() const {
        std::ifstream in(dir_ + "/vesseld.log");
        return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    }
    vessel::api::Response call(const std::string& method, const std::string& target, const json* body = nullptr) {
        auto r = vessel::api::call(socket_, method, target, body, 30s);
        EXPECT_TRUE(r.has_value()) << method << " " << target << ": " << (r ? "" : r.error().message);
        return r ? *r : vessel::api::Response{599, json::object(), "application/json", ""};
    }
    json create(const std::string& program, const std::vector<std::string>& args, const std::string& name = "") {
        json body = {{"program", program}, {"args", args}, {"mem", "16M"}};
        if (!name.empty()) body["name"] = name;
        auto r = call("POST", "/vms", &body);
        EXPECT_EQ(r.status, 201) << r.body.dump();
        return r.body;
    }
    json get(const std::string& id) { return call("GET", "/vms/" + id).body; }
    json wait_state(const std::string& id, const std::string& state, std::chrono::milliseconds timeout = 10s) {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        json vm;
        while (std::chrono::steady_clock::now() < deadline) {
            vm = get(id);
            if (vm.value("state", "") == state) return vm;
            std::this_thread::sleep_for(20ms);
        }
        ADD_FAILURE() << "VM " << id << " never reached " << state << ": " << vm.dump();
        return vm;
    }
    // Runs `vessel ARGS...` against this daemon; returns {status, stdout}.
    std::pair<int, std::string> cli(const std::string& args) {
        std::string cmd = "VESSEL_DAEMON_SOCKET=" + socket_ + " " + kBin + "vessel " + args + " 2>&1";
        FILE* p = ::popen(cmd.c_str(), "r");
        std::string out;
        char buf[4096];
        size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
        int st = ::pclose(p);
        return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
    }
    // Leaves nothing running: every VM removed (forced), when the daemon is up.
    void remove_all_vms() {
        if (!alive()) return;
        auto r = vessel::api::call(socket_, "GET", "/vms", nullptr, 5s);
        if (r && r->status == 200)
            for (const auto& vm : r->body["vms"])
                vessel::api::call(socket_, "DELETE", "/vms/" + vm["id"].get<std::string>() + "?force=true", nullptr,
                                  10s);
    }
    const std::string& socket() const { return socket_; }
    pid_t pid() const { return pid_; }
    // One per test process (tests of one binary may run in parallel).
    static std::string cgroup_parent() { return "vessel-test-" + std::to_string(::getpid()); }

private:
    std::string dir_, socket_;
    std::vector<std::string> extra_;
    pid_t pid_ = -1;
};

}  // namespace vessel::testing

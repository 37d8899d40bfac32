#include "daemon/cgroups.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>
#include <thread>

namespace vessel::daemon {
namespace {

struct Mount {
    std::string dir, type, options;
};

std::vector<Mount> mounts() {
    std::vector<Mount> out;
    std::ifstream in("/proc/self/mounts");
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream ls(line);
        Mount m;
        std::string dev;
        ls >> dev >> m.dir >> m.type >> m.options;
        if (m.type == "cgroup" || m.type == "cgroup2") out.push_back(m);
    }
    return out;
}

// The daemon's own group in the hierarchy whose /proc/self/cgroup controller
// list contains `controller` ("" for the v2 line "0::PATH").
std::string own_group(const std::string& controller) {
    std::ifstream in("/proc/self/cgroup");
    std::string line;
    while (std::getline(in, line)) {
        size_t a = line.find(':'), b = line.find(':', a + 1);
        if (a == std::string::npos || b == std::string::npos) continue;
        std::string ctrls = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
        if (controller.empty() ? line.substr(0, a) == "0" && ctrls.empty() : false) return path;
        std::istringstream cs(ctrls);
        std::string c;
        while (std::getline(cs, c, ','))
            if (c == controller) return path;
    }
    return "/";
}

std::string join(const std::string& a, const std::string& b) {
    if (b.empty() || b == "/") return a;
    return a + (b.front() == '/' ? "" : "/") + b;
}

Result<> write_file(const std::string& path, const std::string& value) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return fail_errno("open " + path);
    ssize_t n = ::write(fd, value.data(), value.size());
    int e = errno;
    ::close(fd);
    if (n != static_cast<ssize_t>(value.size())) {
        errno = e;
        return fail_errno("write " + value + " to " + path);
    }
    return {};
}

std::optional<std::string> read_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) return std::nullopt;
    std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return s;
}

std::optional<uint64_t> read_number(const std::string& path) {
    auto s = read_file(path);
    if (!s) return std::nullopt;
    try {
        size_t used = 0;
        auto v = std::stoull(*s, &used);
        return v;
    } catch (const std::exception&) {
        return std::nullopt;  // "max" and the like
    }
}

bool mkdir_p1(const std::string& dir) { return ::mkdir(dir.c_str(), 0755) == 0 || errno == EEXIST; }

}  // namespace

nlohmann::json Placement::to_json() const {
    return {{"mode", mode}, {"paths", paths}, {"memory_path", memory_path}, {"pids_path", pids_path}};
}

Placement Placement::from_json(const nlohmann::json& j) {
    Placement p;
    if (!j.is_object()) return p;
    p.mode = j.value("mode", "none");
    if (j.contains("paths") && j["paths"].is_array())
        for (const auto& s : j["paths"])
            if (s.is_string()) p.paths.push_back(s.get<std::string>());
    p.memory_path = j.value("memory_path", "");
    p.pids_path = j.value("pids_path", "");
    return p;
}

Cgroups Cgroups::detect(const std::string& parent) {
    Cgroups c;
    if (c.try_v2(parent)) return c;
    std::string v2_reason = c.reason_;
    if (c.try_v1(parent)) {
        c.reason_ = v2_reason;
        return c;
    }
    c.reason_ = v2_reason + "; " + c.reason_;
    c.mode_ = "none";
    return c;
}

bool Cgroups::try_v2(const std::string& parent) {
    std::string mount;
    for (const auto& m : mounts())
        if (m.type == "cgroup2") mount = m.dir;
    if (mount.empty()) {
        reason_ = "no cgroup2 mount";
        return false;
    }
    std::string own = join(mount, own_group(""));
    auto avail = read_file(own + "/cgroup.controllers").value_or("");
    for (const char* need : {"cpu", "memory", "pids"}) {
        std::istringstream s(avail);
        std::string w;
        bool found = false;
        while (s >> w) found |= w == need;
        if (!found) {
            reason_ = "cgroup v2 at " + own + " lacks the " + need + " controller (held by v1?)";
            return false;
        }
    }
    // A non-root group that holds processes cannot delegate controllers (no
    // internal processes): move the daemon into a leaf of its own first.
    auto enable = write_file(own + "/cgroup.subtree_control", "+cpu +memory +pids");
    if (!enable && enable.error().sys_errno == EBUSY) {
        std::string leaf = own + "/vesseld";
        if (mkdir_p1(leaf) && write_file(leaf + "/cgroup.procs", std::to_string(::getpid())))
            enable = write_file(own + "/cgroup.subtree_control", "+cpu +memory +pids");
    }
    if (!enable) {
        reason_ = "cgroup v2: " + enable.error().message;
        return false;
    }
    std::string base = own + "/" + parent;
    if (!mkdir_p1(base)) {
        reason_ = "cgroup v2: mkdir " + base + ": " + std::strerror(errno);
        return false;
    }
    if (auto r = write_file(base + "/cgroup.subtree_control", "+cpu +memory +pids"); !r) {
        reason_ = "cgroup v2: " + r.error().message;
        return false;
    }
    mode_ = "v2";
    bases_ = {base};
    controllers_ = {"cpu", "memory", "pids"};
    return true;
}

bool Cgroups::try_v1(const std::string& parent) {
    auto ms = mounts();
    std::vector<std::string> missing;
    for (const char* ctrl : {"cpu", "memory", "pids"}) {
        std::string mount;
        for (const auto& m : ms) {
            if (m.type != "cgroup") continue;
            std::istringstream os(m.options);
            std::string o;
            while (std::getline(os, o, ','))
                if (o == ctrl) mount = m.dir;
        }
        std::string base = mount.empty() ? "" : join(mount, own_group(ctrl)) + "/" + parent;
        if (mount.empty() || !mkdir_p1(base) || ::access((base + "/cgroup.procs").c_str(), W_OK) != 0) {
            missing.push_back(ctrl);
            continue;
        }
        bases_.push_back(base);
        controllers_.push_back(ctrl);
    }
    if (controllers_.empty()) {
        reason_ = "no writable cgroup v1 cpu, memory or pids hierarchy";
        return false;
    }
    mode_ = "v1";
    if (!missing.empty()) {
        reason_ = "cgroup v1 without";
        for (auto& m : missing) reason_ += " " + m;
    }
    return true;
}

Result<Placement> Cgroups::create(const std::string& id, const Limits& limits, std::vector<Fd>& procs) const {
    Placement p;
    p.mode = mode_;
    if (mode_ == "none") return p;
    auto undo = [&p] { remove(p); };
    for (size_t i = 0; i < bases_.size(); ++i) {
        std::string dir = bases_[i] + "/" + id;
        if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
            auto e = fail_errno("mkdir " + dir);
            undo();
            return e;
        }
        p.paths.push_back(dir);
        const std::string& ctrl = controllers_[i];
        Result<> r;
        if (mode_ == "v2") {
            p.memory_path = p.pids_path = dir;
            if (limits.cpus) {
                uint64_t quota = static_cast<uint64_t>(std::llround(*limits.cpus * 100000));
                r = write_file(dir + "/cpu.max", std::to_string(std::max<uint64_t>(quota, 1000)) + " 100000");
            }
            if (r && limits.memory) {
                r = write_file(dir + "/memory.max", std::to_string(*limits.memory));
                // Guest memory is the VM's own: never swap it behind its back.
                if (r) (void)write_file(dir + "/memory.swap.max", "0");
            }
            if (r && limits.pids) r = write_file(dir + "/pids.max", std::to_string(*limits.pids));
        } else if (ctrl == "cpu") {
            if (limits.cpus) {
                uint64_t quota = static_cast<uint64_t>(std::llround(*limits.cpus * 100000));
                r = write_file(dir + "/cpu.cfs_period_us", "100000");
                if (r) r = write_file(dir + "/cpu.cfs_quota_us", std::to_string(std::max<uint64_t>(quota, 1000)));
            }
        } else if (ctrl == "memory") {
            p.memory_path = dir;
            if (limits.memory) r = write_file(dir + "/memory.limit_in_bytes", std::to_string(*limits.memory));
        } else if (ctrl == "pids") {
            p.pids_path = dir;
            if (limits.pids) r = write_file(dir + "/pids.max", std::to_string(*limits.pids));
        }
        if (!r) {
            undo();
            return wrap("cgroup " + dir, r.error());
        }
        int fd = ::open((dir + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
        if (fd < 0) {
            auto e = fail_errno("open " + dir + "/cgroup.procs");
            undo();
            return e;
        }
        procs.emplace_back(fd);
    }
    return p;
}

void Cgroups::remove(const Placement& p) {
    for (const auto& dir : p.paths) {
        for (int attempt = 0; attempt < 50; ++attempt) {
            if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) break;
            if (errno != EBUSY) break;
            // Leftovers (e.g. the VMM's detached teardown helper) go first.
            std::istringstream procs(read_file(dir + "/cgroup.procs").value_or(""));
            int pid;
            while (procs >> pid)
                if (pid > 0) ::kill(pid, SIGKILL);
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }
}

CgroupStats Cgroups::stats(const Placement& p) {
    CgroupStats s;
    if (p.mode == "v2" && !p.memory_path.empty()) {
        s.memory_bytes = read_number(p.memory_path + "/memory.current");
        s.memory_limit = read_number(p.memory_path + "/memory.max");
    } else if (p.mode == "v1" && !p.memory_path.empty()) {
        s.memory_bytes = read_number(p.memory_path + "/memory.usage_in_bytes");
        s.memory_limit = read_number(p.memory_path + "/memory.limit_in_bytes");
        if (s.memory_limit && *s.memory_limit >= (1ull << 62)) s.memory_limit.reset();  // "unlimited"
    }
    if (!p.pids_path.empty()) s.pids = read_number(p.pids_path + "/pids.current");
    return s;
}

}  // namespace vessel::daemon

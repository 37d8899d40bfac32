#include "daemon/cgroups.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>
#include <utility>

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

// The number after `key` in a flat keyed file such as memory.events ("oom_kill 3").
std::optional<uint64_t> read_keyed(const std::string& path, const std::string& key) {
    std::ifstream in(path);
    std::string k;
    uint64_t v;
    while (in >> k >> v)
        if (k == key) return v;
    return std::nullopt;
}

bool mkdir_p1(const std::string& dir) { return ::mkdir(dir.c_str(), 0755) == 0 || errno == EEXIST; }

}  // namespace

nlohmann::json Placement::to_json() const {
    return {{"mode", mode},
            {"paths", paths},
            {"memory_path", memory_path},
            {"pids_path", pids_path},
            {"unenforced", unenforced}};
}

Placement Placement::from_json(const nlohmann::json& j) {
    Placement p;
    if (!j.is_object()) return p;
    p.mode = j.value("mode", "none");
    auto strings = [&j](const char* key, std::vector<std::string>& out) {
        if (j.contains(key) && j[key].is_array())
            for (const auto& s : j[key])
                if (s.is_string()) out.push_back(s.get<std::string>());
    };
    strings("paths", p.paths);
    strings("unenforced", p.unenforced);
    p.memory_path = j.value("memory_path", "");
    p.pids_path = j.value("pids_path", "");
    return p;
}

Cgroups Cgroups::detect(const std::string& parent) {
    Cgroups c;
    if (c.try_v2(parent)) return c;
    std::string v2_reason = std::exchange(c.reason_, "");
    if (c.try_v1(parent)) {
        c.reason_ = v2_reason + (c.reason_.empty() ? "" : "; " + c.reason_);
        return c;
    }
    c.reason_ = v2_reason + "; " + c.reason_;
    c.mode_ = "none";
    return c;
}

Result<Cgroups> Cgroups::at_root(const std::string& root, const std::string& parent) {
    struct statfs fs {};
    if (::statfs(root.c_str(), &fs) != 0) return fail_errno("--cgroup-root " + root);
    if (fs.f_type != CGROUP2_SUPER_MAGIC)
        return fail("--cgroup-root " + root + ": not a cgroup2 file system (mount one with: mount -t cgroup2 none DIR)",
                    EINVAL);
    return open_v2(root, parent);
}

Result<Cgroups> Cgroups::open_v2(const std::string& root, const std::string& parent) {
    Cgroups c;
    if (!c.init_v2(root, parent, false)) return fail(c.reason_, EINVAL);
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
    return init_v2(join(mount, own_group("")), parent, true);
}

bool Cgroups::init_v2(const std::string& dir, const std::string& parent, bool need_all) {
    auto offered_text = read_file(dir + "/cgroup.controllers");
    if (!offered_text) {
        reason_ = "cgroup v2: cannot read " + dir + "/cgroup.controllers";
        return false;
    }
    std::set<std::string> offered;
    {
        std::istringstream s(*offered_text);
        std::string w;
        while (s >> w) offered.insert(w);
    }
    std::vector<std::string> have, lack;
    for (const char* c : {"cpu", "memory", "pids"}) (offered.count(c) ? have : lack).push_back(c);
    std::string lack_text, enable, available;
    for (const auto& c : lack) lack_text += (lack_text.empty() ? "" : ", ") + c;
    for (const auto& c : have) enable += (enable.empty() ? "+" : " +") + c;
    for (const auto& c : offered) available += (available.empty() ? "" : " ") + c;
    if (need_all && !lack.empty()) {
        reason_ = "cgroup v2 at " + dir + " lacks the " + lack_text + " controller" + (lack.size() > 1 ? "s" : "") +
                  " (held by v1?)";
        return false;
    }
    auto enable_below = [&enable](const std::string& group) -> Result<> {
        if (enable.empty()) return {};
        return write_file(group + "/cgroup.subtree_control", enable);
    };
    // A non-root group that holds processes cannot delegate controllers (no
    // internal processes): move the daemon into a leaf of its own first.
    auto enabled = enable_below(dir);
    if (!enabled && enabled.error().sys_errno == EBUSY) {
        std::string leaf = dir + "/vesseld";
        if (mkdir_p1(leaf) && write_file(leaf + "/cgroup.procs", std::to_string(::getpid())))
            enabled = enable_below(dir);
    }
    if (!enabled) {
        reason_ = "cgroup v2: " + enabled.error().message;
        return false;
    }
    std::string base = dir + "/" + parent;
    if (!mkdir_p1(base)) {
        reason_ = "cgroup v2: mkdir " + base + ": " + std::strerror(errno);
        return false;
    }
    if (auto r = enable_below(base); !r) {
        reason_ = "cgroup v2: " + r.error().message;
        return false;
    }
    mode_ = "v2";
    bases_ = {base};
    controllers_ = have;
    subtree_control_ = enable;
    reason_.clear();
    if (!lack.empty())
        reason_ = "cgroup v2 at " + dir + " offers no " + lack_text +
                  " controller (it has: " + (available.empty() ? "none" : available) + "): limits that need " +
                  (lack.size() > 1 ? "them" : "it") + " are refused, default ones are not enforced";
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

bool Cgroups::has(const char* controller) const {
    return std::find(controllers_.begin(), controllers_.end(), controller) != controllers_.end();
}

std::vector<std::string> Cgroups::missing(const Limits& requested) const {
    std::vector<std::string> out;
    if (requested.cpus && !has("cpu")) out.push_back("cpu");
    if (requested.memory && !has("memory")) out.push_back("memory");
    if (requested.pids && !has("pids")) out.push_back("pids");
    return out;
}

Result<Placement> Cgroups::create(const std::string& id, const Limits& limits, CgroupJoin& join) const {
    Placement p;
    p.mode = mode_;
    p.unenforced = missing(limits);
    if (mode_ == "none") return p;
    auto undo = [&p] { remove(p); };
    auto cpu_quota = [](double cpus) {
        return std::to_string(std::max<uint64_t>(static_cast<uint64_t>(std::llround(cpus * 100000)), 1000));
    };
    for (size_t i = 0; i < bases_.size(); ++i) {
        std::string dir = bases_[i] + "/" + id;
        bool made = ::mkdir(dir.c_str(), 0755) == 0 || errno == EEXIST;
        if (!made && errno == ENOENT && remake_base(bases_[i]))  // released by another daemon's stop
            made = ::mkdir(dir.c_str(), 0755) == 0 || errno == EEXIST;
        if (!made) {
            auto e = fail_errno("mkdir " + dir);
            undo();
            return e;
        }
        p.paths.push_back(dir);
        Result<> r;
        if (mode_ == "v2") {
            if (has("memory")) p.memory_path = dir;
            if (has("pids")) p.pids_path = dir;
            if (limits.cpus && has("cpu")) r = write_file(dir + "/cpu.max", cpu_quota(*limits.cpus) + " 100000");
            if (r && limits.memory && has("memory")) {
                r = write_file(dir + "/memory.max", std::to_string(*limits.memory));
                // Guest memory is the VM's own: never swap it behind its back.
                if (r) (void)write_file(dir + "/memory.swap.max", "0");
            }
            if (r && limits.pids && has("pids")) r = write_file(dir + "/pids.max", std::to_string(*limits.pids));
            if (r) {
                join.v2_dir.reset(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
                if (!join.v2_dir) r = fail_errno("open " + dir);
            }
        } else if (controllers_[i] == "cpu") {
            if (limits.cpus) {
                r = write_file(dir + "/cpu.cfs_period_us", "100000");
                if (r) r = write_file(dir + "/cpu.cfs_quota_us", cpu_quota(*limits.cpus));
            }
        } else if (controllers_[i] == "memory") {
            p.memory_path = dir;
            if (limits.memory) r = write_file(dir + "/memory.limit_in_bytes", std::to_string(*limits.memory));
        } else if (controllers_[i] == "pids") {
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
        join.procs.emplace_back(fd);
    }
    return p;
}

bool Cgroups::remake_base(const std::string& base) const {
    int e = 0;
    if (!mkdir_p1(base))
        e = errno;
    else if (!subtree_control_.empty() && !write_file(base + "/cgroup.subtree_control", subtree_control_))
        e = errno;
    errno = e ? e : ENOENT;
    return e == 0;
}

void Cgroups::release() const {
    for (const auto& base : bases_) ::rmdir(base.c_str());  // fails, harmlessly, while VM groups remain
}

void Cgroups::remove(const Placement& p) {
    for (const auto& dir : p.paths) {
        // Up to 5 s: besides the VMM's leftovers, KVM puts a kernel thread
        // of each VM in its creator's group (kvm-nx-lpage-recovery), which
        // no signal ends: it goes when the VM's last reference does, a while
        // after the VMM on a slow (emulated) machine.
        for (int attempt = 0; attempt < 250; ++attempt) {
            if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) break;
            if (errno != EBUSY) break;
            // Leftovers (e.g. the VMM's detached teardown helper) go first.
            std::istringstream procs(read_file(dir + "/cgroup.procs").value_or(""));
            int pid;
            while (procs >> pid)
                if (pid > 0) ::kill(pid, SIGKILL);
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
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

LimitEvents Cgroups::limit_events(const Placement& p) {
    LimitEvents e;
    if (p.mode == "v2" && !p.memory_path.empty()) {
        e.oom_kills = read_keyed(p.memory_path + "/memory.events", "oom_kill");
    } else if (p.mode == "v1" && !p.memory_path.empty()) {
        e.oom_kills = read_keyed(p.memory_path + "/memory.oom_control", "oom_kill");
        e.memory_limit_hits = read_number(p.memory_path + "/memory.failcnt");
    }
    if (!p.pids_path.empty()) e.pids_limit_hits = read_keyed(p.pids_path + "/pids.events", "max");
    return e;
}

Placement Cgroups::existing(const std::string& id) const {
    Placement p;
    p.mode = mode_;
    for (size_t i = 0; i < bases_.size(); ++i) {
        std::string dir = bases_[i] + "/" + id;
        struct stat st;
        if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;
        p.paths.push_back(dir);
        bool v2 = mode_ == "v2";
        if ((v2 && has("memory")) || (!v2 && controllers_[i] == "memory")) p.memory_path = dir;
        if ((v2 && has("pids")) || (!v2 && controllers_[i] == "pids")) p.pids_path = dir;
    }
    return p;
}

}  // namespace vessel::daemon

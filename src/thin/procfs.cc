#include "thin/procfs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <map>

#include "thin/process.h"

namespace vessel::thin::procfs {
namespace {

std::string format(const char* fmt, auto... args) {
    char buf[256];
    int n = std::snprintf(buf, sizeof buf, fmt, args...);
    return std::string(buf, n < 0 ? 0 : std::min<size_t>(static_cast<size_t>(n), sizeof buf - 1));
}

// "/proc/self/x" and "/proc/PID/x" (the caller's pid) are the same file:
// the rest after the process part ("x"), or nullopt when `abs` is not under
// the caller (other processes' directories are not there yet).
std::optional<std::string> under_process(const Process& p, const std::string& abs) {
    for (const std::string& prefix : {std::string("/proc/self"), "/proc/" + std::to_string(p.pid())}) {
        if (abs == prefix) return std::string();
        if (abs.starts_with(prefix + "/")) return abs.substr(prefix.size() + 1);
    }
    return std::nullopt;
}

uint64_t kib(uint64_t bytes) { return bytes / 1024; }

// NUL-terminated strings one after the other, as cmdline and environ are.
std::string joined(const std::vector<std::string>& strings) {
    std::string s;
    for (const auto& x : strings) s += x + '\0';
    return s;
}

std::string meminfo(Process& p) {
    uint64_t total = p.as().memory().size();
    uint64_t free = p.as().allocator().pages_free() * memory::kPageSize;
    std::string s;
    s += format("MemTotal:       %8" PRIu64 " kB\n", kib(total));
    s += format("MemFree:        %8" PRIu64 " kB\n", kib(free));
    s += format("MemAvailable:   %8" PRIu64 " kB\n", kib(free));
    for (const char* zero : {"Buffers", "Cached", "SwapCached", "SwapTotal", "SwapFree", "Shmem"})
        s += format("%-15s %8d kB\n", (std::string(zero) + ":").c_str(), 0);
    return s;
}

std::string cpuinfo() {
    // One vCPU; the model and flags a program would act on come from CPUID,
    // which the guest reads itself.
    long cpus = 1;
    std::string s;
    for (long i = 0; i < cpus; ++i)
        s += format("processor\t: %ld\nvendor_id\t: Vessel\nmodel name\t: Vessel thin vCPU\ncpu cores\t: 1\n\n", i);
    return s;
}

// The guest's mounts, / first as Linux lists them (the sandbox keeps the
// longest guest path first): path and writable, then /proc.
std::vector<std::pair<std::string, bool>> guest_mounts(Process& p) {
    std::map<std::string, bool> sorted;
    for (const auto& m : p.sandbox().mounts()) sorted[m.guest_path] = m.writable;
    return {sorted.begin(), sorted.end()};
}

std::string mounts(Process& p) {
    std::string s;
    for (const auto& [path, writable] : guest_mounts(p))
        s += "vessel " + path + " vessel " + (writable ? "rw" : "ro") + ",nosuid,nodev 0 0\n";
    s += "proc /proc proc ro,nosuid,nodev,noexec 0 0\n";
    return s;
}

// The same as /proc/self/mountinfo has them (proc(5)): mount and parent ids
// (the root's parent is itself), a device number of its own per mount, the
// mount's root, mount point and options, no optional fields, then type,
// source and superblock options.
std::string mountinfo(Process& p) {
    std::string s;
    int id = 1;
    for (const auto& [path, writable] : guest_mounts(p)) {
        const char* mode = writable ? "rw" : "ro";
        s += format("%d 1 0:%d / %s %s,nosuid,nodev - vessel vessel %s\n", id, 100 + id, path.c_str(), mode, mode);
        ++id;
    }
    s += format("%d 1 0:%d / /proc ro,nosuid,nodev,noexec - proc proc ro\n", id, 100 + id);
    return s;
}

std::string maps(Process& p) {
    std::string s;
    for (const auto& [start, v] : p.as().vmas()) {
        char perms[5] = {v.prot & memory::kProtRead ? 'r' : '-', v.prot & memory::kProtWrite ? 'w' : '-',
                         v.prot & memory::kProtExec ? 'x' : '-', 'p', 0};
        s += format("%012" PRIx64 "-%012" PRIx64 " %s 00000000 00:00 0", v.start, v.end, perms);
        s += v.name.empty() ? "\n" : "                          " + v.name + "\n";
    }
    return s;
}

std::string status(Process& p) {
    uint64_t rss = 0;
    for (const auto& [start, v] : p.as().vmas()) rss += v.end - v.start;
    std::string s = "Name:\t" + p.comm() + "\nState:\tR (running)\n";
    const int pid = static_cast<int>(p.pid()), ppid = static_cast<int>(p.tree() ? p.tree()->parent(p) : 0);
    s += format("Tgid:\t%d\nPid:\t%d\nPPid:\t%d\n", pid, pid, ppid);
    s += format("Uid:\t%u\t%u\t%u\t%u\nGid:\t%u\t%u\t%u\t%u\nGroups:\t\n", p.options().uid, p.options().uid,
                p.options().uid, p.options().uid, p.options().gid, p.options().gid, p.options().gid, p.options().gid);
    s += format("VmSize:\t%8" PRIu64 " kB\nVmRSS:\t%8" PRIu64 " kB\nThreads:\t1\n", kib(rss), kib(rss));
    return s;
}

std::string stat_line(Process& p) {
    // The fields programs read (pid, comm, state, ppid, pgrp, session); the
    // rest zero.
    ProcessTree* tree = p.tree();
    const int pid = static_cast<int>(p.pid()), ppid = static_cast<int>(tree ? tree->parent(p) : 0);
    const int pgrp = static_cast<int>(tree ? tree->group(p, 0, false) : kGuestPid);
    const int session = static_cast<int>(tree ? tree->group(p, 0, true) : kGuestPid);
    std::string s = format("%d (%s) R %d %d %d 0 -1", pid, p.comm().c_str(), ppid, pgrp, session);
    for (int i = 0; i < 44; ++i) s += " 0";
    return s + "\n";
}

}  // namespace

bool covers(const std::string& abs) { return abs == "/proc" || abs.starts_with("/proc/"); }

namespace {

constexpr const char* kTopFiles[] = {"cpuinfo", "filesystems", "loadavg", "meminfo", "mounts", "stat", "uptime"};
constexpr const char* kKernelFiles[] = {"hostname", "osrelease", "ostype", "pid_max"};
constexpr const char* kProcessFiles[] = {"cmdline", "comm", "environ", "maps", "mounts", "mountinfo", "stat", "status"};

}  // namespace

Result<std::vector<OpenFile::Entry>> list(Process& p, const std::string& abs) {
    std::vector<OpenFile::Entry> out = {{".", DT_DIR}, {"..", DT_DIR}};
    auto files = [&](const auto& names) {
        for (const char* n : names) out.push_back({n, DT_REG});
    };
    if (abs == "/proc") {
        out.push_back({std::to_string(p.pid()), DT_DIR});
        out.push_back({"self", DT_LNK});
        out.push_back({"sys", DT_DIR});
        files(kTopFiles);
    } else if (abs == "/proc/sys") {
        out.push_back({"kernel", DT_DIR});
    } else if (abs == "/proc/sys/kernel") {
        files(kKernelFiles);
    } else if (auto rest = under_process(p, abs); rest && rest->empty()) {
        files(kProcessFiles);
        out.push_back({"cwd", DT_LNK});
        out.push_back({"fd", DT_DIR});
    } else if (rest && *rest == "fd") {
        for (const auto& [fd, e] : p.fds().entries()) out.push_back({std::to_string(fd), DT_LNK});
    } else {
        return text(p, abs) ? fail("", ENOTDIR) : fail("", ENOENT);
    }
    return out;
}

Result<std::shared_ptr<OpenFile>> open_file(Process& p, const std::string& abs, int flags) {
    auto f = std::make_shared<OpenFile>();
    f->guest_path = abs;
    auto fd = open(p, abs, flags);
    if (fd) {
        if (flags & O_DIRECTORY) return fail("", ENOTDIR);
        f->host = std::move(*fd);
        return f;
    }
    if (fd.error().sys_errno != EISDIR) return std::unexpected(fd.error());
    if ((flags & O_ACCMODE) != O_RDONLY || (flags & O_CREAT)) return fail("", EISDIR);
    auto entries = list(p, abs);
    if (!entries) return std::unexpected(entries.error());
    auto stand_in = directory_stand_in();
    if (!stand_in) return std::unexpected(stand_in.error());
    f->host = std::move(*stand_in);
    f->directory = true;
    f->entries = std::make_shared<const std::vector<OpenFile::Entry>>(std::move(*entries));
    return f;
}

Result<Fd> directory_stand_in() {
    Fd fd(::open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) return fail("", errno);
    return fd;
}

Result<std::string> text(Process& p, const std::string& abs) {
    if (auto rest = under_process(p, abs)) {
        if (rest->empty() || *rest == "fd") return fail("", EISDIR);
        if (*rest == "maps") return maps(p);
        if (*rest == "cmdline") return joined(p.options().argv);
        if (*rest == "environ") return joined(p.options().envp);
        if (*rest == "comm") return p.comm() + "\n";
        if (*rest == "status") return status(p);
        if (*rest == "stat") return stat_line(p);
        if (*rest == "mounts") return mounts(p);
        if (*rest == "mountinfo") return mountinfo(p);
        return fail("", ENOENT);
    }
    if (abs == "/proc" || abs == "/proc/sys" || abs == "/proc/sys/kernel") return fail("", EISDIR);
    struct sysinfo si {};
    ::sysinfo(&si);
    if (abs == "/proc/meminfo") return meminfo(p);
    if (abs == "/proc/cpuinfo") return cpuinfo();
    if (abs == "/proc/mounts") return mounts(p);
    if (abs == "/proc/uptime") return format("%ld.00 %ld.00\n", si.uptime, si.uptime);
    if (abs == "/proc/loadavg")
        return format("%.2f %.2f %.2f 1/1 %d\n", si.loads[0] / 65536.0, si.loads[1] / 65536.0, si.loads[2] / 65536.0,
                      int(p.pid()));
    if (abs == "/proc/stat") return std::string("cpu  0 0 0 0 0 0 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0 0 0\nprocesses 1\n");
    if (abs == "/proc/filesystems") return std::string("nodev\tproc\n\tvessel\n");
    if (abs == "/proc/sys/kernel/ostype") return std::string("Linux\n");
    if (abs == "/proc/sys/kernel/hostname") return std::string("vessel\n");
    if (abs == "/proc/sys/kernel/pid_max") return std::string("32768\n");
    if (abs == "/proc/sys/kernel/osrelease") {
        struct utsname u;
        ::uname(&u);
        return std::string(u.release) + "\n";  // as uname(2) answers the guest
    }
    return fail("", ENOENT);
}

Result<Fd> open(Process& p, const std::string& abs, int flags) {
    auto content = text(p, abs);
    if (!content) return std::unexpected(content.error());
    if ((flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC))) return fail("", EACCES);
    Fd fd(::memfd_create("vessel-proc", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!fd) return fail("", errno);
    if (::write(fd.get(), content->data(), content->size()) != static_cast<ssize_t>(content->size()))
        return fail("", EIO);
    ::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL);
    ::lseek(fd.get(), 0, SEEK_SET);
    // Reopened read-only, so that a guest's write gets EBADF as from a file
    // opened O_RDONLY.
    Fd ro(::open(("/proc/self/fd/" + std::to_string(fd.get())).c_str(), O_RDONLY | O_CLOEXEC));
    return ro ? std::move(ro) : std::move(fd);
}

Result<std::string> readlink(Process& p, const std::string& abs) {
    if (abs == "/proc/self") return std::to_string(p.pid());
    auto rest = under_process(p, abs);
    if (!rest) return text(p, abs) ? fail("", EINVAL) : fail("", ENOENT);
    if (*rest == "cwd") return p.cwd();
    if (rest->starts_with("fd/")) {
        char* end = nullptr;
        long fd = std::strtol(rest->c_str() + 3, &end, 10);
        if (*end || rest->size() == 3 || fd < 0 || fd >= FdTable::kMaxFds) return fail("", ENOENT);
        auto* e = p.fds().get(static_cast<int>(fd));
        if (!e) return fail("", ENOENT);
        if (!e->file->guest_path.empty()) return e->file->guest_path;
        // The host's name for it would tell the guest host paths.
        return std::string(::isatty(e->file->host.get()) ? "/dev/tty" : "pipe:[0]");
    }
    return text(p, abs) ? fail("", EINVAL) : fail("", ENOENT);
}

}  // namespace vessel::thin::procfs

#include "daemon/process.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

namespace vessel::daemon {
namespace {

struct ChildArgs {
    const char* path;
    char* const* argv;
    char* const* envp;
    int stdin_fd, out_fd;
    const int* cgroup_fds;
    size_t ncgroup;
    int err;          // errno of the failed step, written by the child
    const char* step;
};

// Runs in a CLONE_VM|CLONE_VFORK child: the daemon's memory is shared and the
// calling thread waits, so only system calls are used — no allocation, no locks.
int child_main(void* p) {
    auto* a = static_cast<ChildArgs*>(p);
    auto die = [a](const char* step) {
        a->err = errno;
        a->step = step;
        ::_exit(127);
    };
    sigset_t none;
    sigemptyset(&none);
    ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, nullptr, sizeof(long));
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig)
        if (sig != SIGKILL && sig != SIGSTOP) ::sigaction(sig, &dfl, nullptr);
    if (::setpgid(0, 0) < 0) die("setpgid");
    for (size_t i = 0; i < a->ncgroup; ++i)
        if (::write(a->cgroup_fds[i], "0", 1) != 1) die("joining the VM's cgroup");
    if (::dup2(a->stdin_fd, 0) < 0 || ::dup2(a->out_fd, 1) < 0 || ::dup2(a->out_fd, 2) < 0) die("dup2");
    ::syscall(SYS_close_range, 3u, ~0u, 0u);
    ::execve(a->path, a->argv, a->envp);
    die("execve");
    return 127;
}

std::vector<char*> c_strings(const std::vector<std::string>& v) {
    std::vector<char*> out;
    for (const auto& s : v) out.push_back(const_cast<char*>(s.c_str()));
    out.push_back(nullptr);
    return out;
}

// Fields after the command name of /proc/PID/stat (field 3 onwards).
std::optional<std::vector<std::string>> stat_fields(pid_t pid) {
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return std::nullopt;
    char buf[1024];
    ssize_t n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    if (n <= 0) return std::nullopt;
    std::string s(buf, static_cast<size_t>(n));
    size_t close_paren = s.rfind(')');
    if (close_paren == std::string::npos) return std::nullopt;
    std::istringstream in(s.substr(close_paren + 1));
    std::vector<std::string> f;
    std::string w;
    while (in >> w) f.push_back(w);
    if (f.size() < 20) return std::nullopt;
    return f;
}

}  // namespace

Result<Spawned> spawn(const SpawnRequest& req) {
    Fd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!null) return fail_errno("open /dev/null");
    Fd out(::open(req.console.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
    if (!out) return fail_errno("open " + req.console);
    auto argv = c_strings(req.argv);
    auto envp = c_strings(req.envp);
    std::vector<int> cg;
    if (req.cgroup_procs)
        for (const auto& fd : *req.cgroup_procs) cg.push_back(fd.get());
    ChildArgs a{req.path.c_str(), argv.data(), envp.data(), null.get(), out.get(), cg.data(), cg.size(), 0, nullptr};

    constexpr size_t kStack = 64 * 1024;
    void* stack = ::mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) return fail_errno("mmap child stack");
    pid_t pid = ::clone(child_main, static_cast<char*>(stack) + kStack, CLONE_VM | CLONE_VFORK | SIGCHLD, &a);
    int clone_errno = errno;
    ::munmap(stack, kStack);
    if (pid < 0) {
        errno = clone_errno;
        return fail_errno("clone");
    }
    if (a.step) {
        // The child failed before exec and has exited: collect it here.
        int status;
        ::waitpid(pid, &status, 0);
        return fail(req.path + ": " + a.step + ": " + std::strerror(a.err), a.err);
    }
    Spawned s;
    s.pid = pid;
    s.starttime = process_starttime(pid).value_or(0);
    return s;
}

std::optional<uint64_t> process_starttime(pid_t pid) {
    auto f = stat_fields(pid);
    if (!f || (*f)[0] == "Z" || (*f)[0] == "X") return std::nullopt;
    try {
        return std::stoull((*f)[19]);  // field 22 overall
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

bool same_process(pid_t pid, uint64_t starttime) {
    if (pid <= 0) return false;
    auto st = process_starttime(pid);
    return st && *st == starttime;
}

std::optional<uint64_t> process_cpu_ns(pid_t pid) {
    auto f = stat_fields(pid);
    if (!f) return std::nullopt;
    try {
        uint64_t ticks = std::stoull((*f)[11]) + std::stoull((*f)[12]);  // utime, stime (fields 14, 15)
        static const long hz = ::sysconf(_SC_CLK_TCK);
        return ticks * (1000000000ull / static_cast<uint64_t>(hz));
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

std::optional<uint64_t> process_rss(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/statm");
    uint64_t size, resident;
    if (!(in >> size >> resident)) return std::nullopt;
    return resident * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

}  // namespace vessel::daemon

#include "daemon/process.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

#include "base/safe_file.h"

namespace vessel::daemon {
namespace {

struct ChildArgs {
    const char* path;
    char* const* argv;
    char* const* envp;
    int stdin_fd, out_fd;
    const int* cgroup_fds;  // cgroup.procs files to write "0" into (none when born in its group)
    size_t ncgroup;
    int err;  // errno of the failed step, written by the child
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
    // The parent blocked every signal around the clone: reset the handlers
    // (none of the daemon's may run on this stack) before unblocking.
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig)
        if (sig != SIGKILL && sig != SIGSTOP) ::sigaction(sig, &dfl, nullptr);
    sigset_t none;
    sigemptyset(&none);
    ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, nullptr, sizeof(long));
    if (::setpgid(0, 0) < 0) die("setpgid");
    for (size_t i = 0; i < a->ncgroup; ++i)
        if (::write(a->cgroup_fds[i], "0", 1) != 1) die("joining the VM's cgroup");
    if (::dup2(a->stdin_fd, 0) < 0 || ::dup2(a->out_fd, 1) < 0 || ::dup2(a->out_fd, 2) < 0) die("dup2");
    ::syscall(SYS_close_range, 3u, ~0u, 0u);
    ::execve(a->path, a->argv, a->envp);
    die("execve");
    return 127;
}

// struct clone_args of linux/sched.h up to `cgroup` (Linux 5.7), spelled out
// here because that header clashes with glibc's <sched.h>.
struct CloneArgs {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};
constexpr uint64_t kCloneIntoCgroup = 0x200000000ull;

// clone3() whose child runs fn(arg) on args->stack. The system call returns
// twice with the same registers, so the child's side stays in assembly until
// it has called fn on its own stack; it never returns into this frame.
long clone3_run(CloneArgs* args, int (*fn)(void*), void* arg) {
    long ret;
    asm volatile(
        "syscall\n\t"
        "testq %%rax, %%rax\n\t"
        "jnz 1f\n\t"
        "xorl %%ebp, %%ebp\n\t"
        "movq %[arg], %%rdi\n\t"
        "callq *%[fn]\n\t"
        "movl %%eax, %%edi\n\t"
        "movl %[exit_nr], %%eax\n\t"
        "syscall\n\t"
        "ud2\n"
        "1:"
        : "=a"(ret)
        : "0"(static_cast<long>(SYS_clone3)), "D"(args),
          "S"(sizeof *args), [fn] "r"(fn), [arg] "r"(arg), [exit_nr] "i"(SYS_exit)
        : "rcx", "r11", "memory");
    return ret;
}

// Which kernel interfaces work here; learnt on the first spawn.
std::atomic<bool> have_clone3{true}, have_clone_into_cgroup{true};

// Starts child_main(a) on `stack`; returns its pid or -errno. `into_cgroup`
// is a v2 group directory fd, or -1.
pid_t launch(ChildArgs& a, char* stack, size_t stack_size, int into_cgroup) {
    if (have_clone3) {
        CloneArgs c{};
        c.flags = CLONE_VM | CLONE_VFORK;
        c.exit_signal = SIGCHLD;
        c.stack = reinterpret_cast<uint64_t>(stack);
        c.stack_size = stack_size;
        if (into_cgroup >= 0 && have_clone_into_cgroup) {
            c.flags |= kCloneIntoCgroup;
            c.cgroup = static_cast<uint64_t>(into_cgroup);
            size_t written = a.ncgroup;
            a.ncgroup = 0;  // born in its group: nothing to join
            long r = clone3_run(&c, child_main, &a);
            if (r >= 0) return static_cast<pid_t>(r);
            // Kernels before 5.7 (E2BIG, EINVAL) or a refused group: join the
            // old way, through cgroup.procs, from now on.
            if (r != -E2BIG && r != -EINVAL && r != -ENOSYS && r != -EOPNOTSUPP) return static_cast<pid_t>(r);
            have_clone_into_cgroup = false;
            a.ncgroup = written;
            c.flags &= ~kCloneIntoCgroup;
            c.cgroup = 0;
        }
        long r = clone3_run(&c, child_main, &a);
        if (r != -ENOSYS) return static_cast<pid_t>(r);
        have_clone3 = false;  // before Linux 5.3, or filtered
    }
    pid_t pid = ::clone(child_main, stack + stack_size, CLONE_VM | CLONE_VFORK | SIGCHLD, &a);
    return pid < 0 ? -errno : pid;
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

// Calls fn(pid, initial environment) for each live process that leads its
// own process group, until fn returns false.
template <class Fn>
void for_each_group_leader(Fn fn) {
    DIR* proc = ::opendir("/proc");
    if (!proc) return;
    while (dirent* e = ::readdir(proc)) {
        char* end;
        long pid = std::strtol(e->d_name, &end, 10);
        if (*end || pid <= 0) continue;
        std::ifstream in("/proc/" + std::string(e->d_name) + "/environ", std::ios::binary);
        std::string env((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        if (env.empty()) continue;
        auto f = stat_fields(static_cast<pid_t>(pid));
        if (!f || (*f)[0] == "Z" || (*f)[2] != e->d_name) continue;  // field 5: the process group
        if (!fn(static_cast<pid_t>(pid), env)) break;
    }
    ::closedir(proc);
}

}  // namespace

Result<Spawned> spawn(const SpawnRequest& req) {
    Fd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!null) return fail_errno("open /dev/null");
    // Appended to across restarts of the VM; owner-only (or as asked), and
    // never through a link someone put at its name (docs/security.md).
    auto console = open_append_path(req.console);
    if (!console) return wrap("console log", console.error());
    Fd out = std::move(*console);
    if (req.console_mode != 0600 && ::fchmod(out.get(), req.console_mode) != 0)
        return fail_errno("chmod " + req.console);
    auto argv = c_strings(req.argv);
    auto envp = c_strings(req.envp);
    std::vector<int> cg;
    int into = -1;
    if (req.cgroups) {
        for (const auto& fd : req.cgroups->procs) cg.push_back(fd.get());
        into = req.cgroups->v2_dir.get();
    }
    ChildArgs a{req.path.c_str(), argv.data(), envp.data(), null.get(), out.get(), cg.data(), cg.size(), 0, nullptr};

    // The child runs on this buffer while this thread waits for its execve
    // (CLONE_VFORK): a frame of ours that stays unused until then.
    alignas(64) char stack[32 * 1024];
    sigset_t all, old;
    sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = launch(a, stack, sizeof stack, into);
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (pid < 0) return fail(std::string("clone: ") + std::strerror(-pid), -pid);
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

std::optional<pid_t> find_process_group_by_env(const std::string& entry) {
    std::optional<pid_t> found;
    std::string want = entry + '\0';
    for_each_group_leader([&](pid_t pid, const std::string& env) {
        if (env.compare(0, want.size(), want) != 0 && env.find('\0' + want) == std::string::npos) return true;
        found = pid;
        return false;
    });
    return found;
}

std::vector<VmmProcess> find_vmm_processes() {
    static const std::string key = "VESSEL_VM_ID=";
    std::vector<VmmProcess> out;
    for_each_group_leader([&](pid_t pid, const std::string& env) {
        size_t at = env.starts_with(key) ? 0 : env.find('\0' + key);
        if (at == std::string::npos) return true;
        size_t begin = at + (at ? 1 : 0) + key.size();
        out.push_back({pid, env.substr(begin, env.find('\0', begin) - begin)});
        return true;
    });
    return out;
}

bool same_process(pid_t pid, uint64_t starttime) {
    if (pid <= 0) return false;
    auto st = process_starttime(pid);
    return st && *st == starttime;
}

pid_t vmm_of(pid_t pid) {
    std::ifstream children("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
    pid_t child = 0, other = 0;
    if (children >> child && !(children >> other)) return child;
    return pid;
}

std::optional<uint64_t> process_cpu_ns(pid_t pid) {
    auto f = stat_fields(vmm_of(pid));
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
    std::ifstream in("/proc/" + std::to_string(vmm_of(pid)) + "/statm");
    uint64_t size, resident;
    if (!(in >> size >> resident)) return std::nullopt;
    return resident * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

}  // namespace vessel::daemon

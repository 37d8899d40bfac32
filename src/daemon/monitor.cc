// The monitor thread: VMM exits (SIGCHLD for children, polling for VMs an
// earlier instance spawned), retried record writes, and the VMMs' API sockets.
#include "daemon/daemon_impl.h"

#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/text.h"
#include "daemon/process.h"

namespace vessel::daemon {

void Daemon::monitor_loop() {
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    // SIGCHLD is blocked in every thread: it is read here, through a signalfd
    // polled together with the inotify events of VMs being created.
    Fd sigfd(::signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK));
    auto last_poll = std::chrono::steady_clock::now();
    while (!stopping_) {
        pollfd p[2] = {{sigfd.get(), POLLIN, 0}, {inotify_.get(), POLLIN, 0}};
        ::poll(p, 2, sigfd ? 200 : 20);
        if (p[0].revents) {
            signalfd_siginfo info[16];
            while (::read(sigfd.get(), info, sizeof info) > 0) {
            }
        }
        if (p[1].revents) on_api_socket_events();
        for (;;) {
            int status;
            pid_t pid = ::waitpid(-1, &status, WNOHANG);
            if (pid <= 0) break;
            on_exit(pid, status);
        }
        // VMs of a previous instance are not our children: poll them.
        auto now = std::chrono::steady_clock::now();
        if (now - last_poll < std::chrono::milliseconds(400)) continue;
        last_poll = now;
        flush_records();
        std::lock_guard lock(mutex_);
        for (auto& [id, vm] : vms_) {
            if (vm->child || !vm->live() || vm->state == "creating") continue;
            if (!same_process(vm->pid, vm->starttime)) {
                mark_exited(*vm, std::nullopt, std::nullopt,
                            "the VMM process (started by an earlier vesseld) ended; exit status unknown");
            }
        }
    }
}

void Daemon::on_exit(pid_t pid, int wait_status) {
    std::lock_guard lock(mutex_);
    exit_locked(pid, wait_status);
}

void Daemon::exit_locked(pid_t pid, int wait_status) {
    auto it = children_.find(pid);
    if (it == children_.end()) {
        unclaimed_exits_[pid] = wait_status;
        return;
    }
    auto vm = vms_.count(it->second) ? vms_[it->second] : nullptr;
    children_.erase(it);
    if (!vm) return;
    if (WIFEXITED(wait_status))
        mark_exited(*vm, WEXITSTATUS(wait_status), std::nullopt, "");
    else if (WIFSIGNALED(wait_status))
        mark_exited(*vm, 128 + WTERMSIG(wait_status), WTERMSIG(wait_status),
                    std::string("the VMM process was killed by signal ") + strsignal(WTERMSIG(wait_status)));
}

// Called with mutex_ held.
void Daemon::mark_exited(Vm& vm, std::optional<int> status, std::optional<int> signal, const std::string& why) {
    vm.state = "exited";
    vm.exit_status = status;
    vm.exit_signal = signal;
    vm.exited_at = now_rfc3339(true);
    // The VM's groups stay until it is removed: their counters tell whether a limit ended it.
    auto events = Cgroups::limit_events(vm.cgroup);
    vm.oom_killed = events.oom_killed(signal == SIGKILL);
    vm.pids_limit_reached = events.pids_limit_reached();
    bool failed = status != 0;  // also unknown (nullopt)
    std::string reason =
        failed ? limit_reason(vm.oom_killed, vm.pids_limit_reached, signal.has_value(), vm.spec.limits, why) : why;
    if (!reason.empty()) vm.error = reason;
    persist(vm);
    exited_cv_.notify_all();
    vm.wake.notify_all();
}

bool Daemon::wait_exit(const VmPtr& vm, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return exited_cv_.wait_for(lock, timeout, [&] { return vm->state == "exited"; });
}

// Until the VMM has created its API socket, has ended, or 10 s have passed.
// The monitor wakes this on the socket's inotify event (RUN/vms is watched)
// or on the exit; without inotify it looks every 2 ms.
void Daemon::wait_api_socket(const VmPtr& vm) {
    const std::string sock = vm->api_socket();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    std::unique_lock lock(mutex_);
    while (vm->state != "exited" && !vm->api_ready && std::chrono::steady_clock::now() < deadline) {
        lock.unlock();
        bool exists = ::access(sock.c_str(), F_OK) == 0;
        lock.lock();
        if (exists) break;
        vm->wake.wait_for(lock, std::chrono::milliseconds(inotify_ ? 100 : 2));
    }
}

// Reads the inotify events of RUN/vms: a VMM has created ID.sock.
void Daemon::on_api_socket_events() {
    alignas(inotify_event) char buf[4096];
    ssize_t n;
    while ((n = ::read(inotify_.get(), buf, sizeof buf)) > 0) {
        std::lock_guard lock(mutex_);
        for (char* p = buf; p < buf + n;) {
            auto* e = reinterpret_cast<inotify_event*>(p);
            p += sizeof(inotify_event) + e->len;
            if (e->mask & IN_Q_OVERFLOW) {  // events were lost: every waiter looks again
                for (auto& [id, vm] : vms_) vm->wake.notify_all();
                continue;
            }
            std::string_view name(e->len ? e->name : "");
            if (!name.ends_with(".sock")) continue;
            if (auto it = vms_.find(std::string(name.substr(0, name.size() - 5))); it != vms_.end()) {
                it->second->api_ready = true;
                it->second->wake.notify_all();
            }
        }
    }
}

}  // namespace vessel::daemon

// What a subverted VMM could still reach: each check tries the thing an
// exploit would try, from inside the jail.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <set>

#include <nlohmann/json.hpp>

#include "base/fd.h"
#include "jail/jail.h"

namespace vessel::jail {
namespace {

bool exists(const char* path) { return ::access(path, F_OK) == 0; }

// `ls /`, sorted.
std::string list_root(int& pids) {
    std::set<std::string> names;
    if (DIR* d = ::opendir("/")) {
        while (dirent* e = ::readdir(d))
            if (e->d_name[0] != '.') names.insert(e->d_name);
        ::closedir(d);
    }
    std::string out;
    for (const auto& n : names) out += (out.empty() ? "" : " ") + n;
    pids = 0;
    if (DIR* d = ::opendir("/proc")) {
        while (dirent* e = ::readdir(d))
            if (std::isdigit(static_cast<unsigned char>(e->d_name[0]))) ++pids;
        ::closedir(d);
    }
    return out;
}

bool any_capability() {
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    if (::syscall(SYS_capget, &hdr, data) != 0) return true;  // cannot tell: count it against the jail
    for (auto& d : data)
        if (d.effective || d.permitted || d.inheritable) return true;
    for (int cap = 0; cap <= 63; ++cap)
        if (::prctl(PR_CAPBSET_READ, cap) == 1) return true;
    return false;
}

// Connects to a port nobody serves on the loopback address: a reachable
// network answers ECONNREFUSED; the jail's has no interface up.
bool network_reachable() {
    Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!s) return false;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(9);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) return true;
    return errno != ENETUNREACH;
}

// Tries in a child, which may change its own credentials and namespaces
// without touching the caller's.
template <typename F>
bool in_child(F try_it) {
    pid_t pid = ::fork();
    if (pid < 0) return false;
    if (pid == 0) ::_exit(try_it() ? 0 : 1);
    int ws = 0;
    while (::waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(ws) && WEXITSTATUS(ws) == 0;
}

}  // namespace

Probe probe() {
    Probe p;
    p.host_files_visible = exists("/etc/passwd") || exists("/root") || exists("/home") || exists("/var");
    p.root_entries = list_root(p.processes_visible);
    p.can_signal_outside = ::kill(-1, 0) == 0;  // -1: every process it may signal except itself
    p.network_reachable = network_reachable();
    p.has_capabilities = any_capability();
    // In a mount namespace of its own, so that a success changes nothing.
    p.can_mount = in_child([] {
        return ::unshare(CLONE_NEWNS) == 0 && ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0;
    });
    p.can_write_root = [] {
        Fd f(::open("/", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600));
        return f.valid() || ::mkdir("/vessel-probe", 0700) == 0;
    }();
    p.can_become_root = ::geteuid() != 0 && in_child([] { return ::setuid(0) == 0; });
    p.can_regain_by_userns = in_child([] { return ::unshare(CLONE_NEWUSER) == 0; });
    return p;
}

std::string Probe::to_json() const {
    return nlohmann::json{{"host_files_visible", host_files_visible},
                          {"processes_visible", processes_visible},
                          {"can_signal_outside", can_signal_outside},
                          {"network_reachable", network_reachable},
                          {"has_capabilities", has_capabilities},
                          {"can_become_root", can_become_root},
                          {"can_mount", can_mount},
                          {"can_regain_by_userns", can_regain_by_userns},
                          {"can_write_root", can_write_root},
                          {"root_entries", root_entries}}
        .dump();
}

}  // namespace vessel::jail

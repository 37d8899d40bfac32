// The VMM's jail: the namespaces, file-system view and privileges a VMM
// process keeps while its guest runs (docs/security.md, "The jail").
//
// Entered in two steps, because of what each step needs:
//  1. enter_namespaces(), first thing in `vessel run|boot|restore`, while
//     the process has one thread. The process forks; the child, which
//     becomes the VMM, is pid 1 of a new pid namespace and has its own
//     mount, ipc and uts namespaces. The parent stays outside, holds
//     nothing of the VM, forwards stop signals to the VMM and leaves with
//     the VMM's exit status (or dies of the same signal).
//  2. lock(), once the machine is built (its files, /dev/kvm and TAP device
//     are open) and before any thread starts or guest code runs: a new
//     network namespace; a root file system that holds only the bind
//     mounts the machine names, the five safe device nodes and a /proc
//     with nothing but this process; rlimits; another uid/gid when asked;
//     every capability dropped for good.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"

namespace vessel::jail {

struct Options {
    bool enabled = true;          // `--no-jail` turns it off (docs/security.md)
    std::optional<uid_t> uid;     // `--uid`: run the VMM as this user
    std::optional<gid_t> gid;     // `--gid`: and group (default: the uid's own number)
    rlim_t nofile = 4096;         // RLIMIT_NOFILE (the guest's open files are the VMM's)
    std::optional<rlim_t> fsize;  // RLIMIT_FSIZE, `--rlimit-fsize` (default: unlimited)
};

// Something the machine reaches by path while it runs, bind-mounted into
// the jail at `target` (absolute). `source` is an open descriptor of it
// (O_PATH will do), opened after enter_namespaces() (a mount of the host's
// namespace cannot be copied: EINVAL): the jail mounts exactly what was
// opened.
struct Bind {
    int source = -1;
    std::string target;
    bool writable = false;
};

// Step 1. Returns in the child only; the parent exits with the child's
// status and never returns. `after_exit` runs in the parent once the VMM
// has ended (the place to remove files the jailed VMM cannot reach).
Result<> enter_namespaces(std::function<void()> after_exit = {});

// True in the process enter_namespaces() made.
bool inside();

// The VMM knows its exit status: the parent exits with it at once, while
// the VMM tears the VM down unseen. Does nothing outside a jail.
void announce_exit(int status);

// Step 2. Needs inside() and a single thread (capabilities and namespaces
// are per thread: a thread started earlier would keep them).
Result<> lock(const Options& options, const std::vector<Bind>& binds);

// Where lock() mounts the i-th bind a caller lists by number.
std::string sandbox_target(size_t index);

// What a subverted VMM can still reach, tried from inside: the report of
// the test hook (VESSEL_JAIL_SELFTEST=1) and of tests/jail.
struct Probe {
    bool host_files_visible = false;    // /etc/passwd, /root, /home, /var
    int processes_visible = 0;          // entries in /proc that are pids
    bool can_signal_outside = false;    // kill(-1, 0) reaches anyone but itself
    bool network_reachable = false;     // a TCP connect to 127.0.0.1 gets anything but ENETUNREACH
    bool has_capabilities = false;      // permitted, effective or bounding set not empty
    bool can_become_root = false;       // setuid(0) works from a non-root uid
    bool can_mount = false;             // mount(2) of a tmpfs works
    bool can_regain_by_userns = false;  // a new user namespace could be made
    bool can_write_root = false;        // the jail's own root is writable
    std::string root_entries;           // what `ls /` shows, space-separated
    std::string to_json() const;
};
Probe probe();

}  // namespace vessel::jail

// vesseld: the host daemon. Runs in the foreground until SIGTERM or SIGINT;
// the VMs it started keep running after it exits and are taken over again
// by the next instance on the same state directory.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "daemon/daemon.h"

int main(int argc, char** argv) {
    vessel::daemon::DaemonOptions o;
    bool no_cgroups = false;
    CLI::App app{"vesseld: the Vessel host daemon (many VMs, one VMM process each)"};
    app.add_option("--socket", o.socket, "API socket path")->capture_default_str();
    app.add_option("--state-dir", o.state_dir, "State directory (vessel.db, vms/ID/)")->capture_default_str();
    app.add_option("--state-group", o.state_group,
                   "A group that may read the state directory and the console logs (never the database); "
                   "default: vesseld's user alone");
    app.add_option("--run-dir", o.run_dir,
                   "Directory for the VMs' API sockets (vms/ID.sock), best on a tmpfs "
                   "(default: the --socket directory)");
    app.add_option("--vessel", o.vessel, "The vessel binary (default: beside vesseld)");
    app.add_option("--cgroup-parent", o.cgroup_parent, "Name of the parent cgroup of the VMs")->capture_default_str();
    app.add_option("--cgroup-root", o.cgroup_root,
                   "A cgroup2 directory (mount point or delegated group) to create the VMs' groups in, "
                   "instead of detecting a hierarchy");
    app.add_flag("--no-cgroups", no_cgroups, "Do not put VMs into cgroups");
    app.add_option("--vmm-api", o.vmm_api, "Whether `vessel run` serves --api-sock: auto, yes or no")
        ->check(CLI::IsMember({"auto", "yes", "no"}))
        ->capture_default_str();
    std::string vmm_user;
    app.add_option("--vmm-user", vmm_user,
                   "USER[:GROUP] (names or numbers) the jailed VMMs run as, instead of root without capabilities; "
                   "each VM's snapshot directory is theirs");
    bool no_jail = false;
    app.add_flag("--no-jail", no_jail,
                 "Run the VMMs without their jail (namespaces, private root, no capabilities): see docs/security.md");
    app.set_version_flag("--version", "vesseld 0.1.0");
    CLI11_PARSE(app, argc, argv);
    o.use_cgroups = !no_cgroups;
    o.jail = !no_jail;
    if (!vmm_user.empty()) {
        if (no_jail) {
            std::fprintf(stderr,
                         "vesseld: --vmm-user and --no-jail contradict each other (the jail changes the user)\n");
            return 2;
        }
        auto user = vessel::daemon::parse_vmm_user(vmm_user);
        if (!user) {
            std::fprintf(stderr, "vesseld: %s\n", user.error().message.c_str());
            return 2;
        }
        o.vmm_user = *user;
    }
    if (no_cgroups && !o.cgroup_root.empty()) {
        std::fprintf(stderr, "vesseld: --cgroup-root and --no-cgroups contradict each other\n");
        return 2;
    }
    if (!vessel::daemon::valid_name(o.cgroup_parent)) {
        std::fprintf(stderr, "vesseld: --cgroup-parent: a plain name is expected\n");
        return 2;
    }

    // Blocked in every thread: SIGCHLD is taken by the monitor, the others
    // by sigwait below. A client hanging up must not kill the daemon.
    sigset_t set;
    sigemptyset(&set);
    for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, s);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    ::signal(SIGPIPE, SIG_IGN);

    auto d = vessel::daemon::Daemon::start(o);
    if (!d) {
        std::fprintf(stderr, "vesseld: %s\n", d.error().message.c_str());
        return 1;
    }
    std::fprintf(stderr, "vesseld: listening on %s (state in %s)\n", o.socket.c_str(), o.state_dir.c_str());
    sigset_t wait_set;
    sigemptyset(&wait_set);
    for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&wait_set, s);
    int sig = 0;
    sigwait(&wait_set, &sig);
    std::fprintf(stderr, "vesseld: %s: stopping (VMs keep running)\n", strsignal(sig));
    (*d)->stop();
    return 0;
}

// The jail flags shared by `vessel run`, `vessel boot` and `vessel restore`,
// and the two moments a VMM command uses them (docs/security.md).
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include "api/http.h"
#include "base/size.h"
#include "cli/commands.h"
#include "jail/jail.h"

namespace vessel::cli {

void add_jail_flags(CLI::App* cmd, JailFlags& f) {
    cmd->add_flag("--no-jail", f.no_jail,
                  "Run the VMM without its jail (namespaces, private root, no capabilities): see docs/security.md");
    cmd->add_option("--uid", f.uid, "Jail: run the VMM as this user id (default: stay root, without capabilities)")
        ->check(CLI::Range(0, 0x7ffffffe));
    cmd->add_option("--gid", f.gid, "Jail: and this group id (default: the --uid number)")
        ->check(CLI::Range(0, 0x7ffffffe));
    cmd->add_option("--rlimit-nofile", f.nofile, "Jail: the VMM's open-file limit")
        ->capture_default_str()
        ->check(CLI::Range(64, 1 << 20));
    cmd->add_option("--rlimit-fsize", f.fsize, "Jail: the largest file the VMM may write (e.g. 8G; default: no limit)");
    cmd->add_option("--snapshot-dir", f.snapshot_dir,
                    "Jail: the host directory this VM's snapshots are written under (a jailed VMM reaches no other)");
}

Result<machine::JailConfig> jail_config(const JailFlags& f) {
    machine::JailConfig c;
    c.options.enabled = !f.no_jail;
    if (f.uid >= 0) c.options.uid = static_cast<uid_t>(f.uid);
    if (f.gid >= 0) c.options.gid = static_cast<gid_t>(f.gid);
    c.options.nofile = f.nofile;
    if (!f.fsize.empty()) {
        auto size = parse_size(f.fsize);
        if (!size) return fail("--rlimit-fsize: " + size.error().message, EINVAL);
        c.options.fsize = *size;
    }
    c.snapshot_dir = f.snapshot_dir;
    struct stat st;
    if (!c.snapshot_dir.empty() && (::stat(c.snapshot_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)))
        return fail("--snapshot-dir " + c.snapshot_dir + ": not an existing directory", EINVAL);
    if (f.no_jail && (f.uid >= 0 || f.gid >= 0 || !f.fsize.empty() || !f.snapshot_dir.empty()))
        return fail("--uid, --gid, --rlimit-fsize and --snapshot-dir configure the jail; --no-jail turns it off",
                    EINVAL);
    return c;
}

Result<> enter_jail_namespaces(const machine::JailConfig& config, std::vector<std::string> sockets) {
    if (!config.options.enabled) return {};
    // The jailed VMM cannot reach these paths to remove its sockets: the
    // parent, outside, removes each that nobody serves any more.
    return jail::enter_namespaces([sockets = std::move(sockets)] {
        for (const auto& path : sockets)
            if (auto s = api::probe_socket(path); s && *s == api::SocketState::kStale) ::unlink(path.c_str());
    });
}

}  // namespace vessel::cli

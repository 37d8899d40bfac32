// Who may read vesseld's state directory, made so at every start, and the VM
// directories in it that no record points to.
#pragma once

#include <sys/types.h>

#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace vessel::daemon {

// The modes of STATE, STATE/vms, STATE/vms/ID and their console logs: private
// to the daemon's user, or also readable by `group` (then STATE/vms is
// set-group-ID, so the VM directories and console logs made in it belong to
// that group). The database files are 0600 either way: they hold every VM's
// environment.
struct StateAccess {
    std::optional<gid_t> group;

    mode_t state_dir() const { return group ? 0750 : 0700; }
    mode_t vms_dir() const { return group ? 02750 : 0700; }
    mode_t vm_dir() const { return group ? 02750 : 0700; }
    mode_t console_log() const { return group ? 0640 : 0600; }
    static constexpr mode_t kDatabase = 0600;
};

// The id of the group `name` (or a number), for --state-group.
Result<gid_t> group_id(const std::string& name);

// Creates STATE and STATE/vms, and gives them, the VM directories and
// console logs in them and the database files (vessel.db, -wal, -shm,
// -journal) the modes and group of `access`. Returns what it changed, one
// line each, for the log. Symbolic links below STATE are never followed.
Result<std::vector<std::string>> secure_state_dir(const std::string& state_dir, const StateAccess& access);

// A VM id as vesseld makes them: 12 lowercase hexadecimal digits.
bool looks_like_vm_id(std::string_view name);

// Removes the directories STATE/vms/ID that are named like a VM, are owned
// by the daemon's user, are not in `keep` and hold nothing but an empty
// console.log: left by a daemon killed between making a VM's directory and
// writing its record. Anything else is left alone. Symbolic links are never
// followed. Returns one log line per directory removed or left alone.
std::vector<std::string> remove_stray_vm_dirs(const std::string& vms_dir, const std::set<std::string>& keep);

}  // namespace vessel::daemon

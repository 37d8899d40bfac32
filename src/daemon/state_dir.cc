#include "daemon/state_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>

#include "base/fd.h"
#include "base/text.h"

namespace vessel::daemon {
namespace {

std::string octal(mode_t m) {
    char b[8];
    std::snprintf(b, sizeof b, "%04o", static_cast<unsigned>(m & 07777));
    return b;
}

// The names in the directory `dir` (not "." and ".."), or nullopt.
std::optional<std::vector<std::string>> names_in(int dir) {
    int copy = ::openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);  // closedir() closes it, not `dir`
    if (copy < 0) return std::nullopt;
    DIR* d = ::fdopendir(copy);
    if (!d) {
        ::close(copy);
        return std::nullopt;
    }
    std::vector<std::string> out;
    while (dirent* e = ::readdir(d))
        if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) out.emplace_back(e->d_name);
    ::closedir(d);
    return out;
}

// Gives the open file `fd` exactly `mode` and, if set, `group`. Returns what
// changed ("" if nothing), e.g. "mode 0755 → 0700".
Result<std::string> set_access(int fd, const std::string& what, mode_t mode, std::optional<gid_t> group) {
    struct stat st;
    if (::fstat(fd, &st) != 0) return fail_errno("stat " + what);
    std::string changed;
    if (group && st.st_gid != *group) {
        if (::fchown(fd, static_cast<uid_t>(-1), *group) != 0) return fail_errno("chgrp " + what);
        changed = "group " + std::to_string(st.st_gid) + " → " + std::to_string(*group);
        if (::fstat(fd, &st) != 0) return fail_errno("stat " + what);  // chown may clear set-ID bits
    }
    if ((st.st_mode & 07777) != mode) {
        if (::fchmod(fd, mode) != 0) return fail_errno("chmod " + what);
        changed += (changed.empty() ? "" : ", ") + std::string("mode ") + octal(st.st_mode) + " → " + octal(mode);
    }
    return changed;
}

// Opens `name` below `dir` without following a symbolic link.
Fd open_below(int dir, const std::string& name, int flags) {
    return Fd(::openat(dir, name.c_str(), flags | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
}

}  // namespace

Result<gid_t> group_id(const std::string& name) {
    std::vector<char> buf(16384);
    group g;
    group* found = nullptr;
    int e = ::getgrnam_r(name.c_str(), &g, buf.data(), buf.size(), &found);
    if (found) return found->gr_gid;
    if (auto id = parse_id(name)) return static_cast<gid_t>(*id);
    return fail("--state-group " + name + ": no such group" + (e ? std::string(" (") + std::strerror(e) + ")" : ""),
                e ? e : ENOENT);
}

bool looks_like_vm_id(std::string_view name) {
    return name.size() == 12 && name.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

Result<std::vector<std::string>> secure_state_dir(const std::string& state_dir, const StateAccess& access) {
    std::vector<std::string> log;
    std::error_code ec;
    if (auto parent = std::filesystem::path(state_dir).parent_path(); !parent.empty())
        std::filesystem::create_directories(parent, ec);  // like /var/lib: not ours to restrict
    if (ec) return fail("state dir " + state_dir + ": " + ec.message(), ec.value());
    if (::mkdir(state_dir.c_str(), access.state_dir() & 0777) != 0 && errno != EEXIST)
        return fail_errno("state dir " + state_dir);
    // STATE itself may be a symbolic link the operator made; nothing below it may.
    Fd state(::open(state_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!state) return fail_errno("state dir " + state_dir);
    auto note = [&log](const std::string& what, const Result<std::string>& changed) {
        if (changed && !changed->empty()) log.push_back(what + ": " + *changed);
    };
    auto s = set_access(state.get(), state_dir, access.state_dir(), access.group);
    if (!s) return std::unexpected(s.error());
    note(state_dir, s);

    const std::string vms_name = state_dir + "/vms";
    if (::mkdirat(state.get(), "vms", 0700) != 0 && errno != EEXIST) return fail_errno("mkdir " + vms_name);
    Fd vms = open_below(state.get(), "vms", O_RDONLY | O_DIRECTORY);
    if (!vms) return fail_errno(vms_name + " (a directory, not a symbolic link, is expected)");
    auto v = set_access(vms.get(), vms_name, access.vms_dir(), access.group);
    if (!v) return std::unexpected(v.error());
    note(vms_name, v);

    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
        std::string name = std::string("vessel.db") + suffix;
        Fd f = open_below(state.get(), name, O_RDONLY);
        if (!f) {
            if (errno == ENOENT) continue;
            return fail_errno(state_dir + "/" + name + " (a regular file, not a symbolic link, is expected)");
        }
        auto d = set_access(f.get(), state_dir + "/" + name, StateAccess::kDatabase, std::nullopt);
        if (!d) return std::unexpected(d.error());
        note(state_dir + "/" + name, d);
    }

    // The VM directories and console logs: counted, not listed (there may be thousands).
    size_t dirs = 0, logs = 0;
    for (const auto& id : names_in(vms.get()).value_or(std::vector<std::string>{})) {
        if (!looks_like_vm_id(id)) continue;
        Fd dir = open_below(vms.get(), id, O_RDONLY | O_DIRECTORY);
        if (!dir) continue;  // not a directory, or a symbolic link: not Vessel's
        auto d = set_access(dir.get(), vms_name + "/" + id, access.vm_dir(), access.group);
        if (!d) return std::unexpected(d.error());
        dirs += !d->empty();
        Fd console = open_below(dir.get(), "console.log", O_RDONLY);
        struct stat st;
        if (!console || ::fstat(console.get(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
        auto c = set_access(console.get(), vms_name + "/" + id + "/console.log", access.console_log(), access.group);
        if (!c) return std::unexpected(c.error());
        logs += !c->empty();
    }
    if (dirs || logs)
        log.push_back(vms_name + ": " + std::to_string(dirs) + " VM director" + (dirs == 1 ? "y" : "ies") + " set to " +
                      octal(access.vm_dir()) + " and " + std::to_string(logs) + " console log" +
                      (logs == 1 ? "" : "s") + " to " + octal(access.console_log()));
    return log;
}

std::vector<std::string> remove_stray_vm_dirs(const std::string& vms_dir, const std::set<std::string>& keep) {
    std::vector<std::string> log;
    Fd vms(::open(vms_dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!vms) return log;
    for (const auto& id : names_in(vms.get()).value_or(std::vector<std::string>{})) {
        if (!looks_like_vm_id(id) || keep.count(id)) continue;
        const std::string path = vms_dir + "/" + id;
        struct stat st;
        if (::fstatat(vms.get(), id.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        if (!S_ISDIR(st.st_mode) || st.st_uid != ::geteuid()) {
            log.push_back(path + ": no VM record points to it, but it is not a directory of vesseld's: left alone");
            continue;
        }
        Fd dir = open_below(vms.get(), id, O_RDONLY | O_DIRECTORY);
        auto names = dir ? names_in(dir.get()) : std::nullopt;
        if (!names) continue;
        std::string foreign;
        for (const auto& n : *names) {
            struct stat f;
            bool log = n == "console.log" && ::fstatat(dir.get(), n.c_str(), &f, AT_SYMLINK_NOFOLLOW) == 0 &&
                       S_ISREG(f.st_mode);
            if (!log)
                foreign = n;
            else if (f.st_size > 0)
                foreign = "a console log with output (a VM ran)";
        }
        if (!foreign.empty()) {
            log.push_back(path + ": no VM record points to it, but it holds " + foreign + ": left alone");
            continue;
        }
        for (const auto& n : *names) ::unlinkat(dir.get(), n.c_str(), 0);
        if (::unlinkat(vms.get(), id.c_str(), AT_REMOVEDIR) != 0) {
            log.push_back(path + ": no VM record points to it; removing it failed: " + std::strerror(errno));
            continue;
        }
        log.push_back("removed " + path +
                      ": no VM record points to it (left by a vesseld stopped while creating a VM)");
    }
    return log;
}

}  // namespace vessel::daemon

// /vms and /vms/{id}: create (and restore), list, inspect, remove, logs.
#include "daemon/daemon_impl.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "base/env_file.h"
#include "base/safe_file.h"
#include "base/text.h"
#include "daemon/process.h"

namespace vessel::daemon {

Response Daemon::create(const Request& req, bool restore) {
    if (auto e = only_query(req, {})) return *e;
    json body;
    if (auto e = parse_body(req, body)) return *e;
    auto spec = restore ? parse_restore(body) : parse_create(body);
    if (!spec)
        return spec.error().sys_errno == ERANGE ? api::error(422, "invalid_value", spec.error().message)
                                                : bad_request(spec.error().message);
    if (restore && !vmm_restore_)
        return api::error(501, "not_supported", options_.vessel + " has no `restore` command with --api-sock yet");
    // A limit the caller asked for is enforced or the VM is not created.
    if (auto lacking = cgroups_.missing(spec->requested); !lacking.empty()) {
        std::string fields;
        for (const auto& c : lacking)
            fields += (fields.empty() ? "limits." : ", limits.") + (c == "cpu" ? std::string("cpus") : c);
        return api::error(422, "invalid_value", fields + ": cannot be enforced: " + lacking_controllers(lacking));
    }

    auto vm = std::make_shared<Vm>();
    vm->spec = std::move(*spec);
    vm->vmm_api = vmm_api_;
    vm->created_at = now_rfc3339(true);
    {
        std::lock_guard lock(mutex_);
        do vm->id = new_id();
        while (vms_.count(vm->id));
        vm->name = vm->spec.name.empty() ? "vm-" + vm->id.substr(0, 8) : vm->spec.name;
        for (auto& [id, other] : vms_)
            if (other->name == vm->name)
                return api::error(409, "name_in_use", "a VM named \"" + vm->name + "\" exists (id " + id + ")");
        vm->dir = options_.state_dir + "/vms/" + vm->id;
        if (vmm_api_) vm->api_sock = options_.run_dir + "/vms/" + vm->id + ".sock";
        vms_[vm->id] = vm;  // reserves the name
    }
    auto give_up = [&](int status, const std::string& code, const std::string& message) {
        Cgroups::remove(vm->cgroup);
        std::error_code ec;
        fs::remove_all(vm->dir, ec);
        unrecord(vm->id);
        std::lock_guard lock(mutex_);
        vms_.erase(vm->id);
        ++create_failures_total_;
        return api::error(status, code, message);
    };
    const std::string full_disk = " (free space on the file system of " + options_.state_dir + ")";
    // A full disk is the operator's to fix (507); any other failure is ours.
    auto storage_failed = [&](int err, const std::string& why) {
        return err == ENOSPC || err == EDQUOT ? give_up(507, "insufficient_storage", why + full_disk)
                                              : give_up(500, "internal", why);
    };
    if (::mkdir(vm->dir.c_str(), access_.vm_dir() & 0777) != 0) {
        const int err = errno;  // before building the message can touch it
        return storage_failed(err, "VM not created: mkdir " + vm->dir + ": " + strerror(err));
    }
    CgroupJoin join;
    auto placement = cgroups_.create(vm->id, vm->spec.limits, join);
    if (!placement) return give_up(500, "cgroup_failed", placement.error().message);
    vm->cgroup = *placement;
    // Written before the spawn, or nothing is started: a VMM without a record
    // would be out of reach of the API after a restart. From here on a crash
    // leaves a record to reconcile.
    if (auto saved = store_->put(vm->id, vm->name, vm->record()); !saved)
        return give_up(507, "insufficient_storage",
                       "VM not started: its record could not be written: " + saved.error().message +
                           (saved.error().sys_errno == ENOSPC ? full_disk : ""));

    // The environment reaches the VMM in an owner-only file, not on its
    // command line, which every local user can read.
    std::string env_file;
    if (!vm->spec.env.empty()) {
        env_file = vm->dir + "/env";
        const std::string env = encode_env_file(vm->spec.env);
        if (auto w = write_file_atomic(env_file, env.data(), env.size()); !w)
            return storage_failed(w.error().sys_errno, "VM not started: " + w.error().message);
    }

    SpawnRequest sr;
    sr.path = options_.vessel;
    sr.argv = {options_.vessel};
    std::optional<std::string> jail;
    if (vmm_jailed_) {
        jail = snapshot_dir(*vm);
        if (::mkdir((options_.state_dir + "/snapshots").c_str(), 0700) != 0 && errno != EEXIST)
            return storage_failed(errno,
                                  "VM not started: " + options_.state_dir + "/snapshots: " + std::strerror(errno));
        if (::mkdir(jail->c_str(), 0700) != 0 && errno != EEXIST)
            return storage_failed(errno, "VM not started: " + *jail + ": " + std::strerror(errno));
        // A VMM running as its own user writes its snapshots there.
        if (options_.vmm_user && ::chown(jail->c_str(), options_.vmm_user->uid, options_.vmm_user->gid) != 0)
            return storage_failed(errno, "VM not started: chown " + *jail + ": " + std::strerror(errno));
    } else if (!options_.jail) {
        jail = "";
    }
    auto args = vmm_arguments(vm->spec, vmm_api_ ? vm->api_socket() : "", env_file, jail,
                              vmm_jailed_ ? options_.vmm_user : std::nullopt);
    sr.argv.insert(sr.argv.end(), args.begin(), args.end());
    sr.envp = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "VESSEL_VM_ID=" + vm->id};
    if (const char* kvm = std::getenv("VESSEL_KVM_DEVICE")) sr.envp.push_back(std::string("VESSEL_KVM_DEVICE=") + kvm);
    // A shared rewrite/CPUID cache: without it every VMM would decode its
    // program again (tens of milliseconds for busybox) on each start.
    const char* cache = std::getenv("VESSEL_CACHE_DIR");
    sr.envp.push_back("VESSEL_CACHE_DIR=" + (cache && *cache ? std::string(cache) : options_.state_dir + "/cache"));
    sr.console = vm->console();
    sr.console_mode = access_.console_log() & 0777;
    sr.cgroups = &join;
    auto child = spawn(sr);
    if (!child) return give_up(500, "spawn_failed", child.error().message);
    join = {};
    // No pid file: if the daemon dies before the record below is committed,
    // the next one finds the VMM by its VESSEL_VM_ID (see reload()).
    {
        std::lock_guard lock(mutex_);
        vm->pid = child->pid;
        vm->starttime = child->starttime;
        vm->child = true;
        vm->started_at = now_rfc3339(true);
        vm->state = "running";
        ++created_total_;
        if (auto it = unclaimed_exits_.find(vm->pid); it != unclaimed_exits_.end()) {
            int st = it->second;
            unclaimed_exits_.erase(it);
            children_[vm->pid] = vm->id;
            exit_locked(vm->pid, st);
        } else {
            children_[vm->pid] = vm->id;
            persist(*vm);
        }
    }
    // With a control API, answer once the VM serves it (or has already
    // ended), so the caller can pause or inspect it straight away.
    if (vmm_api_) wait_api_socket(vm);
    Response r;
    r.status = 201;
    std::lock_guard lock(mutex_);
    r.body = vm_json(*vm);
    return r;
}

Response Daemon::list(const Request& req) {
    if (auto e = only_query(req, {"state"})) return *e;
    std::string filter = req.query.count("state") ? req.query.at("state") : "";
    std::lock_guard lock(mutex_);
    std::vector<VmPtr> all;
    for (auto& [id, vm] : vms_)
        if (filter.empty() || vm->state == filter) all.push_back(vm);
    std::sort(all.begin(), all.end(), [](const VmPtr& a, const VmPtr& b) { return a->created_at < b->created_at; });
    json out = json::array();
    for (auto& vm : all) out.push_back(vm_json(*vm));
    Response r;
    r.body = {{"vms", out}};
    return r;
}

Response Daemon::inspect(const Request& req) {
    if (auto e = only_query(req, {})) return *e;
    Response nf;
    auto vm = find(req.params.at("id"), nf);
    if (!vm) return nf;
    bool ask;
    std::string sock;
    {
        std::lock_guard lock(mutex_);
        ask = vm->vmm_api && (vm->state == "running" || vm->state == "paused");
        sock = vm->api_socket();
    }
    json live = nullptr;
    if (ask) {
        auto a = call_vmm(sock, "GET", "/vm", nullptr, std::chrono::seconds(2));
        if (a && a->status == 200) live = a->body;
    }
    Response r;
    std::lock_guard lock(mutex_);
    r.body = vm_json(*vm);
    r.body["vmm"] = live;
    struct stat st;
    r.body["console_bytes"] = ::stat(vm->console().c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
    return r;
}

Response Daemon::remove(const Request& req) {
    if (auto e = only_query(req, {"force"})) return *e;
    if (auto e = no_fields(req)) return *e;
    Response nf;
    auto vm = find(req.params.at("id"), nf);
    if (!vm) return nf;
    {
        std::lock_guard lock(mutex_);
        if (vm->state == "creating") return invalid_state(vm->name + " is being created");
        if (vm->live() && !query_flag(req, "force"))
            return invalid_state(vm->name + " is " + vm->state + "; stop it first or use ?force=true");
    }
    bool live;
    {
        std::lock_guard lock(mutex_);
        live = vm->live();
    }
    if (live) {
        signal_vm(*vm, SIGKILL);
        if (!wait_exit(vm, std::chrono::seconds(5)))
            return api::error(500, "internal", "VM " + vm->id + " did not exit after SIGKILL");
    }
    Placement cg;
    {
        std::lock_guard lock(mutex_);
        if (!vms_.count(vm->id)) return api::error(404, "not_found", "VM " + vm->id + " was removed meanwhile");
        vms_.erase(vm->id);
        cg = vm->cgroup;
    }
    Cgroups::remove(cg);
    std::error_code ec;
    fs::remove_all(vm->dir, ec);
    if (!vm->api_sock.empty()) ::unlink(vm->api_sock.c_str());  // left behind by a killed VMM
    unrecord(vm->id);
    Response r;
    r.body = {{"id", vm->id}, {"name", vm->name}, {"removed", true}};
    return r;
}

Response Daemon::logs(const Request& req) {
    if (auto e = only_query(req, {"offset", "limit", "tail"})) return *e;
    Response err;
    err.status = 0;
    auto offset = query_number(req, "offset", err);
    auto limit = query_number(req, "limit", err);
    auto tail = query_number(req, "tail", err);
    if (err.status) return err;
    Response nf;
    auto vm = find(req.params.at("id"), nf);
    if (!vm) return nf;
    uint64_t max = std::min<uint64_t>(limit.value_or(1 << 20), 8 << 20);
    Fd fd(::open(vm->console().c_str(), O_RDONLY | O_CLOEXEC));
    std::string data;
    if (fd) {
        struct stat st;
        ::fstat(fd.get(), &st);
        uint64_t size = static_cast<uint64_t>(st.st_size);
        uint64_t from = std::min(offset.value_or(0), size);
        if (tail) {
            // The last `tail` lines, looking back at most 8 MiB.
            uint64_t back = std::min<uint64_t>(size, 8 << 20);
            std::string buf(back, '\0');
            ssize_t n = ::pread(fd.get(), buf.data(), back, static_cast<off_t>(size - back));
            buf.resize(n > 0 ? static_cast<size_t>(n) : 0);
            size_t pos = buf.size();
            if (pos && buf[pos - 1] == '\n') --pos;
            for (uint64_t lines = 0; pos > 0; --pos)
                if (buf[pos - 1] == '\n' && ++lines == *tail) break;
            if (*tail == 0) pos = buf.size();
            data = buf.substr(pos);
        } else {
            data.resize(std::min(max, size - from));
            ssize_t n = ::pread(fd.get(), data.data(), data.size(), static_cast<off_t>(from));
            data.resize(n > 0 ? static_cast<size_t>(n) : 0);
        }
    }
    Response r;
    r.content_type = "text/plain; charset=utf-8";
    r.raw = std::move(data);
    return r;
}

}  // namespace vessel::daemon

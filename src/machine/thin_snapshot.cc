// A thin VM's configuration section (docs/snapshot-format.md): how it was
// started, so a restore can build the same machine. The records and the
// directory are elsewhere (thin_vm.cc gathers them).
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "machine/snapshot_dir.h"
#include "machine/thin_snapshot.h"

namespace vessel::machine {

using json = nlohmann::json;

json config_to_json(const ThinVmConfig& config, uint64_t mem_bytes) {
    json cfg = {{"kind", "thin"},
                {"program", config.program},
                {"argv", config.argv},
                {"envp", config.envp},
                {"mem_bytes", mem_bytes},
                {"root", config.root},
                {"rw", json::array()},
                {"trace_syscalls", config.trace_syscalls},
                {"uid", config.uid.value_or(::getuid())},
                {"gid", config.gid.value_or(::getgid())}};
    for (const auto& m : config.rw) cfg["rw"].push_back({{"host", m.host_dir}, {"guest", m.guest_path}});
    return cfg;
}

Result<ThinVmConfig> config_from_json(const json& j) {
    try {
        ThinVmConfig c;
        c.program = j.at("program").get<std::string>();
        c.argv = j.at("argv").get<std::vector<std::string>>();
        c.envp = j.at("envp").get<std::vector<std::string>>();
        c.mem_size = snapshot::json_unsigned(j, "mem_bytes");
        c.root = j.at("root").get<std::string>();
        for (const auto& m : j.at("rw"))
            c.rw.push_back({m.at("host").get<std::string>(), m.at("guest").get<std::string>()});
        c.trace_syscalls = j.value("trace_syscalls", false);
        // The guest's credentials (older snapshots: the restoring user's).
        for (auto [key, id] : {std::pair{"uid", &c.uid}, std::pair{"gid", &c.gid}}) {
            if (!j.contains(key)) continue;
            const uint64_t v = snapshot::json_unsigned(j, key);
            if (v > UINT32_MAX) throw std::domain_error(std::string("'") + key + "' is out of range");
            *id = static_cast<uint32_t>(v);
        }
        return c;
    } catch (const std::exception& e) {  // json::exception, and json_unsigned's
        return fail(std::string("snapshot config: ") + e.what(), EINVAL);
    }
}

void program_view_to_json(json& config, const ProgramView& view) {
    config["process"] = {{"argv", view.argv}, {"envp", view.envp}, {"comm", view.comm}};
}

Result<std::optional<ProgramView>> program_view_from_json(const json& config) {
    if (!config.is_object() || !config.contains("process")) return std::nullopt;
    // As much as an execve accepts (thin/exec.cc: 2 MiB of strings in all).
    constexpr size_t kMaxTotal = 2 * 1024 * 1024, kMaxComm = 15;
    try {
        const json& p = config.at("process");
        ProgramView v;
        v.argv = p.at("argv").get<std::vector<std::string>>();
        v.envp = p.at("envp").get<std::vector<std::string>>();
        v.comm = p.at("comm").get<std::string>();
        size_t total = 0;
        for (const auto* list : {&v.argv, &v.envp})
            for (const std::string& str : *list) {
                if (str.find('\0') != std::string::npos)
                    return fail("snapshot config: a process argument holds a NUL byte", EINVAL);
                total += str.size() + 1;
            }
        if (total > kMaxTotal) return fail("snapshot config: the process's arguments exceed 2 MiB", EINVAL);
        if (v.comm.size() > kMaxComm) return fail("snapshot config: the process's name exceeds 15 bytes", EINVAL);
        return v;
    } catch (const std::exception& e) {
        return fail(std::string("snapshot config: process: ") + e.what(), EINVAL);
    }
}

}  // namespace vessel::machine

// A thin VM's configuration section (docs/snapshot-format.md), used by
// thin_vm.cc's snapshot and restore and fed to fuzz/thin_snapshot_fuzz.cc.
// The thin process's and the address space's records are beside their
// components: thin/process_state.h, memory/address_space_state.h.
#pragma once

#include <nlohmann/json.hpp>

#include "base/result.h"
#include "machine/thin_vm.h"

namespace vessel::machine {

// The kConfig section's JSON (snapshot_dir adds its "snapshot" member).
nlohmann::json config_to_json(const ThinVmConfig& config, uint64_t mem_bytes);
Result<ThinVmConfig> config_from_json(const nlohmann::json& j);

// What /proc/self shows of the program the guest runs now, which an execve
// made differ from the VM's command line: the section's "process" member
// (absent from older snapshots: the command line's, as before).
struct ProgramView {
    std::vector<std::string> argv, envp;
    std::string comm;  // at most 15 bytes
};
void program_view_to_json(nlohmann::json& config, const ProgramView& view);
// Nullopt when the member is absent; an error when it is malformed.
Result<std::optional<ProgramView>> program_view_from_json(const nlohmann::json& config);

}  // namespace vessel::machine

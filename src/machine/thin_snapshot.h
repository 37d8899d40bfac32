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

}  // namespace vessel::machine

// A thin VM's configuration section (docs/snapshot-format.md). Declared
// here, not only in snapshot.cc, so fuzz/thin_snapshot_fuzz.cc can feed the
// decoder. The thin process's and the address space's records are beside
// them: thin/process_state.h, memory/address_space_state.h.
#pragma once

#include <nlohmann/json.hpp>

#include "base/result.h"
#include "machine/thin_vm.h"

namespace vessel::machine {

// The kConfig section's JSON.
Result<ThinVmConfig> config_from_json(const nlohmann::json& j);

}  // namespace vessel::machine

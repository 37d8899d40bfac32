// A thin VM's own snapshot sections (docs/snapshot-format.md): the thin
// process, the address space and the configuration. Declared here, not
// only in snapshot.cc, so fuzz/thin_snapshot_fuzz.cc can feed the decoders.
#pragma once

#include <nlohmann/json.hpp>

#include "base/result.h"
#include "machine/thin_vm.h"
#include "memory/address_space.h"
#include "state/format.h"
#include "thin/process.h"

namespace vessel::machine {

void put_process(state::Writer& w, const thin::ProcessSnapshot& s);
// Bounds every count and length; the paths are checked again by the
// sandbox when the process is restored.
Result<thin::ProcessSnapshot> get_process(state::Reader r);

void put_address_space(state::Writer& w, memory::AddressSpace& as);
// Checks the allocator's state and the VMAs against `mem` before adopting
// them (the page tables themselves are guest memory, walked with bounds).
Result<> get_address_space(state::Reader r, memory::AddressSpace& as, const memory::GuestMemory& mem);

// The kConfig section's JSON.
Result<ThinVmConfig> config_from_json(const nlohmann::json& j);

}  // namespace vessel::machine

// Which kind of machine a snapshot directory holds, so `vessel restore` can
// hand it to ThinVm::restore or FullVm::restore (docs/snapshot-format.md).
#pragma once

#include <string>

#include "base/result.h"

namespace vessel::machine {

enum class MachineKind { kThin, kFull };
const char* to_string(MachineKind kind);  // "thin VM", "full machine"

// Reads and verifies DIR/state.bin and returns the `kind` its configuration
// records (snapshots written before full machines had one are thin).
Result<MachineKind> snapshot_kind(const std::string& dir);

}  // namespace vessel::machine

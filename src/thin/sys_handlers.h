// Declarations of the system-call handlers that syscall_table.inc lists,
// for the sys_*.cc files that define them and the table that points at them.
#pragma once

#include <cstdint>

#include "thin/syscall_args.h"

namespace vessel::thin {

class Process;

#define SYSCALL(nr, name, handler, View, trace, status, effect, note) int64_t handler(Process&, View);
#include "thin/syscall_table.inc"
#undef SYSCALL

}  // namespace vessel::thin

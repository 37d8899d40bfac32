// The thin process's snapshot record (docs/snapshot-format.md, section 3):
// its working directory, heap, descriptors, names and counters, as
// Process::capture() gives them. Decoding bounds every count and length;
// the sandbox checks the paths again when the process is restored.
#pragma once

#include "base/result.h"
#include "state/format.h"
#include "thin/process.h"

namespace vessel::thin {

void put_process(state::Writer& w, const ProcessSnapshot& s);
state::RecordResult<ProcessSnapshot> get_process(state::Reader r);
// Section 9: the signal state a snapshot taken mid-wait needs. get_signals
// fills those fields of `s`.
void put_signals(state::Writer& w, const ProcessSnapshot& s);
state::RecordResult<bool> get_signals(state::Reader r, ProcessSnapshot& s);

}  // namespace vessel::thin

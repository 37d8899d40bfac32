// An address space's snapshot record (docs/snapshot-format.md, section 4):
// the page-table root, the page allocator's state and the VMAs. The page
// tables themselves are guest memory and travel with it.
#pragma once

#include <cstdint>

#include "base/result.h"
#include "memory/address_space.h"
#include "memory/guest_memory.h"
#include "state/format.h"

namespace vessel::memory {

void put_address_space(state::Writer& w, AddressSpace& as);
// Checks the allocator's state (pages from `pool_start` up) and the VMAs
// against `mem` before adopting them (the page tables are walked with
// bounds when used).
state::RecordResult<> get_address_space(state::Reader r, AddressSpace& as, const GuestMemory& mem, uint64_t pool_start);

}  // namespace vessel::memory

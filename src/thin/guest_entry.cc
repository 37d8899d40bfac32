#include "thin/guest_entry.h"

#include <algorithm>
#include <cstring>

extern "C" const uint8_t vessel_guest_entry[];
extern "C" const uint8_t vessel_guest_entry_end[];
extern "C" const uint8_t vessel_guest_cpuid[];
extern "C" const uint8_t vessel_guest_lstar[];
extern "C" const uint8_t vessel_guest_lstar_sysret[];
extern "C" const uint8_t vessel_guest_lstar_cpl3[];
extern "C" const uint8_t vessel_guest_lstar_cpl0[];

namespace vessel::thin {

namespace pte = memory::pte;

GuestEntry::GuestEntry(memory::GuestMemory& mem, uint64_t shared_gpa, uint64_t counts_gpa)
    : mem_(&mem),
      shared_gpa_(shared_gpa),
      shared_(reinterpret_cast<GuestShared*>(mem.host(shared_gpa, memory::kPageSize))),
      counts_(reinterpret_cast<const uint64_t*>(mem.host(counts_gpa, memory::kPageSize))),
      counts_gpa_(counts_gpa) {}

Result<GuestEntry> GuestEntry::install(memory::AddressSpace& as, std::span<const arch::x86::CpuidAnswer> cpuid) {
    const uint64_t code_size = static_cast<uint64_t>(vessel_guest_entry_end - vessel_guest_entry);
    if (code_size > memory::kPageSize) return fail("guest entry code larger than a page", EINVAL);
    struct Page {
        uint64_t va;
        uint64_t flags;
        uint64_t gpa = 0;
    } pages[] = {
        {kGuestEntryVa, pte::kUser | pte::kAccessed},
        {kGuestSharedVa, pte::kUser | pte::kWrite | pte::kNoExec | pte::kAccessed | pte::kDirty},
        {kGuestCountsVa, pte::kUser | pte::kWrite | pte::kNoExec | pte::kAccessed | pte::kDirty},
        {kGuestCpuidVa, pte::kUser | pte::kNoExec | pte::kAccessed},
    };
    memory::GuestMemory& mem = as.memory();
    for (Page& p : pages) {
        auto gpa = as.allocator().allocate();
        if (!gpa) return fail("guest memory exhausted (system-call entry)", ENOMEM);
        p.gpa = *gpa;
        std::memset(mem.host(p.gpa, memory::kPageSize), 0, memory::kPageSize);
        if (auto r = as.tables().map(p.va, p.gpa, p.flags); !r) return std::unexpected(r.error());
    }
    std::memcpy(mem.host(pages[0].gpa, memory::kPageSize), vessel_guest_entry, code_size);
    if (auto r = set_cpuid_answers(as, cpuid); !r) return std::unexpected(r.error());
    GuestEntry entry(mem, pages[1].gpa, pages[2].gpa);
    entry.shared().win_fd = kNoWindow;
    entry.shared().handler = kGuestEntryVa;
    entry.shared().cpuid_handler = kGuestEntryVa + static_cast<uint64_t>(vessel_guest_cpuid - vessel_guest_entry);
    return entry;
}

Result<> GuestEntry::set_cpuid_answers(memory::AddressSpace& as, std::span<const arch::x86::CpuidAnswer> cpuid) {
    auto gpa = as.tables().translate(kGuestCpuidVa, false);
    uint8_t* table = gpa ? as.memory().host(*gpa, memory::kPageSize) : nullptr;
    if (!table) return fail("the guest's CPUID page is not mapped", EINVAL);
    const uint32_t answers = static_cast<uint32_t>(std::min(cpuid.size(), kGuestCpuidMax));
    std::memcpy(table, &answers, sizeof answers);
    if (answers) std::memcpy(table + GUEST_CPUID_ANSWERS, cpuid.data(), answers * sizeof(arch::x86::CpuidAnswer));
    return {};
}

std::optional<GuestEntry> GuestEntry::find(memory::AddressSpace& as) {
    // Both pages user-writable, as install() maps them, and inside guest RAM
    // (a snapshot's page tables are checked like any other input).
    auto shared = as.tables().translate(kGuestSharedVa, true);
    auto counts = as.tables().translate(kGuestCountsVa, true);
    if (!shared || !counts || !as.memory().host(*shared, memory::kPageSize) ||
        !as.memory().host(*counts, memory::kPageSize))
        return std::nullopt;
    return GuestEntry(as.memory(), *shared, *counts);
}

std::vector<arch::x86::CpuidAnswer> GuestEntry::cpuid_answers(memory::AddressSpace& as) {
    auto gpa = as.tables().translate(kGuestCpuidVa, false);
    const uint8_t* page = gpa ? as.memory().host(*gpa, memory::kPageSize) : nullptr;
    if (!page) return {};
    uint32_t count;
    std::memcpy(&count, page, sizeof count);
    std::vector<arch::x86::CpuidAnswer> out(std::min<size_t>(count, kGuestCpuidMax));
    if (!out.empty()) std::memcpy(out.data(), page + GUEST_CPUID_ANSWERS, out.size() * sizeof out[0]);
    // The page comes from a snapshot file: only answers of the form the
    // table may hold (arch/x86/host_cpuid.h) reach KVM.
    std::erase_if(out, [](const arch::x86::CpuidAnswer& a) { return !arch::x86::well_formed(a); });
    return out;
}

uint64_t guest_lstar_va() { return kGuestEntryVa + static_cast<uint64_t>(vessel_guest_lstar - vessel_guest_entry); }
uint64_t guest_sysret_va() {
    return kGuestEntryVa + static_cast<uint64_t>(vessel_guest_lstar_sysret - vessel_guest_entry);
}
uint64_t guest_lstar_fast_va(bool cpl0) {
    const uint8_t* stub = cpl0 ? vessel_guest_lstar_cpl0 : vessel_guest_lstar_cpl3;
    return kGuestEntryVa + static_cast<uint64_t>(stub - vessel_guest_entry);
}

}  // namespace vessel::thin

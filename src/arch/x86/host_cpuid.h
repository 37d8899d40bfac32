// The host's own CPUID, as a program sees it in user mode: what a thin guest
// sees from `cpuid`, whichever way its site runs.
//
// A thin guest runs on the host CPU at CPL3, under the host's CR4 and XCR0,
// so the host's user-mode answers describe exactly what its code can use.
// The rewriter sends `cpuid` sites to the guest-side entry code, which
// answers from a copy of these answers (thin/guest_entry.h) without leaving
// the guest; this module reads that copy and keeps it per boot. A site left
// alone executes the instruction, which some PVM hosts let the CPU answer
// (the host's values) and others trap and answer from the vCPU's KVM CPUID
// table (../shared/PLATFORM.md): that table is therefore built from the same
// answers (arch/x86/cpuid.h, with_host_answers). Some KVMs trim it (features
// they do not give guests); where such a host also traps the instruction,
// the guest-side copy takes KVM's answers instead (machine/cpuid_probe.h,
// told apart once per boot). Only leaves whose
// meaning is known are read; anything else (other leaves, other subleaves)
// runs the real instruction in the guest.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vessel::arch::x86 {

// One answer. `subleaf` is kAnySubleaf for leaves that ignore ECX.
// The layout is the guest table's (abi/thin_guest.h).
struct CpuidAnswer {
    uint32_t leaf, subleaf;
    uint32_t eax, ebx, ecx, edx;
    bool operator==(const CpuidAnswer&) const = default;
};
static_assert(sizeof(CpuidAnswer) == 24);
inline constexpr uint32_t kAnySubleaf = 0xffffffff;

// Does the leaf take a subleaf in ECX? Nullopt-like: `known` false for
// leaves this module does not describe (never put in a table).
struct LeafKind {
    bool known = false;
    bool indexed = false;
};
LeafKind leaf_kind(uint32_t leaf);
// Could the table hold this answer: a known leaf, with the subleaf form its
// kind has? What comes from a file (the cache, a snapshot) is checked so.
bool well_formed(const CpuidAnswer& a);

// Executes `cpuid` for every known leaf up to the host's highest basic and
// extended leaf, with the subleaves each defines (~60-100 instructions).
std::vector<CpuidAnswer> read_host_cpuid();

// What this process's C library read at its start (glibc keeps the raw
// registers of leaves 1, 7, 7.1, 0xd.1, 0x14, 0x19 and 0x80000001/7/8), with
// the APIC ID of the CPU it ran on masked: a fingerprint of the CPU that
// costs no `cpuid`.
std::array<uint32_t, 36> libc_cpuid_fingerprint();

// The host's answers through a per-boot cache file at `path` (empty: no
// cache). The file is used only when it is well-formed (known leaves only,
// each with its kind of subleaf) and carries this process's fingerprint; otherwise the answers are read again and the
// file (and its directory) written (atomically; a failure to write only costs the next start).
std::vector<CpuidAnswer> host_cpuid(const std::string& path);
// The answers in a cache file's contents `data`, or nullopt unless it is
// well-formed and carries `fingerprint` (what host_cpuid() checks; fuzzed
// by fuzz/host_cpuid_fuzz.cc).
std::optional<std::vector<CpuidAnswer>> parse_cpuid_cache(std::string_view data,
                                                          const std::array<uint32_t, 36>& fingerprint);

// The host's XCR0 (`xgetbv` 0), the state components its user mode has.
// Only where CPUID.1:ECX.OSXSAVE is set (else `xgetbv` raises #UD); the
// caller knows from the answers, which costs no `cpuid` (a trap on PVM).
uint64_t host_xcr0();

}  // namespace vessel::arch::x86

// The guest side of the thin system-call path: a few pages the VMM places in
// every thin guest's address space below mmap_min_addr (layout in
// abi/thin_guest.h, code in guest_entry.S).
//
// Sites the rewriter sends to a stub (loader/rewriter.h) enter here; the
// entry code answers getpid/gettid, getuid/geteuid, getgid/getegid,
// set_robust_list, set_tid_address, arch_prctl(ARCH_SET_FS) (with
// wrfsbase), prlimit64 reads of RLIMIT_STACK, rseq (-ENOSYS, as the VMM
// would), brk queries and brk growth into heap pages the VMM has
// mapped ahead, getrandom from a pool the VMM keeps full,
// clock_gettime/gettimeofday/time from a TSC-based clock the VMM keeps in
// step with the host's, and reads served from a read-ahead window without a
// VM exit, and sends everything
// else to the VMM with `out`. Rewritten `cpuid` sites enter it too and are
// answered from a read-only copy of the host's CPUID (arch/x86/host_cpuid.h).
// The VMM sees the guest's side through GuestShared.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>

#include "abi/thin_guest.h"
#include "arch/x86/host_cpuid.h"
#include "base/result.h"
#include "memory/address_space.h"

namespace vessel::thin {

inline constexpr uint64_t kGuestCounted = GUEST_COUNTED;
inline constexpr uint64_t kGuestEntryVa = GUEST_ENTRY_VA;
inline constexpr uint64_t kGuestSharedVa = GUEST_SHARED_VA;
inline constexpr uint64_t kGuestCountsVa = GUEST_COUNTS_VA;

// Where MSR_LSTAR points: un-rewritten `syscall`s enter the entry code
// there (guest_entry.S, vessel_guest_lstar), and the `sysretq` the VMM
// sends a call that entered at CPL0 back through.
uint64_t guest_lstar_va();
uint64_t guest_sysret_va();
// Where MSR_LSTAR points once the VMM knows where `syscall` lands: the entry
// code's own path, for `syscall` at CPL0 (VT-x/AMD-V) or at CPL3 (PVM).
uint64_t guest_lstar_fast_va(bool cpl0);

// The shared page. Guest-writable: the VMM reads a field once and checks it.
struct GuestShared {
    uint64_t enabled;
    uint64_t uid, gid, pid;
    uint64_t win_fd, win_va, win_len, win_pos;
    uint64_t safe_lo, safe_hi;
    uint64_t save_rdi, save_rsi, save_rsp, save_rcx;
    uint64_t handler;
    uint64_t brk_start;  // written by the VMM only, never read back
    uint64_t brk;        // moved by the guest within the mapped heap; the VMM checks it
    uint64_t clk_valid, clk_tsc, clk_mult, clk_mono, clk_real;  // likewise
    uint64_t stack_lo, stack_hi;                                // likewise
    uint64_t save_rdx;
    uint64_t fsgsbase;                        // written by the VMM only
    uint64_t tid_address;                     // the guest's clear_child_tid: any value is valid
    uint64_t rlim_stack_cur, rlim_stack_max;  // written by the VMM only
    uint64_t brk_limit;                       // likewise
    uint64_t rand_pos;                        // the guest's: the VMM refills when it is not 0
    uint64_t data_lo, data_hi;                // written by the VMM only
    uint64_t cpuid_handler;                   // likewise
    uint8_t rand_pool[GUEST_RAND_POOL];       // likewise
    uint64_t self_exe[GUEST_SELF_EXE];        // likewise
};
static_assert(offsetof(GuestShared, enabled) == SH_ENABLED && offsetof(GuestShared, uid) == SH_UID &&
              offsetof(GuestShared, gid) == SH_GID && offsetof(GuestShared, pid) == SH_PID &&
              offsetof(GuestShared, win_fd) == SH_WIN_FD && offsetof(GuestShared, win_va) == SH_WIN_VA &&
              offsetof(GuestShared, win_len) == SH_WIN_LEN && offsetof(GuestShared, win_pos) == SH_WIN_POS &&
              offsetof(GuestShared, safe_lo) == SH_SAFE_LO && offsetof(GuestShared, safe_hi) == SH_SAFE_HI &&
              offsetof(GuestShared, save_rdi) == SH_SAVE_RDI && offsetof(GuestShared, save_rsi) == SH_SAVE_RSI &&
              offsetof(GuestShared, save_rsp) == SH_SAVE_RSP && offsetof(GuestShared, save_rcx) == SH_SAVE_RCX &&
              offsetof(GuestShared, handler) == SH_HANDLER && offsetof(GuestShared, brk_start) == SH_BRK_START &&
              offsetof(GuestShared, brk) == SH_BRK && offsetof(GuestShared, clk_valid) == SH_CLK_VALID &&
              offsetof(GuestShared, clk_tsc) == SH_CLK_TSC && offsetof(GuestShared, clk_mult) == SH_CLK_MULT &&
              offsetof(GuestShared, clk_mono) == SH_CLK_MONO && offsetof(GuestShared, clk_real) == SH_CLK_REAL &&
              offsetof(GuestShared, stack_lo) == SH_STACK_LO && offsetof(GuestShared, stack_hi) == SH_STACK_HI &&
              offsetof(GuestShared, save_rdx) == SH_SAVE_RDX && offsetof(GuestShared, fsgsbase) == SH_FSGSBASE &&
              offsetof(GuestShared, tid_address) == SH_TID_ADDRESS &&
              offsetof(GuestShared, rlim_stack_cur) == SH_RLIM_STACK_CUR &&
              offsetof(GuestShared, rlim_stack_max) == SH_RLIM_STACK_MAX &&
              offsetof(GuestShared, brk_limit) == SH_BRK_LIMIT && offsetof(GuestShared, rand_pos) == SH_RAND_POS &&
              offsetof(GuestShared, data_lo) == SH_DATA_LO && offsetof(GuestShared, data_hi) == SH_DATA_HI &&
              offsetof(GuestShared, cpuid_handler) == SH_CPUID_HANDLER &&
              offsetof(GuestShared, rand_pool) == SH_RAND_POOL && offsetof(GuestShared, self_exe) == SH_SELF_EXE);
static_assert(sizeof(GuestShared) <= SH_STACK_TOP - 512, "the entry code's stack needs the rest of the page");
using abi::kGuestCpuidPointer;
using abi::kGuestHandlerPointer;
inline constexpr uint64_t kGuestCpuidVa = GUEST_CPUID_VA;
inline constexpr size_t kGuestCpuidMax = GUEST_CPUID_MAX;
using abi::kStubAreaName;

inline constexpr uint64_t kNoWindow = ~0ull;  // win_fd when no window is live

// The VMM's handle on a guest's entry pages.
class GuestEntry {
public:
    // Maps the entry code, the shared page, the counts page and the CPUID
    // page, which holds `cpuid` (the first kGuestCpuidMax answers; any
    // other question runs the real instruction).
    static Result<GuestEntry> install(memory::AddressSpace& as, std::span<const arch::x86::CpuidAnswer> cpuid);
    // Replaces the answers on the CPUID page of an address space built by
    // install(), before the guest runs.
    static Result<> set_cpuid_answers(memory::AddressSpace& as, std::span<const arch::x86::CpuidAnswer> cpuid);
    // Finds the pages in an address space built by install() (a restored
    // snapshot); nullopt when they are not there (a snapshot from a build
    // without them: every call then exits, as before).
    static std::optional<GuestEntry> find(memory::AddressSpace& as);
    // The CPUID answers on the CPUID page of an address space built by
    // install() (a restored snapshot: the answers the program started with),
    // known leaves only; empty when the page is not there.
    static std::vector<arch::x86::CpuidAnswer> cpuid_answers(memory::AddressSpace& as);

    GuestShared& shared() const { return *shared_; }
    // Calls answered in the guest, per system-call number (kGuestCounted).
    const uint64_t* counts() const { return counts_; }
    // Starts the counts at zero (a forked child's copy of its parent's).
    void reset_counts() const {
        std::memset(const_cast<uint64_t*>(counts_), 0, kGuestCounted * sizeof(uint64_t));
        mem_->note_write(counts_gpa_, memory::kPageSize);
    }
    // Records a VMM write to the shared page for the next diff snapshot.
    void note_shared_write() const { mem_->note_write(shared_gpa_, sizeof(GuestShared)); }

private:
    GuestEntry(memory::GuestMemory& mem, uint64_t shared_gpa, uint64_t counts_gpa);
    memory::GuestMemory* mem_;
    uint64_t shared_gpa_;
    GuestShared* shared_;
    const uint64_t* counts_;
    uint64_t counts_gpa_;
};

}  // namespace vessel::thin

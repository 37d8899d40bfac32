#include "cpu/vcpu_state.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>

#include "arch/x86/x86.h"
#include "base/text.h"

namespace vessel::cpu {
namespace {

namespace x86 = arch::x86;
using state::Reader;
using state::Writer;

constexpr uint32_t kMsrTscAdjust = 0x3b, kMsrTscDeadline = 0x6e0, kMsrMtrrDefType = 0x2ff;
constexpr uint32_t kMsrKvmWallClock = 0x11, kMsrKvmSystemTime = 0x12;
constexpr uint32_t kMsrKvmWallClockNew = 0x4b564d00, kMsrKvmSystemTimeNew = 0x4b564d01, kMsrKvmAsyncPfEn = 0x4b564d02,
                   kMsrKvmStealTime = 0x4b564d03, kMsrKvmPvEoiEn = 0x4b564d04, kMsrKvmPollControl = 0x4b564d05,
                   kMsrKvmAsyncPfInt = 0x4b564d06;

std::vector<uint32_t> full_msrs() {
    std::vector<uint32_t> m = {
        x86::msr::kTsc,    kMsrTscAdjust,    x86::msr::kSysenterCs, x86::msr::kSysenterEsp, x86::msr::kSysenterEip,
        x86::msr::kStar,   x86::msr::kLstar, x86::msr::kCstar,      x86::msr::kSfmask,      x86::msr::kKernelGsBase,
        x86::msr::kTscAux, x86::msr::kPat,   x86::msr::kApicBase,   x86::msr::kMiscEnable,  kMsrMtrrDefType};
    // MTRRs: the variable ranges, then the fixed ones.
    for (uint32_t i = 0x200; i < 0x210; ++i) m.push_back(i);
    for (uint32_t i : {0x250u, 0x258u, 0x259u}) m.push_back(i);
    for (uint32_t i = 0x268; i < 0x270; ++i) m.push_back(i);
    m.push_back(kMsrTscDeadline);  // after TSC (a deadline is a TSC value) and the LAPIC
    for (uint32_t i : {kMsrKvmWallClock, kMsrKvmSystemTime, kMsrKvmWallClockNew, kMsrKvmSystemTimeNew,
                       kMsrKvmAsyncPfInt, kMsrKvmAsyncPfEn, kMsrKvmStealTime, kMsrKvmPvEoiEn, kMsrKvmPollControl})
        m.push_back(i);
    return m;
}

}  // namespace

const std::vector<uint32_t> kThinVcpuMsrs = {x86::msr::kTsc,         x86::msr::kStar,       x86::msr::kLstar,
                                             x86::msr::kCstar,       x86::msr::kSfmask,     x86::msr::kKernelGsBase,
                                             x86::msr::kPat,         x86::msr::kSysenterCs, x86::msr::kSysenterEsp,
                                             x86::msr::kSysenterEip, x86::msr::kTscAux};
const std::vector<uint32_t> kFullVcpuMsrs = full_msrs();

Result<VcpuState> capture_vcpu(kvm::Vcpu& vcpu, std::span<const uint32_t> msrs,
                               const std::vector<kvm_cpuid_entry2>* cpuid) {
    VcpuState s;
    // KVM_GET_MP_STATE first: it processes pending INIT/SIPI, which changes
    // what the other calls see. Events last: the other reads may move state
    // into them (Firecracker's order).
    if (cpuid) {
        s.machine.emplace();
        auto mp = vcpu.get_mp_state();
        if (!mp) return std::unexpected(mp.error());
        s.machine->mp_state = mp->mp_state;
        s.machine->cpuid = *cpuid;
    }
    auto regs = vcpu.get_regs();
    if (!regs) return std::unexpected(regs.error());
    s.regs = *regs;
    auto sregs = vcpu.get_sregs();
    if (!sregs) return std::unexpected(sregs.error());
    s.sregs = *sregs;
    auto fpu = vcpu.get_fpu();
    if (!fpu) return std::unexpected(fpu.error());
    s.fpu = *fpu;
    auto xsave = vcpu.get_xsave();
    if (!xsave) return std::unexpected(xsave.error());
    s.xsave = std::move(*xsave);
    auto xcrs = vcpu.get_xcrs();
    if (!xcrs) return std::unexpected(xcrs.error());
    s.xcrs = *xcrs;
    if (s.machine) {
        auto debugregs = vcpu.get_debugregs();
        if (!debugregs) return std::unexpected(debugregs.error());
        s.machine->debugregs = *debugregs;
        auto lapic = vcpu.get_lapic();
        if (!lapic) return std::unexpected(lapic.error());
        s.machine->lapic = *lapic;
    }
    for (uint32_t index : msrs)
        if (auto v = vcpu.get_msrs({index})) s.msrs.emplace_back(index, (*v)[0]);
    auto events = vcpu.get_events();
    if (!events) return std::unexpected(events.error());
    s.events = *events;
    return s;
}

void put_vcpu(Writer& w, const VcpuState& s) {
    w.bytes(&s.regs, sizeof s.regs);
    w.bytes(&s.sregs, sizeof s.sregs);
    w.bytes(&s.fpu, sizeof s.fpu);
    w.bytes(s.xsave.data(), s.xsave.size() * 4);
    w.bytes(&s.xcrs, sizeof s.xcrs);
    w.bytes(&s.events, sizeof s.events);
    w.u32(static_cast<uint32_t>(s.msrs.size()));
    for (auto [i, v] : s.msrs) {
        w.u32(i);
        w.u64(v);
    }
    w.u8(s.machine ? 1 : 0);
    if (!s.machine) return;
    w.bytes(&s.machine->lapic, sizeof s.machine->lapic);
    w.u32(s.machine->mp_state);
    w.bytes(&s.machine->debugregs, sizeof s.machine->debugregs);
    w.u32(static_cast<uint32_t>(s.machine->cpuid.size()));
    for (const auto& e : s.machine->cpuid) w.bytes(&e, sizeof e);
}

state::RecordResult<VcpuState> get_vcpu(Reader& r, std::span<const uint32_t> allowed, bool machine) {
    VcpuState s;
    r.blob(&s.regs, sizeof s.regs);
    r.blob(&s.sregs, sizeof s.sregs);
    r.blob(&s.fpu, sizeof s.fpu);
    r.blob(s.xsave.data(), s.xsave.size() * 4);
    r.blob(&s.xcrs, sizeof s.xcrs);
    r.blob(&s.events, sizeof s.events);
    uint32_t nmsrs = r.u32();
    if (nmsrs > allowed.size()) return state::malformed("vCPU state: too many MSRs");
    for (uint32_t i = 0; r.ok() && i < nmsrs; ++i) {
        uint32_t index = r.u32();
        uint64_t value = r.u64();
        if (!r.ok()) break;  // truncated: said below, not as MSR 0
        if (std::find(allowed.begin(), allowed.end(), index) == allowed.end())
            return state::malformed("vCPU state: MSR " + hex(index) + " is not one a snapshot carries");
        for (auto [seen, v] : s.msrs)
            if (seen == index) return state::malformed("vCPU state: MSR " + hex(index) + " appears twice");
        s.msrs.emplace_back(index, value);
    }
    uint8_t kind = r.u8();
    if (!r.ok()) return state::record_error(state::RecordFault::kTruncated, "vCPU state is truncated");
    if (kind != (machine ? 1 : 0))
        return state::record_error(state::RecordFault::kWrongMachine, std::string("vCPU state is that of a ") +
                                                                          (kind == 1   ? "full machine"
                                                                           : kind == 0 ? "thin VM"
                                                                                       : "?") +
                                                                          ", not of a " +
                                                                          (machine ? "full machine" : "thin VM"));
    if (s.xcrs.nr_xcrs > KVM_MAX_XCRS) return state::malformed("vCPU state: more XCRs than KVM has");
    if (!machine) return s;
    s.machine.emplace();
    r.blob(&s.machine->lapic, sizeof s.machine->lapic);
    s.machine->mp_state = r.u32();
    r.blob(&s.machine->debugregs, sizeof s.machine->debugregs);
    uint32_t ncpuid = r.u32();
    if (!r.ok()) return state::record_error(state::RecordFault::kTruncated, "vCPU state is truncated");
    if (ncpuid == 0 || ncpuid > kMaxCpuidEntries)
        return state::malformed("vCPU state: " + std::to_string(ncpuid) + " CPUID entries (1 to " +
                                std::to_string(kMaxCpuidEntries) + " expected)");
    s.machine->cpuid.resize(ncpuid);
    for (auto& e : s.machine->cpuid) r.blob(&e, sizeof e);
    if (!r.ok()) return state::record_error(state::RecordFault::kTruncated, "vCPU state is truncated");
    // The states an x86 vCPU can be in (KVM_MP_STATE_RUNNABLE..SIPI_RECEIVED).
    if (s.machine->mp_state > KVM_MP_STATE_SIPI_RECEIVED)
        return state::malformed("vCPU state: MP state " + std::to_string(s.machine->mp_state) + " is not an x86 one");
    return s;
}

state::RecordResult<> apply_vcpu(kvm::Vcpu& vcpu, const VcpuState& s) {
    auto refused = [&](const Error& e) {
        return state::record_error(state::RecordFault::kRefused,
                                   "KVM refused the snapshot's vCPU state (" + e.message + ")");
    };
    // Order after Firecracker: CPUID before anything it gates (CR4 bits,
    // XCR0), MP state, registers, XSAVE/XCRs, debug registers, the LAPIC
    // before the MSRs (the TSC deadline is ignored unless the LAPIC timer is
    // in deadline mode), events last.
    if (s.machine) {
        if (auto r = vcpu.set_cpuid(s.machine->cpuid); !r) return refused(r.error());
        if (auto r = vcpu.set_mp_state(s.machine->mp_state); !r) return refused(r.error());
    }
    if (auto r = vcpu.set_sregs(s.sregs); !r) return refused(r.error());
    if (auto r = vcpu.set_regs(s.regs); !r) return refused(r.error());
    if (auto r = vcpu.set_fpu(s.fpu); !r) return refused(r.error());
    if (auto r = vcpu.set_xsave(s.xsave); !r) return refused(r.error());
    if (auto r = vcpu.set_xcrs(s.xcrs); !r) return refused(r.error());
    if (s.machine) {
        if (auto r = vcpu.set_debugregs(s.machine->debugregs); !r) return refused(r.error());
        if (auto r = vcpu.set_lapic(s.machine->lapic); !r) return refused(r.error());
    }
    for (auto [index, value] : s.msrs) {
        if (vcpu.set_msrs({{index, value}})) continue;
        // Refused. If KVM takes the MSR's current value back, it is the
        // snapshot's value it rejects; otherwise this host cannot set the MSR
        // at all (PVM refuses a few), and the vCPU goes without, as at boot.
        auto current = vcpu.get_msrs({index});
        if (current && vcpu.set_msrs({{index, (*current)[0]}}))
            return state::record_error(state::RecordFault::kRefused,
                                       "KVM refused the snapshot's value " + hex(value) + " of MSR " + hex(index));
    }
    if (auto r = vcpu.set_events(s.events); !r) return refused(r.error());
    return {};
}

}  // namespace vessel::cpu

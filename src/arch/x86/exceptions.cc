#include "arch/x86/exceptions.h"

#include <signal.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "arch/x86/x86.h"

namespace vessel::arch::x86 {
namespace {

enum Vector : unsigned {
    kDivide = 0,
    kDebug = 1,
    kBreakpoint = 3,
    kOverflow = 4,
    kBound = 5,
    kInvalidOpcode = 6,
    kDoubleFault = 8,
    kInvalidTss = 10,
    kSegmentNotPresent = 11,
    kStack = 12,
    kGeneralProtection = 13,
    kPageFault = 14,
    kX87 = 16,
    kAlignment = 17,
    kSimd = 19,
    kControlProtection = 21,
};

// Page-fault error code bits.
constexpr uint64_t kPfPresent = 1, kPfWrite = 2, kPfFetch = 16, kPfProtectionKey = 32;

const char* vector_name(unsigned v) {
    static constexpr const char* kNames[kExceptionVectors] = {
        "divide error",
        "debug trap",
        "NMI",
        "breakpoint (int3)",
        "overflow (into)",
        "bound range exceeded",
        "invalid opcode",
        "device not available",
        "double fault",
        "coprocessor segment overrun",
        "invalid TSS",
        "segment not present",
        "stack-segment fault",
        "general protection fault",
        "page fault",
        "reserved exception 15",
        "x87 floating-point error",
        "alignment check",
        "machine check",
        "SIMD floating-point error",
        "virtualization exception",
        "control protection fault",
    };
    return v < kExceptionVectors && kNames[v] ? kNames[v] : "reserved exception";
}

// Linux's choice (arch/x86/kernel/traps.c): the signal a user-mode
// exception sends.
int signal_for(unsigned v) {
    switch (v) {
        case kDivide:
        case kX87:
        case kSimd: return SIGFPE;
        case kDebug:
        case kBreakpoint: return SIGTRAP;
        case kInvalidOpcode: return SIGILL;
        case kSegmentNotPresent:
        case kStack:
        case kAlignment: return SIGBUS;
        default: return SIGSEGV;
    }
}

}  // namespace

bool exception_has_error_code(unsigned vector) {
    switch (vector) {
        case kDoubleFault:
        case kInvalidTss:
        case kSegmentNotPresent:
        case kStack:
        case kGeneralProtection:
        case kPageFault:
        case kAlignment:
        case kControlProtection:
        case 29:  // #VC
        case 30:  // #SX
            return true;
        default: return false;
    }
}

void build_exception_idt(uint8_t* idt, uint8_t* stubs, uint64_t stubs_va) {
    std::memset(idt, 0, kIdtSize);
    std::memset(stubs, 0xf4, kExceptionStubsSize);  // hlt between stubs
    for (unsigned v = 0; v < kExceptionVectors; ++v) {
        uint8_t* s = stubs + v * kExceptionStubSize;
        unsigned n = 0;
        if (!exception_has_error_code(v)) s[n++] = 0x6a, s[n++] = 0;  // push $0
        s[n++] = 0x6a;                                                // push $vector
        s[n++] = static_cast<uint8_t>(v);
        s[n++] = 0xe6;  // out %al, $kExceptionPort
        s[n++] = static_cast<uint8_t>(kExceptionPort);
        for (uint8_t b : {0x48, 0x83, 0xc4, 0x10}) s[n++] = b;  // add $16, %rsp (vector, error code)
        s[n++] = 0x48, s[n++] = 0xcf;                           // iretq

        const uint64_t target = stubs_va + v * kExceptionStubSize;
        const unsigned dpl = (v == kBreakpoint || v == kOverflow) ? 3 : 0;  // int3 and into work from user mode
        uint8_t* g = idt + v * 16;
        const uint16_t lo = target & 0xffff, mid = (target >> 16) & 0xffff;
        const uint32_t hi = static_cast<uint32_t>(target >> 32);
        const uint16_t sel = selector::kKernelCode;
        std::memcpy(g, &lo, 2);
        std::memcpy(g + 2, &sel, 2);
        g[4] = 0;                                        // IST: none (the TSS's RSP0)
        g[5] = static_cast<uint8_t>(0x8e | (dpl << 5));  // present, 64-bit interrupt gate
        std::memcpy(g + 6, &mid, 2);
        std::memcpy(g + 8, &hi, 4);
    }
}

GuestFault describe_exception(unsigned vector, uint64_t error_code, uint64_t cr2, uint64_t rip) {
    const int sig = signal_for(vector);
    std::string what = std::string("SIG") + sigabbrev_np(sig) + ": ";
    // si_code and si_addr as arch/x86/kernel/traps.c and fault.c give them.
    int code = SI_KERNEL;
    uint64_t addr = 0;
    switch (vector) {
        case kDivide: code = FPE_INTDIV, addr = rip; break;
        case kInvalidOpcode: code = ILL_ILLOPN, addr = rip; break;
        case kAlignment: code = BUS_ADRALN; break;
        case kDebug: code = TRAP_TRACE; break;
        case kPageFault:
            code = !(error_code & kPfPresent) ? SEGV_MAPERR : error_code & kPfProtectionKey ? SEGV_PKUERR : SEGV_ACCERR;
            addr = cr2;
            break;
        default: break;
    }
    if (vector == kPageFault) {
        const char* access = error_code & kPfFetch ? "instruction fetch" : error_code & kPfWrite ? "write" : "read";
        const char* why = !(error_code & kPfPresent)           ? "unmapped"
                          : error_code & kPfProtectionKey      ? "protection-key-protected"
                          : error_code & (kPfWrite | kPfFetch) ? "protected"
                                                               : "inaccessible";
        char buf[128];
        std::snprintf(buf, sizeof buf, "page fault: %s of %s address 0x%" PRIx64, access, why, cr2);
        return {sig, what + buf, code, addr};
    }
    what += vector_name(vector);
    if (exception_has_error_code(vector) && error_code) {
        char buf[40];
        std::snprintf(buf, sizeof buf, " (error code 0x%" PRIx64 ")", error_code);
        what += buf;
    }
    return {sig, what, code, addr};
}

}  // namespace vessel::arch::x86

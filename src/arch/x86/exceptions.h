// x86 exceptions raised by guest user code: the IDT and stubs that report
// them to the VMM, and what Linux makes of each (the signal, and a line
// like its "segfault at ..." log line).
#pragma once

#include <cstdint>
#include <string>

namespace vessel::arch::x86 {

// Vectors 0-31, the architectural exceptions.
inline constexpr unsigned kExceptionVectors = 32;
inline constexpr unsigned kIdtSize = kExceptionVectors * 16;
// Each stub: `push $0` where the CPU pushes no error code, `push $vector`,
// `out %al, $kExceptionPort`, then `add $16, %rsp; iretq`: resumed, it
// returns to user mode through the frame, which the VMM may have pointed at
// a signal handler.
inline constexpr unsigned kExceptionStubSize = 16;
inline constexpr unsigned kExceptionStubsSize = kExceptionVectors * kExceptionStubSize;
// One-byte `out`s to this port from a stub (at CPL0) are exception reports;
// a guest's rewritten system calls are four-byte `out`s.
inline constexpr uint16_t kExceptionPort = 0xec;

// Does the CPU push an error code for `vector`?
bool exception_has_error_code(unsigned vector);

// Writes the IDT (kIdtSize bytes: an interrupt gate per vector into the
// stubs, through the kernel code segment; #BP and #OF reachable from CPL3
// as under Linux) and the stubs (kExceptionStubsSize bytes), which the
// guest sees at `stubs_va`.
void build_exception_idt(uint8_t* idt, uint8_t* stubs, uint64_t stubs_va);

// What a stub pushed and the CPU's frame above it, lowest address first.
struct ExceptionFrame {
    uint64_t vector, error_code, rip, cs, rflags, rsp, ss;
};

// A user-mode exception as Linux reports it.
struct GuestFault {
    int signal;               // SIGSEGV, SIGILL, SIGFPE, SIGBUS, SIGTRAP
    std::string description;  // "SIGSEGV: page fault: read of unmapped address 0x0"
    int code = 0;             // siginfo's si_code: SEGV_MAPERR, ILL_ILLOPN, FPE_INTDIV, SI_KERNEL, ...
    uint64_t addr = 0;        // siginfo's si_addr: the address for a page fault, the instruction for #DE/#UD
};
// `cr2`: the faulting address, for a page fault; `rip`: the faulting instruction.
GuestFault describe_exception(unsigned vector, uint64_t error_code, uint64_t cr2, uint64_t rip = 0);

}  // namespace vessel::arch::x86

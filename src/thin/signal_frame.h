// Linux's x86-64 signal frame, as a handler finds it on its stack and
// rt_sigreturn reads it back (arch/x86/include/asm/sigframe.h, uapi
// asm/sigcontext.h and asm/ucontext.h):
//
//   frame + 0    pretcode: sa_restorer, where the handler's `ret` goes
//   frame + 8    struct ucontext: uc_flags, uc_link, uc_stack,
//                uc_mcontext (struct sigcontext, 256 bytes), uc_sigmask
//   frame + 312  siginfo (128 bytes)
//   fpstate      the XSAVE image (64-byte aligned, above the frame), its
//                software bytes in the legacy area's bytes 464-511 and
//                FP_XSTATE_MAGIC2 after it
//
// At the handler's first instruction (rsp + 8) is 16-byte aligned, as
// after a `call`. Everything read back is the guest's to corrupt: the
// decoder accepts any values for the general registers and repairs the
// rest (flags outside those user code may change, the XSAVE header, MXCSR's
// reserved bits) instead of passing them to KVM.
#pragma once

#include <linux/kvm.h>

#include <array>
#include <cstdint>
#include <span>
#include <vector>

namespace vessel::thin {

inline constexpr uint64_t kSigFrameSize = 440;
inline constexpr uint64_t kUcontextOffset = 8;
inline constexpr uint64_t kUcStackOffset = kUcontextOffset + 16;
inline constexpr uint64_t kMcontextOffset = kUcontextOffset + 40;
inline constexpr uint64_t kUcSigmaskOffset = kMcontextOffset + 256;
inline constexpr uint64_t kSiginfoOffset = kUcSigmaskOffset + 8;
static_assert(kSiginfoOffset + 128 == kSigFrameSize);  // kSiginfoSize
inline constexpr uint64_t kRedZone = 128;

// What sigaltstack and the masks know (uapi): SS_AUTODISARM, MINSIGSTKSZ,
// and SIGKILL and SIGSTOP, which no mask blocks and no handler catches.
inline constexpr uint32_t kSsAutoDisarm = 1u << 31;
inline constexpr uint64_t kMinSigStackSize = 2048;
inline constexpr uint64_t kUnblockable = (1ull << (9 - 1)) | (1ull << (19 - 1));

inline constexpr uint32_t kFpXstateMagic1 = 0x46505853;  // "SXPF" in the legacy area's software bytes
inline constexpr uint32_t kFpXstateMagic2 = 0x46505845;  // "EXPF" just after the XSAVE image
inline constexpr uint64_t kUcFpXstate = 1, kUcSigcontextSs = 2, kUcStrictRestoreSs = 4;

// The flags user code may change through a frame (Linux's FIX_EFLAGS):
// AC, OF, DF, TF, SF, ZF, AF, PF, CF, RF.
inline constexpr uint64_t kUserFlags = 0x50dd5;

// siginfo as the frame carries it.
struct SigInfo {
    int signo = 0;
    int code = 0;       // SI_USER, SI_TKILL, SEGV_MAPERR, ...
    uint64_t addr = 0;  // faults: si_addr
    int32_t pid = 0;    // kill/tkill: the sender
    uint32_t uid = 0;
    bool fault = false;  // si_addr is meaningful (else si_pid, si_uid)
};

// Linux's siginfo_t (128 bytes): si_signo, si_code, then si_addr for a
// fault or si_pid and si_uid for a signal sent.
inline constexpr size_t kSiginfoSize = 128;
std::array<uint8_t, kSiginfoSize> encode_siginfo(const SigInfo& info);

// What an exception adds to the saved context (sigcontext's err, trapno, cr2).
struct TrapInfo {
    uint64_t trapno = 0, err = 0, cr2 = 0;
};

// The 440 bytes of a frame for a handler of `info.signo` interrupting
// `regs`, with `mask` the mask to restore and `altstack` (ss_sp, ss_flags,
// ss_size) the alternate stack as uc_stack records it.
std::vector<uint8_t> encode_sigframe(const kvm_regs& regs, const TrapInfo& trap, uint64_t restorer, uint64_t mask,
                                     const uint64_t (&altstack)[3], uint64_t fpstate, const SigInfo& info);

// What rt_sigreturn takes from a frame.
struct SavedContext {
    kvm_regs regs{};  // general registers, rip and the user flags merged into `current`'s
    uint64_t mask = 0;
    uint64_t altstack[3] = {};
    uint64_t fpstate = 0;
};
// Decodes the 440 bytes at a frame; `current` supplies what the frame may
// not change (the flags other than kUserFlags).
SavedContext decode_sigframe(std::span<const uint8_t, kSigFrameSize> frame, const kvm_regs& current);

// The XSAVE image written at fpstate: the first `size` bytes of KVM's
// region (`region`), its software bytes filled in, then the magic.
// Returns size + 4 bytes.
std::vector<uint8_t> encode_fpstate(std::span<const uint32_t> region, uint32_t size, uint64_t xcr0);
// An XSAVE image read back from the guest (size + 4 bytes) made safe for
// KVM_SET_XSAVE on top of `region` (the vCPU's current one): an image
// without the magic numbers restores the legacy x87/SSE area only; the
// header's features are cut to `xcr0`, its compaction and reserved bytes
// cleared; MXCSR's reserved bits cleared.
std::vector<uint32_t> decode_fpstate(std::span<const uint8_t> image, std::span<const uint32_t> region, uint32_t size,
                                     uint64_t xcr0);

}  // namespace vessel::thin

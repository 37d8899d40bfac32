#include "thin/signal_frame.h"

#include <algorithm>
#include <cstring>

namespace vessel::thin {
namespace {

// struct sigcontext, in 64-bit words from uc_mcontext.
enum Sc : unsigned {
    kR8,
    kR9,
    kR10,
    kR11,
    kR12,
    kR13,
    kR14,
    kR15,
    kRdi,
    kRsi,
    kRbp,
    kRbx,
    kRdx,
    kRax,
    kRcx,
    kRsp,
    kRip,
    kFlags,
    kSegments,  // cs, gs, fs, ss (16 bits each)
    kErr,
    kTrapno,
    kOldmask,
    kCr2,
    kFpstate,
};

constexpr uint16_t kUserCs = 0x33, kUserSs = 0x2b;  // Linux's __USER_CS and __USER_DS

void put64(std::vector<uint8_t>& b, uint64_t off, uint64_t v) { std::memcpy(b.data() + off, &v, 8); }
void put32(std::vector<uint8_t>& b, uint64_t off, uint32_t v) { std::memcpy(b.data() + off, &v, 4); }
uint64_t get64(std::span<const uint8_t> b, uint64_t off) {
    uint64_t v;
    std::memcpy(&v, b.data() + off, 8);
    return v;
}

// The XSAVE layout's fixed places.
constexpr uint64_t kMxcsr = 24, kMxcsrMask = 28, kSwBytes = 464, kLegacySize = 512, kHeader = 512, kHeaderSize = 64;

}  // namespace

std::vector<uint8_t> encode_sigframe(const kvm_regs& r, const TrapInfo& trap, uint64_t restorer, uint64_t mask,
                                     const uint64_t (&altstack)[3], uint64_t fpstate, const SigInfo& info) {
    std::vector<uint8_t> f(kSigFrameSize, 0);
    put64(f, 0, restorer);
    put64(f, kUcontextOffset, kUcSigcontextSs | kUcStrictRestoreSs | (fpstate ? kUcFpXstate : 0));
    for (unsigned i = 0; i < 3; ++i) put64(f, kUcStackOffset + 8 * i, altstack[i]);
    const uint64_t words[] = {r.r8,  r.r9,  r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rdi,
                              r.rsi, r.rbp, r.rbx, r.rdx, r.rax, r.rcx, r.rsp, r.rip, r.rflags};
    for (unsigned i = 0; i < std::size(words); ++i) put64(f, kMcontextOffset + 8 * i, words[i]);
    put64(f, kMcontextOffset + 8 * kSegments, kUserCs | uint64_t(kUserSs) << 48);
    put64(f, kMcontextOffset + 8 * kErr, trap.err);
    put64(f, kMcontextOffset + 8 * kTrapno, trap.trapno);
    put64(f, kMcontextOffset + 8 * kOldmask, mask);
    put64(f, kMcontextOffset + 8 * kCr2, trap.cr2);
    put64(f, kMcontextOffset + 8 * kFpstate, fpstate);
    put64(f, kUcSigmaskOffset, mask);
    const auto si = encode_siginfo(info);
    std::memcpy(f.data() + kSiginfoOffset, si.data(), si.size());
    return f;
}

std::array<uint8_t, kSiginfoSize> encode_siginfo(const SigInfo& info) {
    std::array<uint8_t, kSiginfoSize> b{};
    auto put = [&](uint64_t off, auto v) { std::memcpy(b.data() + off, &v, sizeof v); };
    put(0, static_cast<uint32_t>(info.signo));
    put(8, static_cast<uint32_t>(info.code));
    if (info.fault) {
        put(16, info.addr);
    } else {
        put(16, static_cast<uint32_t>(info.pid));
        put(20, info.uid);
    }
    return b;
}

SavedContext decode_sigframe(std::span<const uint8_t, kSigFrameSize> f, const kvm_regs& current) {
    SavedContext s;
    auto sc = [&](unsigned i) { return get64(f, kMcontextOffset + 8 * i); };
    kvm_regs& r = s.regs;
    r = current;
    r.r8 = sc(kR8), r.r9 = sc(kR9), r.r10 = sc(kR10), r.r11 = sc(kR11);
    r.r12 = sc(kR12), r.r13 = sc(kR13), r.r14 = sc(kR14), r.r15 = sc(kR15);
    r.rdi = sc(kRdi), r.rsi = sc(kRsi), r.rbp = sc(kRbp), r.rbx = sc(kRbx);
    r.rdx = sc(kRdx), r.rax = sc(kRax), r.rcx = sc(kRcx), r.rsp = sc(kRsp), r.rip = sc(kRip);
    r.rflags = (current.rflags & ~kUserFlags) | (sc(kFlags) & kUserFlags);
    s.mask = get64(f, kUcSigmaskOffset);
    for (unsigned i = 0; i < 3; ++i) s.altstack[i] = get64(f, kUcStackOffset + 8 * i);
    s.fpstate = sc(kFpstate);
    return s;
}

std::vector<uint8_t> encode_fpstate(std::span<const uint32_t> region, uint32_t size, uint64_t xcr0) {
    std::vector<uint8_t> img(size + 4, 0);
    std::memcpy(img.data(), region.data(), std::min<size_t>(size, region.size_bytes()));
    // struct _fpx_sw_bytes: magic1, extended_size, xfeatures, xstate_size.
    put32(img, kSwBytes, kFpXstateMagic1);
    put32(img, kSwBytes + 4, size + 4);
    put64(img, kSwBytes + 8, xcr0);
    put32(img, kSwBytes + 16, size);
    std::memset(img.data() + kSwBytes + 20, 0, 28);
    put32(img, size, kFpXstateMagic2);
    return img;
}

std::vector<uint32_t> decode_fpstate(std::span<const uint8_t> image, std::span<const uint32_t> region, uint32_t size,
                                     uint64_t xcr0) {
    std::vector<uint32_t> out(region.begin(), region.end());
    auto* bytes = reinterpret_cast<uint8_t*>(out.data());
    const size_t room = out.size() * 4;
    uint32_t magic1, extended, xstate_size, magic2 = 0;
    uint64_t features;
    std::memcpy(&magic1, image.data() + kSwBytes, 4);
    std::memcpy(&extended, image.data() + kSwBytes + 4, 4);
    std::memcpy(&features, image.data() + kSwBytes + 8, 8);
    std::memcpy(&xstate_size, image.data() + kSwBytes + 16, 4);
    if (image.size() >= size_t(size) + 4) std::memcpy(&magic2, image.data() + size, 4);
    const bool full = magic1 == kFpXstateMagic1 && extended == size + 4 && xstate_size == size &&
                      magic2 == kFpXstateMagic2 && size >= kHeader + kHeaderSize && size <= room;
    uint64_t mxcsr_mask;
    {
        uint32_t m;
        std::memcpy(&m, bytes + kMxcsrMask, 4);
        mxcsr_mask = m ? m : 0xffbf;
    }
    if (full) {
        std::memcpy(bytes, image.data(), size);
        uint64_t bv;
        std::memcpy(&bv, bytes + kHeader, 8);
        bv &= xcr0 & features;
        std::memset(bytes + kHeader, 0, kHeaderSize);  // compaction off, reserved bytes zero
        std::memcpy(bytes + kHeader, &bv, 8);
    } else {
        // A legacy (FXSAVE) image: the x87 and SSE state only, the rest at init.
        std::memcpy(bytes, image.data(), kLegacySize);
        if (room >= kHeader + kHeaderSize) {
            std::memset(bytes + kHeader, 0, room - kHeader);
            const uint64_t bv = xcr0 & 3;
            std::memcpy(bytes + kHeader, &bv, 8);
        }
    }
    std::memset(bytes + kSwBytes, 0, kLegacySize - kSwBytes);  // software bytes: not state
    uint32_t mxcsr;
    std::memcpy(&mxcsr, bytes + kMxcsr, 4);
    mxcsr &= static_cast<uint32_t>(mxcsr_mask);
    std::memcpy(bytes + kMxcsr, &mxcsr, 4);
    return out;
}

}  // namespace vessel::thin

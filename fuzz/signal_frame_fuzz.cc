// Fuzzes what rt_sigreturn reads back from a guest (thin/signal_frame.h):
// the 440-byte frame and the XSAVE image, which the guest may have written
// anything into. Whatever comes in, the registers change only where user
// code may change them, and the XSAVE region handed to KVM has a header
// KVM accepts (features within XCR0, standard format, reserved bytes zero)
// and an MXCSR without reserved bits.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "thin/signal_frame.h"

using namespace vessel;

namespace {
constexpr uint32_t kSize = 832;  // legacy area, header, AVX
constexpr uint64_t kXcr0 = 0x7;  // x87, SSE, AVX
constexpr uint32_t kMxcsrMask = 0xffff;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < thin::kSigFrameSize) return 0;
    kvm_regs current{};
    current.rflags = 0x3202;  // IF, IOPL 3
    std::span<const uint8_t, thin::kSigFrameSize> frame(data, thin::kSigFrameSize);
    const thin::SavedContext s = thin::decode_sigframe(frame, current);
    FUZZ_CHECK((s.regs.rflags & ~thin::kUserFlags) == (current.rflags & ~thin::kUserFlags));

    std::vector<uint8_t> image(kSize + 4, 0);
    std::memcpy(image.data(), data + thin::kSigFrameSize, std::min<size_t>(image.size(), size - thin::kSigFrameSize));
    std::vector<uint32_t> region(1024, 0);
    region[7] = kMxcsrMask;
    const std::vector<uint32_t> out = thin::decode_fpstate(image, region, kSize, kXcr0);
    FUZZ_CHECK(out.size() == region.size());
    uint64_t header[8];
    std::memcpy(header, reinterpret_cast<const uint8_t*>(out.data()) + 512, sizeof header);
    FUZZ_CHECK((header[0] & ~kXcr0) == 0);
    for (unsigned i = 1; i < 8; ++i) FUZZ_CHECK(header[i] == 0);
    FUZZ_CHECK((out[6] & ~kMxcsrMask) == 0);
    return 0;
}

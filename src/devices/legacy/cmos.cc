#include "devices/legacy/cmos.h"

#include <algorithm>

namespace vessel::devices::legacy {
namespace {

constexpr uint8_t kSeconds = 0x00, kMinutes = 0x02, kHours = 0x04, kWeekday = 0x06, kDay = 0x07, kMonth = 0x08,
                  kYear = 0x09, kStatusA = 0x0a, kStatusB = 0x0b, kStatusC = 0x0c, kStatusD = 0x0d, kCentury = 0x32;
constexpr uint8_t kStatusB24Hour = 0x02, kStatusBBinary = 0x04;
constexpr uint8_t kStatusDValid = 0x80;

uint8_t to_bcd(unsigned v) { return static_cast<uint8_t>(((v / 10) << 4) | (v % 10)); }

}  // namespace

Cmos::Cmos(uint64_t ram_below_4g, uint64_t ram_above_4g, Clock clock) : clock_(std::move(clock)) {
    if (!clock_) clock_ = [] { return std::time(nullptr); };
    regs_[kStatusA] = 0x26;  // 32.768 kHz time base, 1024 Hz rate; update not in progress
    regs_[kStatusB] = kStatusB24Hour;
    regs_[kStatusD] = kStatusDValid;
    // BIOS bytes: base memory (KiB), memory above 1 MiB (KiB, up to 64 MiB),
    // above 16 MiB (64 KiB units), above 4 GiB (64 KiB units, 3 bytes).
    regs_[0x15] = 640 & 0xff;
    regs_[0x16] = 640 >> 8;
    uint64_t ext_k = ram_below_4g > (1u << 20) ? std::min<uint64_t>((ram_below_4g - (1u << 20)) >> 10, 0xfc00) : 0;
    regs_[0x17] = regs_[0x30] = ext_k & 0xff;
    regs_[0x18] = regs_[0x31] = ext_k >> 8;
    uint64_t above16 = ram_below_4g > (16u << 20) ? std::min<uint64_t>((ram_below_4g - (16u << 20)) >> 16, 0xffff) : 0;
    regs_[0x34] = above16 & 0xff;
    regs_[0x35] = above16 >> 8;
    uint64_t above4g = ram_above_4g >> 16;
    regs_[0x5b] = above4g & 0xff;
    regs_[0x5c] = (above4g >> 8) & 0xff;
    regs_[0x5d] = (above4g >> 16) & 0xff;
}

uint8_t Cmos::read_register(uint8_t index) {
    bool clock_reg = index <= kYear || index == kCentury;
    if (!clock_reg) {
        if (index == kStatusC) return 0;  // no interrupt flags; reading clears them
        return regs_[index];
    }
    std::time_t now = clock_();
    std::tm t{};
    gmtime_r(&now, &t);
    bool binary = regs_[kStatusB] & kStatusBBinary;
    auto enc = [&](unsigned v) { return binary ? static_cast<uint8_t>(v) : to_bcd(v); };
    switch (index) {
        case kSeconds: return enc(t.tm_sec);
        case kMinutes: return enc(t.tm_min);
        case kHours: {
            if (regs_[kStatusB] & kStatusB24Hour) return enc(t.tm_hour);
            unsigned h = t.tm_hour % 12 ? t.tm_hour % 12 : 12;
            return static_cast<uint8_t>(enc(h) | (t.tm_hour >= 12 ? 0x80 : 0));
        }
        case kWeekday: return enc(t.tm_wday + 1);
        case kDay: return enc(t.tm_mday);
        case kMonth: return enc(t.tm_mon + 1);
        case kYear: return enc(t.tm_year % 100);
        case kCentury: return enc((t.tm_year + 1900) / 100);
        default: return regs_[index];  // alarm registers
    }
}

void Cmos::read(uint64_t offset, std::span<uint8_t> data) {
    if (data.empty()) return;
    std::lock_guard lock(mu_);
    data[0] = offset == 1 ? read_register(index_) : 0xff;
    for (size_t i = 1; i < data.size(); ++i) data[i] = 0xff;
}

void Cmos::write(uint64_t offset, std::span<const uint8_t> data) {
    if (data.empty()) return;
    std::lock_guard lock(mu_);
    if (offset == 0) {
        index_ = data[0] & 0x7f;  // bit 7 is the NMI mask
        return;
    }
    if (offset != 1) return;
    uint8_t v = data[0];
    switch (index_) {
        case kStatusA: regs_[kStatusA] = (v & 0x7f); break;  // UIP is read-only
        case kStatusC:
        case kStatusD: break;
        default:
            // Writes to the time registers are accepted but the clock keeps the
            // host's time: a guest cannot move the host clock.
            regs_[index_] = v;
    }
}

CmosState Cmos::save() {
    std::lock_guard lock(mu_);
    return {index_, regs_};
}

Result<> Cmos::restore(const CmosState& s) {
    if (s.index >= regs_.size()) return fail("CMOS: register index out of range", EINVAL);
    std::lock_guard lock(mu_);
    index_ = s.index;
    regs_ = s.regs;
    return {};
}

}  // namespace vessel::devices::legacy

// The MC146818 CMOS RTC (ports 0x70 index, 0x71 data): the wall-clock time
// Linux reads once at boot (mach_get_cmos_time), in BCD or binary and 12- or
// 24-hour form as the guest chose in status register B, plus the memory-size
// bytes a BIOS leaves. No periodic or alarm interrupts.
#pragma once

#include <array>
#include <cstdint>
#include <ctime>
#include <functional>
#include <mutex>
#include <span>

#include "base/result.h"
#include "devices/bus.h"

namespace vessel::devices::legacy {

// The selected index and the register file, for snapshots. The clock
// registers always read the host's time, whatever was saved.
struct CmosState {
    uint8_t index = 0;
    std::array<uint8_t, 128> regs{};
};

class Cmos final : public BusDevice {
public:
    static constexpr uint64_t kBasePort = 0x70;
    static constexpr uint64_t kSize = 2;
    using Clock = std::function<std::time_t()>;

    // `ram_below_4g`/`ram_above_4g`: bytes of RAM, reported in the BIOS bytes.
    // `clock` defaults to the host's time.
    Cmos(uint64_t ram_below_4g, uint64_t ram_above_4g, Clock clock = {});

    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

    CmosState save();
    // Refuses an index outside the 128 registers.
    Result<> restore(const CmosState& state);

private:
    uint8_t read_register(uint8_t index);
    Clock clock_;
    std::mutex mu_;
    uint8_t index_ = 0;
    std::array<uint8_t, 128> regs_{};
};

}  // namespace vessel::devices::legacy

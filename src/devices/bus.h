// The I/O and MMIO buses a full machine's devices sit on.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace vessel::devices {

// A device reached by guest port I/O or MMIO accesses. `offset` is relative
// to the start of the device's range; `data` is the access (1, 2, 4 or 8 bytes).
class BusDevice {
public:
    virtual ~BusDevice() = default;
    virtual void read(uint64_t offset, std::span<uint8_t> data) = 0;
    virtual void write(uint64_t offset, std::span<const uint8_t> data) = 0;
};

// Address ranges to devices. Lookups are by the access address; ranges never overlap.
class Bus {
public:
    // False when [base, base+size) overlaps an existing range.
    bool insert(uint64_t base, uint64_t size, std::shared_ptr<BusDevice> device);
    // True when a device took the access; reads of unclaimed addresses return
    // all-ones, writes are dropped (what real buses do).
    bool read(uint64_t addr, std::span<uint8_t> data) const;
    bool write(uint64_t addr, std::span<const uint8_t> data) const;

private:
    struct Range {
        uint64_t base, size;
        std::shared_ptr<BusDevice> device;
    };
    const Range* find(uint64_t addr, uint64_t len) const;
    std::vector<Range> ranges_;  // sorted by base
};

}  // namespace vessel::devices

#include "devices/bus.h"

#include <algorithm>
#include <cstring>

namespace vessel::devices {

bool Bus::insert(uint64_t base, uint64_t size, std::shared_ptr<BusDevice> device) {
    if (size == 0 || base + size < base) return false;
    for (const auto& r : ranges_)
        if (base < r.base + r.size && r.base < base + size) return false;
    ranges_.push_back({base, size, std::move(device)});
    std::sort(ranges_.begin(), ranges_.end(), [](const Range& a, const Range& b) { return a.base < b.base; });
    return true;
}

const Bus::Range* Bus::find(uint64_t addr, uint64_t len) const {
    auto it =
        std::upper_bound(ranges_.begin(), ranges_.end(), addr, [](uint64_t a, const Range& r) { return a < r.base; });
    if (it == ranges_.begin()) return nullptr;
    --it;
    if (addr - it->base >= it->size || len > it->size - (addr - it->base)) return nullptr;
    return &*it;
}

bool Bus::read(uint64_t addr, std::span<uint8_t> data) const {
    const Range* r = find(addr, data.size());
    if (!r) {
        std::memset(data.data(), 0xff, data.size());
        return false;
    }
    r->device->read(addr - r->base, data);
    return true;
}

bool Bus::write(uint64_t addr, std::span<const uint8_t> data) const {
    const Range* r = find(addr, data.size());
    if (!r) return false;
    r->device->write(addr - r->base, data);
    return true;
}

}  // namespace vessel::devices

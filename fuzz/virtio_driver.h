// Drives one virtio device from fuzz input, as a hostile guest driver would:
// descriptors, available-ring entries, buffer bytes and register writes
// come from the input (fuzz/README.md). Built on tests/devices/virtio_harness.h.
#pragma once

#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdlib>
#include <memory>

#include "tests/devices/virtio_harness.h"

namespace vessel::fuzz {

inline constexpr uint64_t kRam = 1 << 20;
inline constexpr uint64_t kBuffers = 0x80000;  // guest buffers live above the rings

// Brings the device up with queues of `queue_size`, then runs the input's
// commands. Addresses are usually in the buffer area and sometimes raw (past
// the end of RAM, wrapping), lengths anything.
inline void drive(std::unique_ptr<devices::virtio::VirtioDevice> device, uint16_t queue_size, const uint8_t* data,
                  size_t size) {
    namespace virtio = devices::virtio;
    testing::VirtioGuest g(kRam);
    if (!g.attach(std::move(device)) || !g.start(queue_size)) std::abort();
    FuzzedDataProvider in(data, size);
    const unsigned queues = g.transport->num_queues();
    auto address = [&] {
        return in.ConsumeBool() ? in.ConsumeIntegral<uint64_t>()
                                : kBuffers + in.ConsumeIntegralInRange<uint64_t>(0, kRam - kBuffers);
    };
    for (int steps = 0; steps < 256 && in.remaining_bytes(); ++steps) {
        const unsigned q = in.ConsumeIntegralInRange<unsigned>(0, queues - 1);
        switch (in.ConsumeIntegralInRange<int>(0, 5)) {
            case 0: {  // a descriptor, any fields
                uint16_t i = in.ConsumeIntegral<uint16_t>() % queue_size;
                uint64_t addr = address();
                g.write_desc(q, i, addr, in.ConsumeIntegral<uint32_t>(), in.ConsumeIntegral<uint16_t>(),
                             in.ConsumeIntegral<uint16_t>());
                break;
            }
            case 1: g.push_avail(q, in.ConsumeIntegral<uint16_t>()); break;
            case 2: g.set_avail_idx(q, in.ConsumeIntegral<uint16_t>()); break;
            case 3: {  // buffer bytes (request headers and payloads)
                uint64_t at = kBuffers + in.ConsumeIntegralInRange<uint64_t>(0, kRam - kBuffers - 256);
                auto bytes = in.ConsumeBytes<uint8_t>(in.ConsumeIntegralInRange<size_t>(0, 256));
                if (!bytes.empty()) std::memcpy(g.host(at, 256), bytes.data(), bytes.size());
                break;
            }
            case 4: g.notify(q); break;
            case 5: {  // a register write: reset, queue reconfiguration, config space
                uint64_t off = in.ConsumeIntegralInRange<uint64_t>(0, 0x1ff) & ~3ull;
                g.w32(off, in.ConsumeIntegral<uint32_t>());
                g.run();
                break;
            }
        }
    }
    g.run();
}

}  // namespace vessel::fuzz

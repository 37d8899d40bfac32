// Fuzzes a full machine's device records (devices/legacy/persist.h, devices/virtio/persist.h,
// machine/kvm_chips_state.h) and the devices' restore() of what decodes.
//
// First byte: which record (serial, CMOS, i8042, virtio-mmio transport, KVM
// devices); the rest is the record.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "devices/legacy/persist.h"
#include "devices/virtio/persist.h"
#include "devices/virtio/rng.h"
#include "fuzz/fuzz_util.h"
#include "machine/kvm_chips_state.h"
#include "tests/devices/virtio_harness.h"

using namespace vessel;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    state::Reader r(std::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
    switch (data[0] % 5) {
        case 0:
            if (auto s = devices::legacy::get_serial(r)) {
                devices::legacy::Serial serial([] {}, [](std::span<const uint8_t>) {});
                (void)serial.restore(*s);
                uint8_t b[1];
                for (uint64_t off = 0; off < devices::legacy::Serial::kSize; ++off) serial.read(off, b);
            }
            break;
        case 1:
            if (auto s = devices::legacy::get_cmos(r)) {
                devices::legacy::Cmos cmos(64 << 20, 0, [] { return std::time_t{0}; });
                (void)cmos.restore(*s);
            }
            break;
        case 2:
            if (auto s = devices::legacy::get_i8042(r)) {
                devices::legacy::I8042 kbd([] {});
                (void)kbd.restore(*s);
            }
            break;
        case 3:
            if (auto s = devices::virtio::get_transport(r)) {
                testing::VirtioGuest g(1 << 20);
                if (!g.attach(std::make_unique<devices::virtio::Rng>())) std::abort();
                if (g.transport->restore(*s)) {
                    // A restored live queue must survive a notify.
                    g.w32(devices::virtio::mmio::kQueueNotify, 0);
                    g.run();
                }
            }
            break;
        case 4: (void)machine::get_kvm_devices(r); break;
    }
    return 0;
}

// Fuzzes virtio-rng's virtqueue handling (devices/virtio/rng.h) with hostile descriptor chains.
#include "devices/virtio/rng.h"
#include "fuzz/virtio_driver.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    vessel::fuzz::drive(std::make_unique<vessel::devices::virtio::Rng>(), 16, data, size);
    return 0;
}

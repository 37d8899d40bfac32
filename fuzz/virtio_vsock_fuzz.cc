// Fuzzes virtio-vsock's packet parsing and connection state (devices/virtio/vsock.h) with hostile descriptor chains.
#include "devices/virtio/vsock.h"
#include "fuzz/fuzz_util.h"
#include "fuzz/virtio_driver.h"

using namespace vessel;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    auto vsock = devices::virtio::Vsock::create({3, fuzz::scratch_dir() + "/vsock.sock"});
    if (!vsock) std::abort();
    fuzz::drive(std::move(*vsock), 16, data, size);
    return 0;
}

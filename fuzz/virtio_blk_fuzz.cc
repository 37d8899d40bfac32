// Fuzzes virtio-blk's request parsing (devices/virtio/blk.h) with hostile descriptor chains, over a scratch disk image.
#include "devices/virtio/blk.h"
#include "fuzz/fuzz_util.h"
#include "fuzz/virtio_driver.h"

using namespace vessel;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::string disk = [] {
        std::string path = fuzz::scratch_dir() + "/disk.img";
        std::vector<uint8_t> zeros(64 * 1024);
        fuzz::write_file(path, zeros);
        return path;
    }();
    auto blk = devices::virtio::Block::open({disk, false, {}});
    if (!blk) std::abort();
    fuzz::drive(std::move(*blk), 16, data, size);
    return 0;
}

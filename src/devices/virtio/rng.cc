#include "devices/virtio/rng.h"

#include <sys/random.h>

#include <cerrno>

namespace vessel::devices::virtio {

void Rng::process_queue(unsigned index) {
    if (!transport_ || index != 0) return;
    auto& mem = transport_->memory();
    drain_queue(*transport_, 0, "", [&](const DescriptorChain& chain) {
        uint32_t filled = 0;
        for (const iovec& v : chain.iovecs(mem, true, 0, std::min<uint64_t>(chain.writable_len, kMaxRequest))) {
            size_t done = 0;
            while (done < v.iov_len) {
                ssize_t n = ::getrandom(static_cast<uint8_t*>(v.iov_base) + done, v.iov_len - done, 0);
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) break;
                done += size_t(n);
            }
            filled += uint32_t(done);
            if (done < v.iov_len) break;
        }
        if (auto r = transport_->queue(0).add_used(mem, chain, filled); !r) transport_->fail(r.error().message);
        return Served::kDone;
    });
}

}  // namespace vessel::devices::virtio

// Fuzzes virtio-net's transmit and receive paths (devices/virtio/net.h) with hostile descriptor chains, over a socket
// pair.
#include <sys/socket.h>

#include "devices/virtio/net.h"
#include "fuzz/virtio_driver.h"

using namespace vessel;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0) std::abort();
    Fd host(sv[1]);
    // A frame waiting on the host side, so the receive queue has work.
    static const uint8_t frame[64] = {0x52, 0x54, 0, 0x12, 0x34, 0x56};
    (void)::send(host.get(), frame, sizeof frame, MSG_NOSIGNAL);
    auto net = devices::virtio::Net::create(Fd(sv[0]), devices::virtio::Net::kFrameSocket,
                                            devices::virtio::MacAddress{0x52, 0x54, 0, 0x12, 0x34, 0x56});
    if (!net) std::abort();
    fuzz::drive(std::move(*net), 16, data, size);
    return 0;
}

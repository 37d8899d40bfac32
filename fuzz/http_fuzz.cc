// Fuzzes the control API's HTTP server (api/http.h): raw bytes on a connection to a Server routing to vm_router.
#include <sys/socket.h>
#include <sys/un.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "fuzz/fake_vm.h"
#include "fuzz/fuzz_util.h"
#include "machine/api_routes.h"

using namespace vessel;

namespace {

api::Server& server() {
    static fuzz::FakeVm vm;
    static std::unique_ptr<api::Server> s = [] {
        api::ServerOptions o;
        o.io_timeout = std::chrono::seconds(2);
        auto r = api::Server::listen(fuzz::scratch_dir() + "/api.sock", machine::vm_router(vm), o);
        if (!r) {
            std::fprintf(stderr, "vessel fuzz: %s\n", r.error().message.c_str());
            std::abort();
        }
        (*r)->start();
        return std::move(*r);
    }();
    return *s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, server().path().c_str(), sizeof addr.sun_path - 1);
    Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) std::abort();
    for (size_t off = 0; off < size;) {  // the server may answer early (a 4xx) and close
        ssize_t n = ::send(fd.get(), data + off, size - off, MSG_NOSIGNAL);
        if (n <= 0) break;
        off += static_cast<size_t>(n);
    }
    ::shutdown(fd.get(), SHUT_WR);
    // The server answers each request and closes; every answer is HTTP.
    std::string reply;
    char buf[4096];
    timeval tv{5, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    for (ssize_t n; (n = ::recv(fd.get(), buf, sizeof buf, 0)) > 0;) reply.append(buf, static_cast<size_t>(n));
    FUZZ_CHECK(reply.empty() || reply.rfind("HTTP/1.1 ", 0) == 0);
    return 0;
}

// The control API's HTTP server driven over a raw socket, without a VM:
// hostile requests get a 4xx and never take the server down.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <string>

#include "api/http.h"

namespace vessel::api {
namespace {

class HttpServer : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/vessel-http-test-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        Router router;
        router.add("GET", "/vm", [](const Request&) { return Response{}; });
        auto s = Server::listen(dir_ + "/api.sock", std::move(router));
        ASSERT_TRUE(s) << s.error().message;
        server_ = std::move(*s);
        server_->start();
    }
    void TearDown() override {
        server_.reset();
        std::filesystem::remove_all(dir_);
    }

    // Sends `bytes` on a fresh connection, closes the sending side and
    // returns everything the server answered.
    std::string exchange(const std::string& bytes) {
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::strncpy(addr.sun_path, server_->path().c_str(), sizeof addr.sun_path - 1);
        Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
        EXPECT_EQ(::send(fd.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
        ::shutdown(fd.get(), SHUT_WR);
        std::string reply;
        char buf[4096];
        for (ssize_t n; (n = ::recv(fd.get(), buf, sizeof buf, 0)) > 0;) reply.append(buf, static_cast<size_t>(n));
        return reply;
    }

    std::string dir_;
    std::unique_ptr<Server> server_;
};

// Found by fuzz/http_fuzz: the 404 body names the path, and a path that is
// not UTF-8 made the JSON serializer throw on the connection's thread,
// which terminated the whole process.
TEST_F(HttpServer, PathThatIsNotUtf8GetsA404) {
    std::string reply = exchange("GET /vm/\x9f\xff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(reply.rfind("HTTP/1.1 404 ", 0), 0u) << reply;
    EXPECT_NE(reply.find("no such endpoint"), std::string::npos) << reply;
    reply = exchange("GET /vm HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(reply.rfind("HTTP/1.1 200 ", 0), 0u) << reply;
}

TEST_F(HttpServer, GarbageGetsA400) {
    std::string reply = exchange("\x01\x02 not http\r\n\r\n");
    EXPECT_EQ(reply.rfind("HTTP/1.1 400 ", 0), 0u) << reply;
}

}  // namespace
}  // namespace vessel::api

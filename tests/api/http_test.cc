// api::Server under bad input (malformed bytes in every position of a
// request), its socket file (only ever removing the socket it bound), and the
// client call()'s refusals. No VM, no /dev/kvm.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "api/http.h"
#include "harness.h"
#include "malformed.h"

namespace vessel::api {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// GET /things (200), GET|DELETE /things/{id} echoing the id and the query
// (so whatever the request carried ends up in a reply), PUT /things/{id}
// echoing its JSON body's keys, and handlers that fail in odd ways.
Router test_router() {
    Router r;
    r.add("GET", "/things", [](const Request& req) {
        Response out;
        out.body = {{"things", json::array()}, {"query", req.query}};
        return out;
    });
    auto echo = [](const Request& req) {
        Response out;
        out.body = {{"id", req.params.at("id")}, {"query", req.query}};
        return out;
    };
    r.add("GET", "/things/{id}", echo);
    r.add("DELETE", "/things/{id}", echo);
    r.add("PUT", "/things/{id}", [](const Request& req) {
        auto body = req.json_body();
        if (!body) return error(400, "bad_request", body.error().message);
        Response out;
        for (const auto& [key, value] : body->items()) out.body["keys"].push_back(key);
        return out;
    });
    // A message built from bytes that are not UTF-8 (a file name read from
    // disk, say): the reply must still be valid JSON.
    r.add("GET", "/odd/bytes", [](const Request&) { return error(409, "invalid_state", "file \xff\xfe is busy"); });
    r.add("GET", "/odd/throws", [](const Request&) -> Response { throw 42; });
    // What arrived with the request as SCM_RIGHTS: how many, and the first
    // one's inode.
    r.add("GET", "/passed", [](const Request& req) {
        Response out;
        struct stat st {};
        if (!req.fds.empty()) ::fstat(req.fds.front()->get(), &st);
        out.body = {{"count", req.fds.size()}, {"inode", st.st_ino}};
        return out;
    });
    return r;
}

class ServerTest : public test::ScratchDirTest {
protected:
    void SetUp() override {
        ScratchDirTest::SetUp();
        sock_ = dir_ + "/api.sock";
    }
    void TearDown() override {
        server_.reset();
        ScratchDirTest::TearDown();
    }
    void serve(ServerOptions options = {}) {
        auto s = Server::listen(sock_, test_router(), options);
        ASSERT_TRUE(s.has_value()) << s.error().message;
        server_ = std::move(*s);
        server_->start();
    }
    // GET `target`; a transport failure is a test failure and status 599.
    Response get(const std::string& target) {
        auto r = call(sock_, "GET", target, nullptr, 5s);
        EXPECT_TRUE(r.has_value()) << target << ": " << r.error().message;
        return r ? *r : Response{599, json::object(), "application/json", ""};
    }
    int status(const std::string& method, const std::string& target) {
        auto r = call(sock_, method, target, nullptr, 5s);
        return r ? r->status : -1;
    }
    std::string sock_;
    std::unique_ptr<Server> server_;
};

TEST_F(ServerTest, AnswersMalformedBytesInEveryPositionAndKeepsServing) {
    serve();
    test::expect_survives_bad_requests(sock_, {"/things", "/things/", "/things/1"});
}

// A target that does not decode to UTF-8 text (or holds a NUL) is refused
// before any route sees it: names, ids and paths are text.
TEST_F(ServerTest, TargetsThatAreNotUtf8TextAreRefusedWith400) {
    serve();
    for (const char* target : {"/things/%ff", "/things/%c0%80", "/things/%ed%a0%80", "/things/a%00", "/things?%ff=1",
                               "/things?a=%fe", "/nothing/%ff"}) {
        std::string reply = test::raw_exchange(sock_, std::string("GET ") + target + " HTTP/1.1\r\n\r\n");
        int st = 0;
        ASSERT_EQ(test::check_reply(reply, st), "") << target << ": " << test::printable(reply);
        EXPECT_EQ(st, 400) << target << ": " << test::printable(reply);
        EXPECT_NE(reply.find("\"bad_request\""), std::string::npos) << test::printable(reply);
    }
    // Valid multi-byte UTF-8 is text like any other.
    auto r = get("/things/caf%C3%A9?q=%E2%82%AC");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body["id"], "caf\xc3\xa9");
    EXPECT_EQ(r.body["query"]["q"], "\xe2\x82\xac");
}

// A handler's reply holding bytes that are not UTF-8 is sent with U+FFFD in
// their place instead of throwing out of the connection thread.
TEST_F(ServerTest, RepliesWithInvalidUtf8AreSentWithReplacementCharacters) {
    serve();
    auto r = get("/odd/bytes");
    EXPECT_EQ(r.status, 409);
    EXPECT_EQ(r.body["error"]["message"], "file \xef\xbf\xbd\xef\xbf\xbd is busy");
    EXPECT_EQ(status("GET", "/things"), 200);
}

TEST_F(ServerTest, AHandlerThrowingAnythingIsA500AndTheServerCarriesOn) {
    serve();
    auto r = get("/odd/throws");
    EXPECT_EQ(r.status, 500);
    EXPECT_EQ(r.body["error"]["code"], "internal");
    EXPECT_EQ(status("GET", "/things"), 200);
}

// --- The socket file: only what the server created is removed. ---

TEST_F(ServerTest, RefusingARegularFileLeavesItAlone) {
    { std::ofstream(sock_) << "precious"; }
    {
        auto s = Server::listen(sock_, test_router());
        ASSERT_FALSE(s.has_value());
        EXPECT_NE(s.error().message.find("exists and is not a socket"), std::string::npos) << s.error().message;
    }
    EXPECT_EQ(test::read_file(sock_), "precious") << sock_ << " was removed or changed by a refused listen";
}

TEST_F(ServerTest, RefusingASymlinkLeavesItAndItsTargetAlone) {
    std::string target = dir_ + "/target";
    { std::ofstream(target) << "x"; }
    ASSERT_EQ(::symlink(target.c_str(), sock_.c_str()), 0);
    ASSERT_FALSE(Server::listen(sock_, test_router()).has_value());
    struct stat st;
    EXPECT_EQ(::lstat(sock_.c_str(), &st), 0);
    EXPECT_TRUE(S_ISLNK(st.st_mode));
    EXPECT_TRUE(fs::exists(target));
}

TEST_F(ServerTest, ASecondServerOnALiveSocketLeavesTheFirstServing) {
    serve();
    {
        auto second = Server::listen(sock_, test_router());
        ASSERT_FALSE(second.has_value());
        EXPECT_NE(second.error().message.find("another process is serving this socket"), std::string::npos)
            << second.error().message;
    }
    EXPECT_TRUE(fs::exists(sock_)) << "the refused server removed the live server's socket";
    EXPECT_EQ(status("GET", "/things"), 200);
}

TEST_F(ServerTest, AFailedBindRemovesNothing) {
    // The directory does not exist: bind fails after the checks.
    std::string missing = dir_ + "/no/such/dir/api.sock";
    auto s = Server::listen(missing, test_router());
    ASSERT_FALSE(s.has_value());
    EXPECT_NE(s.error().message.find("bind"), std::string::npos) << s.error().message;
    // A stale socket is the one thing listen replaces; a failed bind after
    // that must not take anything else (here: nothing else exists).
    EXPECT_FALSE(fs::exists(dir_ + "/no"));
}

TEST_F(ServerTest, AStaleSocketIsReplaced) {
    {
        // Bound, never listening: what a crashed server leaves behind.
        int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock_.c_str());
        ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
        ::close(fd);
    }
    serve();
    EXPECT_EQ(status("GET", "/things"), 200);
}

TEST_F(ServerTest, StopRemovesItsOwnSocket) {
    serve();
    ASSERT_TRUE(fs::exists(sock_));
    server_->stop();
    EXPECT_FALSE(fs::exists(sock_));
}

TEST_F(ServerTest, StopLeavesASocketFileThatReplacedItsOwn) {
    serve();
    // Someone else took the path over: a regular file, then a live server.
    ASSERT_EQ(::unlink(sock_.c_str()), 0);
    { std::ofstream(sock_) << "someone else's"; }
    server_->stop();
    EXPECT_TRUE(fs::exists(sock_)) << "stop() removed a file it did not create";
    ASSERT_EQ(::unlink(sock_.c_str()), 0);

    auto first = Server::listen(sock_, test_router());
    ASSERT_TRUE(first.has_value()) << first.error().message;
    ASSERT_EQ(::unlink(sock_.c_str()), 0);  // e.g. an operator cleaning up
    serve();                                // a new server on the same path
    (*first)->stop();
    EXPECT_TRUE(fs::exists(sock_)) << "the old server removed the new server's socket";
    EXPECT_EQ(status("GET", "/things"), 200);
}

// --- The client. ---

TEST_F(ServerTest, CallRefusesABodyThatIsNotUtf8InsteadOfThrowing) {
    serve();
    json body = {{"name", "\xff"}};
    auto r = call(sock_, "PUT", "/things/1", &body, 5s);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().sys_errno, EINVAL);
    EXPECT_NE(r.error().message.find("UTF-8"), std::string::npos) << r.error().message;
}

TEST_F(ServerTest, CallRefusesATargetOrMethodThatWouldSplitTheRequest) {
    serve();
    const std::vector<std::string> targets = {"/things/a b", "/things\r\nX-Injected: 1", std::string("/a\0b", 4), "",
                                              "things"};
    for (const auto& target : targets) {
        auto r = call(sock_, "GET", target, nullptr, 5s);
        EXPECT_FALSE(r.has_value()) << "target " << test::printable(target);
        if (!r) {
            EXPECT_EQ(r.error().sys_errno, EINVAL);
        }
    }
    for (const std::string method : {"GET /x HTTP/1.1\r\n", "", "G T"}) {
        auto r = call(sock_, method, "/things", nullptr, 5s);
        EXPECT_FALSE(r.has_value()) << "method " << test::printable(method);
    }
    EXPECT_EQ(status("GET", "/things"), 200);
}

// A server (here a fake one) answering garbage is an error value, never an
// exception or a crash of the caller (vesseld calls every VMM's socket).
TEST_F(ServerTest, CallReportsGarbageAnswersAsErrors) {
    int lfd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock_.c_str());
    ASSERT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::listen(lfd, 8), 0);
    const std::vector<std::string> answers = {
        "\xff\xfe garbage\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4\r\n\r\n\"\xff\xfe\"",
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 3\r\n\r\n{\"a",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nX-\xff: 1\r\n\r\n",
        "",
    };
    for (const auto& answer : answers) {
        std::thread fake([&] {
            int c = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
            char buf[4096];
            (void)::recv(c, buf, sizeof buf, 0);
            (void)::send(c, answer.data(), answer.size(), MSG_NOSIGNAL);
            ::close(c);
        });
        auto r = call(sock_, "GET", "/x", nullptr, 2s);
        fake.join();
        EXPECT_FALSE(r.has_value()) << test::printable(answer);
    }
    ::close(lfd);
}

int open_fds() {
    int n = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator("/proc/self/fd")) ++n;
    return n;
}

TEST_F(ServerTest, ADescriptorPassedWithARequestReachesTheHandler) {
    serve();
    Fd dir(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    struct stat st;
    ASSERT_EQ(::fstat(dir.get(), &st), 0);
    auto r = call(sock_, "GET", "/passed", nullptr, 5s, dir.get());
    ASSERT_TRUE(r.has_value()) << r.error().message;
    EXPECT_EQ(r->body["count"], 1);
    EXPECT_EQ(r->body["inode"], st.st_ino);
    EXPECT_EQ(get("/passed").body["count"], 0) << "none passed, none seen";
}

// A client pushing many descriptors at once gets at most kMaxPassedFds
// through, and the server keeps none of them after the request.
TEST_F(ServerTest, PassedDescriptorsAreBoundedAndClosed) {
    serve();
    int before = open_fds();
    int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, sock_.c_str());
    ASSERT_EQ(::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    std::string req = "GET /passed HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    constexpr int kMany = 12;
    int fds[kMany];
    for (int& f : fds) f = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    iovec iov{req.data(), req.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof fds)] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof fds);
    std::memcpy(CMSG_DATA(c), fds, sizeof fds);
    ASSERT_EQ(::sendmsg(s, &msg, MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
    for (int f : fds) ::close(f);
    std::string reply;
    char buf[4096];
    for (ssize_t n; (n = ::recv(s, buf, sizeof buf, 0)) > 0;) reply.append(buf, static_cast<size_t>(n));
    ::close(s);
    EXPECT_NE(reply.find("\"count\":" + std::to_string(kMaxPassedFds)), std::string::npos) << reply;
    // The connection thread is done once the reply is sent; give it a moment.
    for (int i = 0; i < 100 && open_fds() != before; ++i) std::this_thread::sleep_for(10ms);
    EXPECT_EQ(open_fds(), before) << "descriptors passed to the server were kept";
}

}  // namespace
}  // namespace vessel::api

// Requests malformed in every position (method, target, headers, body) and a
// check that a server answered one with well-formed HTTP: shared by the tests
// of api::Server, of vesseld and of a VMM's --api-sock, which must all
// survive them.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "api/http.h"

namespace vessel::test {

struct BadRequest {
    std::string what;   // the malformed part, for failure messages
    std::string bytes;  // sent as is, then the connection is half-closed
    // true: the answer must be a 4xx (or the connection closed without one).
    // false: the bytes are odd but legal HTTP (obs-text in a header value),
    // so any well-formed answer below 500 is right.
    bool refused = true;
};

// The server's routes the requests are built around: `get` answers a plain
// GET with 200, `item` is a prefix that a {name} segment completes (GET and
// DELETE), `put` takes a JSON object body.
struct Routes {
    std::string get, item, put;
};

inline std::vector<BadRequest> bad_requests(const Routes& r) {
    using namespace std::string_literals;
    const std::string v = " HTTP/1.1\r\nHost: localhost\r\n";
    auto get = [&](const std::string& target) { return "GET " + target + v + "\r\n"; };
    auto with_header = [&](const std::string& header) { return "GET " + r.get + v + header + "\r\n\r\n"; };
    auto put = [&](const std::string& headers, const std::string& body) {
        return "PUT " + r.put + v + headers + "\r\n" + body;
    };
    auto json_put = [&](const std::string& body) {
        return put("Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n", body);
    };
    const std::string huge(100000, 'a');
    return {
        // The method.
        {"method with a 0xff byte", "G\xffT " + r.get + v + "\r\n"},
        {"method that is one 0xff byte", "\xff " + r.get + v + "\r\n"},
        {"method with a NUL byte", "GE\0T "s + r.get + v + "\r\n"},
        {"empty method", " " + r.get + v + "\r\n"},
        {"unknown method", "FROB " + r.get + v + "\r\n"},
        {"100 KB method", huge + " " + r.get + v + "\r\n"},
        // The target: raw bytes, percent-escapes that decode to invalid
        // UTF-8 (in a {name} segment, an unknown path and the query), NUL.
        {"raw 0xff in a {name} segment", get(r.item + "\xff")},
        {"raw 0xff in an unknown path", get("/\xff/\xfe")},
        {"raw 0xff as the whole target", get("\xff")},
        {"%ff in a {name} segment", get(r.item + "%ff")},
        {"%ff in a {name} segment, DELETE", "DELETE " + r.item + "%ff" + v + "\r\n"},
        {"%ff in an unknown path", get("/nothing/here/%ff")},
        {"%ff after a known path (405 path)", "PATCH " + r.item + "%ff" + v + "\r\n"},
        {"overlong NUL %c0%80", get(r.item + "%c0%80")},
        {"overlong NUL %c0%80, DELETE", "DELETE " + r.item + "%c0%80" + v + "\r\n"},
        {"overlong '/' %e0%80%af", get(r.item + "%e0%80%af")},
        {"UTF-16 surrogate %ed%a0%80", get(r.item + "%ed%a0%80")},
        {"beyond U+10FFFF %f4%90%80%80", get(r.item + "%f4%90%80%80")},
        {"5-byte form %f8%88%80%80%80", get(r.item + "%f8%88%80%80%80")},
        {"lone continuation byte %80", get(r.item + "%80")},
        {"truncated sequence %e2%82", get(r.item + "%e2%82")},
        {"%00 in a {name} segment", get(r.item + "a%00b")},
        {"raw NUL in the target", get(r.item + "a\0b"s)},
        {"incomplete escape %f", get(r.item + "%f")},
        {"non-hex escape %zz", get(r.item + "%zz")},
        {"%ff in a query name", get(r.get + "?%ff=1")},
        {"%ff in a query value", get(r.get + "?a=%ff")},
        {"raw 0xff in the query", get(r.get + "?\xff")},
        {"%00 in the query", get(r.get + "?a=%00")},
        {"100 KB target", get("/" + huge)},
        {"absolute-form target with 0xff", get("http://localhost/\xff")},
        {"unknown HTTP version", "GET " + r.get + " HTTP/9.9\r\nHost: localhost\r\n\r\n"},
        {"0xff in the HTTP version", "GET " + r.get + " HTTP/1.\xff\r\nHost: localhost\r\n\r\n"},
        {"no HTTP version", "GET " + r.get + "\r\n\r\n"},
        // Header names and values.
        {"0xff in a header name", with_header("X-\xff: 1")},
        {"NUL in a header name", with_header("X-\0: 1"s)},
        {"empty header name", with_header(": 1")},
        {"header line without a colon", with_header("X-Nothing")},
        {"NUL in a header value", with_header("X-A: a\0b"s)},
        {"bare CR in a header value", with_header("X-A: a\rb")},
        {"100 KB header value", with_header("X-A: " + huge)},
        {"10000 headers", with_header([] {
             std::string h;
             for (int i = 0; i < 10000; ++i) h += "X-" + std::to_string(i) + ": 1\r\n";
             return h.substr(0, h.size() - 2);
         }())},
        {"0xff in a header value", with_header("X-A: \xff\xfe"), false},
        {"0xff in the Host value", "GET " + r.get + " HTTP/1.1\r\nHost: \xff\r\n\r\n", false},
        {"0xff in Content-Type with a body", put("Content-Type: \xff\r\nContent-Length: 2\r\n", "{}")},
        {"0xff in Transfer-Encoding", put("Transfer-Encoding: \xff\r\n", "")},
        // The body.
        {"invalid UTF-8 in a JSON string", json_put("{\"path\": \"\xff\xfe\"}")},
        {"overlong UTF-8 in a JSON string", json_put("{\"path\": \"\xc0\x80\"}")},
        {"lone surrogate escape in a JSON string", json_put("{\"path\": \"\\ud800\"}")},
        {"invalid UTF-8 in a JSON key", json_put("{\"\xff\": 1}")},
        {"invalid JSON", json_put("{\"path\": ")},
        {"JSON that is not an object", json_put("[1, 2]")},
        {"NUL bytes in the body", json_put("{\0}"s)},
        {"JSON nested 30000 deep", json_put(std::string(30000, '[') + std::string(30000, ']'))},
        // Legal JSON (under 64 KiB), which a route may accept: what matters
        // is that parsing and freeing it does not exhaust a thread's stack.
        {"object nested 10000 deep", json_put([] {
             std::string s;
             for (int i = 0; i < 10000; ++i) s += "{\"a\":";
             return s + "1" + std::string(10000, '}');
         }()),
         false},
        {"Content-Length beyond 64 bits", put("Content-Length: 99999999999999999999999\r\n", "{}")},
        {"Content-Length of 1 TiB", put("Content-Length: 1099511627776\r\n", "{}")},
        {"negative Content-Length", put("Content-Length: -1\r\n", "{}")},
        {"Content-Length with letters", put("Content-Length: 2x\r\n", "{}")},
        {"two different Content-Lengths", put("Content-Length: 2\r\nContent-Length: 3\r\n", "{}")},
        {"body shorter than Content-Length", put("Content-Length: 100\r\n", "{}")},
        {"chunked garbage", put("Transfer-Encoding: chunked\r\n", "zz\r\n{}\r\n0\r\n\r\n")},
        {"chunk size beyond 64 bits", put("Transfer-Encoding: chunked\r\n", "fffffffffffffffffffff\r\n{}\r\n")},
        {"chunk of 256 MiB", put("Transfer-Encoding: chunked\r\n", "10000000\r\n{}\r\n")},
        {"chunk without its CRLF", put("Transfer-Encoding: chunked\r\n", "2\r\n{}XX0\r\n\r\n")},
        {"chunked and Content-Length", put("Transfer-Encoding: chunked\r\nContent-Length: 2\r\n", "{}")},
        {"unknown Transfer-Encoding", put("Transfer-Encoding: gzip\r\n", "{}")},
        // Nothing at all but garbage.
        {"only 0xff bytes", std::string(64, '\xff')},
        {"only NUL bytes", std::string(64, '\0')},
        {"only CRLFs", "\r\n\r\n\r\n\r\n"},
    };
}

// Sends `bytes` on a fresh connection, half-closes it and returns everything
// the server sent until it closed (or 5 s passed).
inline std::string raw_exchange(const std::string& socket, const std::string& bytes) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", socket.c_str());
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(fd);
        return "CONNECT FAILED";
    }
    // The server may answer (413, 431) and close before reading it all.
    (void)::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    ::shutdown(fd, SHUT_WR);
    std::string out;
    char buf[4096];
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ssize_t n;
    while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) out.append(buf, static_cast<size_t>(n));
    ::close(fd);
    return out;
}

// Checks that `reply` is one well-formed HTTP/1.1 response: a status line,
// headers, a Content-Length matching the body, a JSON body that parses (an
// error reply: {"error": {"code", "message"}}). Returns what is wrong, or ""
// with `status` set (0 for an empty reply: the connection was closed).
inline std::string check_reply(const std::string& reply, int& status) {
    status = 0;
    if (reply.empty()) return "";
    if (reply.size() < 13 || reply.compare(0, 9, "HTTP/1.1 ") != 0) return "no HTTP/1.1 status line";
    status = std::atoi(reply.substr(9, 3).c_str());
    if (status < 100 || status > 599) return "bad status code";
    size_t end = reply.find("\r\n\r\n");
    if (end == std::string::npos) return "headers not terminated";
    std::string head = reply.substr(0, end + 2);
    std::string body = reply.substr(end + 4);
    size_t cl = head.find("\r\nContent-Length: ");
    if (cl == std::string::npos) return "no Content-Length";
    if (std::to_string(body.size()) != head.substr(cl + 18, head.find("\r\n", cl + 2) - cl - 18))
        return "Content-Length does not match the body (" + std::to_string(body.size()) + " bytes)";
    if (head.find("\r\nContent-Type: application/json\r\n") == std::string::npos) return "";
    auto j = nlohmann::json::parse(body, nullptr, false);
    if (j.is_discarded()) return "body is not valid JSON (or not UTF-8)";
    if (status >= 400 &&
        !(j.contains("error") && j["error"].is_object() && j["error"].contains("code") &&
          j["error"]["code"].is_string() && j["error"].contains("message") && j["error"]["message"].is_string()))
        return "error body is not {\"error\": {\"code\", \"message\"}}";
    return "";
}

// Why `reply` to `bad` is wrong, or "" if it is right.
inline std::string judge(const BadRequest& bad, const std::string& reply) {
    int status = 0;
    std::string wrong = check_reply(reply, status);
    if (!wrong.empty()) return wrong;
    if (status >= 500) return "answered " + std::to_string(status);
    if (bad.refused && status != 0 && status < 400) return "accepted with " + std::to_string(status);
    return "";
}

// `reply` made printable for a failure message.
inline std::string printable(const std::string& reply) {
    std::string out;
    for (unsigned char c : reply.substr(0, 600)) {
        if (c >= 0x20 && c < 0x7f)
            out += static_cast<char>(c);
        else {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        }
    }
    return out;
}

// Sends each of bad_requests(routes) to `socket`: each must be answered
// right, and after each the server must still be up (`alive`) and answer
// GET routes.get with 200.
inline void expect_survives_bad_requests(
    const std::string& socket, const Routes& routes, const std::function<bool()>& alive = [] { return true; }) {
    for (const auto& bad : bad_requests(routes)) {
        std::string reply = raw_exchange(socket, bad.bytes);
        EXPECT_EQ(judge(bad, reply), "") << bad.what << ": " << printable(reply);
        ASSERT_TRUE(alive()) << "the server died after: " << bad.what;
        auto r = api::call(socket, "GET", routes.get, nullptr, std::chrono::seconds(5));
        ASSERT_TRUE(r && r->status == 200) << "the server stopped answering after: " << bad.what;
    }
}

}  // namespace vessel::test

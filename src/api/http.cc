#include "api/http.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <boost/beast/http.hpp>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <system_error>

namespace vessel::api {
namespace http = boost::beast::http;
namespace {

std::vector<std::string> split_path(const std::string& path) {
    std::vector<std::string> out;
    size_t i = 0;
    while (i < path.size()) {
        size_t j = path.find('/', i);
        if (j == std::string::npos) j = path.size();
        if (j > i) out.push_back(path.substr(i, j - i));
        i = j + 1;
    }
    return out;
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// %XX escapes become bytes, '+' a space; an incomplete escape stays as is.
std::string percent_decode(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
            out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
            i += 2;
        } else {
            out += s[i] == '+' ? ' ' : s[i];
        }
    }
    return out;
}

// Well-formed UTF-8 (RFC 3629): no overlong forms, no UTF-16 surrogates,
// nothing above U+10FFFF.
bool valid_utf8(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
        auto c = static_cast<unsigned char>(s[i]);
        size_t len;
        unsigned lo = 0x80, hi = 0xbf;  // the range of the second byte
        if (c < 0x80)
            len = 1;
        else if (c >= 0xc2 && c <= 0xdf)
            len = 2;
        else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            if (c == 0xe0) lo = 0xa0;
            if (c == 0xed) hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            if (c == 0xf0) lo = 0x90;
            if (c == 0xf4) hi = 0x8f;
        } else {
            return false;
        }
        if (s.size() - i < len) return false;
        for (size_t k = 1; k < len; ++k) {
            auto b = static_cast<unsigned char>(s[i + k]);
            if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xbf)) return false;
        }
        i += len;
    }
    return true;
}

// What a route may be given: UTF-8 text (JSON replies carry only that) with
// no NUL (every C API would cut the string there).
bool is_text(std::string_view s) { return valid_utf8(s) && s.find('\0') == std::string_view::npos; }

// Every '%' starts an escape of two hex digits (RFC 3986).
bool escapes_well_formed(std::string_view s) {
    for (size_t i = s.find('%'); i != std::string_view::npos; i = s.find('%', i + 3))
        if (i + 2 >= s.size() || hex_value(s[i + 1]) < 0 || hex_value(s[i + 2]) < 0) return false;
    return true;
}

// Splits a request target into the path and the decoded query, refusing
// what does not decode to text.
Result<void> parse_target(std::string_view target, Request& req) {
    if (!escapes_well_formed(target))
        return fail("the request target has a '%' not followed by two hex digits (write a '%' as %25)", EINVAL);
    size_t q = target.find('?');
    req.path = std::string(target.substr(0, q));
    if (!is_text(percent_decode(req.path)))
        return fail("the request path is not UTF-8 text once percent-decoded (or holds a NUL byte)", EINVAL);
    if (q == std::string_view::npos) return {};
    std::string_view rest = target.substr(q + 1);
    while (!rest.empty()) {
        size_t amp = rest.find('&');
        std::string_view pair = rest.substr(0, amp);
        size_t eq = pair.find('=');
        std::string key = percent_decode(pair.substr(0, eq));
        std::string value = eq == std::string_view::npos ? "" : percent_decode(pair.substr(eq + 1));
        if (!is_text(key) || !is_text(value))
            return fail("the query string is not UTF-8 text once percent-decoded (or holds a NUL byte)", EINVAL);
        req.query[std::move(key)] = std::move(value);
        if (amp == std::string_view::npos) break;
        rest.remove_prefix(amp + 1);
    }
    return {};
}

const char* reason(int status) {
    switch (status) {
        case 200: return "OK";
        case 201: return "Created";
        case 202: return "Accepted";
        case 204: return "No Content";
        case 400: return "Bad Request";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 408: return "Request Timeout";
        case 409: return "Conflict";
        case 413: return "Payload Too Large";
        case 415: return "Unsupported Media Type";
        case 422: return "Unprocessable Entity";
        case 431: return "Request Header Fields Too Large";
        case 500: return "Internal Server Error";
        case 501: return "Not Implemented";
        case 503: return "Service Unavailable";
        case 507: return "Insufficient Storage";
        default: return "Status";
    }
}

// Waits until `fd` is readable or writable; false on timeout or error.
bool wait_fd(int fd, short events, std::chrono::milliseconds timeout) {
    pollfd p{fd, events, 0};
    int r;
    do r = ::poll(&p, 1, static_cast<int>(timeout.count()));
    while (r < 0 && errno == EINTR);
    return r > 0 && !(p.revents & (POLLERR | POLLNVAL));
}

// Sends everything unless the peer answers first (`stop_on_input`): a server
// that rejects a request early (413) stops reading, and its answer must be
// read rather than waited past.
bool send_all(int fd, const std::string& data, std::chrono::milliseconds timeout, bool stop_on_input = false) {
    size_t off = 0;
    while (off < data.size()) {
        if (stop_on_input) {
            pollfd p{fd, POLLOUT | POLLIN, 0};
            int r = ::poll(&p, 1, static_cast<int>(timeout.count()));
            if (r <= 0) return false;
            if (p.revents & (POLLIN | POLLHUP)) return true;
            if (p.revents & POLLERR) return false;
        } else if (!wait_fd(fd, POLLOUT, timeout)) {
            return false;
        }
        ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (n <= 0) return false;
        off += static_cast<size_t>(n);
    }
    return true;
}

// Every reply goes through here. Strings that are not UTF-8 (a handler's
// message naming a file, say) are sent with U+FFFD in place of the bad
// bytes: the strict default would throw out of the connection thread.
std::string serialize(const Response& r, bool keep_alive) {
    std::string body = r.content_type == "application/json"
                           ? r.body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n"
                           : r.raw;
    std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + reason(r.status) + "\r\n";
    out += "Content-Type: " + r.content_type + "\r\n";
    out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    out += keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
    return out + body;
}

// Feeds bytes from `fd` into a Beast parser until a message is complete.
// `buffer` carries bytes read past the message (pipelining) between calls.
// recv(), keeping descriptors passed with the bytes (SCM_RIGHTS) in `fds`
// when it is given: at most kMaxPassedFds, the kernel closes the rest.
ssize_t receive(int fd, char* data, size_t size, std::vector<std::shared_ptr<Fd>>* fds) {
    if (!fds) return ::recv(fd, data, size, MSG_DONTWAIT);
    iovec iov{data, size};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxPassedFds)];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) return n;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) {
            int passed;
            std::memcpy(&passed, CMSG_DATA(c) + i * sizeof(int), sizeof passed);
            auto owned = std::make_shared<Fd>(passed);
            if (fds->size() < kMaxPassedFds) fds->push_back(std::move(owned));
        }
    }
    return n;
}

template <class Parser>
boost::beast::error_code read_message(int fd, Parser& parser, std::string& buffer, std::chrono::milliseconds timeout,
                                      const std::atomic<bool>* stop, bool& timed_out,
                                      std::vector<std::shared_ptr<Fd>>* fds = nullptr) {
    boost::beast::error_code ec;
    timed_out = false;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!parser.is_done()) {
        if (!buffer.empty()) {
            size_t used = parser.put(boost::asio::buffer(buffer), ec);
            buffer.erase(0, used);
            if (ec == http::error::need_more) {
                ec = {};
                if (used) continue;
            } else if (ec) {
                return ec;
            } else {
                continue;
            }
        }
        // Poll in short slices so stop() is noticed quickly.
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0 || (stop && *stop)) {
            timed_out = true;
            return http::error::partial_message;
        }
        if (!wait_fd(fd, POLLIN, std::min(left, std::chrono::milliseconds(200)))) continue;
        char chunk[16384];
        ssize_t n = receive(fd, chunk, sizeof chunk, fds);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (n <= 0) {
            if (n == 0 && buffer.empty() && !parser.got_some()) return http::error::end_of_stream;
            if (n == 0) parser.put_eof(ec);
            return ec ? ec : http::error::partial_message;
        }
        buffer.append(chunk, static_cast<size_t>(n));
    }
    return ec;
}

}  // namespace

Result<json> Request::json_body() const {
    if (body.empty()) return json::object();
    auto j = json::parse(body, nullptr, false);
    if (j.is_discarded()) return fail("request body is not valid JSON", EINVAL);
    if (!j.is_object()) return fail("request body must be a JSON object", EINVAL);
    return j;
}

Response error(int status, const std::string& code, const std::string& message) {
    Response r;
    r.status = status;
    r.body = {{"error", {{"code", code}, {"message", message}}}};
    return r;
}

void Router::add(const std::string& method, const std::string& pattern, Handler handler) {
    routes_.push_back({method, split_path(pattern), std::move(handler)});
}

Response Router::dispatch(Request& request) const {
    auto segments = split_path(request.path);
    bool path_matched = false;
    for (const auto& route : routes_) {
        if (route.segments.size() != segments.size()) continue;
        std::map<std::string, std::string> params;
        bool ok = true;
        for (size_t i = 0; ok && i < segments.size(); ++i) {
            const std::string& want = route.segments[i];
            if (want.size() > 2 && want.front() == '{' && want.back() == '}')
                params[want.substr(1, want.size() - 2)] = percent_decode(segments[i]);
            else
                ok = want == segments[i];
        }
        if (!ok) continue;
        path_matched = true;
        if (route.method != request.method) continue;
        request.params = std::move(params);
        try {
            return route.handler(request);
        } catch (const json::exception& e) {
            return error(400, "bad_request", std::string("invalid JSON value: ") + e.what());
        } catch (const std::exception& e) {
            return error(500, "internal", e.what());
        } catch (...) {
            return error(500, "internal",
                         "the handler of " + request.method + " " + request.path +
                             " failed with an exception that is not a std::exception");
        }
    }
    if (path_matched) return error(405, "method_not_allowed", request.method + " is not allowed on " + request.path);
    return error(404, "not_found", "no such endpoint: " + request.path);
}

Result<SocketState> probe_socket(const std::string& path) {
    sockaddr_un addr{};
    if (path.empty() || path.size() >= sizeof addr.sun_path) return fail("socket path too long: " + path, EINVAL);
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size());
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) {
        if (errno == ENOENT) return SocketState::kAbsent;
        return fail_errno(path);
    }
    if (!S_ISSOCK(st.st_mode)) return SocketState::kNotSocket;
    Fd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!probe) return fail_errno("socket");
    // Non-blocking: a live server with a full backlog answers EAGAIN.
    int r = ::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    if (r == 0 || errno == EAGAIN) return SocketState::kLive;
    if (errno == ECONNREFUSED) return SocketState::kStale;  // nobody accepts: its process died
    if (errno == ENOENT) return SocketState::kAbsent;
    return fail_errno(path + ": cannot tell whether another process serves this socket");
}

Result<std::unique_ptr<Server>> Server::listen(const std::string& socket_path, Router router, ServerOptions options) {
    sockaddr_un addr{};
    if (socket_path.empty() || socket_path.size() >= sizeof addr.sun_path)
        return fail("socket path must be 1-" + std::to_string(sizeof addr.sun_path - 1) + " bytes: " + socket_path,
                    EINVAL);
    Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return fail_errno("socket");
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size());
    // A socket file left by a process that died is replaced; anything
    // else at the path is left alone.
    auto state = probe_socket(socket_path);
    if (!state) return std::unexpected(state.error());
    switch (*state) {
        case SocketState::kAbsent: break;
        case SocketState::kNotSocket:
            return fail(socket_path + ": exists and is not a socket; remove it or choose another path", EEXIST);
        case SocketState::kLive: return fail(socket_path + ": another process is serving this socket", EADDRINUSE);
        case SocketState::kStale:
            if (::unlink(socket_path.c_str()) != 0 && errno != ENOENT)
                return fail_errno("removing the stale socket " + socket_path);
            break;
    }
    struct stat st;
    mode_t old = ::umask(0077);
    int r = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::umask(old);
    if (r < 0) return fail_errno("bind " + socket_path);
    // From here on the file is ours: remove it on every way out.
    auto s = std::make_unique<Server>(Key{});
    s->path_ = socket_path;
    if (::lstat(socket_path.c_str(), &st) != 0) return fail_errno("stat " + socket_path);
    s->dev_ = st.st_dev;
    s->ino_ = st.st_ino;
    if (::listen(fd.get(), 128) < 0) return fail_errno("listen " + socket_path);
    s->listen_fd_ = std::move(fd);
    s->router_ = std::move(router);
    s->options_ = options;
    return s;
}

Server::~Server() { stop(); }

void Server::start() {
    acceptor_ = std::thread([this] { accept_loop(); });
}

void Server::stop() {
    if (stopping_.exchange(true)) return;
    if (acceptor_.joinable()) acceptor_.join();
    while (active_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    // Only the socket this server bound: the path may have been taken over
    // since (another server, or a file someone put there).
    struct stat st;
    if (!path_.empty() && ::lstat(path_.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == dev_ &&
        st.st_ino == ino_)
        ::unlink(path_.c_str());
}

void Server::accept_loop() {
    while (!stopping_) {
        if (!wait_fd(listen_fd_.get(), POLLIN, std::chrono::milliseconds(200))) continue;
        Fd conn(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!conn) {
            // Out of descriptors or memory: the pending connection stays
            // readable, so wait instead of spinning on it.
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                std::this_thread::sleep_for(std::chrono::milliseconds(50));
            continue;
        }
        if (active_ >= options_.max_connections) {
            send_all(conn.get(), serialize(error(503, "busy", "too many connections"), false), std::chrono::seconds(1));
            continue;
        }
        ++active_;
        try {
            std::thread([this, fd = conn.get()] {
                {
                    Fd owned(fd);
                    serve_connection(fd);
                }
                --active_;
            }).detach();
            conn.release();  // the thread owns it now
        } catch (const std::system_error& e) {
            --active_;
            send_all(
                conn.get(),
                serialize(error(503, "busy", std::string("cannot start a thread for this connection: ") + e.what()),
                          false),
                std::chrono::seconds(1));
        }
    }
}

// Malformed input is answered inside serve(); an exception reaching here is
// a bug or an exhausted host (bad_alloc). It drops this connection only:
// escaping the thread would be std::terminate for the whole VMM or daemon.
void Server::serve_connection(int fd) {
    try {
        serve(fd);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "vessel api: %s: connection dropped after an internal error: %s\n", path_.c_str(),
                     e.what());
    } catch (...) {
        std::fprintf(stderr, "vessel api: %s: connection dropped after an unknown exception\n", path_.c_str());
    }
}

void Server::serve(int fd) {
    std::string buffer;
    auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(options_.io_timeout);
    while (!stopping_) {
        http::request_parser<http::string_body> parser;
        parser.body_limit(options_.max_body);
        parser.header_limit(static_cast<uint32_t>(options_.max_header));
        bool timed_out = false;
        std::vector<std::shared_ptr<Fd>> fds;
        auto ec = read_message(fd, parser, buffer, timeout, &stopping_, timed_out, &fds);
        if (ec == http::error::end_of_stream) return;
        if (ec) {
            Response r;
            if (timed_out)
                r = error(408, "timeout", "request not received in time");
            else if (ec == http::error::body_limit)
                r = error(413, "too_large", "request body exceeds " + std::to_string(options_.max_body) + " bytes");
            else if (ec == http::error::header_limit)
                r = error(431, "header_too_large", "request header too large");
            else
                r = error(400, "bad_request", "malformed HTTP request: " + ec.message());
            send_all(fd, serialize(r, false), timeout);
            return;
        }
        // Beast reads a body of another transfer coding as no body at all,
        // and its bytes as the next request (RFC 9112 6.1: answer 400).
        if (!parser.chunked() && parser.get().count(http::field::transfer_encoding)) {
            send_all(fd,
                     serialize(error(400, "bad_request", "Transfer-Encoding: only \"chunked\" is supported"), false),
                     timeout);
            return;
        }
        auto msg = parser.release();
        Request req;
        req.method = std::string(msg.method_string());
        auto target = parse_target(std::string_view(msg.target().data(), msg.target().size()), req);
        req.body = std::move(msg.body());
        req.fds = std::move(fds);
        Response r;
        auto ct = msg[http::field::content_type];
        if (!target)
            r = error(400, "bad_request", target.error().message);
        else if (!req.body.empty() && !ct.empty() && ct.find("json") == boost::beast::string_view::npos)
            r = error(415, "unsupported_media_type", "request bodies must be application/json");
        else
            r = router_.dispatch(req);
        bool keep = msg.keep_alive();
        if (!send_all(fd, serialize(r, keep), timeout) || !keep) return;
    }
}

Result<Response> call(const std::string& socket_path, const std::string& method, const std::string& target,
                      const json* body, std::chrono::milliseconds timeout, int pass_fd) {
    sockaddr_un addr{};
    if (socket_path.size() >= sizeof addr.sun_path) return fail("socket path too long: " + socket_path, EINVAL);
    Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return fail_errno("socket");
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size());
    // What would end the request line early (or start a header) is refused,
    // not sent: the request must be the one the caller meant.
    auto is_tchar = [](unsigned char c) { return std::isalnum(c) || std::strchr("!#$%&'*+-.^_`|~", c); };
    if (method.empty() || !std::all_of(method.begin(), method.end(), [&](unsigned char c) { return c && is_tchar(c); }))
        return fail("invalid HTTP method \"" + method + "\"", EINVAL);
    if (!target.starts_with('/') ||
        !std::all_of(target.begin(), target.end(), [](unsigned char c) { return c > 0x20 && c < 0x7f; }))
        return fail("invalid request target \"" + target +
                        "\": it must start with '/' and percent-encode spaces, control characters and non-ASCII bytes",
                    EINVAL);
    std::string payload;
    if (body) {
        try {
            payload = body->dump();
        } catch (const json::type_error& e) {
            return fail(
                method + " " + target + ": the request body is not UTF-8 text (JSON carries nothing else): " + e.what(),
                EINVAL);
        }
    }
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0)
        return fail_errno("connect " + socket_path);
    std::string req = method + " " + target + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n";
    if (body) req += "Content-Type: application/json\r\n";
    req += "Content-Length: " + std::to_string(payload.size()) + "\r\n\r\n" + payload;
    if (pass_fd >= 0) {  // with the first bytes; the rest follows as usual
        iovec iov{req.data(), req.size()};
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
        ssize_t n = ::sendmsg(fd.get(), &msg, MSG_NOSIGNAL);
        if (n <= 0) return fail_errno("sending to " + socket_path);
        req.erase(0, static_cast<size_t>(n));
    }
    if (!req.empty() && !send_all(fd.get(), req, timeout, true))
        return fail("sending to " + socket_path + " failed", EIO);
    http::response_parser<http::string_body> parser;
    parser.body_limit(256ull << 20);
    std::string buffer;
    bool timed_out = false;
    auto ec = read_message(fd.get(), parser, buffer, timeout, nullptr, timed_out);
    if (timed_out) return fail("no answer from " + socket_path + " in time", ETIMEDOUT);
    if (ec) return fail("bad answer from " + socket_path + ": " + ec.message(), EPROTO);
    auto msg = parser.release();
    Response r;
    r.status = static_cast<int>(msg.result_int());
    r.content_type = std::string(msg[http::field::content_type]);
    if (r.content_type.find("json") != std::string::npos) {
        r.body = json::parse(msg.body(), nullptr, false);
        if (r.body.is_discarded()) return fail("invalid JSON from " + socket_path, EPROTO);
    } else {
        r.raw = std::move(msg.body());
    }
    return r;
}

}  // namespace vessel::api

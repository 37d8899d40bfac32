// HTTP/1.1 + JSON over a Unix socket: the control plane's only transport.
//
// Used by every VMM process (its control API) and by the host daemon. The
// server answers every malformed, oversized or unroutable request with a 4xx
// and a JSON error body, and never lets one connection take it down.
#pragma once

#include <sys/types.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/fd.h"
#include "base/result.h"

namespace vessel::api {

using json = nlohmann::json;

struct Request {
    std::string method;                         // "GET", "PUT", ...
    std::string path;                           // without the query
    std::map<std::string, std::string> params;  // {name} segments of the route
    std::map<std::string, std::string> query;   // ?a=b&c=d
    std::string body;
    // Descriptors the client passed with the request (SCM_RIGHTS on the Unix
    // socket, at most kMaxPassedFds; closed when the request is done).
    std::vector<std::shared_ptr<Fd>> fds;
    // Parses the body as a JSON object; an empty body is {}.
    Result<json> json_body() const;
};

struct Response {
    int status = 200;
    json body = json::object();
    std::string content_type = "application/json";
    std::string raw;  // sent instead of body when content_type is not JSON
};

// {"error": {"code": CODE, "message": MESSAGE}} with the given status.
Response error(int status, const std::string& code, const std::string& message);

using Handler = std::function<Response(const Request&)>;

class Router {
public:
    // `pattern` is a path whose segments may be {name} placeholders.
    void add(const std::string& method, const std::string& pattern, Handler handler);
    // 404 for an unknown path, 405 when the path exists for other methods.
    Response dispatch(Request& request) const;

private:
    struct Route {
        std::string method;
        std::vector<std::string> segments;
        Handler handler;
    };
    std::vector<Route> routes_;
};

struct ServerOptions {
    size_t max_body = 64 * 1024;
    size_t max_header = 8 * 1024;
    std::chrono::seconds io_timeout{10};
    unsigned max_connections = 64;
};

// What is at a Unix socket path: nothing, a socket a process accepts on, a
// stale socket (its process died), or something else.
enum class SocketState { kAbsent, kLive, kStale, kNotSocket };
Result<SocketState> probe_socket(const std::string& path);

class Server {
    struct Key {};  // only listen() makes a Server

public:
    // Binds `socket_path` with mode 0600, replacing a stale socket file (one
    // nobody accepts on). Refuses, touching nothing, when the path is live
    // or is not a socket.
    static Result<std::unique_ptr<Server>> listen(const std::string& socket_path, Router router,
                                                  ServerOptions options = {});
    explicit Server(Key) {}
    ~Server();

    // Accepts connections on a background thread, one thread per connection.
    void start();
    // Stops accepting, waits for connection threads and removes the socket
    // file if it is still the one this server bound.
    void stop();
    const std::string& path() const { return path_; }

private:
    void accept_loop();
    void serve_connection(int fd);
    void serve(int fd);

    std::string path_;
    dev_t dev_ = 0;  // the socket file bound, to tell it from a replacement
    ino_t ino_ = 0;
    Fd listen_fd_;
    Router router_;
    ServerOptions options_;
    std::thread acceptor_;
    std::atomic<bool> stopping_{false};
    std::atomic<unsigned> active_{0};
};

// One request over a fresh connection. Transport failures are errors;
// HTTP error statuses come back as responses.
// `pass_fd` (if not -1) travels with the request as SCM_RIGHTS: a directory
// a jailed VMM is to write a snapshot into, say.
Result<Response> call(const std::string& socket_path, const std::string& method, const std::string& target,
                      const json* body = nullptr, std::chrono::milliseconds timeout = std::chrono::seconds(30),
                      int pass_fd = -1);

inline constexpr size_t kMaxPassedFds = 4;

}  // namespace vessel::api

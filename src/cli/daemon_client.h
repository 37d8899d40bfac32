// Talking to vesseld from the `vessel` command: the socket to use, calls with
// the error messages users see, detached run/restore, and a progress line.
#pragma once

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "api/http.h"

namespace vessel::cli {

inline constexpr const char* kDefaultDaemonSocket = "/run/vessel/vesseld.sock";

// `flag` if set, else $VESSEL_DAEMON_SOCKET, else /run/vessel/vesseld.sock.
std::string daemon_socket(const std::string& flag = "");

// One request to the daemon. On failure prints the reason ("cannot reach
// vesseld at PATH — start it with `vesseld`", or the daemon's error message)
// and returns nullopt; `status` is set to the exit status to use.
std::optional<api::Response> daemon_request(const std::string& socket, const std::string& method,
                                            const std::string& target, const nlohmann::json* body, int& status,
                                            std::chrono::milliseconds timeout = std::chrono::seconds(60));

// `vessel run -d`: creates a VM through the daemon from a POST /vms body
// ({"program": ..., "args": [...], "mem": ..., "root": ..., "rw": [...],
// "env": {...}, "name": ..., "limits": {...}}; see docs/api.md) and prints
// its id. Returns the exit status for the command.
int run_detached(const nlohmann::json& spec, const std::string& socket = "");

// `vessel restore -d DIR [--name NAME]`: restores a snapshot as a new VM
// under the daemon, with a progress display, and prints its id.
int restore_detached(const std::string& dir, const std::string& name, const std::string& socket = "");

// A one-line progress indicator for long operations: a spinner with the
// elapsed time on a terminal, plain start/finish lines otherwise.
class Progress {
public:
    explicit Progress(std::string label);
    ~Progress();
    // Ends the display with "LABEL: RESULT (1.23s)".
    void done(const std::string& result);

private:
    std::string label_;
    std::chrono::steady_clock::time_point start_;
    bool tty_;
    std::atomic<bool> stop_{false};
    std::thread spinner_;
    bool finished_ = false;
};

}  // namespace vessel::cli

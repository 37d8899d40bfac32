#include "cli/daemon_client.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "machine/exit_status.h"

namespace vessel::cli {

std::string daemon_socket(const std::string& flag) {
    if (!flag.empty()) return flag;
    const char* env = std::getenv("VESSEL_DAEMON_SOCKET");
    return env && *env ? env : kDefaultDaemonSocket;
}

std::optional<api::Response> daemon_request(const std::string& socket, const std::string& method,
                                            const std::string& target, const nlohmann::json* body, int& status,
                                            std::chrono::milliseconds timeout) {
    auto r = api::call(socket, method, target, body, timeout);
    if (!r) {
        int e = r.error().sys_errno;
        if (e == ENOENT || e == ECONNREFUSED || e == EACCES || e == ENOTDIR)
            std::fprintf(stderr, "vessel: cannot reach vesseld at %s — start it with `vesseld` (%s)\n", socket.c_str(),
                         r.error().message.c_str());
        else
            std::fprintf(stderr, "vessel: vesseld at %s: %s\n", socket.c_str(), r.error().message.c_str());
        status = kExitHostError;
        return std::nullopt;
    }
    if (r->status >= 400) {
        std::string msg = "HTTP " + std::to_string(r->status);
        if (r->body.is_object() && r->body.contains("error") && r->body["error"].is_object())
            msg = r->body["error"].value("message", msg);
        std::fprintf(stderr, "vessel: %s\n", msg.c_str());
        status = 1;
        return std::nullopt;
    }
    status = 0;
    return std::move(*r);
}

namespace {

int report_created(const api::Response& r) {
    const auto& vm = r.body;
    std::printf("%s\n", vm.value("id", "").c_str());
    if (vm.value("state", "") == "exited") {
        std::fprintf(stderr, "vessel: VM %s exited at once (status %s); see `vessel logs %s`\n",
                     vm.value("id", "").c_str(), vm["exit_status"].dump().c_str(), vm.value("id", "").c_str());
        int st = vm["exit_status"].is_number_integer() ? vm["exit_status"].get<int>() : 1;
        return st == 0 ? 0 : st;
    }
    return 0;
}

}  // namespace

int run_detached(const nlohmann::json& spec, const std::string& socket) {
    int status = 0;
    auto r = daemon_request(daemon_socket(socket), "POST", "/vms", &spec, status);
    if (!r) return status;
    return report_created(*r);
}

int restore_detached(const std::string& dir, const std::string& name, const std::string& socket) {
    nlohmann::json body = {{"path", dir}};
    if (!name.empty()) body["name"] = name;
    int status = 0;
    std::optional<api::Response> r;
    {
        Progress p("restoring " + dir);
        r = daemon_request(daemon_socket(socket), "POST", "/vms/restore", &body, status, std::chrono::minutes(30));
        p.done(r ? "restored" : "failed");
    }
    if (!r) return status;
    return report_created(*r);
}

Progress::Progress(std::string label)
    : label_(std::move(label)), start_(std::chrono::steady_clock::now()), tty_(::isatty(2) == 1) {
    if (!tty_) {
        std::fprintf(stderr, "%s...\n", label_.c_str());
        return;
    }
    spinner_ = std::thread([this] {
        static const char* frames[] = {"|", "/", "-", "\\"};
        for (unsigned i = 0; !stop_; ++i) {
            double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
            std::fprintf(stderr, "\r\033[K%s %s %.1fs", frames[i % 4], label_.c_str(), s);
            std::fflush(stderr);
            for (int k = 0; k < 10 && !stop_; ++k) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    });
}

void Progress::done(const std::string& result) {
    if (finished_) return;
    finished_ = true;
    stop_ = true;
    if (spinner_.joinable()) spinner_.join();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    std::fprintf(stderr, "%s%s: %s (%.2fs)\n", tty_ ? "\r\033[K" : "", label_.c_str(), result.c_str(), s);
}

Progress::~Progress() {
    if (!finished_) done("interrupted");
}

}  // namespace vessel::cli

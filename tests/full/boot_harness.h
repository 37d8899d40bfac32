// What the full-machine tests share: the `vessel` binary, Debian's test
// kernel (fetched once by scripts/fetch-test-kernel into a cache) and small
// helpers to run vessel in the background and read what it wrote.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace vessel::testing {

inline const std::string kVessel = std::string(VESSEL_BINARY_DIR) + "/bin/vessel";
inline const std::string kFetchKernel = std::string(VESSEL_SOURCE_DIR) + "/scripts/fetch-test-kernel";

inline std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

// The directory holding vmlinux and bzImage, or "" with the reason in `why`.
inline std::string kernel_dir(std::string& why) {
    static std::string dir, error;
    static bool done = false;
    if (!done) {
        done = true;
        std::string cmd = kFetchKernel + " 2>&1";
        FILE* p = ::popen(cmd.c_str(), "r");
        std::string output;
        char buf[512];
        while (p && std::fgets(buf, sizeof buf, p)) output += buf;
        int status = p ? ::pclose(p) : -1;
        while (!output.empty() && output.back() == '\n') output.pop_back();
        if (status == 0 && !output.empty()) {
            dir = output.substr(output.rfind('\n') + 1);
        } else {
            error = "cannot obtain the test kernel (" + kFetchKernel + "): " + output;
        }
    }
    why = error;
    return dir;
}

// The last `lines` lines of `s`.
inline std::string tail(const std::string& s, size_t lines = 15) {
    size_t pos = s.size();
    for (size_t i = 0; i <= lines && pos != std::string::npos && pos > 0; ++i) pos = s.rfind('\n', pos - 1);
    return pos == std::string::npos ? s : s.substr(pos + 1);
}

// Polls `done` every 200 ms for up to `seconds`.
template <class F>
bool wait_for(F&& done, int seconds) {
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (!done() && std::chrono::steady_clock::now() < end)
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
    return done();
}

// `vessel ARGS...` in the background, stdin from /dev/null, stderr to a file.
class VesselProcess {
public:
    VesselProcess(const std::vector<std::string>& args, const std::string& stderr_path) {
        std::vector<std::string> argv = {kVessel};
        argv.insert(argv.end(), args.begin(), args.end());
        pid_ = ::fork();
        if (pid_ == 0) {
            int fd = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            ::dup2(fd, 2);
            int null = ::open("/dev/null", O_RDONLY);
            ::dup2(null, 0);
            std::vector<char*> cargv;
            for (auto& a : argv) cargv.push_back(a.data());
            cargv.push_back(nullptr);
            ::execv(cargv[0], cargv.data());
            ::_exit(127);
        }
    }
    ~VesselProcess() { kill9(); }
    // The exit status once it has ended (128+N for signal N), or -1 while it runs.
    int poll() {
        if (pid_ > 0) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            }
        }
        return status_;
    }
    // Waits up to `seconds` for the end; -1 if it still runs.
    int wait(int seconds) {
        wait_for([&] { return poll() >= 0; }, seconds);
        return poll();
    }
    void signal(int sig) {
        if (pid_ > 0) ::kill(pid_, sig);
    }
    pid_t pid() const { return pid_; }
    void kill9() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGKILL);
        int status = 0;
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
        status_ = 128 + SIGKILL;
    }

private:
    pid_t pid_ = -1;
    int status_ = -1;
};

}  // namespace vessel::testing

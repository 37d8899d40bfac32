// What the api tests share: a scratch directory per test, and a server
// program (vesseld, vessel run --api-sock) run as a child of the test.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "api/http.h"

extern char** environ;

namespace vessel::test {

// The whole file ("" if it cannot be read).
inline std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// A fresh directory in /tmp for each test, removed after it.
class ScratchDirTest : public ::testing::Test {
protected:
    void SetUp() override {
        std::string tmpl = std::filesystem::temp_directory_path() / "vessel-api-test-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override {
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
    std::string dir_;
};

// A program with its stdout and stderr in `log`; SIGTERM at the end.
class Child {
public:
    Child(std::vector<std::string> argv, const std::string& log) : log_(log) {
        std::vector<char*> args;
        for (auto& a : argv) args.push_back(a.data());
        args.push_back(nullptr);
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 1, log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        posix_spawn_file_actions_adddup2(&fa, 1, 2);
        EXPECT_EQ(posix_spawn(&pid_, argv[0].c_str(), &fa, nullptr, args.data(), environ), 0) << argv[0];
        posix_spawn_file_actions_destroy(&fa);
    }
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;
    ~Child() { stop(); }

    // Waits until `GET target` on `socket` answers 200 (true) or the
    // program exits or 5 s pass (false).
    bool serving(const std::string& socket, const std::string& target) {
        for (int i = 0; i < 500; ++i) {
            auto r = api::call(socket, "GET", target, nullptr, std::chrono::seconds(1));
            if (r && r->status == 200) return true;
            if (!alive()) return false;
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        return false;
    }
    bool alive() {
        int st;
        if (pid_ <= 0) return false;
        if (::waitpid(pid_, &st, WNOHANG) == 0) return true;
        status_ = st;
        pid_ = -1;
        return false;
    }
    // The exit status (128 + N after signal N).
    int wait() {
        if (pid_ > 0 && ::waitpid(pid_, &status_, 0) == pid_) pid_ = -1;
        return WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
    }
    // `sig`, then the exit status.
    int stop(int sig = SIGTERM) {
        if (pid_ > 0) ::kill(pid_, sig);
        return wait();
    }
    std::string log() const { return read_file(log_); }

private:
    std::string log_;
    pid_t pid_ = -1;
    int status_ = 0;
};

}  // namespace vessel::test

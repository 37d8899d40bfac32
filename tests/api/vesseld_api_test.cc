// vesseld's socket under malformed requests, and a second vesseld refused
// on a path that is not its own, with no VM created: runs without /dev/kvm
// (`--vessel /bin/true`: the daemon only checks that it is executable).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "api/http.h"
#include "malformed.h"

extern char** environ;

namespace vessel {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const std::string kVesseld = VESSEL_BINARY_DIR "/bin/vesseld";

// A vesseld child on `socket`, with its state under `dir`; stderr to dir/NAME.log.
class Vesseld {
public:
    Vesseld(const std::string& dir, const std::string& socket, const std::string& name)
        : log_(dir + "/" + name + ".log") {
        std::vector<std::string> args = {kVesseld,     "--socket",    socket,       "--state-dir",
                                         dir + "/" + name + "-state", "--run-dir", dir + "/" + name + "-run",
                                         "--no-cgroups", "--vessel", "/bin/true", "--vmm-api", "no"};
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 2, log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        EXPECT_EQ(posix_spawn(&pid_, kVesseld.c_str(), &fa, nullptr, argv.data(), environ), 0);
        posix_spawn_file_actions_destroy(&fa);
    }
    ~Vesseld() { stop(); }
    // SIGTERM, then the exit status.
    int stop() {
        if (pid_ > 0) ::kill(pid_, SIGTERM);
        return wait();
    }
    // Waits until GET /vms answers 200 (true) or the process exits (false).
    bool serving(const std::string& socket) {
        for (int i = 0; i < 500; ++i) {
            auto r = api::call(socket, "GET", "/vms", nullptr, 1s);
            if (r && r->status == 200) return true;
            if (!alive()) return false;
            std::this_thread::sleep_for(10ms);
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
    // The exit status (128 + signal for a signal).
    int wait() {
        if (pid_ > 0 && ::waitpid(pid_, &status_, 0) == pid_) pid_ = -1;
        return WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
    }
    std::string log() const {
        std::ifstream in(log_);
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str();
    }

private:
    std::string log_;
    pid_t pid_ = -1;
    int status_ = 0;
};

class VesseldApiTest : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/vesseld-api-test-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        sock_ = dir_ + "/d.sock";
    }
    void TearDown() override { fs::remove_all(dir_); }
    std::string dir_, sock_;
};

TEST_F(VesseldApiTest, SurvivesMalformedBytesInEveryPositionOfARequest) {
    Vesseld d(dir_, sock_, "first");
    ASSERT_TRUE(d.serving(sock_)) << d.log();
    for (const auto& bad : test::bad_requests({"/vms", "/vms/", "/vms/0123456789ab/stop"})) {
        std::string reply = test::raw_exchange(sock_, bad.bytes);
        EXPECT_EQ(test::judge(bad, reply), "") << bad.what << ": " << test::printable(reply);
        ASSERT_TRUE(d.alive()) << "vesseld died after: " << bad.what << "\n" << d.log();
        auto r = api::call(sock_, "GET", "/vms", nullptr, 5s);
        ASSERT_TRUE(r && r->status == 200) << "vesseld stopped answering after: " << bad.what;
    }
    // The daemon's own not-found message names the id it was given: text only.
    auto r = api::call(sock_, "DELETE", "/vms/%c0%80", nullptr, 5s);
    ASSERT_TRUE(r.has_value()) << r.error().message;
    EXPECT_EQ(r->status, 400);
    EXPECT_EQ(d.stop(), 0) << d.log();
}

TEST_F(VesseldApiTest, ASecondVesseldOnALiveSocketLeavesTheFirstServing) {
    Vesseld first(dir_, sock_, "first");
    ASSERT_TRUE(first.serving(sock_)) << first.log();
    Vesseld second(dir_, sock_, "second");
    EXPECT_EQ(second.wait(), 1);
    EXPECT_NE(second.log().find("another process is serving this socket"), std::string::npos) << second.log();
    EXPECT_TRUE(fs::exists(sock_)) << "the refused vesseld removed the live daemon's socket";
    auto r = api::call(sock_, "GET", "/vms", nullptr, 5s);
    EXPECT_TRUE(r && r->status == 200) << "the first vesseld no longer answers";
}

TEST_F(VesseldApiTest, ARegularFileGivenAsTheSocketIsLeftAlone) {
    { std::ofstream(sock_) << "precious"; }
    Vesseld d(dir_, sock_, "first");
    EXPECT_EQ(d.wait(), 1);
    EXPECT_NE(d.log().find("exists and is not a socket"), std::string::npos) << d.log();
    std::ifstream in(sock_);
    std::string content;
    in >> content;
    EXPECT_EQ(content, "precious") << sock_ << " was removed by a vesseld that refused it";
}

}  // namespace
}  // namespace vessel

// vesseld's socket under malformed requests, and a second vesseld refused
// on a path that is not its own, with no VM created: runs without /dev/kvm
// (`--vessel /bin/true`: the daemon only checks that it is executable).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iostream>

#include "api/http.h"
#include "harness.h"
#include "malformed.h"

namespace vessel {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const std::string kVesseld = VESSEL_BINARY_DIR "/bin/vesseld";

// A vesseld on `socket`, its state under `dir`, its log dir/NAME.log.
class Vesseld : public test::Child {
public:
    Vesseld(const std::string& dir, const std::string& socket, const std::string& name)
        : Child({kVesseld, "--socket", socket, "--state-dir", dir + "/" + name + "-state", "--run-dir",
                 dir + "/" + name + "-run", "--no-cgroups", "--vessel", "/bin/true", "--vmm-api", "no"},
                dir + "/" + name + ".log") {}
};

class VesseldApiTest : public test::ScratchDirTest {
protected:
    void SetUp() override {
        ScratchDirTest::SetUp();
        sock_ = dir_ + "/d.sock";
    }
    std::string sock_;
};

TEST_F(VesseldApiTest, SurvivesMalformedBytesInEveryPositionOfARequest) {
    Vesseld d(dir_, sock_, "first");
    ASSERT_TRUE(d.serving(sock_, "/vms")) << d.log();
    test::expect_survives_bad_requests(sock_, {"/vms", "/vms/", "/vms/0123456789ab/stop"}, [&] { return d.alive(); });
    if (HasFatalFailure()) std::cerr << d.log();
    // The daemon's own not-found message names the id it was given: text only.
    auto r = api::call(sock_, "DELETE", "/vms/%c0%80", nullptr, 5s);
    ASSERT_TRUE(r.has_value()) << r.error().message;
    EXPECT_EQ(r->status, 400);
    EXPECT_EQ(d.stop(), 0) << d.log();
}

TEST_F(VesseldApiTest, ASecondVesseldOnALiveSocketLeavesTheFirstServing) {
    Vesseld first(dir_, sock_, "first");
    ASSERT_TRUE(first.serving(sock_, "/vms")) << first.log();
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
    EXPECT_EQ(test::read_file(sock_), "precious") << sock_ << " was removed by a vesseld that refused it";
}

}  // namespace
}  // namespace vessel

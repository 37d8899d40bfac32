// A VMM's --api-sock under the malformed requests of malformed.h: the VM
// keeps running and answers afterwards, and `vessel run` leaves a file it
// refuses as its socket alone. Boots a thin VM on /dev/kvm.
#include <gtest/gtest.h>

#include <unistd.h>
#include <fstream>

#include "api/http.h"
#include "harness.h"
#include "malformed.h"

namespace vessel {
namespace {

using namespace std::chrono_literals;

const std::string kVessel = VESSEL_BINARY_DIR "/bin/vessel";
const std::string kCounter = COUNTER_GUEST;

class VmmApiTest : public test::ScratchDirTest {
protected:
    void SetUp() override {
        ASSERT_EQ(::access("/dev/kvm", R_OK | W_OK), 0) << "/dev/kvm is not usable: these tests boot real VMs";
        ScratchDirTest::SetUp();
        sock_ = dir_ + "/api.sock";
    }
    std::string sock_;
};

TEST_F(VmmApiTest, SurvivesMalformedBytesInEveryPositionOfARequest) {
    // A guest that runs for minutes unless stopped.
    test::Child vm({kVessel, "run", "--api-sock", sock_, kCounter, "100000", "20"}, dir_ + "/vm.log");
    ASSERT_TRUE(vm.serving(sock_, "/vm")) << vm.log();
    // /vm/snapshot takes a body; every body below is refused before the VM
    // is touched (and the VM is running, so no snapshot could be taken).
    test::expect_survives_bad_requests(sock_, {"/vm", "/vm/", "/vm/snapshot"}, [&] { return vm.alive(); });
    if (HasFatalFailure()) return;
    auto r = api::call(sock_, "GET", "/vm", nullptr, 5s);
    ASSERT_TRUE(r.has_value()) << r.error().message;
    EXPECT_EQ(r->body["state"], "running") << r->body.dump();
    r = api::call(sock_, "PUT", "/vm/shutdown", nullptr, 5s);
    ASSERT_TRUE(r.has_value()) << r.error().message;
    EXPECT_EQ(r->status, 202);
    EXPECT_EQ(vm.wait(), 143) << vm.log();
}

TEST_F(VmmApiTest, ARegularFileGivenAsTheApiSocketIsLeftAlone) {
    { std::ofstream(sock_) << "precious"; }
    test::Child vm({kVessel, "run", "--api-sock", sock_, kCounter, "3", "1"}, dir_ + "/vm.log");
    EXPECT_NE(vm.wait(), 0) << vm.log();
    EXPECT_NE(vm.log().find("exists and is not a socket"), std::string::npos) << vm.log();
    EXPECT_EQ(test::read_file(sock_), "precious") << sock_ << " was removed by a VMM that refused it";
}

}  // namespace
}  // namespace vessel

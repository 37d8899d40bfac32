// The jail around a real VMM (machine/confine.h, jail/): what a VMM a guest had
// taken over could still reach, reported from inside by the test hook
// (VESSEL_JAIL_SELFTEST=1, right after the jail is locked), and that a
// jailed VM runs and ends as before.
#include <nlohmann/json.hpp>

#include "../jail/expect_jailed.h"
#include "harness.h"

namespace vessel::test {
namespace {

std::vector<std::string> env_with(const std::string& extra) {
    auto env = fixed_env();
    env.push_back(extra);
    return env;
}

TEST(Jail, AJailedVmmReachesNothingOfTheHost) {
    TempDir dir;
    RunOptions o;
    o.env = env_with("VESSEL_JAIL_SELFTEST=1");
    auto r = run_vessel({"--rw", dir.path() + ":/data"}, {"/bin/busybox", "true"}, o);
    ASSERT_EQ(r.status, 0) << r.err;
    expect_jailed(nlohmann::json::parse(r.out, nullptr, false));
}

TEST(Jail, AsAnotherUserTheVmmCannotBecomeRootAgain) {
    RunOptions o;
    o.env = env_with("VESSEL_JAIL_SELFTEST=1");
    auto r = run_vessel({"--uid", "65534"}, {"/bin/busybox", "true"}, o);
    ASSERT_EQ(r.status, 0) << r.err;
    auto report = nlohmann::json::parse(r.out, nullptr, false);
    ASSERT_TRUE(report.is_object()) << r.out;
    EXPECT_EQ(report["can_become_root"], false);
    EXPECT_EQ(report["has_capabilities"], false);
}

// The guest sees its --rw directory through the jail's bind mount, and the
// exit status comes back through the jail's parent.
TEST(Jail, AJailedGuestWritesItsRwDirectoryAndExitsWithItsStatus) {
    TempDir dir;
    auto r = run_vessel({"--rw", dir.path() + ":/data"}, {"/bin/busybox", "sh", "-c", "echo hi > /data/out; exit 7"});
    EXPECT_EQ(r.status, 7) << r.err;
    EXPECT_EQ(read_file(dir / "out"), "hi\n");
}

TEST(Jail, NoJailRunsTheSameProgram) {
    auto jailed = run_vessel({}, {"/bin/busybox", "echo", "same"});
    auto free = run_vessel({"--no-jail"}, {"/bin/busybox", "echo", "same"});
    EXPECT_EQ(jailed.status, 0) << jailed.err;
    EXPECT_EQ(free.status, 0) << free.err;
    EXPECT_EQ(jailed.out, free.out);
}

}  // namespace
}  // namespace vessel::test

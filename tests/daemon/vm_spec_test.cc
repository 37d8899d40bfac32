// The `vessel run` command line vesseld builds from a VM spec: everything
// the spec says, except the environment, which every local user could read
// in /proc/PID/cmdline; that goes through an owner-only --env-file.
#include "daemon/vm_spec.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace vessel::daemon {
namespace {

TEST(VmmArguments, TheEnvironmentNeverReachesTheCommandLine) {
    auto spec = parse_create({{"program", "/bin/busybox"},
                              {"args", {"env"}},
                              {"env", {{"SECRET", "hunter2"}, {"OTHER", "x"}}},
                              {"mem", "32M"}});
    ASSERT_TRUE(spec) << spec.error().message;
    const auto args = vmm_arguments(*spec, "/run/x.sock", "/state/vms/abc/env");
    for (const auto& a : args) {
        EXPECT_EQ(a.find("hunter2"), std::string::npos) << a;
        EXPECT_NE(a, "--env");
    }
    auto it = std::find(args.begin(), args.end(), "--env-file");
    ASSERT_NE(it, args.end());
    EXPECT_EQ(*(it + 1), "/state/vms/abc/env");
    EXPECT_EQ(args.back(), "env");  // the program's own arguments come last
    // No file, no flag: a spec without environment.
    spec->env.clear();
    const auto plain = vmm_arguments(*spec, "");
    EXPECT_EQ(std::find(plain.begin(), plain.end(), "--env-file"), plain.end());
}

// workdir and user: the guest's, passed on as --workdir and --user; checked
// for shape here (the VMM checks the directory in its sandbox).
TEST(VmmArguments, WorkdirAndUserAreChecked) {
    auto spec = parse_create({{"program", "/bin/busybox"}, {"workdir", "/tmp"}, {"user", "1000:100"}});
    ASSERT_TRUE(spec) << spec.error().message;
    const auto args = vmm_arguments(*spec, "");
    auto w = std::find(args.begin(), args.end(), "--workdir");
    ASSERT_NE(w, args.end());
    EXPECT_EQ(*(w + 1), "/tmp");
    auto u = std::find(args.begin(), args.end(), "--user");
    ASSERT_NE(u, args.end());
    EXPECT_EQ(*(u + 1), "1000:100");
    EXPECT_EQ(spec_from_json(spec->to_json()).workdir, "/tmp");  // stored with the VM
    EXPECT_EQ(spec_from_json(spec->to_json()).user, "1000:100");
    for (auto [field, value] : {std::pair{"workdir", "tmp"}, std::pair{"workdir", ""}, std::pair{"user", "root"},
                                std::pair{"user", "1:2:3"}, std::pair{"user", "-1"}}) {
        auto bad = parse_create({{"program", "/bin/busybox"}, {field, value}});
        ASSERT_FALSE(bad) << field << "=" << value;
        EXPECT_EQ(bad.error().sys_errno, ERANGE) << bad.error().message;
    }
    EXPECT_EQ(parse_create({{"program", "/bin/busybox"}, {"user", 1000}}).error().sys_errno, EINVAL);
}

// --vmm-user: the jailed VMM's user and group, passed as --uid and --gid;
// never to a VMM without the jail (it would not change user).
TEST(VmmArguments, TheVmmUserGoesToTheJail) {
    auto spec = parse_create({{"program", "/bin/busybox"}, {"args", {"true"}}, {"mem", "32M"}});
    ASSERT_TRUE(spec) << spec.error().message;
    const VmmUser user{65534, 65533};
    const auto args = vmm_arguments(*spec, "/run/x.sock", "", std::string("/state/snapshots/abc"), user);
    auto uid = std::find(args.begin(), args.end(), "--uid");
    ASSERT_NE(uid, args.end());
    EXPECT_EQ(*(uid + 1), "65534");
    auto gid = std::find(args.begin(), args.end(), "--gid");
    ASSERT_NE(gid, args.end());
    EXPECT_EQ(*(gid + 1), "65533");
    EXPECT_LT(gid - args.begin(), std::find(args.begin(), args.end(), "/bin/busybox") - args.begin());
    const auto unjailed = vmm_arguments(*spec, "/run/x.sock", "", std::string(""), user);
    EXPECT_EQ(std::find(unjailed.begin(), unjailed.end(), "--uid"), unjailed.end());
}

TEST(VmmUser, NamesNumbersAndRefusals) {
    auto nobody = parse_vmm_user("nobody");
    ASSERT_TRUE(nobody) << nobody.error().message;
    EXPECT_EQ(nobody->uid, 65534u);
    auto numbers = parse_vmm_user("1234:5678");
    ASSERT_TRUE(numbers) << numbers.error().message;
    EXPECT_EQ(numbers->uid, 1234u);
    EXPECT_EQ(numbers->gid, 5678u);
    auto named_group = parse_vmm_user("1234:root");
    ASSERT_TRUE(named_group) << named_group.error().message;
    EXPECT_EQ(named_group->gid, 0u);
    for (const char* bad : {"root", "0", "no-such-user-here", "1234:no-such-group-here", ""}) {
        auto r = parse_vmm_user(bad);
        EXPECT_FALSE(r) << bad;
        if (!r) {
            EXPECT_NE(r.error().message.find("--vmm-user"), std::string::npos) << r.error().message;
        }
    }
}

}  // namespace
}  // namespace vessel::daemon

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

}  // namespace
}  // namespace vessel::daemon

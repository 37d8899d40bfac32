// What a jail::probe() report must say from inside a jail: nothing of the
// host reachable, no privilege. Shared by tests/jail (the library in a
// forked child) and tests/integration/jail_test.cc (a real VMM's report).
#pragma once

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace vessel::test {

inline void expect_jailed(const nlohmann::json& report) {
    ASSERT_TRUE(report.is_object()) << report.dump();
    EXPECT_EQ(report["host_files_visible"], false);
    EXPECT_EQ(report["processes_visible"], 1) << "only the VMM itself: no other VM's VMM";
    EXPECT_EQ(report["can_signal_outside"], false);
    EXPECT_EQ(report["network_reachable"], false);
    EXPECT_EQ(report["has_capabilities"], false);
    EXPECT_EQ(report["can_mount"], false);
    EXPECT_EQ(report["can_write_root"], false);
    EXPECT_EQ(report["root_entries"], "dev proc sandbox");
}

}  // namespace vessel::test

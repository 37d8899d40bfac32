// docs/syscalls.md must list every system call the thin layer implements:
// each name appears there in backticks (`read`), so `read` is not satisfied
// by `readv` or by prose.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "thin/syscall_table.h"

namespace vessel::thin {
namespace {

std::string read_doc() {
    std::ifstream in(std::string(VESSEL_SOURCE_DIR) + "/docs/syscalls.md");
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

TEST(SyscallsDoc, ListsEveryImplementedSyscall) {
    const std::string doc = read_doc();
    ASSERT_FALSE(doc.empty()) << "docs/syscalls.md is missing or empty";
    std::vector<std::string> missing;
    unsigned implemented = 0;
    for (unsigned nr = 0; nr < kMaxSyscall; ++nr) {
        const SyscallInfo* info = syscall_table().find(nr);
        if (!info || !info->handler) continue;
        ++implemented;
        std::string name(info->name);
        if (doc.find("`" + name + "`") == std::string::npos) missing.push_back(name + " (" + std::to_string(nr) + ")");
    }
    EXPECT_GT(implemented, 0u);
    std::string list;
    for (const auto& m : missing) list += " " + m;
    EXPECT_TRUE(missing.empty()) << "implemented but not in docs/syscalls.md:" << list;
}

TEST(SyscallsDoc, NamesNoSyscallTwiceInTheTable) {
    // One table row per call: a duplicate row is a copy-paste slip that
    // would hide a stale status.
    const std::string doc = read_doc();
    for (unsigned nr = 0; nr < kMaxSyscall; ++nr) {
        const SyscallInfo* info = syscall_table().find(nr);
        if (!info || !info->handler) continue;
        std::string row = "| `" + std::string(info->name) + "` |";
        size_t first = doc.find(row);
        if (first == std::string::npos) continue;  // reported by the test above
        EXPECT_EQ(doc.find(row, first + 1), std::string::npos) << info->name << " has two rows";
    }
}

}  // namespace
}  // namespace vessel::thin

// docs/syscalls.md must list every system call the thin layer implements:
// each name appears there in backticks (`read`), so `read` is not satisfied
// by `readv` or by prose; and its status tables must agree with the table
// (src/thin/syscall_table.inc) both ways.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <regex>
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

// The doc's status rows: "| `name` | status | notes |" -> name: status.
std::map<std::string, std::string> doc_statuses(const std::string& doc) {
    std::map<std::string, std::string> rows;
    static const std::regex row(R"(^\| `(\w+)` \| (\w+) \|)");
    std::istringstream in(doc);
    for (std::string line; std::getline(in, line);)
        if (std::smatch m; std::regex_search(line, m, row)) rows[m[1]] = m[2];
    return rows;
}

TEST(SyscallsDoc, StatusOfEveryImplementedCallMatchesTheTable) {
    const auto rows = doc_statuses(read_doc());
    ASSERT_FALSE(rows.empty()) << "no \"| `call` | status | notes |\" rows found in docs/syscalls.md";
    for (unsigned nr = 0; nr < kMaxSyscall; ++nr) {
        const SyscallInfo* info = syscall_table().find(nr);
        if (!info || !info->handler) continue;
        EXPECT_NE(info->status, SyscallStatus::kUnsupported)
            << info->name << " has a handler but status unsupported in syscall_table.inc";
        auto it = rows.find(std::string(info->name));
        if (it == rows.end()) {
            ADD_FAILURE() << info->name << " (" << nr << ") has no status row in docs/syscalls.md";
            continue;
        }
        EXPECT_EQ(it->second, status_name(info->status)) << info->name << ": docs/syscalls.md says " << it->second
                                                         << ", syscall_table.inc says " << status_name(info->status);
    }
}

TEST(SyscallsDoc, EveryCallTheDocGivesAStatusIsInTheTable) {
    std::map<std::string, const SyscallInfo*> by_name;
    for (unsigned nr = 0; nr < kMaxSyscall; ++nr)
        if (const SyscallInfo* info = syscall_table().find(nr); info && info->handler)
            by_name[std::string(info->name)] = info;
    for (const auto& [name, status] : doc_statuses(read_doc())) {
        auto it = by_name.find(name);
        if (it == by_name.end()) {
            ADD_FAILURE() << "docs/syscalls.md gives `" << name << "` the status " << status
                          << ", but syscall_table.inc does not implement it";
            continue;
        }
        EXPECT_EQ(status, status_name(it->second->status)) << name;
    }
}

TEST(SyscallsDoc, StatusWordsAreTheDocsOwn) {
    // The legend defines these; a row with another word is a typo.
    for (const auto& [name, status] : doc_statuses(read_doc()))
        EXPECT_TRUE(status == "full" || status == "partial" || status == "stub") << name << ": " << status;
}

}  // namespace
}  // namespace vessel::thin

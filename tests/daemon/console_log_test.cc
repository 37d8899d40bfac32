// The per-VM console log spawn() hands a VMM as stdout and stderr: appended
// to, owner-only, and never opened through a link planted at its name.
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "../base/file_test_util.h"
#include "daemon/process.h"

namespace vessel::daemon {
namespace {

using testing::mode_of;
using testing::read_text;
using testing::ScratchDir;
using testing::write_text;

// Runs `echo WORD` with its output in `console`.
Result<> echo_into(const std::string& console, const std::string& word) {
    SpawnRequest r;
    r.path = "/bin/echo";
    r.argv = {"echo", word};
    r.console = console;
    auto child = spawn(r);
    if (!child) return std::unexpected(child.error());
    int status = 0;
    ::waitpid(child->pid, &status, 0);
    return {};
}

TEST(ConsoleLog, AppendedOwnerOnly) {
    ScratchDir scratch;
    std::string log = scratch / "console.log";
    ASSERT_TRUE(echo_into(log, "one"));
    ASSERT_TRUE(echo_into(log, "two"));
    EXPECT_EQ(read_text(log), "one\ntwo\n");
    EXPECT_EQ(mode_of(log), 0600u);
}

TEST(ConsoleLog, PlantedLinkIsNotFollowed) {
    ScratchDir scratch;
    std::string victim = scratch / "victim", log = scratch / "console.log";
    write_text(victim, "precious\n");
    ASSERT_EQ(::symlink(victim.c_str(), log.c_str()), 0);
    auto r = echo_into(log, "guest output");
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("symbolic link"), std::string::npos) << r.error().message;
    EXPECT_EQ(read_text(victim), "precious\n");
}

}  // namespace
}  // namespace vessel::daemon

// base/env_file.h: the two forms of an environment file, and what is refused.
#include "base/env_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace vessel {
namespace {

class EnvFile : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = std::filesystem::temp_directory_path() / ("vessel-env-" + std::to_string(::getpid()));
        std::filesystem::create_directories(dir_);
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }
    std::string put(const std::string& name, const std::string& data) {
        std::string p = dir_ / name;
        std::ofstream(p, std::ios::binary) << data;
        return p;
    }
    std::filesystem::path dir_;
};

TEST_F(EnvFile, LinesSkipCommentsAndBlanksAndCarriageReturns) {
    auto e = read_env_file(put("lines", "# a comment\nA=1\r\n\nB=two words\nC=\n"));
    ASSERT_TRUE(e) << e.error().message;
    EXPECT_EQ(*e, (std::vector<std::string>{"A=1", "B=two words", "C="}));
}

TEST_F(EnvFile, NulSeparatedEntriesMayHoldNewlinesAndRoundTrip) {
    const std::vector<std::pair<std::string, std::string>> vars = {{"A", "1"}, {"B", "line\nbreak"}, {"C", "#x"}};
    auto e = read_env_file(put("nul", encode_env_file(vars)));
    ASSERT_TRUE(e) << e.error().message;
    EXPECT_EQ(*e, (std::vector<std::string>{"A=1", "B=line\nbreak", "C=#x"}));
}

TEST_F(EnvFile, MalformedMissingLinkedFifoAndHugeFilesAreRefused) {
    auto bad = read_env_file(put("bad", "A=1\nnot a variable\n"));
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().message.find("entry 2 is not KEY=VALUE"), std::string::npos) << bad.error().message;
    EXPECT_FALSE(read_env_file(put("nokey", "=1\n")));
    EXPECT_FALSE(read_env_file((dir_ / "missing").string()));
    const std::string target = put("target", "A=1\n");
    std::filesystem::create_symlink(target, dir_ / "link");
    EXPECT_FALSE(read_env_file((dir_ / "link").string()));
    ASSERT_EQ(::mkfifo((dir_ / "fifo").c_str(), 0600), 0);
    auto fifo = read_env_file((dir_ / "fifo").string());  // refused at once, never blocks
    ASSERT_FALSE(fifo);
    EXPECT_NE(fifo.error().message.find("not a regular file"), std::string::npos) << fifo.error().message;
    auto huge = read_env_file(put("huge", std::string(kMaxEnvFile + 10, 'x')));
    ASSERT_FALSE(huge);
    EXPECT_EQ(huge.error().sys_errno, EFBIG);
}

}  // namespace
}  // namespace vessel

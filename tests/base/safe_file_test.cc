// Files Vessel writes for users (base/safe_file.h, base/cache_dir.h): links
// planted where a file will be written are never followed, new files are
// owner-only, a failed write leaves nothing, FIFOs never block a read.
#include "base/safe_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/cache_dir.h"
#include "file_test_util.h"

namespace vessel {
namespace {

using namespace std::chrono_literals;
using namespace testing;  // file_test_util.h

struct SafeFile : ::testing::Test {
    ScratchDir scratch;
    std::string victim = scratch / "victim";
    std::string dir = scratch / "d";
    void SetUp() override {
        write_text(victim, "precious\n");
        ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
    }
    std::string in_dir(const std::string& name) const { return dir + "/" + name; }
};

TEST_F(SafeFile, AtomicFileAppearsWholeAtCommitOwnerOnly) {
    auto d = DirFd::open(dir);
    ASSERT_TRUE(d) << d.error().message;
    auto f = AtomicFile::create(*d, "out");
    ASSERT_TRUE(f) << f.error().message;
    ASSERT_TRUE(f->write("hello", 5));
    EXPECT_FALSE(d->contains("out")) << "the name appears only at commit";
    ASSERT_TRUE(f->sync());
    ASSERT_TRUE(f->commit(AtomicFile::Replace::kNo));
    EXPECT_EQ(read_text(in_dir("out")), "hello");
    EXPECT_EQ(mode_of(in_dir("out")), 0600u);
    EXPECT_EQ(entries(dir), std::set<std::string>{"out"});
}

TEST_F(SafeFile, AtomicFileNotCommittedLeavesNothing) {
    auto d = DirFd::open(dir);
    ASSERT_TRUE(d);
    {
        auto f = AtomicFile::create(*d, "out");
        ASSERT_TRUE(f);
        ASSERT_TRUE(f->write("partial", 7));
        EXPECT_EQ(entries(dir).size(), 1u) << "the temporary file";
    }
    EXPECT_TRUE(entries(dir).empty());
}

TEST_F(SafeFile, NoReplaceCommitRefusesAnExistingNameAndCleansUp) {
    write_text(in_dir("out"), "old");
    ASSERT_EQ(::symlink(victim.c_str(), in_dir("link").c_str()), 0);
    auto d = DirFd::open(dir);
    ASSERT_TRUE(d);
    for (const char* name : {"out", "link"}) {
        auto f = AtomicFile::create(*d, name);
        ASSERT_TRUE(f);
        ASSERT_TRUE(f->write("new", 3));
        auto r = f->commit(AtomicFile::Replace::kNo);
        ASSERT_FALSE(r) << name;
        EXPECT_EQ(r.error().sys_errno, EEXIST);
        EXPECT_NE(r.error().message.find("already exists"), std::string::npos) << r.error().message;
    }
    EXPECT_EQ(read_text(in_dir("out")), "old");
    EXPECT_EQ(read_text(victim), "precious\n");
    EXPECT_EQ(entries(dir), (std::set<std::string>{"link", "out"}));
}

TEST_F(SafeFile, ReplacingCommitReplacesAPlantedLinkNotItsTarget) {
    ASSERT_EQ(::symlink(victim.c_str(), in_dir("cache").c_str()), 0);
    ASSERT_TRUE(write_file_atomic(in_dir("cache"), "entry", 5));
    EXPECT_FALSE(is_symlink(in_dir("cache")));
    EXPECT_EQ(read_text(in_dir("cache")), "entry");
    EXPECT_EQ(read_text(victim), "precious\n");
}

// The temporary name was "PATH.tmp.PID", opened with O_TRUNC and following
// links: whoever could write the directory chose what got overwritten.
TEST_F(SafeFile, WriteFileAtomicIgnoresALinkPlantedAtAGuessableTemporaryName) {
    std::string path = in_dir("cache");
    ASSERT_EQ(::symlink(victim.c_str(), (path + ".tmp." + std::to_string(::getpid())).c_str()), 0);
    ASSERT_EQ(::symlink(victim.c_str(), (path + ".tmp").c_str()), 0);
    EXPECT_TRUE(write_file_atomic(path, "entry", 5));
    EXPECT_EQ(read_text(victim), "precious\n");
    EXPECT_EQ(read_text(path), "entry");
}

TEST_F(SafeFile, WriteFileAtomicMakesOwnerOnlyFilesEvenOverAnOpenOne) {
    std::string path = in_dir("cache");
    write_text(path, "old", 0644);
    ASSERT_TRUE(write_file_atomic(path, "entry", 5));
    EXPECT_EQ(mode_of(path), 0600u);
    ASSERT_TRUE(write_file_atomic(in_dir("fresh"), "entry", 5, Durable::kYes));
    EXPECT_EQ(mode_of(in_dir("fresh")), 0600u);
}

TEST_F(SafeFile, FailedWriteLeavesNoTemporaryFile) {
    std::string path = in_dir("cache");
    write_text(path, "old");
    std::vector<char> big(1 << 20, 'x');
    {
        FileSizeLimit limit(4096);  // like a full disk
        auto r = write_file_atomic(path, big.data(), big.size());
        ASSERT_FALSE(r);
        EXPECT_NE(r.error().message.find("write " + path), std::string::npos) << r.error().message;
    }
    EXPECT_EQ(entries(dir), std::set<std::string>{"cache"});
    EXPECT_EQ(read_text(path), "old");
}

TEST_F(SafeFile, DirectoryLinksAreRefusedAndNewDirectoriesOwnerOnly) {
    std::string link = scratch / "dlink";
    ASSERT_EQ(::symlink(dir.c_str(), link.c_str()), 0);
    auto d = DirFd::open(link);
    ASSERT_FALSE(d);
    EXPECT_NE(d.error().message.find("symbolic link"), std::string::npos) << d.error().message;
    EXPECT_FALSE(DirFd::create(link));
    EXPECT_FALSE(write_file_atomic(link + "/x", "x", 1));
    EXPECT_TRUE(entries(dir).empty());

    bool created = false;
    auto n = DirFd::create(scratch / "new", &created);
    ASSERT_TRUE(n) << n.error().message;
    EXPECT_TRUE(created);
    EXPECT_EQ(mode_of(scratch / "new"), 0700u);
    ASSERT_TRUE(DirFd::create(scratch / "new", &created));
    EXPECT_FALSE(created);
}

TEST_F(SafeFile, OpenAppendRefusesLinksAndFifosCreatesOwnerOnly) {
    auto d = DirFd::open(dir);
    ASSERT_TRUE(d);
    ASSERT_EQ(::symlink(victim.c_str(), in_dir("log").c_str()), 0);
    auto r = d->open_append("log");
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("symbolic link"), std::string::npos) << r.error().message;
    EXPECT_EQ(read_text(victim), "precious\n");

    auto fresh = d->open_append("new.log");
    ASSERT_TRUE(fresh) << fresh.error().message;
    EXPECT_EQ(mode_of(in_dir("new.log")), 0600u);

    write_text(in_dir("old.log"), "one\n", 0644);
    auto old = d->open_append("old.log");
    ASSERT_TRUE(old);
    ASSERT_TRUE(write_full(old->get(), "two\n", 4));
    EXPECT_EQ(read_text(in_dir("old.log")), "one\ntwo\n");

    ASSERT_EQ(::mkfifo(in_dir("fifo").c_str(), 0600), 0);
    auto fifo = within(3s, in_dir("fifo"), [&] { return d->open_append("fifo", true); });
    ASSERT_TRUE(fifo) << "open_append blocked on a FIFO";
    ASSERT_FALSE(*fifo);
    EXPECT_NE(fifo->error().message.find("not a regular file"), std::string::npos) << fifo->error().message;

    auto devnull = DirFd::open("/dev");
    ASSERT_TRUE(devnull);
    EXPECT_FALSE(devnull->open_append("null"));
    EXPECT_TRUE(devnull->open_append("null", true));
}

TEST_F(SafeFile, ReadsRefuseFifosAtOnceAndDoNotFollowLinks) {
    ASSERT_EQ(::mkfifo(in_dir("fifo").c_str(), 0600), 0);
    auto r = within(3s, in_dir("fifo"), [&] { return open_regular(in_dir("fifo")); });
    ASSERT_TRUE(r) << "open_regular blocked on a FIFO";
    ASSERT_FALSE(*r);
    EXPECT_EQ(r->error().message, in_dir("fifo") + ": not a regular file");

    // read_small_file reads cache files: a FIFO planted there must not
    // stall a start.
    auto small = within(3s, in_dir("fifo"), [&] { return read_small_file(in_dir("fifo")); });
    ASSERT_TRUE(small) << "read_small_file blocked on a FIFO";
    EXPECT_EQ(*small, "");

    ASSERT_EQ(::symlink(victim.c_str(), in_dir("link").c_str()), 0);
    auto l = open_regular(in_dir("link"));
    ASSERT_FALSE(l);
    EXPECT_NE(l.error().message.find("symbolic link"), std::string::npos) << l.error().message;
    EXPECT_EQ(read_small_file(in_dir("link")), "");
    EXPECT_EQ(read_small_file(victim), "precious\n");
}

TEST(SplitPath, LastComponent) {
    EXPECT_EQ(split_path("a/b/c"), std::make_pair(std::string("a/b"), std::string("c")));
    EXPECT_EQ(split_path("/c"), std::make_pair(std::string("/"), std::string("c")));
    EXPECT_EQ(split_path("c"), std::make_pair(std::string("."), std::string("c")));
    EXPECT_EQ(split_path("/a/b//"), std::make_pair(std::string("/a"), std::string("b")));
    EXPECT_EQ(split_path("/"), std::make_pair(std::string("/"), std::string("")));
}

TEST(MakeDirs, OwnerOnly) {
    ScratchDir scratch;
    ASSERT_TRUE(make_dirs(scratch / "a/b"));
    EXPECT_EQ(mode_of(scratch / "a"), 0700u);
    EXPECT_EQ(mode_of(scratch / "a/b"), 0700u);
}

}  // namespace
}  // namespace vessel

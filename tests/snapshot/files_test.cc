// The files a snapshot is made of, and the console file, as the host sees
// them: links planted at their names are not followed, a failed snapshot
// leaves nothing behind, an existing snapshot is not written over, FIFOs
// are refused at once. No VM needed: the file handling of snapshot_dir.h
// and state/format.h is exercised directly.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "../base/file_test_util.h"
#include "devices/console.h"
#include "machine/snapshot.h"
#include "machine/snapshot_dir.h"
#include "state/format.h"

namespace vessel {
namespace {

using namespace std::chrono_literals;
using namespace testing;  // file_test_util.h
using machine::MachineKind;
namespace snapshot = machine::snapshot;

constexpr uint64_t kRam = 4 * 4096;

// What a one-page thin snapshot's state.bin holds, enough for load_dir().
state::Sections sections() {
    state::Writer mem;
    snapshot::MemoryLayout layout;
    layout.ram_size = kRam;
    snapshot::put_memory(mem, layout);
    std::string config = nlohmann::json{{"kind", "thin"}}.dump();
    state::Sections s;
    s[state::Section::kConfig] = std::vector<uint8_t>(config.begin(), config.end());
    s[state::Section::kMemory] = mem.take();
    return s;
}

struct Files : ::testing::Test {
    ScratchDir scratch;
    std::string victim = scratch / "victim";
    std::string dir = scratch / "snap";
    void SetUp() override { write_text(victim, "precious\n"); }
    std::string in(const std::string& name) const { return dir + "/" + name; }
    void make_dir() const { ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0); }
    // A complete one-page snapshot written through Output into `where`.
    void write_snapshot(const std::string& where) const {
        auto out = snapshot::Output::open(where);
        ASSERT_TRUE(out) << out.error().message;
        std::vector<uint8_t> page(4096, 0xab);
        ASSERT_TRUE(out->memory().write(page.data(), page.size()));
        ASSERT_EQ(::ftruncate(out->memory().fd(), kRam), 0);
        ASSERT_TRUE(out->memory().sync());
        ASSERT_TRUE(out->write_state(sections()));
        auto r = out->commit();
        ASSERT_TRUE(r) << r.error().message;
    }
};

// ------------------------------------------------------------ state.bin

// It was written through a fixed "state.bin.tmp", opened with O_TRUNC and
// following links.
TEST_F(Files, StateFileIgnoresALinkPlantedAtTheTemporaryName) {
    make_dir();
    ASSERT_EQ(::symlink(victim.c_str(), in("state.bin.tmp").c_str()), 0);
    auto r = state::write_state_file(in("state.bin"), sections());
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(read_text(victim), "precious\n");
    EXPECT_TRUE(is_symlink(in("state.bin.tmp")));
    EXPECT_TRUE(state::read_state_file(in("state.bin")));
}

TEST_F(Files, StateFileEndsOwnerOnly) {
    make_dir();
    write_text(in("state.bin"), "old", 0644);
    write_text(in("state.bin.tmp"), "left over", 0644);
    ASSERT_TRUE(state::write_state_file(in("state.bin"), sections()));
    EXPECT_EQ(mode_of(in("state.bin")), 0600u);
}

TEST_F(Files, FailedStateFileWriteLeavesNoTemporaryFile) {
    make_dir();
    state::Sections big = sections();
    big[state::Section::kVcpu] = std::vector<uint8_t>(1 << 20, 1);
    {
        FileSizeLimit limit(64 << 10);
        auto r = state::write_state_file(in("state.bin"), big);
        ASSERT_FALSE(r);
        EXPECT_NE(r.error().message.find(in("state.bin")), std::string::npos) << r.error().message;
    }
    EXPECT_TRUE(entries(dir).empty());
}

TEST_F(Files, StateFileReadRefusesAFifoAtOnce) {
    make_dir();
    ASSERT_EQ(::mkfifo(in("state.bin").c_str(), 0600), 0);
    auto r = within(3s, in("state.bin"), [&] { return state::read_state_file(in("state.bin")); });
    ASSERT_TRUE(r) << "read_state_file blocked on a FIFO";
    ASSERT_FALSE(*r);
    EXPECT_EQ(r->error().message, in("state.bin") + ": not a regular file");

    auto kind = within(3s, in("state.bin"), [&] { return machine::snapshot_kind(dir); });
    ASSERT_TRUE(kind) << "snapshot_kind blocked on a FIFO";
    ASSERT_FALSE(*kind);
    EXPECT_NE(kind->error().message.find("not a regular file"), std::string::npos) << kind->error().message;
}

TEST_F(Files, StateFileReadDoesNotFollowALink) {
    make_dir();
    std::string real = scratch / "real.bin";
    ASSERT_TRUE(state::write_state_file(real, sections()));
    ASSERT_EQ(::symlink(real.c_str(), in("state.bin").c_str()), 0);
    auto r = state::read_state_file(in("state.bin"));
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("symbolic link"), std::string::npos) << r.error().message;
}

// ------------------------------------------------------------ writing a snapshot

TEST_F(Files, SnapshotIsOwnerOnlyAndWholeAtCommit) {
    write_snapshot(dir);
    EXPECT_EQ(mode_of(dir), 0700u);
    EXPECT_EQ(entries(dir), (std::set<std::string>{"memory.img", "state.bin"}));
    EXPECT_EQ(mode_of(in("memory.img")), 0600u);
    EXPECT_EQ(mode_of(in("state.bin")), 0600u);
    auto loaded = snapshot::load_chain(dir, MachineKind::kThin, {});
    ASSERT_TRUE(loaded) << loaded.error().message;
    auto mem = snapshot::map_chain(*loaded);
    ASSERT_TRUE(mem) << mem.error().message;
    EXPECT_EQ(*mem->host(0, 1), 0xab);
}

TEST_F(Files, ExistingSnapshotOrPlantedFilesAreRefusedUntouched) {
    for (const char* name : {"memory.img", "state.bin"}) {
        SCOPED_TRACE(name);
        make_dir();
        ASSERT_EQ(::symlink(victim.c_str(), in(name).c_str()), 0);
        auto out = snapshot::Output::open(dir);
        ASSERT_FALSE(out);
        EXPECT_EQ(out.error().message, dir + " already holds a snapshot (" + name + "); choose a new directory");
        EXPECT_EQ(read_text(victim), "precious\n");
        std::filesystem::remove_all(dir);

        make_dir();
        write_text(in(name), "old", 0644);  // say, a partial file from an older vessel
        EXPECT_FALSE(snapshot::Output::open(dir));
        EXPECT_EQ(read_text(in(name)), "old");
        EXPECT_EQ(entries(dir), std::set<std::string>{name});
        std::filesystem::remove_all(dir);
    }
    write_snapshot(dir);
    auto again = snapshot::Output::open(dir);
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().sys_errno, EEXIST);
}

TEST_F(Files, SnapshotDirectoryLinkIsRefused) {
    std::string real = scratch / "real";
    ASSERT_EQ(::mkdir(real.c_str(), 0700), 0);
    ASSERT_EQ(::symlink(real.c_str(), dir.c_str()), 0);
    auto out = snapshot::Output::open(dir);
    ASSERT_FALSE(out);
    EXPECT_NE(out.error().message.find("symbolic link"), std::string::npos) << out.error().message;
    EXPECT_TRUE(entries(real).empty());
}

TEST_F(Files, AbandonedSnapshotLeavesTheDirectoryAsItWas) {
    {  // a directory it created goes again
        auto out = snapshot::Output::open(dir);
        ASSERT_TRUE(out);
        ASSERT_TRUE(out->memory().write("x", 1));
        ASSERT_TRUE(out->write_state(sections()));
    }
    EXPECT_FALSE(std::filesystem::exists(dir));

    make_dir();
    write_text(in("notes.txt"), "mine");
    {
        auto out = snapshot::Output::open(dir);
        ASSERT_TRUE(out);
        ASSERT_TRUE(out->memory().write("x", 1));
        ASSERT_TRUE(out->write_state(sections()));
    }
    EXPECT_EQ(entries(dir), std::set<std::string>{"notes.txt"});
}

// Disk full while memory.img is written, into a directory that already
// existed: it used to keep a partial memory.img (and then refuse nothing).
TEST_F(Files, FailedMemoryImageLeavesNoPartialFiles) {
    make_dir();
    std::vector<uint8_t> chunk(1 << 20, 0xcd);
    {
        auto out = snapshot::Output::open(dir);
        ASSERT_TRUE(out);
        FileSizeLimit limit(256 << 10);
        auto r = out->memory().write(chunk.data(), chunk.size());
        ASSERT_FALSE(r);
        EXPECT_NE(r.error().message.find(in("memory.img")), std::string::npos) << r.error().message;
    }
    EXPECT_TRUE(entries(dir).empty());
    write_snapshot(dir);  // the directory takes a snapshot afterwards
}

// Something appears under a snapshot file's name while it is written: the
// commit refuses rather than replace it, and takes back what it renamed.
TEST_F(Files, CommitReplacesNothing) {
    for (const char* name : {"memory.img", "state.bin"}) {
        SCOPED_TRACE(name);
        {
            auto out = snapshot::Output::open(dir);
            ASSERT_TRUE(out);
            ASSERT_TRUE(out->memory().write("x", 1));
            ASSERT_TRUE(out->write_state(sections()));
            ASSERT_EQ(::symlink(victim.c_str(), in(name).c_str()), 0);
            auto r = out->commit();
            ASSERT_FALSE(r);
            EXPECT_EQ(r.error().sys_errno, EEXIST);
        }
        EXPECT_EQ(entries(dir), std::set<std::string>{name});
        EXPECT_TRUE(is_symlink(in(name)));
        EXPECT_EQ(read_text(victim), "precious\n");
        std::filesystem::remove_all(dir);
    }
}

// ------------------------------------------------------------ reading a snapshot

TEST_F(Files, RestoreRefusesAFifoMemoryImageAtOnce) {
    make_dir();
    ASSERT_TRUE(state::write_state_file(in("state.bin"), sections()));
    ASSERT_EQ(::mkfifo(in("memory.img").c_str(), 0600), 0);
    auto chain = snapshot::load_chain(dir, MachineKind::kThin, {});
    ASSERT_TRUE(chain) << chain.error().message;
    auto mem = within(3s, in("memory.img"), [&] { return snapshot::map_chain(*chain); });
    ASSERT_TRUE(mem) << "map_chain blocked on a FIFO memory.img";
    ASSERT_FALSE(*mem);
    EXPECT_EQ(mem->error().message, in("memory.img") + ": not a regular file");
}

TEST_F(Files, RestoreRefusesAFifoInADiffOfTheChain) {
    std::string base = scratch / "base";
    write_snapshot(base);
    make_dir();
    ASSERT_EQ(::mkfifo(in("memory.img").c_str(), 0600), 0);
    auto chain = snapshot::load_chain(base, MachineKind::kThin, {});
    ASSERT_TRUE(chain) << chain.error().message;
    snapshot::Loaded diff = chain->front();
    diff.dir = dir;
    diff.memory.diff = true;
    diff.memory.parent = base;
    diff.memory.pages = {0};
    chain->insert(chain->begin(), diff);
    auto mem = within(3s, in("memory.img"), [&] { return snapshot::map_chain(*chain); });
    ASSERT_TRUE(mem) << "map_chain blocked on a FIFO memory.img";
    ASSERT_FALSE(*mem);
    EXPECT_EQ(mem->error().message, in("memory.img") + ": not a regular file");
}

TEST_F(Files, RestoreDoesNotFollowALinkedMemoryImage) {
    write_snapshot(dir);
    std::string moved = scratch / "elsewhere.img";
    ASSERT_EQ(::rename(in("memory.img").c_str(), moved.c_str()), 0);
    ASSERT_EQ(::symlink(moved.c_str(), in("memory.img").c_str()), 0);
    auto chain = snapshot::load_chain(dir, MachineKind::kThin, {});
    ASSERT_TRUE(chain);
    auto mem = snapshot::map_chain(*chain);
    ASSERT_FALSE(mem);
    EXPECT_NE(mem.error().message.find("symbolic link"), std::string::npos) << mem.error().message;
}

// ------------------------------------------------------------ the console file

TEST_F(Files, ConsoleFileNeverFollowsALinkAndIsOwnerOnly) {
    make_dir();
    devices::ConsoleSpec spec{devices::ConsoleSpec::Kind::kFile, in("console")};
    ASSERT_EQ(::symlink(victim.c_str(), spec.path.c_str()), 0);
    auto linked = devices::Console::open(spec);
    ASSERT_FALSE(linked);
    EXPECT_NE(linked.error().message.find("--console file:" + spec.path), std::string::npos);
    EXPECT_NE(linked.error().message.find("symbolic link"), std::string::npos) << linked.error().message;
    EXPECT_EQ(read_text(victim), "precious\n");

    spec.path = in("new.log");
    {
        auto c = devices::Console::open(spec);
        ASSERT_TRUE(c) << c.error().message;
        c->write(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>("boot\n"), 5));
    }
    EXPECT_EQ(mode_of(spec.path), 0600u);
    {
        auto c = devices::Console::open(spec);  // an existing file the user named: appended to
        ASSERT_TRUE(c);
        c->write(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>("again\n"), 6));
    }
    EXPECT_EQ(read_text(spec.path), "boot\nagain\n");

    spec.path = in("fifo");
    ASSERT_EQ(::mkfifo(spec.path.c_str(), 0600), 0);
    auto fifo = within(3s, spec.path, [&] { return devices::Console::open(spec); });
    ASSERT_TRUE(fifo) << "--console file: blocked on a FIFO";
    EXPECT_FALSE(*fifo);

    EXPECT_TRUE(devices::Console::open({devices::ConsoleSpec::Kind::kFile, "/dev/null"}));
}

}  // namespace
}  // namespace vessel

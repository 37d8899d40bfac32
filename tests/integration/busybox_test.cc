// Busybox applets run natively and inside `vessel run` on the same inputs;
// stdout, stderr and exit status must match byte for byte.
//
// The guest's cwd is its root, so native runs use cwd = the root directory
// and both use the same relative paths. The root carries copies of the host's
// /etc/passwd and /etc/group so user and group names agree.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

namespace vessel::test {
namespace {

constexpr const char* kBusybox = "/bin/busybox";

struct Case {
    std::string name;
    std::vector<std::string> args;  // after "busybox"
    std::string stdin_file;         // relative to the root; empty: /dev/null
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

// The inputs: text, numbers, CSV, binary data, a small tree, archives.
class BusyboxInputs {
public:
    BusyboxInputs() {
        root_ = dir_.path();
        make_dirs(root_ + "/etc");
        copy_file("/etc/passwd", root_ + "/etc/passwd");
        copy_file("/etc/group", root_ + "/etc/group");
        write_file(root_ + "/text.txt",
                   "hello world\nthe quick brown fox\njumps over the lazy dog\nHello again\n"
                   "word word word\n\ttabbed line\nlast line without newline");
        write_file(root_ + "/dups.txt", "apple\napple\nbanana\ncherry\ncherry\ncherry\napple\n");
        write_file(root_ + "/nums.txt", "10\n9\n100\n-3\n42\n7.5\n0\n");
        write_file(root_ + "/data.csv", "name,qty,price\nbolt,10,0.25\nnut,7,0.10\nwasher,30,0.05\ngear,2,4.50\n");
        std::string bin;
        uint32_t x = 12345;
        for (int i = 0; i < 3000; ++i) {
            x = x * 1103515245 + 12345;
            bin += static_cast<char>(x >> 24);
        }
        write_file(root_ + "/bin.dat", bin);
        write_file(root_ + "/b64.txt", "VmVzc2VsIHJ1bnMgYnVzeWJveC4K\n");
        make_dirs(root_ + "/tree/a/b");
        make_dirs(root_ + "/tree/c");
        write_file(root_ + "/tree/a/one.txt", "one word\n");
        write_file(root_ + "/tree/a/b/two.txt", "two words here\n", 0600);
        write_file(root_ + "/tree/c/three.txt", "three\n", 0755);
        ::symlink("../a/one.txt", (root_ + "/tree/c/link").c_str());
        // Fixed times, so listings and archive headers do not depend on when
        // the test ran.
        for (const char* p : {"tree/a/one.txt", "tree/a/b/two.txt", "tree/c/three.txt", "tree/a/b", "tree/a", "tree/c",
                              "tree", "text.txt"}) {
            timespec ts[2] = {{1600000000, 0}, {1600000000, 0}};
            ::utimensat(AT_FDCWD, (root_ + "/" + p).c_str(), ts, 0);
        }
        // Archives made natively, to be read in the guest.
        RunOptions o;
        o.cwd = root_;
        auto gz = run({kBusybox, "gzip", "-c", "text.txt"}, o);
        write_file(root_ + "/text.txt.gz", gz.out);
        auto tar = run({kBusybox, "tar", "-cf", "-", "tree"}, o);
        write_file(root_ + "/tree.tar", tar.out);
    }
    const std::string& root() const { return root_; }

private:
    TempDir dir_;
    std::string root_;
};

class Busybox : public ::testing::TestWithParam<Case> {
protected:
    static void SetUpTestSuite() { inputs_ = new BusyboxInputs; }
    static void TearDownTestSuite() {
        delete inputs_;
        inputs_ = nullptr;
    }
    void SetUp() override { REQUIRE_KVM(); }
    static BusyboxInputs* inputs_;
};
BusyboxInputs* Busybox::inputs_ = nullptr;

TEST_P(Busybox, SameAsNative) {
    const Case& c = GetParam();
    const std::string& root = inputs_->root();
    std::vector<std::string> argv = {kBusybox};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    RunOptions o;
    o.cwd = root;
    if (!c.stdin_file.empty()) o.stdin_path = root + "/" + c.stdin_file;
    auto native = run(argv, o);
    RunOptions g;
    g.stdin_path = o.stdin_path;
    auto guest = run_vessel({"--root", root}, argv, g);
    EXPECT_EQ(guest.status, native.status) << "guest stderr:\n" << guest.err;
    EXPECT_EQ(guest.out, native.out);
    EXPECT_EQ(guest.err, native.err);
    // A comparison of two empty outputs proves little: every case prints.
    EXPECT_FALSE(native.out.empty() && native.err.empty()) << "the native run printed nothing";
}

std::vector<Case> read_only_cases() {
    return {
        {"cat", {"cat", "-n", "text.txt", "dups.txt"}, ""},
        {"cat_stdin", {"cat"}, "text.txt"},
        {"cat_missing", {"cat", "missing.txt"}, ""},
        {"echo", {"echo", "-e", "a\\tb\\nc", "d"}, ""},
        {"ls", {"ls", "-lnR", "tree"}, ""},
        {"ls_names", {"ls", "-la", "tree/a"}, ""},
        {"wc", {"wc", "text.txt", "dups.txt", "bin.dat"}, ""},
        {"wc_stdin", {"wc", "-l"}, "text.txt"},
        {"sort", {"sort", "-n", "nums.txt"}, ""},
        {"sort_fields", {"sort", "-t,", "-k2", "-n", "-r", "data.csv"}, ""},
        {"uniq", {"uniq", "-c", "dups.txt"}, ""},
        {"head", {"head", "-n", "3", "text.txt"}, ""},
        {"tail", {"tail", "-n", "2", "text.txt"}, ""},
        {"tail_bytes", {"tail", "-c", "100", "bin.dat"}, ""},
        {"cut", {"cut", "-d,", "-f1,3", "data.csv"}, ""},
        {"tr", {"tr", "a-z", "A-Z"}, "text.txt"},
        {"sed", {"sed", "-n", "s/o/0/gp", "text.txt"}, ""},
        {"grep", {"grep", "-n", "-i", "hello", "text.txt"}, ""},
        {"grep_recursive", {"grep", "-r", "word", "tree"}, ""},
        {"grep_nomatch", {"grep", "zebra", "text.txt", "missing"}, ""},
        {"awk", {"awk", "-F,", "NR>1 {q+=$2; v+=$2*$3} END {printf \"%d %.2f\\n\", q, v}", "data.csv"}, ""},
        {"sha256sum", {"sha256sum", "text.txt", "bin.dat"}, ""},
        {"md5sum", {"md5sum", "text.txt", "bin.dat"}, ""},
        {"base64", {"base64", "bin.dat"}, ""},
        {"base64_decode", {"base64", "-d", "b64.txt"}, ""},
        {"od", {"od", "-A", "x", "-t", "x1z", "bin.dat"}, ""},
        {"gzip", {"gzip", "-c", "-9", "text.txt"}, ""},
        {"gunzip", {"gunzip", "-c", "text.txt.gz"}, ""},
        {"tar_create", {"tar", "-cf", "-", "tree"}, ""},
        {"tar_list", {"tar", "-tvf", "tree.tar"}, ""},
        {"tar_extract_stdout", {"tar", "-xOf", "tree.tar", "tree/a/b/two.txt"}, ""},
        {"find", {"find", ".", "-type", "f"}, ""},
        {"find_name", {"find", "tree", "-name", "*.txt", "-o", "-type", "l"}, ""},
        {"stat", {"stat", "-c", "%n %s %a %F %U %G %h %i %Y", "text.txt", "tree", "tree/c/link"}, ""},
        {"stat_default", {"stat", "tree/c"}, ""},
        {"date", {"date", "-u", "-d", "@1700000000", "+%Y-%m-%d %H:%M:%S %A"}, ""},
        {"date_file", {"date", "-r", "text.txt"}, ""},
        {"seq", {"seq", "1", "3", "40"}, ""},
        {"expr", {"expr", "3", "*", "7", "+", "1"}, ""},
        {"expr_string", {"expr", "length", "vessel"}, ""},
        {"printf", {"printf", "%05d|%s|%x|%5.2f\\n", "42", "abc", "255", "3.14159"}, ""},
        {"basename", {"basename", "/a/b/c.txt", ".txt"}, ""},
        {"dirname", {"dirname", "/a/b/c.txt"}, ""},
    };
}

INSTANTIATE_TEST_SUITE_P(Applets, Busybox, ::testing::ValuesIn(read_only_cases()),
                         [](const auto& info) { return info.param.name; });

// Applets that change files: the same commands run natively on one copy of a
// work tree and in the guest (through --rw) on another; the trees must match.
class BusyboxWrites : public ::testing::Test {
protected:
    void SetUp() override {
        REQUIRE_KVM();
        for (const char* side : {"native", "guest"}) {
            std::string w = t_ / side + "/w";
            make_dirs(w + "/srcdir/inner");
            write_file(w + "/src.txt", "source file\n");
            write_file(w + "/srcdir/inner/deep.txt", "deep\n", 0600);
            write_file(w + "/old.txt", "old\n");
            write_file(w + "/victim.txt", "remove me\n");
            make_dirs(w + "/victimdir/sub");
            write_file(w + "/victimdir/sub/f", "f\n");
            // Fixed, distinct times: the two sides are written a moment
            // apart (possibly across a second), and mv must keep each file's.
            time_t t = 1500000000;
            for (const char* f :
                 {"/src.txt", "/srcdir/inner/deep.txt", "/old.txt", "/victim.txt", "/victimdir/sub/f"}) {
                timespec ts[2] = {{t, 0}, {t, 0}};
                ::utimensat(AT_FDCWD, (w + f).c_str(), ts, 0);
                t += 1000;
            }
        }
        make_dirs(t_ / "root");
        make_dirs(t_ / "root/etc");
        copy_file("/etc/passwd", t_ / "root/etc/passwd");
        copy_file("/etc/group", t_ / "root/etc/group");
        before_ = describe_tree(t_ / "native/w");
    }

    // Runs each command on both sides, comparing outputs, then the trees.
    void run_all(const std::vector<std::vector<std::string>>& commands, bool compare_mtimes) {
        for (const auto& args : commands) {
            std::vector<std::string> argv = {kBusybox};
            argv.insert(argv.end(), args.begin(), args.end());
            RunOptions o;
            o.cwd = t_ / "native";
            auto native = run(argv, o);
            auto guest = run_vessel({"--root", t_ / "root", "--rw", t_ / "guest/w" + ":/w"}, argv);
            std::string cmd;
            for (const auto& a : args) cmd += a + " ";
            EXPECT_EQ(guest.status, native.status) << cmd << "\n" << guest.err;
            EXPECT_EQ(guest.out, native.out) << cmd;
            EXPECT_EQ(guest.err, native.err) << cmd;
        }
        std::string n = describe_tree(t_ / "native/w", compare_mtimes);
        EXPECT_EQ(describe_tree(t_ / "guest/w", compare_mtimes), n);
        EXPECT_NE(n, before_) << "the commands changed nothing";
    }

    TempDir t_;
    std::string before_;
};

TEST_F(BusyboxWrites, Touch) {
    run_all({{"touch", "w/new.txt"},
             {"touch", "-d", "2021-02-03 04:05:06", "w/old.txt"},
             {"touch", "-c", "w/not-created.txt"},
             {"touch", "w/nodir/x"}},
            false);
    // Dates given explicitly must match exactly.
    EXPECT_EQ(run({kBusybox, "stat", "-c", "%Y", t_ / "guest/w/old.txt"}).out,
              run({kBusybox, "stat", "-c", "%Y", t_ / "native/w/old.txt"}).out);
}

TEST_F(BusyboxWrites, Mkdir) {
    run_all({{"mkdir", "w/plain"},
             {"mkdir", "-p", "w/x/y/z"},
             {"mkdir", "-m", "700", "w/private"},
             {"mkdir", "w/plain"},
             {"mkdir", "w/missing/parent"}},
            false);
}

TEST_F(BusyboxWrites, Rm) {
    run_all({{"rm", "w/victim.txt"}, {"rm", "-r", "w/victimdir"}, {"rm", "-f", "w/absent"}, {"rm", "w/absent"}}, false);
}

TEST_F(BusyboxWrites, Mv) {
    run_all({{"mv", "w/src.txt", "w/moved.txt"},
             {"mv", "w/srcdir", "w/victimdir/"},
             {"mv", "w/old.txt", "w/victimdir/sub/f"},
             {"mv", "w/absent", "w/x"}},
            true);
}

TEST_F(BusyboxWrites, Cp) {
    run_all({{"cp", "w/src.txt", "w/copy.txt"},
             {"cp", "-p", "w/src.txt", "w/preserved.txt"},
             {"cp", "-r", "w/srcdir", "w/copydir"},
             {"cp", "w/absent", "w/x"}},
            false);
    EXPECT_EQ(read_file(t_ / "guest/w/copydir/inner/deep.txt"), "deep\n");
    EXPECT_EQ(run({kBusybox, "stat", "-c", "%Y", t_ / "guest/w/preserved.txt"}).out, "1500000000\n");
}

// busybox sh's `trap` sees signals sent to `vessel run` as it sees them
// natively: a trap interrupts the `read` builtin and exits with its status;
// an ignored signal lets the read finish.
TEST(BusyboxShell, TrapsSeeSignalsFromOutside) {
    REQUIRE_KVM();
    struct Case {
        const char *sig, *script, *expect;
    };
    for (const Case& c :
         {Case{"TERM", R"(trap "echo caught; exit 3" TERM; echo ready; read x; echo "read $x")",
               "status=3\nready\ncaught\n"},
          Case{"INT", R"(trap "" INT; echo ready; read x; echo "read $x")", "status=0\nready\nread data\n"}}) {
        auto native = run_signalled(c.sig, {kBusybox, "sh", "-c", c.script});
        auto guest = run_signalled(c.sig, vessel_run_argv({kBusybox, "sh", "-c", c.script}));
        EXPECT_EQ(native.out, c.expect) << c.script;
        EXPECT_EQ(guest.out, native.out) << c.script << "\n" << guest.err;
    }
}

// A terminal's Ctrl-C reaches its foreground process group, the shell and
// its child alike: SIGINT sent to `vessel run` ends the guest's child
// (status 130) and runs the shell's trap, as `kill -INT -PGID` does natively
// (checked by hand: the harness signals one process).
TEST(BusyboxShell, TerminalSignalsReachTheForegroundGroup) {
    REQUIRE_KVM();
    // "ready" comes from the child, so the signal cannot come before it.
    const std::string script = R"(trap "echo sh-int" INT; sh -c "echo ready; exec sleep 10"; echo "status $?")";
    auto guest = run_signalled("INT", vessel_run_argv({kBusybox, "sh", "-c", script}, {"--root", "/"}));
    EXPECT_EQ(guest.out, "status=0\nready\nsh-int\nstatus 130\n") << guest.err;
}

// Shell scripts that make processes — pipelines, command substitution,
// subshells, background jobs and `wait`, `xargs`, `find -exec`, `env CMD`,
// `tar -z` (which runs gzip) — print what they print natively. The guest
// sees the host's file system (--root /), so the commands are the host's
// own programs, most of them dynamically linked; the files are in a
// directory both runs reach by the same path.
TEST(BusyboxShell, ProcessTreesAsNative) {
    REQUIRE_KVM();
    TempDir t;
    const std::string d = t.path();
    make_dirs(d + "/tree/sub");
    write_file(d + "/tree/one.txt", "b\na\nb\n");
    write_file(d + "/tree/sub/two.txt", "two\n");
    const std::vector<std::string> scripts = {
        "sort " + d + "/tree/one.txt | uniq -c | sort -rn",
        "x=$(echo hello | tr a-z A-Z); echo \"$x\" $(seq 3) $(basename /a/b.txt .txt)",
        "(exit 3); echo $?; false | true; echo $?; (cd /; pwd); pwd",
        "sleep 0.1 & wait $!; echo waited $?; sh -c 'exit 4'; echo $?",
        "seq 5 | xargs -n2 echo; env printf '%s\\n' envok",
        "find " + d + "/tree -type f -exec basename {} \\; | sort",
        "tar -czf - -C " + d + " tree | tar -tzf - | sort",
        "for i in 1 2 3; do echo $i; done | while read l; do echo line $l; done",
        "trap 'echo bye' EXIT; echo body && sh -c 'kill -TERM $$'; echo $?",
    };
    for (const std::string& script : scripts) {
        RunOptions o;
        o.cwd = d;
        auto native = run({kBusybox, "sh", "-c", script}, o);
        auto guest = run_vessel({"--root", "/", "--rw", d + ":" + d, "--workdir", d}, {kBusybox, "sh", "-c", script},
                                with_timeout(60));
        EXPECT_EQ(native.status, 0) << script << "\n" << native.err;
        EXPECT_EQ(guest.status, native.status) << script << "\n" << guest.err;
        EXPECT_EQ(guest.out, native.out) << script;
        EXPECT_EQ(guest.err, native.err) << script;
    }
}

}  // namespace
}  // namespace vessel::test

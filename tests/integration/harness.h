// Helpers for tests that run `vessel` and other programs as child processes.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace vessel::test {

// Where the build put things.
std::string vessel_path();                                                    // build/bin/vessel
std::string guest_program(const std::string& name, const std::string& libc);  // build/guest/NAME-LIBC

struct RunOptions {
    std::string cwd;                       // empty: inherit
    std::vector<std::string> env;          // replaces the environment (empty: a fixed minimal one)
    std::string stdin_path = "/dev/null";  // file opened as stdin
    int stdin_fd = -1;                     // or a descriptor (wins over stdin_path)
    int timeout_s = 60;
};

inline RunOptions with_timeout(int seconds) {
    RunOptions o;
    o.timeout_s = seconds;
    return o;
}

struct RunResult {
    int status = -1;  // exit status; 128+N when killed by signal N; -1 on timeout
    int signal = 0;   // the signal that killed it (a VMM crash), else 0
    std::string out, err;
};

RunResult run(const std::vector<std::string>& argv, const RunOptions& options = {});

// `vessel run [vessel_args...] PROGRAM ARGS...` with --mem 64M, a private
// rewrite cache and the same fixed environment.
RunResult run_vessel(const std::vector<std::string>& vessel_args, const std::vector<std::string>& command,
                     const RunOptions& options = {});

// Runs `argv` (through /bin/sh) with stdin a FIFO, sends it `sig` ("INT",
// "TERM") 0.2 s after its stdout holds "ready", writes "data\n" to the FIFO
// 4 s later, and returns, as `out`, "status=N" and then what it printed.
RunResult run_signalled(const std::string& sig, const std::vector<std::string>& argv, const RunOptions& options = {});
// `vessel run --mem 64M [vessel_args...]` of `command` (run_signalled's
// caller gives run_vessel's environment).
std::vector<std::string> vessel_run_argv(const std::vector<std::string>& command,
                                         const std::vector<std::string>& vessel_args = {});

// The environment both native and guest runs get.
const std::vector<std::string>& fixed_env();

// A fresh directory under $TMPDIR, removed with everything in it.
class TempDir {
public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return path_; }
    std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

private:
    std::string path_;
};

void write_file(const std::string& path, const std::string& data, unsigned mode = 0644);
std::string read_file(const std::string& path);
bool exists(const std::string& path);
void make_dirs(const std::string& path);
void copy_file(const std::string& from, const std::string& to);

// A listing of a tree for comparisons: one line per entry with its relative
// path, type, permission bits, size and (for files) contents hash or link target.
// `with_mtime` adds the modification second of everything but directories,
// whose mtimes are when an entry last changed: the two sides of a comparison
// make their changes at different moments (seconds apart on a slow machine).
std::string describe_tree(const std::string& dir, bool with_mtime = false);

// Empty when /dev/kvm (or $VESSEL_KVM_DEVICE) is usable, else why not.
std::string kvm_problem();

}  // namespace vessel::test

// Integration tests need KVM: without it they fail, loudly, never skip.
#define REQUIRE_KVM()                                                                    \
    do {                                                                                 \
        std::string why = ::vessel::test::kvm_problem();                                 \
        ASSERT_TRUE(why.empty()) << "integration tests need a usable /dev/kvm: " << why; \
    } while (0)

// The system-call table: what the thin layer does with each Linux x86-64
// syscall number (the list itself is syscall_table.inc).
#pragma once

#include <cstdint>
#include <string_view>

#include "thin/syscall_args.h"

namespace vessel::thin {

class Process;

// Returns the value for RAX: a result, or -errno.
using Handler = int64_t (*)(Process&, const SyscallArgs&);

// How far a call follows Linux; the words are docs/syscalls.md's, which a
// test checks against the table (tests/docs/syscalls_doc_test.cc).
enum class SyscallStatus : uint8_t {
    kUnsupported,  // no handler: -ENOSYS, counted
    kFull,         // Linux's behaviour for what a single-threaded process can pass
    kPartial,      // common uses work; the note says what is missing
    kStub,         // accepted and answered plausibly, with no effect
};
std::string_view status_name(SyscallStatus s);  // "full", "partial", ...

// What a call may do to the state the guest-side entry code works from
// (guest_entry.h), so that Process::handle knows what to settle before the
// call and what to republish after it.
enum SyscallEffect : uint8_t {
    // None of the below: the call may see or move a file offset or the
    // memory map, so an open read-ahead window is settled first.
    kSettles = 0,
    // Cannot observe a read-ahead window (no offset, no file write, no map change).
    kWindowSafe = 1 << 0,
    // A write: observes the window only when it writes the window's file.
    kWindowSafeElsewhere = 1 << 1,
    // Moves the break: the break and the memory map are republished after.
    kMovesBreak = 1 << 2,
    // Changes the memory map: the heap's mapped end is recomputed, and the
    // break and the memory map republished, after.
    kRemaps = 1 << 3,
};

// How --trace-syscalls prints each argument: i int, u unsigned, x hex,
// o octal, s string pointer, b buffer (length in the next argument),
// p pointer, f fd, n/a unused.
struct SyscallInfo {
    unsigned nr = 0;
    std::string_view name;
    Handler handler = nullptr;
    std::string_view args;  // one letter per argument
    SyscallStatus status = SyscallStatus::kUnsupported;
    uint8_t effect = kSettles;  // SyscallEffect bits
    std::string_view note;      // short; docs/syscalls.md has the full story
};

inline constexpr unsigned kMaxSyscall = 512;

class SyscallTable {
public:
    // The entry for `nr` (status kUnsupported, no handler, if the thin layer
    // does not implement it); nullptr beyond kMaxSyscall.
    const SyscallInfo* find(uint64_t nr) const;
};

// The table, built at compile time from syscall_table.inc.
const SyscallTable& syscall_table();

// Name of a syscall number for traces and counters ("unknown" if it has none).
std::string_view syscall_name(uint64_t nr);

// Calls answered -ENOSYS that C libraries expect to be refused and work
// around at every start (glibc's rseq): traces mark them "[unsupported,
// expected]" and failure summaries leave them out, so the first plain
// "[unsupported]" is the real blocker.
bool refusal_expected(uint64_t nr);

}  // namespace vessel::thin

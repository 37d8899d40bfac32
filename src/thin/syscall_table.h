// The system-call table: one handler per Linux x86-64 syscall number.
#pragma once

#include <cstdint>
#include <string_view>

namespace vessel::thin {

class Process;

struct SyscallArgs {
    uint64_t nr;
    uint64_t a[6];
};

// Returns the value for RAX: a result, or -errno.
using Handler = int64_t (*)(Process&, const SyscallArgs&);

// How --trace-syscalls prints each argument: i int, u unsigned, x hex,
// o octal, s string pointer, p pointer, f fd, n/a unused.
struct SyscallInfo {
    std::string_view name;
    Handler handler = nullptr;
    std::string_view args;  // one letter per argument
};

inline constexpr unsigned kMaxSyscall = 512;

class SyscallTable {
public:
    void add(unsigned nr, std::string_view name, std::string_view args, Handler h) {
        if (nr < kMaxSyscall) entries_[nr] = {name, h, args};
    }
    const SyscallInfo* find(uint64_t nr) const { return nr < kMaxSyscall ? &entries_[nr] : nullptr; }

private:
    SyscallInfo entries_[kMaxSyscall];
};

// One registration function per family (sys_*.cc).
void register_file_syscalls(SyscallTable& t);
void register_memory_syscalls(SyscallTable& t);
void register_time_syscalls(SyscallTable& t);
void register_process_syscalls(SyscallTable& t);

// The full table, built once.
const SyscallTable& syscall_table();

// Name of a syscall number for traces and counters ("syscall_123" if unknown).
std::string_view syscall_name(uint64_t nr);

}  // namespace vessel::thin

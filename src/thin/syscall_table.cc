#include "thin/syscall_table.h"

#include <string>

namespace vessel::thin {
namespace {

struct NameEntry {
    unsigned nr;
    const char* name;
};
constexpr NameEntry kNames[] = {
#include "thin/syscall_names.inc"
};

}  // namespace

const SyscallTable& syscall_table() {
    static const SyscallTable table = [] {
        SyscallTable t;
        register_file_syscalls(t);
        register_memory_syscalls(t);
        register_time_syscalls(t);
        register_process_syscalls(t);
        return t;
    }();
    return table;
}

std::string_view syscall_name(uint64_t nr) {
    if (const auto* info = syscall_table().find(nr); info && info->handler) return info->name;
    for (const auto& n : kNames)
        if (n.nr == nr) return n.name;
    return "unknown";
}

}  // namespace vessel::thin

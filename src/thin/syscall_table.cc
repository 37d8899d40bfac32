// The system-call table, built at compile time from syscall_table.inc.
#include "thin/syscall_table.h"

#include <sys/syscall.h>

#include <array>

#include "thin/sys_handlers.h"

namespace vessel::thin {
namespace {

// Calls a handler with the view of the registers it declares.
template <class View, int64_t (*F)(Process&, View)>
int64_t call(Process& p, const SyscallArgs& a) {
    return F(p, View(a));
}

using enum SyscallStatus;

constexpr SyscallInfo kEntries[] = {
#define SYSCALL(nr, name, handler, View, trace, status, effect, note) \
    {nr, name, &call<View, handler>, trace, status, effect, note},
#include "thin/syscall_table.inc"
#undef SYSCALL
};

struct NameEntry {
    unsigned nr;
    std::string_view name;
};
constexpr NameEntry kNames[] = {
#include "thin/syscall_names.inc"
};

// The entries indexed by number. Fails to compile on a number out of
// range, listed twice, or whose name is not Linux's name for it.
constexpr std::array<SyscallInfo, kMaxSyscall> index_entries() {
    std::array<SyscallInfo, kMaxSyscall> t{};
    for (const SyscallInfo& e : kEntries) {
        if (e.nr >= kMaxSyscall || t[e.nr].handler) throw "syscall_table.inc: number out of range or listed twice";
        bool named = false;
        for (const NameEntry& n : kNames) named |= n.nr == e.nr && n.name == e.name;
        if (!named) throw "syscall_table.inc: the name does not match syscall_names.inc for that number";
        t[e.nr] = e;
    }
    for (unsigned nr = 0; nr < kMaxSyscall; ++nr) t[nr].nr = nr;
    return t;
}
constexpr std::array<SyscallInfo, kMaxSyscall> kTable = index_entries();

}  // namespace

std::string_view status_name(SyscallStatus s) {
    switch (s) {
        case kFull: return "full";
        case kPartial: return "partial";
        case kStub: return "stub";
        case kUnsupported: break;
    }
    return "unsupported";
}

const SyscallInfo* SyscallTable::find(uint64_t nr) const { return nr < kMaxSyscall ? &kTable[nr] : nullptr; }

const SyscallTable& syscall_table() {
    static constexpr SyscallTable table;
    return table;
}

std::string_view syscall_name(uint64_t nr) {
    if (const auto* info = syscall_table().find(nr); info && info->handler) return info->name;
    for (const auto& n : kNames)
        if (n.nr == nr) return n.name;
    return "unknown";
}

bool refusal_expected(uint64_t nr) { return nr == SYS_rseq; }

}  // namespace vessel::thin

// Exit now with `status`, leaving the expensive teardown of this process's
// resources (a KVM VM, large mappings) to a short-lived helper process.
#pragma once

namespace vessel {

// Flushes stdio, then starts a helper that shares this process's memory and
// file table (clone with CLONE_VM | CLONE_FILES) and exits at once with
// `status`. Because the helper holds the address space and the descriptors,
// this process's own exit frees nothing; the helper closes every descriptor
// (so pipes reach EOF immediately) and its exit releases the VM and memory.
// Falls back to a plain exit if the helper cannot be started.
[[noreturn]] void exit_with_detached_teardown(int status);

}  // namespace vessel

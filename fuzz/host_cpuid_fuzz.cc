// Fuzzes the host-CPUID cache file's reader (arch/x86/host_cpuid.h, parse_cpuid_cache).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "arch/x86/host_cpuid.h"
#include "fuzz/fuzz_util.h"

using namespace vessel::arch::x86;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const auto mine = libc_cpuid_fingerprint();
    auto answers = parse_cpuid_cache({reinterpret_cast<const char*>(data), size}, mine);
    if (!answers) return 0;
    for (const auto& a : *answers) {
        const LeafKind k = leaf_kind(a.leaf);
        FUZZ_CHECK(k.known && k.indexed == (a.subleaf != kAnySubleaf));
    }
    return 0;
}

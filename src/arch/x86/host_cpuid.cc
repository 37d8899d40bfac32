#include "arch/x86/host_cpuid.h"

#include <cpuid.h>
// glibc's header spells bool as C's _Bool, which GCC accepts in C++ and
// clang (the fuzz build, fuzz/README.md) does not.
#ifdef __clang__
#define _Bool bool
#endif
#include <sys/platform/x86.h>
#ifdef __clang__
#undef _Bool
#endif

#include <algorithm>
#include <cstring>

#include "base/cache_dir.h"
#include "base/safe_file.h"

namespace vessel::arch::x86 {
namespace {

CpuidAnswer ask(uint32_t leaf, uint32_t subleaf) {
    CpuidAnswer a{leaf, subleaf, 0, 0, 0, 0};
    __cpuid_count(leaf, subleaf, a.eax, a.ebx, a.ecx, a.edx);
    return a;
}

// How many subleaves of an indexed leaf to read (at most).
constexpr uint32_t kMaxSubleaves = 8;

// Leaves whose subleaves end with a terminating entry: 4 and 0x8000001d
// (cache type 0), 0xb, 0x1f and 0x80000026 (level type 0).
bool ends_with_null_cache(uint32_t leaf) { return leaf == 0x4 || leaf == 0x8000001d; }
bool ends_with_null_level(uint32_t leaf) { return leaf == 0xb || leaf == 0x1f || leaf == 0x80000026; }
// Leaves whose subleaf 0 gives the highest subleaf in EAX.
bool counts_in_eax(uint32_t leaf) {
    return leaf == 0x7 || leaf == 0x14 || leaf == 0x17 || leaf == 0x18 || leaf == 0x1d || leaf == 0x20 || leaf == 0x24;
}

void read_leaf(uint32_t leaf, std::vector<CpuidAnswer>& out) {
    const LeafKind kind = leaf_kind(leaf);
    if (!kind.known) return;
    if (!kind.indexed) {
        CpuidAnswer a = ask(leaf, 0);
        a.subleaf = kAnySubleaf;
        out.push_back(a);
        return;
    }
    uint32_t count = 4;  // the others define a few subleaves each
    if (leaf == 0xd) {
        // 0 and 1, then one per state component the CPU can save
        // (XCR0 bits in 0.EDX:EAX, IA32_XSS bits in 1.EDX:ECX); glibc asks
        // for components 2, 3, 5, 6 and 7 whatever the CPU has.
        const CpuidAnswer s0 = ask(0xd, 0), s1 = ask(0xd, 1);
        const uint64_t components = (uint64_t{s0.edx} << 32 | s0.eax) | (uint64_t{s1.edx} << 32 | s1.ecx);
        count = std::max<uint32_t>(8, 64 - static_cast<uint32_t>(__builtin_clzll(components | 1)));
    } else if (counts_in_eax(leaf)) {
        count = std::max<uint32_t>(count, std::min(ask(leaf, 0).eax, kMaxSubleaves - 1) + 1);
    } else if (ends_with_null_cache(leaf) || ends_with_null_level(leaf)) {
        count = kMaxSubleaves;
    }
    for (uint32_t s = 0; s < count; ++s) {
        const CpuidAnswer a = ask(leaf, s);
        out.push_back(a);
        if (ends_with_null_cache(leaf) && (a.eax & 0x1f) == 0) break;
        if (ends_with_null_level(leaf) && ((a.ecx >> 8) & 0xff) == 0) break;
    }
}

// The cache file: "VSLCPU01", the count, then the answers.
constexpr char kMagic[8] = {'V', 'S', 'L', 'C', 'P', 'U', '0', '1'};
constexpr size_t kMaxAnswers = 1024;

std::array<uint32_t, 36> fingerprint_of(const std::vector<CpuidAnswer>& answers) {
    // The leaves glibc keeps, in its CPUID_INDEX_* order.
    constexpr std::pair<uint32_t, uint32_t> kLibcLeaves[9] = {
        {0x1, 0}, {0x7, 0}, {0x80000001, 0}, {0xd, 1}, {0x80000007, 0}, {0x80000008, 0}, {0x7, 1}, {0x19, 0}, {0x14, 0},
    };
    std::array<uint32_t, 36> f{};
    for (size_t i = 0; i < 9; ++i) {
        const auto [leaf, subleaf] = kLibcLeaves[i];
        for (const CpuidAnswer& a : answers)
            if (a.leaf == leaf && (a.subleaf == subleaf || a.subleaf == kAnySubleaf)) {
                f[i * 4 + 0] = a.eax;
                f[i * 4 + 1] = a.ebx;
                f[i * 4 + 2] = a.ecx;
                f[i * 4 + 3] = a.edx;
                break;
            }
    }
    f[1] &= 0x00ffffff;  // leaf 1 EBX[31:24]: the APIC ID of the CPU that asked
    return f;
}

}  // namespace

// The leaves by kind, as the manuals list them: kept out of clang-format.
// clang-format off
LeafKind leaf_kind(uint32_t leaf) {
    switch (leaf) {
        // Intel SDM vol. 2A (CPUID) and AMD APM vol. 3 (appendix E).
        case 0x0: case 0x1: case 0x2: case 0x3: case 0x5: case 0x6: case 0x8: case 0x9: case 0xa: case 0xc:
        case 0x15: case 0x16: case 0x19: case 0x1a: case 0x1c:
        case 0x80000000: case 0x80000001: case 0x80000002: case 0x80000003: case 0x80000004: case 0x80000005:
        case 0x80000006: case 0x80000007: case 0x80000008: case 0x8000000a: case 0x80000019: case 0x8000001a:
        case 0x8000001b: case 0x8000001c: case 0x8000001e: case 0x8000001f: case 0x80000021: case 0x80000022:
            return {true, false};
        case 0x4: case 0x7: case 0xb: case 0xd: case 0xf: case 0x10: case 0x12: case 0x14: case 0x17: case 0x18:
        case 0x1b: case 0x1d: case 0x1e: case 0x1f: case 0x20: case 0x23: case 0x24:
        case 0x8000001d: case 0x80000020: case 0x80000026:
            return {true, true};
        default: return {};
    }
}
// clang-format on

bool well_formed(const CpuidAnswer& a) {
    const LeafKind k = leaf_kind(a.leaf);
    return k.known && k.indexed == (a.subleaf != kAnySubleaf);
}

std::vector<CpuidAnswer> read_host_cpuid() {
    std::vector<CpuidAnswer> out;
    for (const uint32_t base : {0u, 0x80000000u}) {
        const uint32_t highest = ask(base, 0).eax;
        if (highest < base || highest - base > 0xff) continue;  // no such range
        for (uint32_t leaf = base; leaf <= highest; ++leaf) read_leaf(leaf, out);
    }
    return out;
}

std::array<uint32_t, 36> libc_cpuid_fingerprint() {
    std::array<uint32_t, 36> f{};
    for (unsigned i = 0; i < 9; ++i) std::memcpy(&f[i * 4], __x86_get_cpuid_feature_leaf(i)->cpuid_array, 16);
    f[1] &= 0x00ffffff;
    return f;
}

std::optional<std::vector<CpuidAnswer>> parse_cpuid_cache(std::string_view data,
                                                          const std::array<uint32_t, 36>& fingerprint) {
    uint64_t count = 0;
    if (data.size() < 16 || std::memcmp(data.data(), kMagic, 8) != 0) return std::nullopt;
    std::memcpy(&count, data.data() + 8, 8);
    if (count > kMaxAnswers || data.size() != 16 + count * sizeof(CpuidAnswer)) return std::nullopt;
    std::vector<CpuidAnswer> cached(count);
    if (count) std::memcpy(cached.data(), data.data() + 16, count * sizeof(CpuidAnswer));  // data() may be null
    if (!std::all_of(cached.begin(), cached.end(), well_formed) || fingerprint_of(cached) != fingerprint)
        return std::nullopt;
    return cached;
}

std::vector<CpuidAnswer> host_cpuid(const std::string& path) {
    const std::array<uint32_t, 36> mine = libc_cpuid_fingerprint();
    if (!path.empty())
        if (auto cached = parse_cpuid_cache(read_small_file(path, 16 + kMaxAnswers * sizeof(CpuidAnswer)), mine))
            return *cached;
    std::vector<CpuidAnswer> fresh = read_host_cpuid();
    // Written only when it describes the CPU glibc saw: a table read on one
    // CPU while glibc started on a different one is not kept.
    if (!path.empty() && fingerprint_of(fresh) == mine && make_dirs(path.substr(0, path.rfind('/')))) {
        std::string data(kMagic, 8);
        const uint64_t count = fresh.size();
        data.append(reinterpret_cast<const char*>(&count), 8);
        data.append(reinterpret_cast<const char*>(fresh.data()), fresh.size() * sizeof(CpuidAnswer));
        (void)write_file_atomic(path, data.data(), data.size());
    }
    return fresh;
}

uint64_t host_xcr0() {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return uint64_t{hi} << 32 | lo;
}

}  // namespace vessel::arch::x86

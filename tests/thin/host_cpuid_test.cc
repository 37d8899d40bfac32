// The host CPUID table thin guests' rewritten `cpuid` sites are answered from
// (arch/x86/host_cpuid.h): exact answers, known leaves only, and a per-boot
// cache file that is used only while it matches the CPU glibc saw.
#include "arch/x86/host_cpuid.h"

#include <cpuid.h>
#include <gtest/gtest.h>
#include <sched.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace vessel::arch::x86 {
namespace {

// Fields naming the CPU that answered (APIC IDs; the core type of a
// hybrid Intel CPU).
CpuidAnswer masked(CpuidAnswer a) {
    if (a.leaf == 1) a.ebx &= 0x00ffffff;
    if (a.leaf == 0x1a) a.eax = 0;
    if (a.leaf == 0xb || a.leaf == 0x1f || a.leaf == 0x80000026) a.edx = 0;
    if (a.leaf == 0x8000001e) a.eax = a.ebx = 0;
    return a;
}

// Found by fuzz/host_cpuid_fuzz (UBSan, ./dev test --sanitize): a cache
// file of zero answers was copied with memcpy into a null data().
TEST(HostCpuid, CacheFileWithoutAnswersIsNotUsed) {
    std::string file("VSLCPU01", 8);
    file.append(8, '\0');
    EXPECT_FALSE(parse_cpuid_cache(file, libc_cpuid_fingerprint()));
    EXPECT_FALSE(parse_cpuid_cache(file.substr(0, 12), libc_cpuid_fingerprint()));
}

TEST(HostCpuid, AnswersAreTheInstructionsOwnForKnownLeavesOnly) {
    auto answers = read_host_cpuid();
    ASSERT_GE(answers.size(), 2u);
    EXPECT_EQ(answers[0].leaf, 0u);
    EXPECT_EQ(answers[0].subleaf, kAnySubleaf);
    bool has_extended = false;
    for (const CpuidAnswer& a : answers) {
        const LeafKind kind = leaf_kind(a.leaf);
        EXPECT_TRUE(kind.known) << std::hex << a.leaf;
        EXPECT_EQ(kind.indexed, a.subleaf != kAnySubleaf) << std::hex << a.leaf;
        CpuidAnswer again{a.leaf, a.subleaf, 0, 0, 0, 0};
        __cpuid_count(a.leaf, a.subleaf == kAnySubleaf ? 0 : a.subleaf, again.eax, again.ebx, again.ecx, again.edx);
        EXPECT_EQ(masked(again), masked(a)) << std::hex << a.leaf << "." << a.subleaf;
        has_extended |= a.leaf == 0x80000000;
    }
    EXPECT_TRUE(has_extended);
    // An unknown leaf is never in a table: the guest runs the instruction.
    EXPECT_FALSE(leaf_kind(0x40000000).known);
    EXPECT_FALSE(leaf_kind(0x21).known);
    EXPECT_TRUE(leaf_kind(0xd).indexed);
    EXPECT_FALSE(leaf_kind(0x80000002).indexed);
}

class HostCpuidCache : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/vessel-cpuid-test-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        path_ = dir_ + "/not-yet/host-cpuid";  // the directory is made when the file is written
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }
    std::string read() {
        std::ifstream in(path_, std::ios::binary);
        return {std::istreambuf_iterator<char>(in), {}};
    }
    void write(const std::string& data) { std::ofstream(path_, std::ios::binary) << data; }
    // Sets register `reg` (0-3: eax..edx) of the first answer for `leaf` in the file.
    void plant(uint32_t leaf, int reg, uint32_t value) {
        std::string data = read();
        for (size_t at = 16; at + 24 <= data.size(); at += 24) {
            uint32_t l;
            std::memcpy(&l, &data[at], 4);
            if (l == leaf) {
                std::memcpy(&data[at + 8 + 4 * reg], &value, 4);
                write(data);
                return;
            }
        }
        FAIL() << "no leaf " << std::hex << leaf << " in the file";
    }
    std::string dir_, path_;
};

uint32_t eax_of(const std::vector<CpuidAnswer>& t, uint32_t leaf) {
    for (const auto& a : t)
        if (a.leaf == leaf) return a.eax;
    return 0;
}

TEST_F(HostCpuidCache, IsWrittenThenUsedWhileItMatchesTheCpuGlibcSaw) {
    const auto fresh = host_cpuid(path_);
    // Written only when the table agrees with glibc's own reading: it must
    // here, or every start would read the CPU again.
    ASSERT_TRUE(std::filesystem::exists(path_));
    EXPECT_EQ(read().substr(0, 8), "VSLCPU01");
    EXPECT_EQ(read().size(), 16 + fresh.size() * sizeof(CpuidAnswer));
    // A leaf glibc does not keep (the brand string) comes from the file...
    plant(0x80000002, 0, 0x4c535356);
    EXPECT_EQ(eax_of(host_cpuid(path_), 0x80000002), 0x4c535356u);
    // ...but a file that disagrees with glibc (another CPU) is read again
    // and replaced.
    plant(0x1, 0, eax_of(fresh, 1) ^ 0x10);
    auto again = host_cpuid(path_);
    EXPECT_EQ(eax_of(again, 1), eax_of(fresh, 1));
    EXPECT_EQ(eax_of(again, 0x80000002), eax_of(fresh, 0x80000002));
    EXPECT_EQ(eax_of(host_cpuid(path_), 1), eax_of(fresh, 1));
}

TEST_F(HostCpuidCache, MalformedFilesAreReadAgain) {
    const auto fresh = host_cpuid("");
    for (std::string bad : {std::string(), std::string("VSLCPU01"), std::string("VSLCPU01") + std::string(8, '\xff'),
                            std::string("VSLCPU02") + std::string(8, '\0'), std::string(100000, 'x')}) {
        write(bad);
        auto t = host_cpuid(path_);
        ASSERT_EQ(t.size(), fresh.size());
        EXPECT_EQ(eax_of(t, 0), eax_of(fresh, 0));
        EXPECT_EQ(read().substr(0, 8), "VSLCPU01");
    }
    // A count that disagrees with the size.
    std::string data = read();
    data[8] ^= 1;
    write(data);
    EXPECT_EQ(host_cpuid(path_).size(), fresh.size());
    // An answer for a leaf this module does not know (the hypervisor's),
    // or with the wrong kind of subleaf, in place of the brand string's
    // first leaf (which glibc's fingerprint does not cover): never handed
    // to a guest.
    size_t brand = 0;
    while (brand < fresh.size() && fresh[brand].leaf != 0x80000002) ++brand;
    ASSERT_LT(brand, fresh.size());
    for (auto [leaf, subleaf] : {std::pair<uint32_t, uint32_t>{0x40000000, kAnySubleaf}, {0x80000002, 0}}) {
        data = read();
        std::memcpy(&data[16 + 24 * brand], &leaf, 4);
        std::memcpy(&data[16 + 24 * brand + 4], &subleaf, 4);
        write(data);
        auto t = host_cpuid(path_);
        ASSERT_EQ(t.size(), fresh.size());
        EXPECT_EQ(t[brand], fresh[brand]) << std::hex << leaf << "." << subleaf;
    }
}

}  // namespace
}  // namespace vessel::arch::x86

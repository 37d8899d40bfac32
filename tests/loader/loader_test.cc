// ELF validation, the syscall rewriter and its cache, and the initial stack.
#include <elf.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "elf_header.h"
#include "loader/elf.h"
#include "loader/program.h"
#include "loader/rewriter.h"
#include "memory/address_space.h"

namespace vessel::loader {
namespace {

constexpr uint64_t kText = 0x400000;

// A minimal static executable: one RX segment holding headers and code, one
// RW segment. The code has a real `syscall` (at kSyscallOffset) and an 0F 05
// hidden inside a mov immediate, which the rewriter must leave alone.
constexpr uint64_t kCodeOffset = 0x200;
const uint8_t kCode[] = {
    0xb8, 0x0f, 0x05, 0x00, 0x00,  // mov eax, 0x50f   (0F 05 inside the immediate)
    0xb8, 0x3c, 0x00, 0x00, 0x00,  // mov eax, 60
    0x0f, 0x05,                    // syscall          <- kCodeOffset + 10
    0xeb, 0xfe,                    // jmp $
};
constexpr uint64_t kSyscallOffset = kCodeOffset + 10;

std::vector<uint8_t> tiny_elf(std::span<const uint8_t> code = kCode) {
    std::vector<uint8_t> f(0x2000, 0);
    Elf64_Ehdr eh = testing::elf_header(kText + kCodeOffset, 2);
    Elf64_Phdr text{PT_LOAD, PF_R | PF_X, 0, kText, kText, 0x1000, 0x1000, 0x1000};
    Elf64_Phdr data{PT_LOAD, PF_R | PF_W, 0x1000, kText + 0x1000, kText + 0x1000, 0x100, 0x3000, 0x1000};
    std::memcpy(f.data(), &eh, sizeof eh);
    std::memcpy(f.data() + sizeof eh, &text, sizeof text);
    std::memcpy(f.data() + sizeof eh + sizeof text, &data, sizeof data);
    std::memcpy(f.data() + kCodeOffset, code.data(), code.size());
    std::memcpy(f.data() + 0x1000, "data!", 5);
    return f;
}

Elf64_Ehdr& eh(std::vector<uint8_t>& f) { return *reinterpret_cast<Elf64_Ehdr*>(f.data()); }
Elf64_Phdr& ph(std::vector<uint8_t>& f, int i) {
    return reinterpret_cast<Elf64_Phdr*>(f.data() + sizeof(Elf64_Ehdr))[i];
}

TEST(ParseElf, AcceptsAMinimalStaticExecutable) {
    auto f = tiny_elf();
    auto img = parse_elf(f);
    ASSERT_TRUE(img.has_value()) << img.error().message;
    EXPECT_FALSE(img->pie);
    EXPECT_EQ(img->segments.size(), 2u);
    EXPECT_EQ(img->entry, kText + kCodeOffset);
    EXPECT_EQ(img->phdr_vaddr, kText + sizeof(Elf64_Ehdr));
    EXPECT_EQ(img->lowest, kText);
    EXPECT_EQ(img->highest, kText + 0x4000);
}

TEST(ParseElf, NamesTheInterpreterOfADynamicExecutable) {
    auto f = tiny_elf();
    ph(f, 1).p_type = PT_INTERP;
    ph(f, 1).p_filesz = 28;
    std::memcpy(f.data() + 0x1000, "/lib64/ld-linux-x86-64.so.2", 28);
    auto img = parse_elf(f);
    ASSERT_TRUE(img.has_value()) << img.error().message;
    EXPECT_EQ(img->interp, "/lib64/ld-linux-x86-64.so.2");
    EXPECT_EQ(img->segments.size(), 1u);
    EXPECT_TRUE(parse_elf(tiny_elf())->interp.empty());
}

struct Mutation {
    const char* name;
    void (*apply)(std::vector<uint8_t>&);
    const char* message;
};

class ParseElfRejects : public ::testing::TestWithParam<Mutation> {};

TEST_P(ParseElfRejects, WithAClearMessage) {
    auto f = tiny_elf();
    GetParam().apply(f);
    auto img = parse_elf(f);
    ASSERT_FALSE(img.has_value()) << GetParam().name;
    EXPECT_EQ(img.error().sys_errno, ENOEXEC);
    EXPECT_NE(img.error().message.find(GetParam().message), std::string::npos) << img.error().message;
}

const Mutation kMutations[] = {
    {"empty", [](auto& f) { f.clear(); }, "not an ELF"},
    {"short", [](auto& f) { f.resize(20); }, "truncated ELF header"},
    {"magic", [](auto& f) { f[1] = 'X'; }, "not an ELF"},
    {"class32", [](auto& f) { eh(f).e_ident[EI_CLASS] = ELFCLASS32; }, "64-bit"},
    {"bigendian", [](auto& f) { eh(f).e_ident[EI_DATA] = ELFDATA2MSB; }, "little-endian"},
    {"arm64", [](auto& f) { eh(f).e_machine = EM_AARCH64; }, "x86-64"},
    {"core", [](auto& f) { eh(f).e_type = ET_CORE; }, "not an executable"},
    {"phentsize", [](auto& f) { eh(f).e_phentsize = 1; }, "program header size"},
    {"phnum0", [](auto& f) { eh(f).e_phnum = 0; }, "no program headers"},
    {"phnum_huge", [](auto& f) { eh(f).e_phnum = 0xffff; }, "too many program headers"},
    {"phoff", [](auto& f) { eh(f).e_phoff = ~0ull - 8; }, "truncated program header"},
    {"truncated_segment", [](auto& f) { f.resize(0x1002); }, "past the end"},
    {"filesz", [](auto& f) { ph(f, 1).p_filesz = 0x4000; }, "exceeds memory size"},
    {"overlap", [](auto& f) { ph(f, 1).p_vaddr = kText; }, "overlapping"},
    {"unordered", [](auto& f) { std::swap(ph(f, 0), ph(f, 1)); }, "overlapping or unordered"},
    {"kernel_half", [](auto& f) { ph(f, 1).p_vaddr = ph(f, 1).p_paddr = 0xffff800000001000ull; }, "user address"},
    {"wraps", [](auto& f) { ph(f, 1).p_memsz = ~0ull - 0x100; }, "user address"},
    {"misaligned", [](auto& f) { ph(f, 1).p_offset = 0x1001; }, "misaligned"},
    {"entry_in_data", [](auto& f) { eh(f).e_entry = kText + 0x1000; }, "entry point"},
    {"entry_nowhere", [](auto& f) { eh(f).e_entry = 0; }, "entry point"},
    {"no_load", [](auto& f) { ph(f, 0).p_type = ph(f, 1).p_type = PT_NOTE; }, "no loadable segments"},
    {"interp_nul_inside", [](auto& f) { ph(f, 1).p_type = PT_INTERP; }, "not one NUL-terminated path"},
    {"interp_unterminated",
     [](auto& f) {
         ph(f, 1).p_type = PT_INTERP;
         ph(f, 1).p_filesz = 5;  // "data!" without its NUL
     },
     "not one NUL-terminated path"},
    {"interp_offset_garbage",
     [](auto& f) {
         ph(f, 1).p_type = PT_INTERP;
         ph(f, 1).p_offset = ~0ull;
     },
     "PT_INTERP extends past the end"},
    {"interp_huge",
     [](auto& f) {
         ph(f, 1).p_type = PT_INTERP;
         ph(f, 1).p_filesz = kMaxInterpBytes + 1;
     },
     "bad PT_INTERP size"},
};

INSTANTIATE_TEST_SUITE_P(Mutations, ParseElfRejects, ::testing::ValuesIn(kMutations),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(ParseElf, NeverReadsOutOfBoundsOnAnyTruncation) {
    auto f = tiny_elf();
    for (size_t n = 0; n < 0x1100; n += 7) {
        std::vector<uint8_t> cut(f.begin(), f.begin() + static_cast<long>(n));
        auto img = parse_elf(cut);  // ASan/valgrind would catch a stray read
        if (img) {
            EXPECT_GE(n, 0x1100u);
        }
    }
}

TEST(Rewriter, FindsRealSyscallsOnly) {
    auto f = tiny_elf();
    auto img = parse_elf(f);
    ASSERT_TRUE(img.has_value());
    auto sites = find_sites(f, *img);
    ASSERT_TRUE(sites.has_value());
    ASSERT_EQ(sites->size(), 1u);
    EXPECT_EQ(site_offset((*sites)[0]), kSyscallOffset);
    // 0F 05 in a non-executable segment is data, not code.
    std::memcpy(f.data() + 0x1010, kSyscall, 2);
    EXPECT_EQ(find_sites(f, *img).value().size(), 1u);
}

// Which sites jump to a stub (and on to the guest-side entry) and which stay
// `out` (straight to the VMM): see rewriter.h.
struct SiteCase {
    const char* name;
    std::vector<uint8_t> code;  // holds one syscall
    SiteKind kind;
};

std::vector<uint8_t> operator+(std::vector<uint8_t> a, const std::vector<uint8_t>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

const std::vector<uint8_t> kSys = {0x0f, 0x05};
const std::vector<uint8_t> kMovEax39 = {0xb8, 39, 0, 0, 0};                  // mov $39,%eax
const std::vector<uint8_t> kXorEax = {0x31, 0xc0};                           // xor %eax,%eax
const std::vector<uint8_t> kStoreBelowRsp = {0x48, 0x89, 0x44, 0x24, 0xf8};  // mov %rax,-8(%rsp)

std::vector<uint8_t> nops(size_t n) { return std::vector<uint8_t>(n, 0x90); }

class SiteKinds : public ::testing::TestWithParam<SiteCase> {};

TEST_P(SiteKinds, AreChosenByTheCodeAroundTheSite) {
    const SiteCase& c = GetParam();
    // NOPs first: whatever the sweep decoded before them, it is in step by the site.
    auto code = nops(16) + c.code + std::vector<uint8_t>{0xeb, 0xfe};  // ... jmp $
    auto f = tiny_elf(code);
    auto img = parse_elf(f);
    ASSERT_TRUE(img.has_value());
    auto sites = find_sites(f, *img).value();
    ASSERT_EQ(sites.size(), 1u);
    auto at = std::search(c.code.begin(), c.code.end(), kSys.begin(), kSys.end()) - c.code.begin();
    EXPECT_EQ(site_offset(sites[0]), kCodeOffset + 16 + at);
    EXPECT_EQ(site_kind(sites[0]), c.kind);
    if (c.kind == kCopySite) {  // the fewest instructions before the syscall that make 3 bytes
        EXPECT_GE(site_copied(sites[0]), kCopyMin);
        EXPECT_LE(site_copied(sites[0]), static_cast<unsigned>(at + 16));
    }
}

INSTANTIATE_TEST_SUITE_P(
    Rewriter, SiteKinds,
    ::testing::Values(
        SiteCase{"MovImm", kMovEax39 + kSys, kMovSite},
        SiteCase{"MovAnyImm", std::vector<uint8_t>{0xb8, 0x00, 0x00, 0x01, 0x00} + kSys, kMovSite},
        SiteCase{"JccXor", std::vector<uint8_t>{0x74, 0x10} + kXorEax + kSys, kJccXorSite},
        SiteCase{"JccXorOtherForm", std::vector<uint8_t>{0x75, 0xf0, 0x33, 0xc0} + kSys, kJccXorSite},
        // Anything else that neither branches nor uses RIP is copied into the stub.
        SiteCase{"XorAfterAPush", std::vector<uint8_t>{0x53} + kXorEax + kSys, kCopySite},
        SiteCase{"NumberFromARegister", std::vector<uint8_t>{0x53, 0x89, 0xf8} + kSys, kCopySite},
        // Not across padding or ENDBR64: a function may begin right after them.
        SiteCase{"AfterPadding", std::vector<uint8_t>{0x89, 0xf8} + kSys, kExitSite},
        SiteCase{"AfterEndbr64", std::vector<uint8_t>{0xf3, 0x0f, 0x1e, 0xfa, 0x89, 0xf8} + kSys, kExitSite},
        SiteCase{"MovToAnotherRegister", std::vector<uint8_t>{0xb9, 39, 0, 0, 0} + kSys, kCopySite},
        SiteCase{"StoreBelowRsp", kStoreBelowRsp + kSys, kCopySite},
        // What cannot run at another address unchanged stays an exit site.
        SiteCase{"RipRelativeBefore", std::vector<uint8_t>{0x48, 0x8b, 0x05, 0, 0, 0, 0} + kSys, kExitSite},
        SiteCase{"CallBefore", std::vector<uint8_t>{0xe8, 0, 0, 0, 0} + kSys, kExitSite},
        SiteCase{"ShortJumpBefore", std::vector<uint8_t>{0x89, 0xf8, 0xeb, 0x00} + kSys, kExitSite},
        // A branch that lands on the syscall itself would land inside the jump.
        SiteCase{"BranchIntoTheSite", std::vector<uint8_t>{0xeb, 0x05} + kMovEax39 + kSys, kExitSite},
        SiteCase{"BranchIntoTheJccSite", std::vector<uint8_t>{0xeb, 0x02, 0x74, 0x10} + kXorEax + kSys, kExitSite},
        // A branch to the first replaced instruction still works: the jump starts there.
        SiteCase{"BranchToTheMov", std::vector<uint8_t>{0xeb, 0x00} + kMovEax39 + kSys, kMovSite},
        // Nothing is pushed on the stack, so a red zone in use is no obstacle.
        SiteCase{"RedZoneInUse", kStoreBelowRsp + kMovEax39 + kSys + kStoreBelowRsp, kMovSite}),
    [](const auto& info) { return std::string(info.param.name); });

// The stub does what the replaced bytes did, then enters the guest-side
// entry with RCX = the address after the site; the site jumps to it.
TEST(Rewriter, StubsRedoTheReplacedInstructionsAndReturnAfterTheSite) {
    auto code = nops(16) + std::vector<uint8_t>{0x74, 0x30} + kXorEax + kSys + nops(4) + kMovEax39 + kSys +
                kStoreBelowRsp + kSys;  // the jz lands past all of this
    auto f = tiny_elf(code);
    auto img = parse_elf(f);
    ASSERT_TRUE(img.has_value());
    auto sites = find_sites(f, *img).value();
    ASSERT_EQ(sites.size(), 3u);
    ASSERT_EQ(site_kind(sites[0]), kJccXorSite);
    ASSERT_EQ(site_kind(sites[1]), kMovSite);
    ASSERT_EQ(site_kind(sites[2]), kCopySite);
    ASSERT_EQ(site_copied(sites[2]), kStoreBelowRsp.size());
    const uint64_t jcc_va = kText + kCodeOffset + 16, site1_va = jcc_va + 4, site2_va = site1_va + 2 + 4 + 5;
    auto stubs = build_stubs(f, *img, sites);
    ASSERT_EQ(stubs.size(), 4096u);
    const uint64_t base = kText + 0x4000;  // the page after the image
    auto rel32 = [&](size_t at) {
        int32_t v;
        std::memcpy(&v, &stubs[at], 4);
        return static_cast<int64_t>(v);
    };
    // Stub 0: jz rel32 to the jcc's target, xor, lea rcx, jmp *pointer.
    EXPECT_EQ(stubs[0], 0x0f);
    EXPECT_EQ(stubs[1], 0x84);
    EXPECT_EQ(base + 6 + rel32(2), jcc_va + 2 + 0x30);
    EXPECT_EQ(stubs[6], 0x31);
    EXPECT_EQ(stubs[7], 0xc0);
    EXPECT_EQ((std::vector<uint8_t>(stubs.begin() + 8, stubs.begin() + 11)), (std::vector<uint8_t>{0x48, 0x8d, 0x0d}));
    EXPECT_EQ(base + 15 + rel32(11), site1_va + 2);
    EXPECT_EQ((std::vector<uint8_t>(stubs.begin() + 15, stubs.begin() + 18)), (std::vector<uint8_t>{0xff, 0x24, 0x25}));
    EXPECT_EQ(static_cast<uint64_t>(rel32(18)), kGuestHandlerPointer);
    // Stub 1: mov $39,%eax, lea rcx, jmp *pointer.
    const size_t s1 = kStubSlot;
    EXPECT_EQ((std::vector<uint8_t>(stubs.begin() + s1, stubs.begin() + s1 + 5)), kMovEax39);
    EXPECT_EQ(base + s1 + 12 + rel32(s1 + 8), site2_va + 2);
    EXPECT_EQ(static_cast<uint64_t>(rel32(s1 + 15)), kGuestHandlerPointer);
    // Stub 2: the copied store, lea rcx, jmp *pointer.
    const size_t s2 = 2 * kStubSlot, site3_va = site2_va + 2 + kStoreBelowRsp.size();
    EXPECT_EQ((std::vector<uint8_t>(stubs.begin() + s2, stubs.begin() + s2 + 5)), kStoreBelowRsp);
    EXPECT_EQ(base + s2 + 12 + rel32(s2 + 8), site3_va + 2);
    // The sites: jmp rel32 to their stubs, NOPs over the rest.
    std::vector<std::pair<uint64_t, std::vector<uint8_t>>> patches;
    for_each_patch(*img, sites, [&](uint64_t off, const uint8_t* b, unsigned n) {
        patches.emplace_back(off, std::vector<uint8_t>(b, b + n));
    });
    ASSERT_EQ(patches.size(), 3u);
    EXPECT_EQ(patches[0].first, kCodeOffset + 16);
    ASSERT_EQ(patches[0].second.size(), 6u);
    EXPECT_EQ(patches[0].second[0], 0xe9);
    EXPECT_EQ(patches[0].second[5], 0x90);
    int32_t j;
    std::memcpy(&j, &patches[0].second[1], 4);
    EXPECT_EQ(jcc_va + 5 + j, base);
    ASSERT_EQ(patches[1].second.size(), 7u);
    std::memcpy(&j, &patches[1].second[1], 4);
    EXPECT_EQ(site2_va - 5 + 5 + j, base + kStubSlot);
}

// `cpuid` sites: the same shapes, flagged, with a stub that enters the
// guest-side CPUID with the return address in RBX. One without room for a
// jump, or with a branch into the bytes the jump would cover, is no site at
// all (it stays the real instruction), and a `cpuid` is never copied into
// a syscall's stub.
TEST(Rewriter, CpuidSitesGoToTheGuestSideCpuid) {
    const std::vector<uint8_t> cpuid = {0x0f, 0xa2}, mov_eax7 = {0xb8, 7, 0, 0, 0}, xor_ecx = {0x31, 0xc9};
    const std::vector<uint8_t> rip_lea = {0x48, 0x8d, 0x1d, 0, 0, 0, 0};         // lea 0(%rip),%rbx
    auto code = nops(16) + mov_eax7 + cpuid +                                    // a mov site
                nops(4) + mov_eax7 + xor_ecx + cpuid +                           // a copy site (7 bytes)
                nops(4) + rip_lea + cpuid +                                      // none: RIP-relative before it
                nops(4) + std::vector<uint8_t>{0xeb, 0x02} + mov_eax7 + cpuid +  // none: a branch into the mov
                nops(4) + std::vector<uint8_t>{0x53} + xor_ecx + cpuid + kSys;   // a copy site (3), an exit site
    auto f = tiny_elf(code);
    auto img = parse_elf(f);
    ASSERT_TRUE(img.has_value());
    auto sites = find_sites(f, *img).value();
    ASSERT_EQ(sites.size(), 4u);
    const uint64_t first = kCodeOffset + 16;
    EXPECT_EQ(sites[0], make_site(first + 5, kMovSite) | kCpuidSite);
    EXPECT_EQ(sites[1], make_site(first + 18, kCopySite, 7) | kCpuidSite);
    EXPECT_EQ(sites[2], make_site(first + 53, kCopySite, 3) | kCpuidSite);
    EXPECT_EQ(sites[3], make_site(first + 55, kExitSite));  // not `push; xor; cpuid` copied

    // The stubs: what the site replaced, lea after_site(%rip),%rbx, jmp *kGuestCpuidPointer.
    auto stubs = build_stubs(f, *img, sites);
    const uint64_t base = kText + 0x4000, site0_va = kText + first + 5;
    EXPECT_EQ((std::vector<uint8_t>(stubs.begin(), stubs.begin() + 5)), mov_eax7);
    EXPECT_EQ((std::vector<uint8_t>(stubs.begin() + 5, stubs.begin() + 8)), (std::vector<uint8_t>{0x48, 0x8d, 0x1d}));
    int32_t rel;
    std::memcpy(&rel, &stubs[8], 4);
    EXPECT_EQ(base + 12 + rel, site0_va + 2);
    EXPECT_EQ((std::vector<uint8_t>(stubs.begin() + 12, stubs.begin() + 15)), (std::vector<uint8_t>{0xff, 0x24, 0x25}));
    uint32_t pointer;
    std::memcpy(&pointer, &stubs[15], 4);
    EXPECT_EQ(pointer, kGuestCpuidPointer);
    EXPECT_EQ((std::vector<uint8_t>(stubs.begin() + 2 * kStubSlot, stubs.begin() + 2 * kStubSlot + 3)),
              (std::vector<uint8_t>{0x53, 0x31, 0xc9}));

    // A cache entry is checked against the instruction its site names.
    EXPECT_TRUE(has_shape(f, first + 5, sites[0]));
    EXPECT_FALSE(has_shape(f, first + 5, sites[0] & ~kCpuidSite));                // not a syscall there
    EXPECT_FALSE(has_shape(f, first + 55, sites[3] | kCpuidSite));                // nor a cpuid here
    EXPECT_FALSE(has_shape(f, first + 5, make_site(0, kExitSite) | kCpuidSite));  // cpuid sites never exit
}

TEST(Rewriter, ContentHashIsStableAndSensitive) {
    auto f = tiny_elf();
    std::string h = content_hash(f);
    EXPECT_EQ(h.size(), 32u);
    EXPECT_EQ(h.find_first_not_of("0123456789abcdef"), std::string::npos);
    EXPECT_EQ(content_hash(f), h);
    f[0x1500] ^= 1;
    EXPECT_NE(content_hash(f), h);
}

class Cache : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/vessel-cache-test-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }
    std::string dir_;
};

TEST_F(Cache, SecondLookupHitsAndCorruptionIsIgnored) {
    auto f = tiny_elf();
    auto img = parse_elf(f);
    ASSERT_TRUE(img.has_value());
    RewriteCache cache(dir_);
    bool hit = true;
    auto first = syscall_sites(f, *img, cache, find_sites, nullptr, &hit).value();
    EXPECT_FALSE(hit);
    auto second = syscall_sites(f, *img, cache, find_sites, nullptr, &hit).value();
    EXPECT_TRUE(hit);
    EXPECT_EQ(first, second);

    std::string entry = dir_ + "/" + content_hash(f);
    auto corrupt = [&](const std::string& bytes) {
        int fd = ::open(entry.c_str(), O_WRONLY | O_TRUNC);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
        ::close(fd);
    };
    // An entry whose offset does not hold a syscall instruction.
    std::string header = "VSLRW003";
    uint64_t size = f.size(), count = 1, bad = 0x10;
    std::string e = header + std::string(reinterpret_cast<char*>(&size), 8) +
                    std::string(reinterpret_cast<char*>(&count), 8) + std::string(reinterpret_cast<char*>(&bad), 8);
    for (const std::string& junk : {std::string("garbage"), std::string(), e, header}) {
        corrupt(junk);
        auto again = syscall_sites(f, *img, cache, find_sites, nullptr, &hit).value();
        EXPECT_FALSE(hit);
        EXPECT_EQ(again, first);
        EXPECT_TRUE(cache.load(content_hash(f), f, *img).has_value()) << "entry was not rebuilt";
    }
    // An entry for a file of another size (a hash collision) is not used.
    auto other = f;
    other.resize(other.size() + 4096);
    EXPECT_FALSE(cache.load(content_hash(f), other, *img).has_value());
}

// Offsets near 2^64 must not wrap the bounds check (a crash found by the
// integration test's random corruption of cache entries).
TEST_F(Cache, HugeOffsetsAreRejectedNotFollowed) {
    // The file sits right after an inaccessible page, as a mapped program
    // can: a wrapped offset would read that page and crash.
    auto bytes = tiny_elf();
    size_t span_pages = (bytes.size() + 4095) / 4096;
    void* region = ::mmap(nullptr, (span_pages + 1) * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(region, MAP_FAILED);
    ASSERT_EQ(::mprotect(region, 4096, PROT_NONE), 0);
    auto* data = static_cast<uint8_t*>(region) + 4096;
    std::memcpy(data, bytes.data(), bytes.size());
    std::span<const uint8_t> f(data, bytes.size());
    auto img = parse_elf(f);
    ASSERT_TRUE(img.has_value());
    RewriteCache cache(dir_);
    ASSERT_TRUE(syscall_sites(f, *img, cache, find_sites).has_value());
    std::string entry = dir_ + "/" + content_hash(f);
    for (uint64_t bad : {~0ull, ~0ull - 1, ~0ull - 4096, 1ull << 63}) {
        uint64_t size = f.size(), count = 1;
        std::string e = std::string("VSLRW003") + std::string(reinterpret_cast<char*>(&size), 8) +
                        std::string(reinterpret_cast<char*>(&count), 8) + std::string(reinterpret_cast<char*>(&bad), 8);
        int fd = ::open(entry.c_str(), O_WRONLY | O_TRUNC);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(::write(fd, e.data(), e.size()), static_cast<ssize_t>(e.size()));
        ::close(fd);
        EXPECT_FALSE(cache.load(content_hash(f), f, *img).has_value()) << bad;
    }
    ::munmap(region, (span_pages + 1) * 4096);
}

// The whole rewritten file, cached under its identity: the ELF bytes with
// every site rewritten and nothing else changed, behind a checked header.
TEST_F(Cache, RewrittenImageRoundTripsAndDamageIsAMiss) {
    auto f = tiny_elf();
    auto img = parse_elf(f);
    ASSERT_TRUE(img.has_value());
    RewriteCache cache(dir_);
    FileIdentity id{.dev = 1, .ino = 2, .size = f.size(), .mtime_ns = 3, .ctime_ns = 4};
    EXPECT_FALSE(open_cached_image(cache, id).has_value());
    auto sites = find_sites(f, *img).value();
    store_cached_image(cache, id, f, *img, sites, build_stubs(f, *img, sites));
    auto cached = open_cached_image(cache, id);
    ASSERT_TRUE(cached.has_value());
    EXPECT_EQ(cached->sites, 1u);
    std::vector<uint8_t> body(f.size());
    ASSERT_EQ(::pread(cached->fd.get(), body.data(), body.size(), kImageHeaderSize), static_cast<ssize_t>(body.size()));
    auto want = f;
    for_each_patch(*img, sites, [&](uint64_t off, const uint8_t* b, unsigned n) { std::memcpy(&want[off], b, n); });
    EXPECT_NE(want, f);
    EXPECT_EQ(body, want);
    EXPECT_EQ(cached->stubs, build_stubs(f, *img, sites));

    // Another identity (the file changed) misses.
    FileIdentity touched = id;
    touched.mtime_ns = 5;
    EXPECT_FALSE(open_cached_image(cache, touched).has_value());
    // Any damage to the header, or a body of the wrong length, misses.
    const std::string path = dir_ + "/" + id.key() + ".img";
    for (off_t at : {0, 8, 16, 24, 32, 56, 64, 71}) {
        store_cached_image(cache, id, f, *img, sites, build_stubs(f, *img, sites));
        int fd = ::open(path.c_str(), O_RDWR);
        ASSERT_GE(fd, 0);
        uint8_t byte = 0;
        ASSERT_EQ(::pread(fd, &byte, 1, at), 1);
        byte ^= 0x40;
        ASSERT_EQ(::pwrite(fd, &byte, 1, at), 1);
        ::close(fd);
        EXPECT_FALSE(open_cached_image(cache, id).has_value()) << "byte " << at;
    }
    store_cached_image(cache, id, f, *img, sites, build_stubs(f, *img, sites));
    ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(kImageHeaderSize + f.size() + 4095)), 0);
    EXPECT_FALSE(open_cached_image(cache, id).has_value());  // a stub page cut short
}

// The image header records where read-only segments hold "/proc/self/exe"
// (glibc's start-up passes it to readlink; the guest-side entry answers it):
// every whole copy in a segment the program cannot write, up to four.
TEST_F(Cache, ImagesRecordTheirProcSelfExeStrings) {
    auto f = tiny_elf();
    const char kS[] = "/proc/self/exe";
    std::memcpy(&f[0x300], kS, sizeof kS);          // read+exec segment: recorded
    std::memcpy(&f[0x340], "x/proc/self/exe", 16);  // a tail is a string too
    std::memcpy(&f[0x380], kS, sizeof kS - 1);      // no NUL: not a string
    f[0x380 + sizeof kS - 1] = 'X';
    std::memcpy(&f[0x1010], kS, sizeof kS);  // writable segment: not recorded
    auto img = parse_elf(f);
    ASSERT_TRUE(img.has_value());
    RewriteCache cache(dir_);
    FileIdentity id{.dev = 1, .ino = 2, .size = f.size(), .mtime_ns = 3, .ctime_ns = 4};
    auto sites = find_sites(f, *img).value();
    store_cached_image(cache, id, f, *img, sites, build_stubs(f, *img, sites));
    auto cached = open_cached_image(cache, id);
    ASSERT_TRUE(cached.has_value());
    EXPECT_EQ(cached->self_exe, (std::array<uint64_t, kSelfExeStrings>{0x300, 0x341, 0, 0}));
    // Their addresses in the guest: each in its read-only segment, plus the
    // load bias; an offset in the writable segment has none.
    CachedImage forged;
    forged.self_exe = {0x300, 0x341, 0x1010, 0};
    EXPECT_EQ(self_exe_addresses(forged, *img, 0x10000),
              (std::array<uint64_t, kSelfExeStrings>{kText + 0x10300, kText + 0x10341, 0, 0}));
    // An offset that points outside the file is damage: a miss.
    const std::string path = dir_ + "/" + id.key() + ".img";
    int fd = ::open(path.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    uint64_t bad = f.size() - 4;
    ASSERT_EQ(::pwrite(fd, &bad, 8, 32), 8);  // the first offset: the checksum no longer matches
    ::close(fd);
    EXPECT_FALSE(open_cached_image(cache, id).has_value());
}

TEST_F(Cache, UnusableDirectoryDisablesCaching) {
    auto f = tiny_elf();
    auto img = parse_elf(f);
    RewriteCache cache("/dev/null/cache");
    bool hit = true;
    EXPECT_EQ(syscall_sites(f, *img, cache, find_sites, nullptr, &hit).value().size(), 1u);
    EXPECT_FALSE(hit);
    EXPECT_FALSE(syscall_sites(f, *img, cache, find_sites, nullptr, &hit).value().empty());
    EXPECT_FALSE(hit);
}

TEST(LoadProgram, MapsRewritesAndBuildsTheLinuxStack) {
    auto mem = memory::GuestMemory::create(16 << 20);
    ASSERT_TRUE(mem.has_value());
    memory::AddressSpace as(*mem, 0x1000);
    ASSERT_TRUE(as.init().has_value());
    auto f = tiny_elf();
    auto img = parse_elf(f);
    ASSERT_TRUE(img.has_value());
    ProgramSpec spec;
    spec.argv = {"prog", "arg1"};
    spec.envp = {"A=1"};
    spec.execfn = "/bin/prog";
    spec.stack_size = 64 << 10;
    auto sites = find_sites(f, *img).value();
    auto loaded = load_program(as, f, *img, sites, build_stubs(f, *img, sites), spec);
    ASSERT_TRUE(loaded.has_value()) << loaded.error().message;
    EXPECT_EQ(loaded->entry, kText + kCodeOffset);
    EXPECT_EQ(loaded->brk_start, kText + 0x5000);  // after the stub page
    EXPECT_EQ(loaded->stack_pointer % 16, 0u);
    auto v = as.view();
    uint8_t site[7];
    ASSERT_TRUE(v.read(kText + kSyscallOffset - 5, site, 7));  // mov $60,%eax; syscall
    EXPECT_EQ(site[0], 0xe9);                                  // jmp to the stub
    int32_t rel;
    std::memcpy(&rel, site + 1, 4);
    EXPECT_EQ(kText + kSyscallOffset + rel, kText + 0x4000);
    EXPECT_EQ(site[5], 0x90);
    EXPECT_EQ(site[6], 0x90);
    uint8_t stub[5];
    ASSERT_TRUE(v.read(kText + 0x4000, stub, 5));  // the stub: readable, ...
    EXPECT_EQ(stub[0], 0xb8);
    EXPECT_EQ(stub[1], 60);
    EXPECT_FALSE(v.write(kText + 0x4000, "x", 1));  // ... not writable
    uint8_t hidden[5];
    ASSERT_TRUE(v.read(kText + kCodeOffset, hidden, 5));
    EXPECT_EQ(std::memcmp(hidden, kCode, 5), 0);  // the mov immediate is intact
    char data[6] = {};
    ASSERT_TRUE(v.read(kText + 0x1000, data, 5));
    EXPECT_STREQ(data, "data!");
    uint8_t bss = 1;
    ASSERT_TRUE(v.read(kText + 0x3fff, &bss, 1));
    EXPECT_EQ(bss, 0);
    // Text is not writable by the guest; data is.
    EXPECT_FALSE(v.write(kText + kCodeOffset, "x", 1));
    EXPECT_TRUE(v.write(kText + 0x2000, "x", 1));

    // argc, argv[], NULL, envp[], NULL, auxv as Linux lays them out.
    uint64_t sp = loaded->stack_pointer, w[5];
    ASSERT_TRUE(v.read(sp, w, sizeof w));
    EXPECT_EQ(w[0], 2u);
    EXPECT_EQ(v.read_cstring(w[1], 100).value(), "prog");
    EXPECT_EQ(v.read_cstring(w[2], 100).value(), "arg1");
    EXPECT_EQ(w[3], 0u);
    EXPECT_EQ(v.read_cstring(w[4], 100).value(), "A=1");
    uint64_t p = sp + 6 * 8;
    std::map<uint64_t, uint64_t> aux;
    for (int i = 0; i < 40; ++i, p += 16) {
        uint64_t kv[2];
        ASSERT_TRUE(v.read(p, kv, 16));
        if (kv[0] == AT_NULL) break;
        aux[kv[0]] = kv[1];
    }
    EXPECT_EQ(aux[AT_PAGESZ], 4096u);
    EXPECT_EQ(aux[AT_ENTRY], kText + kCodeOffset);
    EXPECT_EQ(aux[AT_PHDR], kText + sizeof(Elf64_Ehdr));
    EXPECT_EQ(aux[AT_PHNUM], 2u);
    EXPECT_EQ(v.read_cstring(aux[AT_EXECFN], 100).value(), "/bin/prog");
    EXPECT_EQ(v.read_cstring(aux[AT_PLATFORM], 100).value(), "x86_64");
    EXPECT_NE(aux[AT_RANDOM], 0u);
}

// From a file region (the zero-copy start): read-only and executable pages
// are the file's own, writable ones are copies in guest RAM, so the guest's
// stores never copy-on-write a file page inside KVM's page-fault path.
TEST(LoadProgram, WritableSegmentsAreCopiedOutOfTheFileRegion) {
    auto mem = memory::GuestMemory::create(16 << 20);
    ASSERT_TRUE(mem.has_value());
    memory::AddressSpace as(*mem, 0x1000);
    ASSERT_TRUE(as.init().has_value());
    auto f = tiny_elf();
    ph(f, 1).p_filesz = 0x1000;  // a whole page of file data, then bss
    auto img = parse_elf(f);
    ASSERT_TRUE(img.has_value());
    int fd = ::memfd_create("elf", MFD_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, f.data(), f.size()), static_cast<ssize_t>(f.size()));
    auto region = mem->add_file_region(fd, f.size());
    ::close(fd);
    ASSERT_TRUE(region.has_value()) << region.error().message;
    ProgramSpec spec;
    spec.stack_size = 64 << 10;
    spec.image_gpa = *region;
    auto loaded = load_program(as, f, *img, {}, {}, spec);
    ASSERT_TRUE(loaded.has_value()) << loaded.error().message;
    auto in_file_region = [&](uint64_t va) {
        auto gpa = as.tables().translate(va);
        EXPECT_TRUE(gpa.has_value()) << std::hex << va;
        return gpa && *gpa >= *region && *gpa < *region + f.size();
    };
    EXPECT_TRUE(in_file_region(kText + kCodeOffset));
    EXPECT_FALSE(in_file_region(kText + 0x1000));
    auto v = as.view();
    char data[6] = {};
    ASSERT_TRUE(v.read(kText + 0x1000, data, 5));
    EXPECT_STREQ(data, "data!");
    ASSERT_TRUE(v.write(kText + 0x1000, "DATA?", 5));
    EXPECT_EQ(std::memcmp(mem->host(*region + 0x1000, 5), "data!", 5), 0);  // the file's page is untouched
}

TEST(LoadProgram, TooBigForGuestMemoryIsENOMEM) {
    auto mem = memory::GuestMemory::create(2 << 20);
    ASSERT_TRUE(mem.has_value());
    memory::AddressSpace as(*mem, 0x1000);
    ASSERT_TRUE(as.init().has_value());
    auto f = tiny_elf();
    ph(f, 1).p_memsz = 64 << 20;
    auto img = parse_elf(f);
    ASSERT_TRUE(img.has_value());
    auto loaded = load_program(as, f, *img, {}, {}, ProgramSpec{});
    ASSERT_FALSE(loaded.has_value());
    EXPECT_EQ(loaded.error().sys_errno, ENOMEM);
    EXPECT_NE(loaded.error().message.find("raise --mem"), std::string::npos) << loaded.error().message;
}

TEST(LoadProgram, ArgumentsThatDoNotFitAreE2BIG) {
    auto mem = memory::GuestMemory::create(16 << 20);
    ASSERT_TRUE(mem.has_value());
    memory::AddressSpace as(*mem, 0x1000);
    ASSERT_TRUE(as.init().has_value());
    auto f = tiny_elf();
    auto img = parse_elf(f);
    ProgramSpec spec;
    spec.stack_size = 64 << 10;
    spec.argv = {std::string(100 << 10, 'a')};
    auto loaded = load_program(as, f, *img, {}, {}, spec);
    ASSERT_FALSE(loaded.has_value());
    EXPECT_EQ(loaded.error().sys_errno, E2BIG);
}

}  // namespace
}  // namespace vessel::loader

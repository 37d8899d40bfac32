// vmlinux and bzImage parsing against hand-built images, and refusal of
// malformed files.
#include "loader/linux_loader.h"

#include <elf.h>
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "../loader/elf_header.h"

namespace loader = vessel::loader;
namespace x86 = vessel::arch::x86;

namespace {

// A vmlinux-shaped ELF: one PT_LOAD at physical 16 MiB (virtual in the
// kernel's high half) and a PT_NOTE with Xen's PVH entry.
std::vector<uint8_t> make_vmlinux(bool with_pvh = true, uint32_t note_desc_size = 8) {
    std::vector<uint8_t> f(0x3000, 0);
    Elf64_Ehdr eh = vessel::testing::elf_header(0x1000000, 2);
    std::memcpy(f.data(), &eh, sizeof eh);
    Elf64_Phdr load{};
    load.p_type = PT_LOAD;
    load.p_offset = 0x1000;
    load.p_vaddr = 0xffffffff81000000;
    load.p_paddr = 0x1000000;
    load.p_filesz = 0x1000;
    load.p_memsz = 0x3000;
    load.p_flags = PF_R | PF_X;
    Elf64_Phdr note{};
    note.p_type = PT_NOTE;
    note.p_offset = 0x2000;
    std::memcpy(f.data() + sizeof eh, &load, sizeof load);
    // The note: namesz 4 "Xen\0", type 18, the entry.
    std::vector<uint8_t> n;
    auto put32 = [&](uint32_t v) {
        n.insert(n.end(), reinterpret_cast<uint8_t*>(&v), reinterpret_cast<uint8_t*>(&v) + 4);
    };
    // A note of another owner first, to check the walk.
    put32(4);
    put32(4);
    put32(1);
    n.insert(n.end(), {'G', 'N', 'U', 0});
    put32(0);
    put32(4);
    put32(note_desc_size);
    put32(with_pvh ? loader::kXenElfNotePhys32Entry : 17);
    n.insert(n.end(), {'X', 'e', 'n', 0});
    uint64_t entry = 0x1000850;
    n.insert(n.end(), reinterpret_cast<uint8_t*>(&entry), reinterpret_cast<uint8_t*>(&entry) + note_desc_size);
    note.p_filesz = n.size();
    std::memcpy(f.data() + sizeof eh + sizeof load, &note, sizeof note);
    std::memcpy(f.data() + 0x2000, n.data(), n.size());
    f[0x1000] = 0xcc;
    return f;
}

std::vector<uint8_t> make_bzimage(uint16_t version = 0x020f, uint16_t xloadflags = x86::xloadflags::kKernel64) {
    std::vector<uint8_t> f(5 * 512 + 0x1000, 0);
    x86::SetupHeader h{};
    h.setup_sects = 4;
    h.boot_flag = x86::kBootFlag;
    h.header = x86::kHdrsMagic;
    h.version = version;
    h.loadflags = x86::loadflags::kLoadedHigh;
    h.relocatable_kernel = 1;
    h.kernel_alignment = 0x200000;
    h.xloadflags = xloadflags;
    h.cmdline_size = 2047;
    h.init_size = 0x400000;
    h.pref_address = 0x1000000;
    h.syssize = 0x1000 / 16;
    std::memcpy(f.data() + x86::kSetupHeaderOffset, &h, sizeof h);
    f[5 * 512] = 0xfc;  // first byte of the protected-mode code
    return f;
}

}  // namespace

TEST(LinuxLoader, DetectsFormats) {
    EXPECT_EQ(*loader::detect_kernel_format(make_vmlinux()), loader::KernelFormat::kVmlinux);
    EXPECT_EQ(*loader::detect_kernel_format(make_bzimage()), loader::KernelFormat::kBzImage);
    std::vector<uint8_t> junk(4096, 0x90);
    auto r = loader::detect_kernel_format(junk);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("not a Linux kernel"), std::string::npos);
}

TEST(LinuxLoader, ParsesVmlinuxWithPvhNote) {
    for (uint32_t size : {4u, 8u}) {
        auto f = make_vmlinux(true, size);
        auto k = loader::parse_vmlinux(f);
        ASSERT_TRUE(k) << k.error().message;
        EXPECT_EQ(k->entry64, 0x1000000u);
        ASSERT_TRUE(k->pvh_entry);
        EXPECT_EQ(*k->pvh_entry, 0x1000850u);
        ASSERT_EQ(k->segments.size(), 1u);
        EXPECT_EQ(k->segments[0].paddr, 0x1000000u);
        EXPECT_EQ(k->lowest, 0x1000000u);
        EXPECT_EQ(k->highest, 0x1003000u);
    }
    auto k = loader::parse_vmlinux(make_vmlinux(false));
    ASSERT_TRUE(k);
    EXPECT_FALSE(k->pvh_entry);
}

TEST(LinuxLoader, RefusesMalformedVmlinux) {
    auto expect_error = [](std::vector<uint8_t> f, const char* what) {
        auto k = loader::parse_vmlinux(f);
        ASSERT_FALSE(k) << what;
        EXPECT_FALSE(k.error().message.empty());
    };
    auto f = make_vmlinux();
    f.resize(40);
    expect_error(f, "truncated header");
    f = make_vmlinux();
    f[EI_CLASS] = ELFCLASS32;
    expect_error(f, "32-bit");
    f = make_vmlinux();
    reinterpret_cast<Elf64_Ehdr*>(f.data())->e_phnum = 5000;
    expect_error(f, "phdrs beyond the file");
    f = make_vmlinux();
    reinterpret_cast<Elf64_Phdr*>(f.data() + sizeof(Elf64_Ehdr))->p_filesz = 0x100000;
    expect_error(f, "segment beyond the file");
    f = make_vmlinux();
    reinterpret_cast<Elf64_Phdr*>(f.data() + sizeof(Elf64_Ehdr))->p_paddr = ~0ull - 0x10;
    expect_error(f, "wrapping segment");
    f = make_vmlinux();
    reinterpret_cast<Elf64_Ehdr*>(f.data())->e_entry = 0x5000000;
    expect_error(f, "entry outside segments");
    f = make_vmlinux(true, 2);
    expect_error(f, "PVH note of a bad size");
    f = make_vmlinux();
    reinterpret_cast<Elf64_Phdr*>(f.data() + sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr))->p_filesz = 0x10000;
    expect_error(f, "note beyond the file");
    f = make_vmlinux();
    f[0x2000] = 0xff;  // first note's namesz huge
    f[0x2003] = 0x7f;
    expect_error(f, "note overruns its segment");
}

TEST(LinuxLoader, ParsesBzImageSetupHeader) {
    auto f = make_bzimage();
    auto b = loader::parse_bzimage(f);
    ASSERT_TRUE(b) << b.error().message;
    EXPECT_EQ(b->setup_size, 5u * 512);
    EXPECT_EQ(b->protected_mode.size(), 0x1000u);
    EXPECT_EQ(b->protected_mode[0], 0xfc);
    EXPECT_EQ(b->load_address, loader::kBzImageLoadAddress);
    EXPECT_EQ(b->memory_needed, 0x400000u);
    EXPECT_EQ(b->cmdline_max, 2047u);
    EXPECT_EQ(b->header.version, 0x020f);
}

TEST(LinuxLoader, RefusesBzImagesWithout64BitEntry) {
    auto b = loader::parse_bzimage(make_bzimage(0x020a));
    ASSERT_FALSE(b);
    EXPECT_NE(b.error().message.find("too old"), std::string::npos);
    b = loader::parse_bzimage(make_bzimage(0x020f, 0));
    ASSERT_FALSE(b);
    EXPECT_NE(b.error().message.find("64-bit"), std::string::npos);
    auto f = make_bzimage();
    f.resize(5 * 512);
    EXPECT_FALSE(loader::parse_bzimage(f));  // no protected-mode part
    f = make_bzimage();
    f[0x1fe] = 0;
    EXPECT_FALSE(loader::parse_bzimage(f));  // boot flag
}

TEST(LinuxLoader, LoadsIntoGuestMemoryAndPlacesInitrdHigh) {
    auto mem = vessel::memory::GuestMemory::create(64ull << 20);
    ASSERT_TRUE(mem);
    auto f = make_vmlinux();
    auto k = loader::parse_vmlinux(f);
    ASSERT_TRUE(k);
    ASSERT_TRUE(loader::load_vmlinux(*mem, f, *k, mem->size()));
    EXPECT_EQ(*mem->host(0x1000000, 1), 0xcc);
    EXPECT_EQ(*mem->host(0x1002fff, 1), 0);                      // BSS zeroed
    EXPECT_FALSE(loader::load_vmlinux(*mem, f, *k, 0x1001000));  // does not fit

    std::vector<uint8_t> initrd(10000, 0xab);
    auto addr = loader::load_initrd(*mem, initrd, k->highest, mem->size());
    ASSERT_TRUE(addr);
    EXPECT_EQ(*addr % 4096, 0u);
    EXPECT_LE(*addr + initrd.size(), mem->size());
    EXPECT_GT(*addr, mem->size() - 2 * 4096 - initrd.size());
    EXPECT_EQ(*mem->host(*addr, 1), 0xab);
    EXPECT_FALSE(loader::load_initrd(*mem, std::vector<uint8_t>(63ull << 20), k->highest, mem->size()));

    auto bz = make_bzimage();
    auto b = loader::parse_bzimage(bz);
    ASSERT_TRUE(b);
    ASSERT_TRUE(loader::load_bzimage(*mem, *b, mem->size()));
    EXPECT_EQ(*mem->host(b->load_address, 1), 0xfc);
}

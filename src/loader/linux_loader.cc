#include "loader/linux_loader.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include "base/fd.h"
#include "base/text.h"

namespace vessel::loader {
namespace {

namespace x86 = arch::x86;

constexpr uint64_t kLowestLoadAddress = 0x100000;  // everything below is the machine's

template <class T>
bool read_at(std::span<const uint8_t> file, uint64_t offset, T& out) {
    if (offset > file.size() || sizeof(T) > file.size() - offset) return false;
    std::memcpy(&out, file.data() + offset, sizeof(T));
    return true;
}

bool within(uint64_t offset, uint64_t len, uint64_t size) { return offset <= size && len <= size - offset; }

// Walks the notes of one PT_NOTE segment looking for Xen's PVH entry.
Result<std::optional<uint32_t>> find_pvh_note(std::span<const uint8_t> notes) {
    uint64_t pos = 0;
    while (pos + sizeof(Elf64_Nhdr) <= notes.size()) {
        Elf64_Nhdr nh;
        std::memcpy(&nh, notes.data() + pos, sizeof nh);
        pos += sizeof nh;
        uint64_t name_len = (uint64_t(nh.n_namesz) + 3) & ~3ull;
        uint64_t desc_len = (uint64_t(nh.n_descsz) + 3) & ~3ull;
        if (!within(pos, name_len, notes.size()) || !within(pos + name_len, desc_len, notes.size()))
            return fail("malformed ELF note");
        const uint8_t* name = notes.data() + pos;
        const uint8_t* desc = name + name_len;
        if (nh.n_namesz == 4 && std::memcmp(name, "Xen", 4) == 0 && nh.n_type == kXenElfNotePhys32Entry) {
            uint64_t entry = 0;
            if (nh.n_descsz == 4) {
                uint32_t v;
                std::memcpy(&v, desc, 4);
                entry = v;
            } else if (nh.n_descsz == 8) {
                std::memcpy(&entry, desc, 8);
            } else {
                return fail("PVH entry note has a bad size");
            }
            if (entry >> 32) return fail("PVH entry point " + hex(entry) + " is above 4 GiB");
            return std::optional<uint32_t>(static_cast<uint32_t>(entry));
        }
        pos += name_len + desc_len;
    }
    return std::optional<uint32_t>();
}

}  // namespace

Result<KernelFormat> detect_kernel_format(std::span<const uint8_t> file) {
    if (file.size() >= SELFMAG && std::memcmp(file.data(), ELFMAG, SELFMAG) == 0) return KernelFormat::kVmlinux;
    uint32_t magic = 0;
    if (read_at(file, 0x202, magic) && magic == x86::kHdrsMagic) return KernelFormat::kBzImage;
    return fail("not a Linux kernel (neither a vmlinux ELF file nor a bzImage)");
}

Result<Vmlinux> parse_vmlinux(std::span<const uint8_t> file) {
    Elf64_Ehdr eh;
    if (!read_at(file, 0, eh) || std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) return fail("not an ELF file");
    if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB || eh.e_machine != EM_X86_64)
        return fail("not an x86-64 ELF file");
    if (eh.e_type != ET_EXEC) return fail("not an ELF executable (a vmlinux is ET_EXEC)");
    if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 ||
        !within(eh.e_phoff, uint64_t(eh.e_phnum) * sizeof(Elf64_Phdr), file.size()))
        return fail("bad ELF program header table");

    Vmlinux k;
    k.lowest = UINT64_MAX;
    for (unsigned i = 0; i < eh.e_phnum; ++i) {
        Elf64_Phdr ph;
        read_at(file, eh.e_phoff + uint64_t(i) * sizeof ph, ph);
        if (ph.p_type == PT_NOTE) {
            if (!within(ph.p_offset, ph.p_filesz, file.size())) return fail("ELF note segment outside the file");
            auto note = find_pvh_note(file.subspan(ph.p_offset, ph.p_filesz));
            if (!note) return std::unexpected(note.error());
            if (*note) k.pvh_entry = *note;
            continue;
        }
        if (ph.p_type != PT_LOAD || ph.p_memsz == 0) continue;
        if (!within(ph.p_offset, ph.p_filesz, file.size()))
            return fail("ELF segment " + std::to_string(i) + " outside the file");
        if (ph.p_filesz > ph.p_memsz) return fail("ELF segment " + std::to_string(i) + " has filesz > memsz");
        if (ph.p_paddr + ph.p_memsz < ph.p_paddr) return fail("ELF segment " + std::to_string(i) + " wraps around");
        k.segments.push_back({ph.p_paddr, ph.p_offset, ph.p_filesz, ph.p_memsz});
        k.lowest = std::min(k.lowest, ph.p_paddr);
        k.highest = std::max(k.highest, ph.p_paddr + ph.p_memsz);
    }
    if (k.segments.empty()) return fail("ELF file has no loadable segments");
    std::sort(k.segments.begin(), k.segments.end(),
              [](const KernelSegment& a, const KernelSegment& b) { return a.paddr < b.paddr; });
    for (size_t i = 1; i < k.segments.size(); ++i)
        if (k.segments[i - 1].paddr + k.segments[i - 1].memsz > k.segments[i].paddr)
            return fail("ELF segments overlap in physical memory");

    auto inside = [&](uint64_t addr) {
        return std::any_of(k.segments.begin(), k.segments.end(),
                           [&](const KernelSegment& s) { return addr >= s.paddr && addr - s.paddr < s.memsz; });
    };
    k.entry64 = eh.e_entry;
    if (!inside(k.entry64)) return fail("ELF entry point " + hex(k.entry64) + " is not in a loaded segment");
    if (k.pvh_entry && !inside(*k.pvh_entry))
        return fail("PVH entry point " + hex(*k.pvh_entry) + " is not in a loaded segment");
    return k;
}

Result<BzImage> parse_bzimage(std::span<const uint8_t> file) {
    BzImage b;
    if (!read_at(file, x86::kSetupHeaderOffset, b.header)) return fail("file too small for a bzImage setup header");
    const auto& h = b.header;
    if (h.header != x86::kHdrsMagic) return fail("no bzImage setup header (\"HdrS\" missing)");
    if (h.boot_flag != x86::kBootFlag) return fail("bad bzImage boot flag");
    if (h.version < 0x020c)
        return fail("boot protocol " + std::to_string(h.version >> 8) + "." + std::to_string(h.version & 0xff) +
                    " is too old: the 64-bit entry needs 2.12 or later");
    if (!(h.xloadflags & x86::xloadflags::kKernel64)) return fail("bzImage has no 64-bit entry point");
    if (!(h.loadflags & x86::loadflags::kLoadedHigh)) return fail("bzImage is a zImage (must load high)");

    unsigned sects = h.setup_sects ? h.setup_sects : 4;
    b.setup_size = (uint64_t(sects) + 1) * 512;
    if (b.setup_size >= file.size()) return fail("bzImage is truncated (no protected-mode kernel)");
    b.protected_mode = file.subspan(b.setup_size);
    if (h.syssize && uint64_t(h.syssize) * 16 > b.protected_mode.size())
        return fail("bzImage is truncated (syssize exceeds the file)");

    if (h.relocatable_kernel) {
        uint64_t align = h.kernel_alignment ? h.kernel_alignment : 0x200000;
        if (align & (align - 1)) return fail("bzImage kernel_alignment is not a power of two");
        b.load_address = (kBzImageLoadAddress + align - 1) & ~(align - 1);
    } else {
        b.load_address = h.pref_address;
        if (b.load_address < kLowestLoadAddress || b.load_address >> 32)
            return fail("bzImage wants to load at " + hex(b.load_address) + ", which this machine cannot offer");
    }
    b.memory_needed = std::max<uint64_t>(h.init_size, b.protected_mode.size());
    b.cmdline_max = h.cmdline_size ? h.cmdline_size : 255;
    return b;
}

Result<> load_vmlinux(memory::GuestMemory& mem, std::span<const uint8_t> file, const Vmlinux& image, uint64_t ram_end) {
    for (const auto& s : image.segments) {
        if (s.paddr < kLowestLoadAddress || s.paddr + s.memsz > ram_end || !mem.contains(s.paddr, s.memsz))
            return fail("kernel segment at " + hex(s.paddr) + " (" + std::to_string(s.memsz >> 10) +
                            " KiB) does not fit in guest RAM — raise --mem",
                        ENOMEM);
        uint8_t* dst = mem.host(s.paddr, s.memsz);
        std::memcpy(dst, file.data() + s.offset, s.filesz);
        std::memset(dst + s.filesz, 0, s.memsz - s.filesz);
    }
    return {};
}

Result<> load_bzimage(memory::GuestMemory& mem, const BzImage& image, uint64_t ram_end) {
    if (image.load_address + image.memory_needed > ram_end || !mem.contains(image.load_address, image.memory_needed))
        return fail("kernel needs " + std::to_string((image.load_address + image.memory_needed) >> 20) +
                        " MiB of guest RAM to decompress — raise --mem",
                    ENOMEM);
    std::memcpy(mem.host(image.load_address, image.protected_mode.size()), image.protected_mode.data(),
                image.protected_mode.size());
    return {};
}

Result<uint64_t> load_initrd(memory::GuestMemory& mem, std::span<const uint8_t> initrd, uint64_t lowest,
                             uint64_t highest_end) {
    highest_end = std::min(highest_end, mem.size());
    if (initrd.size() > highest_end || memory::page_align_down(highest_end - initrd.size()) < lowest)
        return fail("initrd (" + std::to_string(initrd.size() >> 10) +
                        " KiB) does not fit in guest RAM above the kernel — raise --mem",
                    ENOMEM);
    uint64_t addr = memory::page_align_down(highest_end - initrd.size());
    std::memcpy(mem.host(addr, initrd.size()), initrd.data(), initrd.size());
    return addr;
}

Result<Mapping> map_file(const std::string& path) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
        int e = errno;
        return fail(path + ": " + std::strerror(e), e);
    }
    struct stat st;
    if (::fstat(fd.get(), &st) < 0) return fail_errno(path);
    if (!S_ISREG(st.st_mode)) return fail(path + ": not a regular file", EINVAL);
    if (st.st_size == 0) return fail(path + ": empty file", EINVAL);
    void* p = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd.get(), 0);
    if (p == MAP_FAILED) return fail_errno(path + ": mmap");
    return Mapping(p, static_cast<size_t>(st.st_size));
}

}  // namespace vessel::loader

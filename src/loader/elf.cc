#include "loader/elf.h"

#include <cstring>

namespace vessel::loader {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kUserEnd = 1ull << 47;
constexpr size_t kMaxPhdrBytes = 65536;  // as Linux's ELF_MIN_ALIGN-bounded check

}  // namespace

Result<ElfImage> parse_elf(std::span<const uint8_t> file) {
    Elf64_Ehdr eh;
    if (file.size() < 4 || std::memcmp(file.data(), ELFMAG, SELFMAG) != 0) return fail("not an ELF file", ENOEXEC);
    if (file.size() < sizeof eh) return fail("truncated ELF header", ENOEXEC);
    std::memcpy(&eh, file.data(), sizeof eh);
    if (eh.e_ident[EI_CLASS] != ELFCLASS64) return fail("not a 64-bit ELF file", ENOEXEC);
    if (eh.e_ident[EI_DATA] != ELFDATA2LSB) return fail("not a little-endian ELF file", ENOEXEC);
    if (eh.e_machine != EM_X86_64)
        return fail("not an x86-64 executable (ELF machine " + std::to_string(eh.e_machine) + ")", ENOEXEC);
    if (eh.e_type != ET_EXEC && eh.e_type != ET_DYN)
        return fail("not an executable (ELF type " + std::to_string(eh.e_type) + ")", ENOEXEC);
    if (eh.e_phentsize != sizeof(Elf64_Phdr)) return fail("bad program header size", ENOEXEC);
    if (eh.e_phnum == 0) return fail("no program headers", ENOEXEC);
    uint64_t ph_bytes = uint64_t(eh.e_phnum) * sizeof(Elf64_Phdr);
    if (ph_bytes > kMaxPhdrBytes) return fail("too many program headers", ENOEXEC);
    if (eh.e_phoff > file.size() || ph_bytes > file.size() - eh.e_phoff)
        return fail("truncated program header table", ENOEXEC);

    ElfImage img;
    img.pie = eh.e_type == ET_DYN;
    img.entry = eh.e_entry;
    img.phnum = eh.e_phnum;
    bool have_phdr = false;
    for (unsigned i = 0; i < eh.e_phnum; ++i) {
        Elf64_Phdr ph;
        std::memcpy(&ph, file.data() + eh.e_phoff + i * sizeof ph, sizeof ph);
        if (ph.p_type == PT_INTERP && img.interp.empty()) {  // Linux takes the first
            // As binfmt_elf: the path fits PATH_MAX, is in the file and ends
            // with its NUL; a NUL inside it would name another file.
            if (ph.p_filesz < 2 || ph.p_filesz > kMaxInterpBytes) return fail("bad PT_INTERP size", ENOEXEC);
            if (ph.p_offset > file.size() || ph.p_filesz > file.size() - ph.p_offset)
                return fail("PT_INTERP extends past the end of the file (truncated?)", ENOEXEC);
            const char* path = reinterpret_cast<const char*>(file.data() + ph.p_offset);
            if (path[ph.p_filesz - 1] != '\0' || strnlen(path, ph.p_filesz) != ph.p_filesz - 1)
                return fail("PT_INTERP is not one NUL-terminated path", ENOEXEC);
            img.interp.assign(path, ph.p_filesz - 1);
        }
        if (ph.p_type == PT_PHDR) {
            img.phdr_vaddr = ph.p_vaddr;
            have_phdr = true;
        }
        if (ph.p_type != PT_LOAD) continue;
        if (ph.p_memsz == 0) continue;
        if (ph.p_filesz > ph.p_memsz) return fail("segment file size exceeds memory size", ENOEXEC);
        if (ph.p_offset > file.size() || ph.p_filesz > file.size() - ph.p_offset)
            return fail("segment extends past the end of the file (truncated?)", ENOEXEC);
        if (ph.p_vaddr >= kUserEnd || ph.p_memsz > kUserEnd - ph.p_vaddr)
            return fail("segment outside the user address range", ENOEXEC);
        if ((ph.p_vaddr & (kPage - 1)) != (ph.p_offset & (kPage - 1)))
            return fail("segment misaligned (vaddr and offset differ modulo the page size)", ENOEXEC);
        if (!img.segments.empty() && ph.p_vaddr < img.segments.back().vaddr + img.segments.back().memsz)
            return fail("overlapping or unordered segments", ENOEXEC);
        img.segments.push_back({ph.p_vaddr, ph.p_memsz, ph.p_offset, ph.p_filesz, ph.p_flags});
    }
    if (img.segments.empty()) return fail("no loadable segments", ENOEXEC);
    if (img.segments.size() > 64) return fail("too many loadable segments", ENOEXEC);
    img.lowest = img.segments.front().vaddr & ~(kPage - 1);
    const Segment& last = img.segments.back();
    img.highest = (last.vaddr + last.memsz + kPage - 1) & ~(kPage - 1);

    bool entry_ok = false;
    for (const auto& s : img.segments) {
        if (s.offset == 0 && !have_phdr && eh.e_phoff + ph_bytes <= s.filesz) {
            img.phdr_vaddr = s.vaddr + eh.e_phoff;
            have_phdr = true;
        }
        if ((s.flags & PF_X) && img.entry >= s.vaddr && img.entry < s.vaddr + s.memsz) entry_ok = true;
    }
    if (!entry_ok) return fail("entry point is not inside an executable segment", ENOEXEC);
    if (!have_phdr) return fail("program headers are not loaded by any segment", ENOEXEC);
    return img;
}

}  // namespace vessel::loader

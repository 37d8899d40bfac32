// The ELF header of a hand-made x86-64 executable, for tests and fuzz seeds
// that build ELF files byte by byte (program headers right after it).
#pragma once

#include <elf.h>

#include <cstdint>
#include <cstring>

namespace vessel::testing {

inline Elf64_Ehdr elf_header(uint64_t entry, uint16_t phnum) {
    Elf64_Ehdr eh{};
    std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS64;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    eh.e_type = ET_EXEC;
    eh.e_machine = EM_X86_64;
    eh.e_version = EV_CURRENT;
    eh.e_entry = entry;
    eh.e_phoff = sizeof eh;
    eh.e_ehsize = sizeof eh;
    eh.e_phentsize = sizeof(Elf64_Phdr);
    eh.e_phnum = phnum;
    return eh;
}

}  // namespace vessel::testing

// The decoder half of the rewriter: a linear sweep with Zydis that finds
// every `syscall` and `cpuid` and the kind of site each one can become
// (rewriter.h).
// Linked into the `vessel-decode` helper (and the tests), never into the
// static `vessel`, which runs it as a process of its own on a cache miss
// (decode_helper.h).
#include <Zydis/Zydis.h>

#include <algorithm>

#include "loader/rewriter.h"

namespace vessel::loader {
namespace {

// Can the instruction run unchanged at another address, and fall through
// to the next one? No relative operand, no RIP-relative memory operand, no
// transfer of control. Padding and ENDBR64 are not taken either: a function
// may start right after them, reached through a pointer the sweep cannot
// see, and a copy site's jump must not cover a function's entry.
bool copyable(const ZydisDecodedInstruction& i) {
    if (i.attributes & ZYDIS_ATTRIB_IS_RELATIVE) return false;
    if (i.raw.modrm.offset && i.raw.modrm.mod == 0 && i.raw.modrm.rm == 5) return false;  // RIP-relative
    switch (i.mnemonic) {
        case ZYDIS_MNEMONIC_JMP:
        case ZYDIS_MNEMONIC_CALL:
        case ZYDIS_MNEMONIC_RET:
        case ZYDIS_MNEMONIC_IRET:
        case ZYDIS_MNEMONIC_IRETD:
        case ZYDIS_MNEMONIC_IRETQ:
        case ZYDIS_MNEMONIC_SYSCALL:
        case ZYDIS_MNEMONIC_CPUID:  // a site of its own: two patches must not overlap
        case ZYDIS_MNEMONIC_SYSENTER:
        case ZYDIS_MNEMONIC_SYSEXIT:
        case ZYDIS_MNEMONIC_SYSRET:
        case ZYDIS_MNEMONIC_INT:
        case ZYDIS_MNEMONIC_INT1:
        case ZYDIS_MNEMONIC_INT3:
        case ZYDIS_MNEMONIC_INTO:
        case ZYDIS_MNEMONIC_UD0:
        case ZYDIS_MNEMONIC_UD1:
        case ZYDIS_MNEMONIC_UD2:
        case ZYDIS_MNEMONIC_HLT:
        case ZYDIS_MNEMONIC_NOP:
        case ZYDIS_MNEMONIC_ENDBR64: return false;
        default: return true;
    }
}

// The kind of the site at `pos` given the instructions before it
// (newest first; each must end where the next begins). Offset left 0.
// `cpuid`: kCpuidSite for a cpuid at `pos`, else 0; the result carries it.
template <class Prior>
uint64_t site_before(std::span<const uint8_t> code, uint64_t pos, const Prior (&prior)[3], uint64_t cpuid = 0) {
    auto adjacent = [&](int n) {  // prior[0..n] decoded and contiguous up to pos
        uint64_t end = pos;
        for (int i = 0; i <= n; ++i) {
            if (!prior[i].length || prior[i].at + prior[i].length != end) return false;
            end = prior[i].at;
        }
        return true;
    };
    if (adjacent(0) && prior[0].length == 5 && has_shape(code, pos, make_site(0, kMovSite) | cpuid))
        return make_site(0, kMovSite) | cpuid;
    if (adjacent(1) && prior[0].length == 2 && prior[1].length == 2 &&
        has_shape(code, pos, make_site(0, kJccXorSite) | cpuid))
        return make_site(0, kJccXorSite) | cpuid;
    unsigned copied = 0;
    for (int i = 0; i < 3 && copied < kCopyMin; ++i) {
        if (!adjacent(i) || !prior[i].copyable) return make_site(0, kExitSite) | cpuid;
        copied += prior[i].length;
    }
    if (copied < kCopyMin || copied > kCopyMax) return make_site(0, kExitSite) | cpuid;
    return make_site(0, kCopySite, copied) | cpuid;
}

}  // namespace

Result<std::vector<uint64_t>> find_sites(std::span<const uint8_t> file, const ElfImage& image) {
    ZydisDecoder decoder;
    if (!ZYAN_SUCCESS(ZydisDecoderInit(&decoder, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64)))
        return fail("the x86 decoder does not start");
    // Lengths, mnemonics, the relative attribute and the raw immediates are
    // all this needs: the minimal mode decodes them at a fraction of the cost.
    ZydisDecoderEnableMode(&decoder, ZYDIS_DECODER_MODE_MINIMAL, ZYAN_TRUE);
    std::vector<uint64_t> sites;
    for (const auto& s : image.segments) {
        if (!(s.flags & PF_X)) continue;
        std::span<const uint8_t> code = file.subspan(s.offset, s.filesz);
        // Bytes 0F 05 and 0F A2 anywhere (a superset of the sites): only
        // branch targets just before one of them matter, so only those are
        // kept.
        std::vector<uint64_t> maybe_sites;
        for (uint64_t i = 0; i + 1 < code.size(); ++i)
            if (code[i] == 0x0f && (code[i + 1] == kSyscall[1] || code[i + 1] == kCpuid[1])) maybe_sites.push_back(i);
        auto near_a_site = [&](uint64_t t) {
            auto c = std::lower_bound(maybe_sites.begin(), maybe_sites.end(), t > 0 ? t - 1 : 0);
            return c != maybe_sites.end() && *c <= t + kCopyMax + 2;
        };
        std::vector<uint64_t> targets;                     // where direct branches land near a site (segment offsets)
        std::vector<std::pair<uint64_t, uint64_t>> found;  // segment offset, site (kind)
        // The three instructions before, newest first (length 0: did not decode).
        struct Prior {
            uint64_t at = 0;
            unsigned length = 0;
            bool copyable = false;
        } prior[3];
        uint64_t pos = 0;
        while (pos < code.size()) {
            ZydisDecodedInstruction insn;
            if (!ZYAN_SUCCESS(
                    ZydisDecoderDecodeInstruction(&decoder, nullptr, code.data() + pos, code.size() - pos, &insn))) {
                ++pos;  // data or padding inside the code: resynchronise byte by byte
                prior[0] = prior[1] = prior[2] = {};
                continue;
            }
            if ((insn.attributes & ZYDIS_ATTRIB_IS_RELATIVE) && insn.raw.imm[0].is_relative) {
                const uint64_t t = pos + insn.length + static_cast<uint64_t>(insn.raw.imm[0].value.s);
                if (near_a_site(t)) targets.push_back(t);
            }
            if (insn.mnemonic == ZYDIS_MNEMONIC_SYSCALL && insn.length == 2 && has_shape(code, pos, kExitSite))
                found.emplace_back(pos, site_before(code, pos, prior));
            if (insn.mnemonic == ZYDIS_MNEMONIC_CPUID && insn.length == 2)
                if (uint64_t site = site_before(code, pos, prior, kCpuidSite); site_kind(site) != kExitSite)
                    found.emplace_back(pos, site);
            prior[2] = prior[1];
            prior[1] = prior[0];
            prior[0] = {pos, insn.length, copyable(insn)};
            pos += insn.length;
        }
        // A branch into the replaced bytes (past their first) would land in
        // the middle of the jump: such a syscall site only exits, and such a
        // cpuid stays as it is.
        std::sort(targets.begin(), targets.end());
        for (auto [at, site] : found) {
            const uint64_t first = at + 2 - patch_length(site);
            auto t = std::upper_bound(targets.begin(), targets.end(), first);
            if (t != targets.end() && *t < at + 2) {
                if (site_is_cpuid(site)) continue;
                site = make_site(0, kExitSite);
            }
            sites.push_back(site | (s.offset + at));
        }
    }
    return sites;
}

}  // namespace vessel::loader

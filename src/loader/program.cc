#include "loader/program.h"

#include <elf.h>

#include <cstring>

#include "loader/rewriter.h"

namespace vessel::loader {
namespace {

using memory::kPageSize;
using memory::page_align_down;
using memory::page_align_up;

int prot_of(uint32_t pf) {
    return ((pf & PF_R) ? memory::kProtRead : 0) | ((pf & PF_W) ? memory::kProtWrite : 0) |
           ((pf & PF_X) ? memory::kProtExec : 0);
}

// Grows the stack image downwards from `top`.
class StackWriter {
public:
    StackWriter(memory::AddressSpace& as, uint64_t top, uint64_t low) : as_(as), sp_(top), low_(low) {}
    Result<uint64_t> push_bytes(const void* data, uint64_t len) {
        if (sp_ - low_ < len) return fail("arguments and environment do not fit on the stack", E2BIG);
        sp_ -= len;
        if (!as_.poke(sp_, data, len)) return fail("stack write failed", EFAULT);
        return sp_;
    }
    Result<uint64_t> push_string(const std::string& s) { return push_bytes(s.c_str(), s.size() + 1); }
    void align(uint64_t a) { sp_ &= ~(a - 1); }
    uint64_t sp() const { return sp_; }
    void set_sp(uint64_t sp) { sp_ = sp; }

private:
    memory::AddressSpace& as_;
    uint64_t sp_, low_;
};

// A mapping the loader could not make; out of guest memory says which flag helps.
std::unexpected<Error> map_failed(const char* what, const Error& e, uint64_t bytes) {
    if (e.sys_errno != ENOMEM) return wrap(what, e);
    return fail(
        "executable too large for guest memory (segment of " + std::to_string(bytes >> 20) + " MiB; raise --mem)",
        ENOMEM);
}

// Maps one ELF file's segments at `bias` (bss zeroed), rewrites its sites and
// maps its stub area. Returns where the image ends (stubs included).
Result<uint64_t> map_image(memory::AddressSpace& as, std::span<const uint8_t> file, const ElfImage& image,
                           uint64_t bias, const std::vector<uint64_t>& syscall_sites, std::span<const uint8_t> stubs,
                           uint64_t image_gpa) {
    bool shared_pages = false;
    for (size_t i = 1; i < image.segments.size(); ++i) {
        const Segment &a = image.segments[i - 1], &b = image.segments[i];
        if (page_align_up(a.vaddr + a.memsz) > page_align_down(b.vaddr)) shared_pages = true;
    }
    if (image_gpa && !shared_pages) {
        // Zero-copy: read-only and executable file pages come straight from
        // the image region. Only the page where file data meets bss is
        // copied, so its tail reads as zero.
        for (const auto& s : image.segments) {
            int prot = prot_of(s.flags);
            uint64_t start = page_align_down(s.vaddr + bias);
            uint64_t file_end = s.vaddr + bias + s.filesz;
            uint64_t mem_end = page_align_up(s.vaddr + bias + s.memsz);
            uint64_t direct_end = s.memsz > s.filesz ? page_align_down(file_end) : page_align_up(file_end);
            // A writable segment is copied into guest RAM instead: the
            // guest's first store to a file page would be a copy-on-write
            // fault in the host inside KVM's page-fault path, and that
            // fires the MMU notifier (a shadow-page zap and a TLB flush)
            // for every page (docs/BENCHMARKS.md).
            if (s.flags & PF_W) direct_end = start;
            if (direct_end > start) {
                auto r = as.map_physical(start, direct_end - start, image_gpa + page_align_down(s.offset), prot);
                if (!r) return wrap("load segment", r.error());
            }
            uint64_t rest = std::max(start, direct_end);
            if (mem_end > rest) {
                auto r = as.map_fixed(rest, mem_end - rest, prot);
                if (!r) return map_failed("load segment", r.error(), mem_end - rest);
                if (file_end > rest &&
                    !as.poke(rest, file.data() + s.offset + (rest - (s.vaddr + bias)), file_end - rest))
                    return fail("load: segment copy failed", EFAULT);
            }
        }
    } else {
        // Copy: segments may share a page at their boundary, and that page
        // gets both protections, as on Linux where the mappings overlap.
        uint64_t mapped_end = 0;
        int last_prot = 0;
        for (const auto& s : image.segments) {
            uint64_t start = page_align_down(s.vaddr + bias);
            uint64_t end = page_align_up(s.vaddr + bias + s.memsz);
            int prot = prot_of(s.flags);
            if (start < mapped_end) {
                if (auto r = as.protect(start, kPageSize, last_prot | prot); !r) return wrap("load", r.error());
                start = mapped_end;
            }
            if (start < end) {
                auto r = as.map_fixed(start, end - start, prot);
                if (!r) return map_failed("load segment", r.error(), end - start);
            }
            mapped_end = std::max(mapped_end, end);
            last_prot = prot;
        }
        for (const auto& s : image.segments)
            if (s.filesz && !as.poke(s.vaddr + bias, file.data() + s.offset, s.filesz))
                return fail("load: segment copy failed", EFAULT);
    }
    Result<> patched;
    for_each_patch(image, syscall_sites, [&](uint64_t off, const uint8_t* bytes, unsigned len) {
        for (const auto& s : image.segments) {
            if (off < s.offset || off - s.offset > s.filesz || s.filesz - (off - s.offset) < len) continue;
            if (!as.poke(s.vaddr + bias + (off - s.offset), bytes, len) && patched)
                patched = fail("load: rewrite failed", EFAULT);
            break;
        }
    });
    if (!patched) return std::unexpected(patched.error());
    uint64_t end = image.highest + bias;
    if (!stubs.empty()) {  // see rewriter.h: the page after the image
        const uint64_t at = stub_area_vaddr(image) + bias;
        if (auto r = as.map_fixed(at, stubs.size(), memory::kProtRead | memory::kProtExec, std::string(kStubAreaName));
            !r)
            return map_failed("load stubs", r.error(), stubs.size());
        if (!as.poke(at, stubs.data(), stubs.size())) return fail("load: stub copy failed", EFAULT);
        end = at + stubs.size();
    }
    return end;
}

// Where the interpreter goes: the highest free range that holds it and its
// stubs (an ET_EXEC one where it was linked).
Result<uint64_t> interpreter_bias(const memory::AddressSpace& as, const InterpreterImage& in) {
    if (!in.image.pie) return 0;
    const uint64_t span = stub_area_vaddr(in.image) + page_align_up(in.stubs.size()) - in.image.lowest;
    auto at = as.find_free(span);
    if (!at) return fail("no room for the interpreter in the address space", ENOMEM);
    return *at - in.image.lowest;
}

}  // namespace

Result<LoadedProgram> load_program(memory::AddressSpace& as, std::span<const uint8_t> file, const ElfImage& image,
                                   const std::vector<uint64_t>& syscall_sites, std::span<const uint8_t> stubs,
                                   const ProgramSpec& spec) {
    LoadedProgram out;
    out.load_bias = image.pie ? kPieBase - image.lowest : 0;
    const uint64_t bias = out.load_bias;
    if (image.lowest + bias < memory::AddressSpace::kMmapMin)
        return fail("executable wants to load below 64 KiB (mmap_min_addr)", ENOEXEC);
    auto end = map_image(as, file, image, bias, syscall_sites, stubs, spec.image_gpa);
    if (!end) return std::unexpected(end.error());
    out.entry = image.entry + bias;
    out.brk_start = *end;
    uint64_t start = out.entry;
    if (const InterpreterImage* in = spec.interpreter) {
        auto ibias = interpreter_bias(as, *in);
        if (!ibias) return std::unexpected(ibias.error());
        if (in->image.lowest + *ibias < memory::AddressSpace::kMmapMin)
            return fail("interpreter wants to load below 64 KiB (mmap_min_addr)", ENOEXEC);
        auto r = map_image(as, in->file, in->image, *ibias, in->sites, in->stubs, in->image_gpa);
        if (!r) return wrap("interpreter", r.error());
        out.interp_bias = *ibias;
        start = in->image.entry + *ibias;
    }

    // The stack: strings at the top (execfn highest, then envp, then argv, as
    // Linux copies them), then AT_PLATFORM and AT_RANDOM, then the vectors.
    uint64_t stack_size = std::max<uint64_t>(page_align_up(spec.stack_size), 16 * kPageSize);
    uint64_t top = memory::AddressSpace::kStackTop;
    out.stack_low = top - stack_size;
    constexpr int kStackProt = memory::kProtRead | memory::kProtWrite;
    if (auto r = spec.lazy_stack ? as.map_lazy(out.stack_low, stack_size, kStackProt, "[stack]")
                                 : as.map_fixed(out.stack_low, stack_size, kStackProt, "[stack]");
        !r)
        return fail("guest memory too small for the stack (raise --mem)", ENOMEM);
    StackWriter st(as, top - 8, out.stack_low);  // Linux leaves a NULL word at the very top
    auto execfn = st.push_string(spec.execfn);
    if (!execfn) return std::unexpected(execfn.error());
    std::vector<uint64_t> envp, argv;
    for (auto it = spec.envp.rbegin(); it != spec.envp.rend(); ++it) {
        auto a = st.push_string(*it);
        if (!a) return std::unexpected(a.error());
        envp.insert(envp.begin(), *a);
    }
    for (auto it = spec.argv.rbegin(); it != spec.argv.rend(); ++it) {
        auto a = st.push_string(*it);
        if (!a) return std::unexpected(a.error());
        argv.insert(argv.begin(), *a);
    }
    st.align(16);
    auto platform = st.push_string("x86_64");
    if (!platform) return std::unexpected(platform.error());
    auto random = st.push_bytes(spec.random, 16);
    if (!random) return std::unexpected(random.error());
    st.align(16);

    std::vector<std::pair<uint64_t, uint64_t>> auxv = {
        {AT_HWCAP, spec.hwcap},
        {AT_PAGESZ, kPageSize},
        {AT_CLKTCK, 100},
        {AT_PHDR, image.phdr_vaddr + bias},
        {AT_PHENT, sizeof(Elf64_Phdr)},
        {AT_PHNUM, image.phnum},
        {AT_BASE, out.interp_bias},
        {AT_FLAGS, 0},
        {AT_ENTRY, out.entry},
        {AT_UID, spec.uid},
        {AT_EUID, spec.euid},
        {AT_GID, spec.gid},
        {AT_EGID, spec.egid},
        {AT_SECURE, 0},
        {AT_RANDOM, *random},
        {AT_HWCAP2, spec.hwcap2},
        {AT_EXECFN, *execfn},
        {AT_PLATFORM, *platform},
        {AT_NULL, 0},
    };
    std::vector<uint64_t> words;
    words.push_back(spec.argv.size());
    words.insert(words.end(), argv.begin(), argv.end());
    words.push_back(0);
    words.insert(words.end(), envp.begin(), envp.end());
    words.push_back(0);
    for (auto [k, v] : auxv) {
        words.push_back(k);
        words.push_back(v);
    }
    uint64_t sp = (st.sp() - words.size() * 8) & ~uint64_t(15);
    if (sp < out.stack_low) return fail("arguments and environment do not fit on the stack", E2BIG);
    if (!as.poke(sp, words.data(), words.size() * 8)) return fail("stack write failed", EFAULT);
    out.stack_pointer = sp;
    out.entry = start;
    return out;
}

}  // namespace vessel::loader

#include "vmm/thin_vm.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>

#include "arch/x86/x86.h"
#include "base/cache_dir.h"
#include "base/timings.h"
#include "cpu/vcpu_runner.h"
#include "kvm/kvm.h"
#include "loader/program.h"
#include "loader/rewriter.h"
#include "memory/address_space.h"
#include "memory/guest_memory.h"
#include "thin/process.h"
#include "vmm/exit_status.h"

namespace vessel::vmm {
namespace {

namespace x86 = arch::x86;

// Guest-physical layout: page 0 unused; pages 1-4 hold the GDT and the TSS
// with a full I/O permission bitmap (identity-mapped, supervisor-only, so the
// guest cannot change them); everything above is the page pool.
//
// The bitmap is what lets a CPL3 `out dx, eax` with any DX (the syscall's
// third argument) exit to the VMM: PVM ignores RFLAGS.IOPL and checks the
// bitmap, and on VT-x/AMD-V an all-zero bitmap agrees with IOPL=3.
constexpr uint64_t kSystemBase = 0x1000;
constexpr uint64_t kGdtAddr = 0x1000;
constexpr uint64_t kTssAddr = 0x2000;
constexpr uint64_t kTssSize = 0x68;                   // 64-bit TSS without the bitmap
// One bit per port, all zero (allowed), plus a zero byte for the bits a
// 4-byte access at port 0xffff reaches past 65535.
constexpr uint64_t kIoBitmapSize = 65536 / 8 + 1;
constexpr uint32_t kTssLimit = kTssSize + kIoBitmapSize;  // includes the 0xff terminator byte
constexpr uint64_t kSystemEnd = 0x5000;
constexpr uint64_t kPoolStart = kSystemEnd;

// Opens the program; errors say which problem it is (ENOENT: not found,
// ENOEXEC: not something we can run).
Result<Fd> open_program(const std::string& path, loader::FileIdentity& id) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
        int e = errno;
        return fail(path + ": " + std::strerror(e), e == ENOENT ? ENOENT : EIO);
    }
    struct stat st;
    if (::fstat(fd.get(), &st) < 0) return fail_errno(path);
    if (!S_ISREG(st.st_mode)) return fail(path + ": not a regular file", ENOEXEC);
    if (st.st_size == 0) return fail(path + ": empty file", ENOEXEC);
    id.dev = st.st_dev;
    id.ino = st.st_ino;
    id.size = static_cast<uint64_t>(st.st_size);
    id.mtime_ns = st.st_mtim.tv_sec * 1'000'000'000ll + st.st_mtim.tv_nsec;
    id.ctime_ns = st.st_ctim.tv_sec * 1'000'000'000ll + st.st_ctim.tv_nsec;
    return fd;
}

// KVM's supported CPUID cannot change while the host runs, and asking costs
// a noticeable slice of a cold start, so it is cached per boot. A stale or
// damaged entry is harmless: KVM_SET_CPUID2 then fails and we ask afresh.
std::vector<kvm_cpuid_entry2> cached_cpuid(const std::string& path) {
    std::string data = path.empty() ? std::string() : read_small_file(path);
    if (data.empty() || data.size() % sizeof(kvm_cpuid_entry2)) return {};
    std::vector<kvm_cpuid_entry2> entries(data.size() / sizeof(kvm_cpuid_entry2));
    std::memcpy(entries.data(), data.data(), data.size());
    return entries;
}

std::string cpuid_cache_path() {
    std::string dir = cache_dir();
    std::string boot_id = read_small_file("/proc/sys/kernel/random/boot_id", 64);
    while (!boot_id.empty() && boot_id.back() == '\n') boot_id.pop_back();
    if (dir.empty() || boot_id.empty()) return {};
    return dir + "/cpuid-" + boot_id;
}

}  // namespace

struct ThinVm::Impl final : cpu::ExitHandler, thin::CpuAccess {
    ThinVmConfig config;
    std::unique_ptr<kvm::System> system;
    std::unique_ptr<kvm::Vm> vm;
    std::unique_ptr<memory::GuestMemory> mem;
    std::unique_ptr<memory::AddressSpace> as;
    std::unique_ptr<kvm::Vcpu> vcpu;
    std::unique_ptr<cpu::VcpuRunner> runner;
    std::unique_ptr<thin::Process> process;
    Stats stats;
    RunOutcome outcome;
    PhaseTimer timer;

    // thin::CpuAccess. Through the segment registers: PVM refuses the
    // FS/GS base MSRs from userspace but honours sregs.
    bool set_segment_base(kvm_segment kvm_sregs::*seg, uint64_t base) {
        auto s = vcpu->get_sregs();
        if (!s) return false;
        ((*s).*seg).base = base;
        return !!vcpu->set_sregs(*s);
    }
    uint64_t segment_base(kvm_segment kvm_sregs::*seg) {
        auto s = vcpu->get_sregs();
        return s ? ((*s).*seg).base : 0;
    }
    bool set_fs_base(uint64_t base) override { return set_segment_base(&kvm_sregs::fs, base); }
    bool set_gs_base(uint64_t base) override { return set_segment_base(&kvm_sregs::gs, base); }
    uint64_t fs_base() override { return segment_base(&kvm_sregs::fs); }
    uint64_t gs_base() override { return segment_base(&kvm_sregs::gs); }

    cpu::Action crash(const std::string& why) {
        kvm_regs& r = runner->regs();
        char buf[256];
        std::snprintf(buf, sizeof buf, "guest crashed: %s at rip=0x%" PRIx64 " rsp=0x%" PRIx64, why.c_str(),
                      static_cast<uint64_t>(r.rip), static_cast<uint64_t>(r.rsp));

        outcome.diagnostic = buf;
        outcome.status = kExitGuestCrashed;
        return cpu::Action::kStop;
    }

    // cpu::ExitHandler
    cpu::Action on_exit(kvm_run& run) override {
        ++stats.exits;
        switch (run.exit_reason) {
            case KVM_EXIT_IO: {
                // A rewritten `syscall`: `out dx, eax` (4 bytes, any port). Any
                // other port access is not something a thin guest may do.
                if (run.io.direction != KVM_EXIT_IO_OUT || run.io.size != 4 || run.io.count != 1)
                    return crash("unexpected " + cpu::describe_exit(run));
                kvm_regs& r = runner->regs();
                thin::SyscallArgs args{r.rax, {r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9}};
                ++stats.syscalls;
                int64_t result = process->handle(args);
                if (process->exited()) {
                    outcome.status = process->exit_status();
                    outcome.guest_exited = true;
                    return cpu::Action::kStop;
                }
                // What the `syscall` instruction and sysret leave behind.
                r.rax = static_cast<uint64_t>(result);
                r.rcx = r.rip;
                r.r11 = r.rflags;
                r.rflags |= arch::x86::rflags::kIOPL3;  // PVM reports it as 0
                runner->mark_regs_dirty();
                return cpu::Action::kContinue;
            }
            case KVM_EXIT_INTR: return cpu::Action::kContinue;
            default: return crash(cpu::describe_exit(run));
        }
    }
};

ThinVm::ThinVm() : impl_(std::make_unique<Impl>()) {}
ThinVm::~ThinVm() {
    Impl& m = *impl_;
    // Destroy the VM before unmapping its memory: KVM then frees its MMU in
    // one pass, instead of zapping translations range by range through the
    // MMU notifier while the RAM mapping goes away.
    m.timer.mark("guest exit");
    m.process.reset();
    m.runner.reset();
    m.vcpu.reset();
    m.vm.reset();
    m.system.reset();
    m.timer.mark("destroy vm");
    m.as.reset();
    m.mem.reset();
    m.timer.mark("free memory");
}

Result<std::unique_ptr<ThinVm>> ThinVm::create(const ThinVmConfig& config) {
    std::unique_ptr<ThinVm> self(new ThinVm());
    Impl& m = *self->impl_;
    m.config = config;

    // The program first: a missing or bad file is the most likely mistake.
    loader::FileIdentity identity;
    auto program = open_program(config.program, identity);
    const uint64_t file_size = identity.size;
    if (!program) return std::unexpected(program.error());
    auto mem = memory::GuestMemory::create(config.mem_size);
    if (!mem) return std::unexpected(mem.error());
    m.mem = std::make_unique<memory::GuestMemory>(std::move(*mem));
    // The program's bytes live in a private file region of guest memory: the
    // loader maps its pages into the guest instead of copying them.
    auto image_gpa = m.mem->add_file_region(program->get(), file_size);
    if (!image_gpa) return fail(config.program + ": " + image_gpa.error().message, ENOEXEC);
    std::span<const uint8_t> bytes(m.mem->host(*image_gpa, file_size), file_size);
    m.timer.mark("map program");
    auto image = loader::parse_elf(bytes);
    if (!image) return fail(config.program + ": " + image.error().message, ENOEXEC);

    auto sandbox = thin::Sandbox::create(config.root, config.rw);
    if (!sandbox) return std::unexpected(sandbox.error());

    m.timer.mark("sandbox");
    auto sys = kvm::System::open(config.kvm_path);
    if (!sys) return std::unexpected(sys.error());
    m.system = std::make_unique<kvm::System>(std::move(*sys));
    if (auto r = m.system->require({
            {KVM_CAP_SYNC_REGS, "KVM_CAP_SYNC_REGS", "needed to run system calls without extra ioctls"},
            {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT", "needed to pause a running vCPU"},
            {KVM_CAP_XCRS, "KVM_CAP_XCRS", "needed to give the guest AVX state"},
        });
        !r)
        return std::unexpected(r.error());
    auto vm = m.system->create_vm();
    if (!vm) return std::unexpected(vm.error());
    m.vm = std::make_unique<kvm::Vm>(std::move(*vm));

    m.timer.mark("kvm open+create vm");
    if (auto r = m.vm->set_user_memory_region(0, 0, m.mem->size(), m.mem->host_base()); !r)
        return std::unexpected(r.error());
    uint32_t slot = 1;
    for (const auto& region : m.mem->file_regions())
        if (auto r = m.vm->set_user_memory_region(slot++, region.gpa, region.map.size(), region.map.data()); !r)
            return std::unexpected(r.error());

    m.as = std::make_unique<memory::AddressSpace>(*m.mem, kPoolStart);
    if (auto r = m.as->init(); !r) return std::unexpected(r.error());
    x86::build_gdt(reinterpret_cast<uint64_t*>(m.mem->host(kGdtAddr, x86::kGdtEntries * 8)), kTssAddr, kTssLimit);
    uint8_t* tss = m.mem->host(kTssAddr, kTssLimit + 1);
    const uint16_t iomap_base = kTssSize;
    std::memcpy(tss + 0x66, &iomap_base, 2);
    tss[kTssLimit] = 0xff;
    for (uint64_t page = kSystemBase; page < kSystemEnd; page += memory::kPageSize)
        if (auto r = m.as->tables().map(page, page, memory::pte::kWrite | memory::pte::kNoExec); !r)
            return std::unexpected(r.error());

    m.timer.mark("memory+page tables");
    loader::RewriteCache cache(config.cache_dir);
    auto sites = loader::syscall_sites(bytes, *image, cache, &identity, &m.stats.rewrite_cache_hit);
    if (!sites) return std::unexpected(sites.error());
    m.stats.syscall_sites = sites->size();

    m.timer.mark("rewrite sites");
    std::string cpuid_path = cpuid_cache_path();
    std::vector<kvm_cpuid_entry2> cached = cached_cpuid(cpuid_path);
    Result<std::vector<kvm_cpuid_entry2>> cpuid = cached;
    if (cached.empty()) {
        cpuid = m.system->supported_cpuid();
        if (!cpuid) return std::unexpected(cpuid.error());
        if (!cpuid_path.empty() && make_dirs(cache_dir()))
            write_file_atomic(cpuid_path, cpuid->data(), cpuid->size() * sizeof(kvm_cpuid_entry2));
    }

    loader::ProgramSpec spec;
    spec.argv = config.argv;
    spec.envp = config.envp;
    spec.execfn = config.program;
    spec.stack_size = std::min<uint64_t>(8ull << 20, config.mem_size / 8);
    spec.image_gpa = *image_gpa;
    spec.hwcap = x86::hwcap(*cpuid);
    spec.uid = spec.euid = ::getuid();
    spec.gid = spec.egid = ::getgid();
    if (::getrandom(spec.random, sizeof spec.random, 0) != sizeof spec.random)
        return fail_errno("getrandom");
    auto loaded = loader::load_program(*m.as, bytes, *image, *sites, spec);
    if (!loaded) {
        int e = loaded.error().sys_errno == ENOMEM ? ENOMEM : ENOEXEC;
        return fail(config.program + ": " + loaded.error().message, e);
    }

    m.timer.mark("load program");
    auto vcpu = m.vm->create_vcpu(0);
    if (!vcpu) return std::unexpected(vcpu.error());
    m.vcpu = std::make_unique<kvm::Vcpu>(std::move(*vcpu));
    if (auto r = m.vcpu->set_cpuid(*cpuid); !r) {
        if (cached.empty()) return std::unexpected(r.error());
        cpuid = m.system->supported_cpuid();
        if (!cpuid) return std::unexpected(cpuid.error());
        if (auto again = m.vcpu->set_cpuid(*cpuid); !again) return std::unexpected(again.error());
    }

    auto sregs = m.vcpu->get_sregs();
    if (!sregs) return std::unexpected(sregs.error());
    x86::setup_long_mode(*sregs, {.cr3 = m.as->tables().root(),
                                  .gdt_base = kGdtAddr,
                                  .tss_base = kTssAddr,
                                  .tss_limit = kTssLimit,
                                  .user_mode = true});
    if (auto r = m.vcpu->set_sregs(*sregs); !r) return std::unexpected(r.error());

    // XCR0: everything KVM supports (x87/SSE/AVX/AVX-512...), so glibc's
    // feature selection sees the state it expects.
    kvm_xcrs xcrs{};
    xcrs.nr_xcrs = 1;
    xcrs.xcrs[0].xcr = 0;
    xcrs.xcrs[0].value = x86::supported_xcr0(*cpuid) & 0xe7;
    if (auto r = m.vcpu->set_xcrs(xcrs); !r) return std::unexpected(r.error());

    kvm_regs regs{};
    regs.rip = loaded->entry;
    regs.rsp = loaded->stack_pointer;
    regs.rflags = x86::rflags::kReserved1 | x86::rflags::kIOPL3;
    if (auto r = m.vcpu->set_regs(regs); !r) return std::unexpected(r.error());

    m.timer.mark("vcpu setup");
    thin::ProcessOptions opts;
    opts.trace = config.trace_syscalls;
    opts.uid = ::getuid();
    opts.gid = ::getgid();
    m.process = std::make_unique<thin::Process>(*m.as, std::move(*sandbox), m, opts);
    m.process->set_brk_start(loaded->brk_start);
    m.process->attach_stdio();
    m.runner = std::make_unique<cpu::VcpuRunner>(*m.vcpu);
    m.timer.mark("process setup");
    return self;
}

Result<RunOutcome> ThinVm::run() {
    Impl& m = *impl_;
    if (auto r = m.runner->run(m); !r) return std::unexpected(r.error());
    m.timer.mark("guest run");
    return m.outcome;
}

ThinVm::Stats ThinVm::stats() const {
    Stats s = impl_->stats;
    s.unsupported_syscalls = impl_->process->unsupported_calls();
    return s;
}

}  // namespace vessel::vmm

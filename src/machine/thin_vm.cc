#include "machine/thin_vm.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
#include <x86intrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <mutex>

#include "arch/x86/cpuid.h"
#include "arch/x86/exceptions.h"
#include "arch/x86/host_cpuid.h"
#include "arch/x86/x86.h"
#include "base/cache_dir.h"
#include "base/safe_file.h"
#include "base/text.h"
#include "base/timings.h"
#include "cpu/vcpu_set.h"
#include "cpu/vcpu_state.h"
#include "kvm/kvm.h"
#include "loader/decode_helper.h"
#include "loader/program.h"
#include "loader/rewriter.h"
#include "loader/script.h"
#include "machine/cpuid_probe.h"
#include "machine/exit_status.h"
#include "machine/snapshot_dir.h"
#include "machine/thin_layout.h"
#include "machine/thin_snapshot.h"
#include "machine/thin_vm_impl.h"
#include "memory/address_space.h"
#include "memory/address_space_state.h"
#include "memory/guest_memory.h"
#include "state/format.h"
#include "thin/guest_entry.h"
#include "thin/process.h"
#include "thin/process_state.h"

namespace vessel::machine {
namespace {

namespace x86 = arch::x86;

// Checks that `fd` (opened as `path`) is something to load; errors say which
// problem it is (ENOEXEC: not something we can run).
Result<> check_program(const Fd& fd, const std::string& path, loader::FileIdentity& id) {
    struct stat st;
    if (::fstat(fd.get(), &st) < 0) return fail_errno(path);
    if (!S_ISREG(st.st_mode)) return fail(path + ": not a regular file", ENOEXEC);
    if (st.st_size == 0) return fail(path + ": empty file", ENOEXEC);
    id = loader::FileIdentity::of(st);
    return {};
}

// Opens the program (ENOENT: not found).
Result<Fd> open_program(const std::string& path, loader::FileIdentity& id) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
        int e = errno;
        return fail(path + ": " + std::strerror(e), e == ENOENT ? ENOENT : EIO);
    }
    if (auto r = check_program(fd, path, id); !r) return std::unexpected(r.error());
    return fd;
}

// KVM's supported CPUID cannot change while the host runs, and asking costs
// a noticeable slice of a cold start, so it is cached per boot. An entry must
// look like a CPUID table (leaf 0 first, announcing at least leaf 1) or it is
// ignored and rewritten; KVM_SET_CPUID2 refusing it has the same effect.
std::vector<kvm_cpuid_entry2> cached_cpuid(const std::string& path) {
    std::string data = path.empty() ? std::string() : read_small_file(path);
    if (data.empty() || data.size() % sizeof(kvm_cpuid_entry2)) return {};
    std::vector<kvm_cpuid_entry2> entries(data.size() / sizeof(kvm_cpuid_entry2));
    std::memcpy(entries.data(), data.data(), data.size());
    if (entries[0].function != 0 || entries[0].index != 0 || entries[0].eax < 1) return {};
    return entries;
}

// A file in the cache directory that lives as long as this boot of the host
// (empty when there is no cache directory).
std::string boot_cache_path(const std::string& name) {
    static const std::string boot_id = [] {
        std::string id = read_small_file("/proc/sys/kernel/random/boot_id", 64);
        while (!id.empty() && id.back() == '\n') id.pop_back();
        return id;
    }();
    std::string dir = cache_dir();
    if (dir.empty() || boot_id.empty()) return {};
    return dir + "/" + name + "-" + boot_id;
}

// "cpuid2": files written before the kvm_cpuid2 layout fix hold skewed entries.
std::string cpuid_cache_path() { return boot_cache_path("cpuid2"); }

// The host's own CPUID answers, through the per-boot cache: what a thin
// guest's `cpuid` answers, rewritten site or not (arch/x86/host_cpuid.h).
std::vector<x86::CpuidAnswer> host_cpuid_answers() { return x86::host_cpuid(boot_cache_path("host-cpuid")); }

const std::vector<state::Section> kThinSections = {state::Section::kConfig, state::Section::kVcpu,
                                                   state::Section::kThinProcess, state::Section::kAddressSpace,
                                                   state::Section::kMemory};

// Signals sent to the VMM from outside (the jail's parent forwards the
// terminal's and the daemon's: SIGHUP, SIGINT, SIGQUIT, SIGTERM) are the
// guest's. While a thin VM runs, the handler only records them and kicks
// its vCPU; the exit that follows hands them to the process.
// SIGALRM too: the guest's ITIMER_REAL is the VMM's; and SIGWINCH, the
// terminal's size changing. The self-pipe wakes a guest waiting in pause,
// rt_sigsuspend or rt_sigtimedwait.
constexpr int kForwardedSignals[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGALRM, SIGWINCH};
std::atomic<uint64_t> g_host_signals{0};
// Of those, the ones the kernel sent (the guest's ITIMER_REAL expiring):
// si_code SI_KERNEL for the guest too, where a kill from outside is SI_USER.
std::atomic<uint64_t> g_kernel_signals{0};
std::atomic<cpu::VcpuRunner*> g_signal_runner{nullptr};
int g_signal_pipe[2] = {-1, -1};

void on_host_signal(int sig, siginfo_t* info, void*) {
    const int saved = errno;
    const uint64_t bit = 1ull << (sig - 1);
    if (info && info->si_code == SI_KERNEL)
        g_kernel_signals.fetch_or(bit);
    else
        g_kernel_signals.fetch_and(~bit);
    g_host_signals.fetch_or(bit);
    if (g_signal_pipe[1] >= 0) (void)!::write(g_signal_pipe[1], "", 1);
    if (cpu::VcpuRunner* r = g_signal_runner.load()) r->kick();
    errno = saved;
}

// The self-pipe's read end, made once per process (before any seccomp filter).
int signal_pipe() {
    static const bool made = ::pipe2(g_signal_pipe, O_NONBLOCK | O_CLOEXEC) == 0;
    return made ? g_signal_pipe[0] : -1;
}

}  // namespace

// ---------------------------------------------------------------- set-up

Result<> ThinVm::Impl::open_kvm() {
    auto sys = kvm::System::open(config.kvm_path);
    if (!sys) return std::unexpected(sys.error());
    system = std::make_unique<kvm::System>(std::move(*sys));
    if (auto r = system->require({
            {KVM_CAP_SYNC_REGS, "KVM_CAP_SYNC_REGS", "needed to run system calls without extra ioctls"},
            {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT", "needed to pause a running vCPU"},
            {KVM_CAP_XCRS, "KVM_CAP_XCRS", "needed to give the guest AVX state"},
        });
        !r)
        return r;
    auto v = system->create_vm();
    if (!v) return std::unexpected(v.error());
    vm = std::make_unique<kvm::Vm>(std::move(*v));
    // A thin guest takes no interrupts, but a vCPU without an in-kernel LAPIC
    // flips KVM's `kvm_has_noapic_vcpu` static key (Linux 6.x): kernel code
    // patching with cross-CPU calls at every vCPU creation and destruction,
    // ~0.3 ms of each cold start. A split irqchip (LAPIC in the kernel, no
    // PIC/IOAPIC) creates the vCPU through the rate-limited LAPIC keys instead.
    // Measured in docs/BENCHMARKS.md; without the capability, start as before.
    (void)vm->enable_cap(KVM_CAP_SPLIT_IRQCHIP, 0);
    return {};
}

Result<> ThinVm::Impl::register_memory(uint32_t flags) {
    uint32_t id = 0;
    for (const auto& slot : mem->kvm_slots())
        if (auto r = vm->set_user_memory_region(id++, slot.gpa, slot.size, slot.host, flags); !r) return r;
    return {};
}

Result<std::vector<kvm_cpuid_entry2>> ThinVm::Impl::create_kvm_vm(std::span<const x86::CpuidAnswer> host) {
    if (auto r = open_kvm(); !r) return std::unexpected(r.error());
    timer.mark("kvm open+create vm");
    if (auto r = register_memory(); !r) return std::unexpected(r.error());
    timer.mark("kvm memory slots");
    auto cpuid = create_vcpu(host);
    timer.mark("kvm create vcpu");
    return cpuid;
}

Result<std::vector<kvm_cpuid_entry2>> ThinVm::Impl::create_vcpu(std::span<const x86::CpuidAnswer> host) {
    auto v = vm->create_vcpu(0);
    if (!v) return std::unexpected(v.error());
    vcpu = std::make_unique<kvm::Vcpu>(std::move(*v));
    std::string path = cpuid_cache_path();
    std::vector<kvm_cpuid_entry2> cached = cached_cpuid(path);
    if (!cached.empty()) {
        auto table = x86::with_host_answers(cached, host);
        if (vcpu->set_cpuid(table)) {
            kvm_xcr0 = x86::supported_xcr0(cached);
            guest_hwcap = x86::hwcap(table);
            cpuid_table = table;
            return table;
        }
    }
    auto fresh = system->supported_cpuid();
    if (!fresh) return std::unexpected(fresh.error());
    if (!path.empty() && make_dirs(cache_dir()))  // KVM's own table: the host may change
        (void)write_file_atomic(path, fresh->data(), fresh->size() * sizeof(kvm_cpuid_entry2));
    auto table = x86::with_host_answers(*fresh, host);
    if (auto r = vcpu->set_cpuid(table); !r) return std::unexpected(r.error());
    kvm_xcr0 = x86::supported_xcr0(*fresh);
    guest_hwcap = x86::hwcap(table);
    cpuid_table = table;
    return table;
}

uint64_t ThinVm::Impl::align_guest_tsc() {
    if (vcpu->set_tsc_offset(0)) return 0;
    const uint64_t before = __rdtsc();
    auto guest = vcpu->get_msrs({x86::msr::kTsc});
    const uint64_t after = __rdtsc();
    if (!guest) return 0;  // nothing better to go on: the clock calibrates as before
    return (*guest)[0] - (before + (after - before) / 2);
}

void ThinVm::Impl::finish_setup(thin::Sandbox sandbox, bool fsgsbase) {
    thin::ProcessOptions opts;
    opts.tsc_offset = align_guest_tsc();
    opts.trace = config.trace_syscalls;
    opts.uid = config.uid.value_or(::getuid());
    opts.gid = config.gid.value_or(::getgid());
    opts.fsgsbase = fsgsbase;
    opts.hwcap = guest_hwcap;
    opts.hwcap2 = fsgsbase ? static_cast<uint32_t>(x86::kHwcap2Fsgsbase) : 0;
    opts.stack_size = program_stack_size();
    opts.argv = config.argv;
    opts.envp = config.envp;
    opts.comm = std::filesystem::path(config.program).filename().string().substr(0, 15);
    // The guest's XCR0 as set (created) or restored: what its frames hold.
    auto xcrs = vcpu->get_xcrs();
    opts.xcr0 = xcrs && xcrs->nr_xcrs ? xcrs->xcrs[0].value : kvm_xcr0;
    opts.xsave_size = x86::xsave_size(opts.xcr0);
    opts.signal_fd = signal_pipe();
    opts.tree = this;
    init = std::make_unique<Task>(*this);
    Task& t = *init;
    process = std::make_unique<thin::Process>(*as, std::move(sandbox), t, opts);
    if (auto entry = thin::GuestEntry::find(*as)) process->attach_guest_entry(std::move(*entry));
    t.as = as.get();
    t.vcpu = vcpu.get();
    t.process = process.get();
    t.slot = vcpus.size();
    t.runner = &vcpus.add(*vcpu, t);
    members[t.pid] = Member{};
    members[t.pid].task = &t;
    started_at = now_rfc3339();
}

ThinVm::ThinVm() : impl_(std::make_unique<Impl>()) {}

ThinVm::~ThinVm() {
    Impl& m = *impl_;
    m.vcpus.stop();
    m.vcpus.join();
    // Destroy the VM before unmapping its memory: KVM then frees its MMU in
    // one pass, instead of zapping translations range by range through the
    // MMU notifier while the RAM mapping goes away.
    m.child_tasks.clear();
    m.init.reset();
    m.process.reset();
    m.vcpu.reset();
    m.vm.reset();
    m.system.reset();
    m.as.reset();
    m.mem.reset();
}

// One ELF file the VM loads (the program, or a dynamic program's loader):
// its bytes as a file region of guest memory, and its rewrite.
struct ThinVm::Impl::ElfFile {
    std::string path;  // as messages name it
    loader::FileIdentity identity;
    Fd fd;
    std::optional<loader::CachedImage> cached;  // the rewritten copy, on a warm start
    uint64_t gpa = 0;
    std::span<const uint8_t> bytes;
    loader::ElfImage image;
    std::vector<uint64_t> sites;  // to rewrite while loading; none in a cached image
    std::vector<uint8_t> stubs;
};

// What the creation steps hand each other.
struct ThinVm::Impl::Build {
    explicit Build(const std::string& cache_dir) : cache(cache_dir) {}
    loader::RewriteCache cache;
    ElfFile program;                     // the executable (a script's interpreter)
    bool program_in_guest = false;       // PROGRAM was found in the guest's file system
    std::optional<ElfFile> interpreter;  // a dynamic program's (PT_INTERP)
    std::vector<x86::CpuidAnswer> host_cpuid;
    std::vector<kvm_cpuid_entry2> cpuid;  // the vCPU's
    bool fsgsbase = false;
    loader::LoadedProgram loaded;
};

Result<std::unique_ptr<ThinVm>> ThinVm::create(const ThinVmConfig& config) {
    if (config.mem_size < kMinThinVmMemory) return fail("--mem: at least 1M is needed", EINVAL);
    if (config.mem_size > kMaxThinVmMemory) return fail("--mem: at most 64G is supported", EINVAL);
    if (config.max_processes < 1 || config.max_processes > kMaxThinVmProcesses)
        return fail("--pids: between 1 and " + std::to_string(kMaxThinVmProcesses), EINVAL);
    std::unique_ptr<ThinVm> self(new ThinVm());
    Impl& m = *self->impl_;
    m.config = config;
    Impl::Build b(config.cache_dir);
    // The guest's file system first: the program may be in it.
    auto sandbox = thin::Sandbox::create(config.root, config.rw);
    if (!sandbox) return std::unexpected(sandbox.error());
    m.timer.mark("sandbox");
    if (auto r = m.map_program(b, *sandbox); !r) return std::unexpected(r.error());
    if (auto r = m.map_interpreter(b, *sandbox); !r) return std::unexpected(r.error());
    b.host_cpuid = host_cpuid_answers();
    auto cpuid = m.create_kvm_vm(b.host_cpuid);
    if (!cpuid) return std::unexpected(cpuid.error());
    b.cpuid = std::move(*cpuid);
    for (auto step : {&Impl::build_system_pages, &Impl::find_syscall_sites, &Impl::enter_user_mode, &Impl::load_program,
                      &Impl::set_entry_registers, &Impl::match_cpuid_answers})
        if (auto r = (m.*step)(b); !r) return std::unexpected(r.error());
    m.finish_setup(std::move(*sandbox), b.fsgsbase);
    if (!config.workdir.empty())
        if (int64_t r = m.process->set_working_directory(config.workdir); r < 0)
            return fail("--workdir " + config.workdir + ": " + std::strerror(static_cast<int>(-r)) +
                            " (a directory the guest sees, under --root or an --rw mount)",
                        EINVAL);
    m.process->set_brk_start(b.loaded.brk_start);
    if (b.program.cached)
        m.process->set_self_exe_strings(
            loader::self_exe_addresses(*b.program.cached, b.program.image, b.loaded.load_bias));
    m.process->attach_stdio();
    return self;
}

Result<> ThinVm::Impl::map_program(Build& b, const thin::Sandbox& sandbox) {
    if (auto r = open_program_file(b, sandbox); !r) return r;
    if (auto r = follow_script(b, sandbox); !r) return r;
    auto memory = memory::GuestMemory::create(config.mem_size);
    if (!memory) return std::unexpected(memory.error());
    mem = std::make_unique<memory::GuestMemory>(std::move(*memory));
    if (auto r = map_elf(b, b.program); !r) return r;
    timer.mark("map program");
    return {};
}

// With a guest file system (--root, --rw), an absolute PROGRAM that is in
// it is that file, as the guest sees it; otherwise PROGRAM is a host path.
Result<> ThinVm::Impl::open_program_file(Build& b, const thin::Sandbox& sandbox) {
    ElfFile& f = b.program;
    f.path = config.program;
    const bool guest_fs = !config.root.empty() || !config.rw.empty();
    if (guest_fs && config.program.starts_with('/')) {
        const std::string abs = thin::Sandbox::normalize("/", config.program);
        if (auto fd = sandbox.open(abs, O_RDONLY | O_CLOEXEC, 0)) {
            f.fd = std::move(*fd);
            b.program_in_guest = true;
            return check_program(f.fd, f.path, f.identity);
        }
    }
    auto program = open_program(config.program, f.identity);
    if (!program) {
        Error e = program.error();
        if (guest_fs && e.sys_errno == ENOENT) e.message += " (in the guest's file system, nor on the host)";
        return std::unexpected(e);
    }
    f.fd = std::move(*program);
    return {};
}

// A `#!` script runs its interpreter, from the guest's file system, with
// the script's path as an argument, as Linux's binfmt_script does.
Result<> ThinVm::Impl::follow_script(Build& b, const thin::Sandbox& sandbox) {
    uint8_t head[loader::kShebangMax];
    const ssize_t n = ::pread(b.program.fd.get(), head, sizeof head, 0);
    if (n < 0) return fail_errno(config.program);
    auto script = loader::parse_shebang(std::span<const uint8_t>(head, static_cast<size_t>(n)));
    if (!script) return fail(config.program + ": " + script.error().message, ENOEXEC);
    if (!*script) return {};
    if (!b.program_in_guest)
        return fail(config.program +
                        ": a #! script runs from the guest's file system (its interpreter opens it there): "
                        "give --root or an --rw mount that holds it",
                    ENOEXEC);
    const loader::Shebang& s = **script;
    std::vector<std::string> argv = {s.interpreter};
    if (s.argument) argv.push_back(*s.argument);
    argv.push_back(config.program);
    if (config.argv.size() > 1) argv.insert(argv.end(), config.argv.begin() + 1, config.argv.end());
    config.argv = std::move(argv);
    ElfFile interp;
    if (auto r = open_in_guest(sandbox, s.interpreter, config.program + ": its interpreter " + s.interpreter, interp);
        !r)
        return r;
    uint8_t magic[2] = {};
    if (::pread(interp.fd.get(), magic, 2, 0) == 2 && magic[0] == '#' && magic[1] == '!')
        return fail(interp.path + ": is itself a #! script (not supported)", ENOEXEC);
    b.program = std::move(interp);
    return {};
}

// Opens `path` as the guest would (relative to its working directory) to
// load it; named `what` in errors. Missing: ENOENT (status 127), with a
// hint at --root; anything else: ENOEXEC.
Result<> ThinVm::Impl::open_in_guest(const thin::Sandbox& sandbox, const std::string& path, const std::string& what,
                                     ElfFile& f) {
    const std::string abs = thin::Sandbox::normalize(config.workdir.empty() ? "/" : config.workdir, path);
    auto fd = sandbox.open(abs, O_RDONLY | O_CLOEXEC, 0);
    if (!fd) {
        const int e = fd.error().sys_errno;
        const std::string hint =
            config.root.empty() ? " (it is loaded from --root; try --root /)" : " (not in --root " + config.root + ")";
        return fail(what + ": " + std::strerror(e) + (e == ENOENT ? hint : ""), e == ENOENT ? ENOENT : ENOEXEC);
    }
    f.path = what;
    f.fd = std::move(*fd);
    return check_program(f.fd, what, f.identity);
}

// The program's bytes live in a private file region of guest memory: the
// loader maps its pages into the guest instead of copying them. A warm start
// maps the cached, already rewritten copy (see loader/rewriter.h) and patches
// nothing.
Result<> ThinVm::Impl::map_elf(Build& b, ElfFile& f) {
    const uint64_t file_size = f.identity.size;
    f.cached = loader::open_cached_image(b.cache, f.identity);
    auto gpa = f.cached ? mem->add_file_region(f.cached->fd.get(), file_size, loader::kImageHeaderSize)
                        : mem->add_file_region(f.fd.get(), file_size);
    if (!gpa) return fail(f.path + ": " + gpa.error().message, ENOEXEC);
    f.gpa = *gpa;
    f.bytes = std::span<const uint8_t>(mem->host(f.gpa, file_size), file_size);
    auto image = loader::parse_elf(f.bytes);
    if (!image) return fail(f.path + ": " + image.error().message, ENOEXEC);
    f.image = std::move(*image);
    return {};
}

// A dynamic program's loader, from the guest's file system as Linux's execve
// finds it: a missing one is ENOENT, named.
Result<> ThinVm::Impl::map_interpreter(Build& b, const thin::Sandbox& sandbox) {
    const std::string& interp = b.program.image.interp;
    if (interp.empty()) return {};
    const std::string what = config.program + ": its interpreter " + interp;
    ElfFile& f = b.interpreter.emplace();
    if (auto r = open_in_guest(sandbox, interp, what, f); !r) return r;
    if (auto r = map_elf(b, f); !r) return r;
    if (!f.image.interp.empty()) return fail(what + ": is itself dynamically linked", ENOEXEC);
    timer.mark("map interpreter");
    return {};
}

// The page tables and the system pages (kSystemBase..kSystemEnd): GDT, TSS
// with its I/O bitmap, the IDT with its exception stubs; then the guest-side
// system call entry.
Result<> ThinVm::Impl::build_system_pages(Build& b) {
    as = std::make_unique<memory::AddressSpace>(*mem, kPoolStart);
    if (auto r = as->init(); !r) return std::unexpected(r.error());
    x86::build_gdt(reinterpret_cast<uint64_t*>(mem->host(kGdtAddr, x86::kGdtEntries * 8)), kTssAddr, kTssLimit);
    uint8_t* tss = mem->host(kTssAddr, kTssLimit + 1);
    const uint16_t iomap_base = kTssSize;
    std::memcpy(tss + 0x66, &iomap_base, 2);
    tss[kTssLimit] = 0xff;
    const uint64_t rsp0 = kExceptionStackTop;
    std::memcpy(tss + 4, &rsp0, 8);
    x86::build_exception_idt(mem->host(kIdtAddr, x86::kIdtSize),
                             mem->host(kExceptionStubsAddr, x86::kExceptionStubsSize), kExceptionStubsAddr);
    for (uint64_t page = kSystemBase; page < kSystemEnd; page += memory::kPageSize) {
        const uint64_t exec = page == (kExceptionStubsAddr & ~memory::kPageMask) ? 0 : memory::pte::kNoExec;
        if (auto r = as->tables().map(page, page, memory::pte::kWrite | exec); !r) return std::unexpected(r.error());
    }
    if (auto r = thin::GuestEntry::install(*as, b.host_cpuid); !r) return std::unexpected(r.error());
    timer.mark("memory+page tables");
    return {};
}

// The `syscall` sites to rewrite and their stubs: from the cache, or found
// by the decoder (in its helper process) and cached for the next start.
Result<> ThinVm::Impl::find_syscall_sites(Build& b) {
    stats.rewrite_cache_hit = true;
    stats.rewritten_sites = 0;
    for (ElfFile* f : {&b.program, b.interpreter ? &*b.interpreter : nullptr}) {
        if (!f) continue;
        bool hit = false;
        if (auto r = rewrite_elf(b, *f, hit); !r) return r;
        stats.rewrite_cache_hit = stats.rewrite_cache_hit && hit;
        stats.rewritten_sites += f->cached ? f->cached->sites : f->sites.size();
    }
    timer.mark("rewrite sites");
    return {};
}

Result<> ThinVm::Impl::rewrite_elf(Build& b, ElfFile& f, bool& cache_hit) {
    if (f.cached) {
        cache_hit = true;
        f.stubs = std::move(f.cached->stubs);
        return {};
    }
    const int fd = f.fd.get();
    auto decode = [fd](std::span<const uint8_t> file, const loader::ElfImage& img) {
        return loader::decode_in_helper(fd, file, img);
    };
    auto found = loader::syscall_sites(f.bytes, f.image, b.cache, decode, &f.identity, &cache_hit);
    if (!found) return fail(f.path + ": " + found.error().message, found.error().sys_errno);
    f.sites = std::move(*found);
    f.stubs = loader::build_stubs(f.bytes, f.image, f.sites);
    loader::store_cached_image(b.cache, f.identity, f.bytes, f.image, f.sites, f.stubs);
    return {};
}

// Long mode at CPL3 on our page tables and descriptor tables.
Result<> ThinVm::Impl::enter_user_mode(Build& b) {
    auto sregs = vcpu->get_sregs();
    if (!sregs) return std::unexpected(sregs.error());
    x86::setup_long_mode(*sregs, {.cr3 = as->tables().root(),
                                  .gdt_base = kGdtAddr,
                                  .tss_base = kTssAddr,
                                  .tss_limit = kTssLimit,
                                  .idt_base = kIdtAddr,
                                  .idt_limit = x86::kIdtSize - 1,
                                  .user_mode = true});
    // CR4 as the host's user mode has it: KVM derives CPUID's OSXSAVE and
    // OSPKE bits from the vCPU's CR4, and a trapped `cpuid` must give the
    // table's answer (arch/x86/cpuid.h, cr4_promised_by). User-mode
    // RDFSBASE/WRFSBASE as Linux allows them since 5.9, where the host's own
    // user mode may use them and KVM takes CR4.FSGSBASE. A KVM that refuses
    // an optional bit (PKE, FSGSBASE) gets the VM without it.
    sregs->cr4 = (sregs->cr4 & ~x86::cr4::kOSXSAVE) | x86::cr4_promised_by(b.cpuid);
    const uint64_t optional = x86::cr4::kPKE | x86::cr4::kFSGSBASE;
    if (x86::has_fsgsbase(b.cpuid) && x86::host_allows_fsgsbase()) sregs->cr4 |= x86::cr4::kFSGSBASE;
    if (!vcpu->set_sregs(*sregs)) {
        sregs->cr4 &= ~optional;
        if (auto r = vcpu->set_sregs(*sregs); !r) return wrap("vCPU control registers", r.error());
    }
    b.fsgsbase = sregs->cr4 & x86::cr4::kFSGSBASE;
    // Un-rewritten `syscall`s land in the entry code (guest_entry.S,
    // vessel_guest_lstar): EFER.SCE on, LSTAR there, STAR with Linux's
    // selectors (sysret to 0x33/0x2b), no flags masked.
    sregs->efer |= x86::efer::kSCE;
    if (auto r = vcpu->set_sregs(*sregs); !r) return wrap("vCPU EFER", r.error());
    const uint64_t star = uint64_t{x86::selector::kUserCode32} << 48 | uint64_t{x86::selector::kKernelCode} << 32;
    if (!vcpu->set_msrs({{x86::msr::kStar, star}, {x86::msr::kLstar, thin::guest_lstar_va()}, {x86::msr::kSfmask, 0}}))
        return fail("KVM refused the vCPU's system-call MSRs (STAR, LSTAR, SFMASK)", EINVAL);
    return {};
}

// The program's segments, stack, arguments and auxiliary vector.
Result<> ThinVm::Impl::load_program(Build& b) {
    loader::ProgramSpec spec;
    spec.argv = config.argv;
    spec.envp = config.envp;
    spec.execfn = config.program;
    spec.stack_size = program_stack_size();
    spec.image_gpa = b.program.gpa;
    std::optional<loader::InterpreterImage> interp;
    if (b.interpreter) {
        ElfFile& f = *b.interpreter;  // nothing reads its image or rewrite after this step
        interp = loader::InterpreterImage{f.bytes, std::move(f.image), std::move(f.sites), std::move(f.stubs), f.gpa};
        spec.interpreter = &*interp;
    }
    spec.hwcap = x86::hwcap(b.cpuid);
    if (b.fsgsbase) spec.hwcap2 |= x86::kHwcap2Fsgsbase;
    spec.uid = spec.euid = config.uid.value_or(::getuid());
    spec.gid = spec.egid = config.gid.value_or(::getgid());
    if (::getrandom(spec.random, sizeof spec.random, 0) != sizeof spec.random) return fail_errno("getrandom");
    const ElfFile& p = b.program;
    auto loaded = loader::load_program(*as, p.bytes, p.image, p.sites, p.stubs, spec);
    if (!loaded) {
        int e = loaded.error().sys_errno == ENOMEM ? ENOMEM : ENOEXEC;
        return fail(config.program + ": " + loaded.error().message, e);
    }
    b.loaded = *loaded;
    timer.mark("load program");
    return {};
}

// XCR0 as the host's user mode has it (arch/x86/cpuid.h, thin_xcr0), and
// the registers at the program's entry.
Result<> ThinVm::Impl::set_entry_registers(Build& b) {
    kvm_xcrs xcrs{};
    xcrs.nr_xcrs = 1;
    xcrs.xcrs[0].xcr = 0;
    xcrs.xcrs[0].value = x86::thin_xcr0(b.cpuid, kvm_xcr0);
    if (auto r = vcpu->set_xcrs(xcrs); !r) return std::unexpected(r.error());
    kvm_regs regs{};
    regs.rip = b.loaded.entry;
    regs.rsp = b.loaded.stack_pointer;
    regs.rflags = x86::rflags::kReserved1 | x86::rflags::kIOPL3;
    if (auto r = vcpu->set_regs(regs); !r) return std::unexpected(r.error());
    timer.mark("vcpu state");
    return {};
}

// Rewritten `cpuid` sites answer from the guest's CPUID page, which holds
// the host's answers; un-rewritten ones get the CPU's answers (the host's)
// or, where the host traps the instruction, the vCPU's table as KVM holds
// it now that CR4 and XCR0 are set. Where KVM trimmed that table, the page
// takes KVM's answers, so that both kinds of site agree (cpuid_probe.h).
Result<> ThinVm::Impl::match_cpuid_answers(Build& b) {
    auto held = vcpu->get_cpuid();
    if (!held) return {};  // nothing to compare with: the host's answers stay
    const std::vector<x86::CpuidAnswer> kvm_answers = x86::answers_as_held(b.host_cpuid, *held);
    if (kvm_answers == b.host_cpuid) return {};
    if (!cpuid_traps_cached(*system, *held, boot_cache_path("cpuid-traps"))) return {};
    if (auto r = thin::GuestEntry::set_cpuid_answers(*as, kvm_answers); !r) return r;
    timer.mark("cpuid answers as KVM's");
    return {};
}

// ---------------------------------------------------------------- running

int ThinVm::Impl::Task::wake_read() const { return pid == thin::kGuestPid ? signal_pipe() : wake.get(); }

void ThinVm::Impl::Task::notify() {
    const uint64_t one = 1;
    if (pid == thin::kGuestPid) {
        if (g_signal_pipe[1] >= 0) (void)!::write(g_signal_pipe[1], "", 1);
    } else {
        (void)!::write(wake.get(), &one, sizeof one);
    }
    if (runner) runner->kick();
}

bool ThinVm::Impl::Task::wait_for_wake(int timeout_ms) {
    pollfd pfd{wake_read(), POLLIN, 0};
    const int r = ::poll(&pfd, 1, timeout_ms);
    if (r < 0) return false;
    if (r > 0) clear_wake();
    return true;
}

void ThinVm::Impl::Task::clear_wake() {
    char drain[64];  // the self-pipe's bytes, or an eventfd's 8-byte count
    while (::read(wake_read(), drain, sizeof drain) > 0) {
    }
}

bool ThinVm::Impl::Task::signals_waiting() const {
    return incoming.load(std::memory_order_relaxed) ||
           (pid == thin::kGuestPid && g_host_signals.load(std::memory_order_relaxed));
}

bool ThinVm::Impl::Task::set_segment_base(kvm_segment kvm_sregs::*seg, uint64_t base) {
    // Through the segment registers: PVM refuses the FS/GS base MSRs from
    // userspace but honours sregs.
    auto s = vcpu->get_sregs();
    if (!s) return false;
    ((*s).*seg).base = base;
    return !!vcpu->set_sregs(*s);
}

uint64_t ThinVm::Impl::Task::segment_base(kvm_segment kvm_sregs::*seg) {
    auto s = vcpu->get_sregs();
    return s ? ((*s).*seg).base : 0;
}

cpu::Action ThinVm::Impl::Task::guest_exception() {
    // Only a stub runs on page 1 (supervisor-only: guest code cannot jump
    // there), and only after the CPU switched to RSP0 and pushed a frame.
    const uint64_t rsp = runner->regs().rsp;
    x86::ExceptionFrame f;
    if (rsp < kExceptionStubsAddr + x86::kExceptionStubsSize || rsp > kExceptionStackTop - sizeof f)
        return crash("exception report with its stack at " + hex(rsp));
    // Page 1 is each process's own (a child's is a copy at the same address).
    const uint64_t page = as->tables().leaf(kSystemBase) & memory::pte::kAddrMask;  // supervisor-only
    uint8_t* frame = page ? vm.mem->host(page + (rsp - kSystemBase), sizeof f) : nullptr;
    if (!frame) return crash("exception report without its page");
    std::memcpy(&f, frame, sizeof f);
    if (f.vector >= x86::kExceptionVectors) return crash("exception report for vector " + std::to_string(f.vector));
    uint64_t cr2 = 0;
    if (auto s = vcpu->get_sregs()) cr2 = s->cr2;
    x86::GuestFault fault = x86::describe_exception(static_cast<unsigned>(f.vector), f.error_code, cr2, f.rip);
    // Under PVM a `syscall` nobody rewrote jumps to LSTAR (0) at CPL3.
    if (f.rip == 0 && f.vector == 14 && runner->regs().rcx >= 2) {
        fault.description += " (a `syscall` the loader did not rewrite, at " + hex(runner->regs().rcx - 2) + ")";
        return crash_at(fault.description, f.rip, f.rsp, 128 + fault.signal);
    }
    // A page of a forked child touched for the first time (never written
    // before the fork, so left unmapped): mapped now, and the stub's
    // `iretq` retries the access.
    constexpr uint64_t kPresent = 1, kWrite = 2, kFetch = 16;
    if (f.vector == 14 && !(f.error_code & kPresent) && (f.cs & 3) == 3) {
        const int access = f.error_code & kWrite   ? memory::kProtWrite
                           : f.error_code & kFetch ? memory::kProtExec
                                                   : memory::kProtRead;
        if (as->fault_in(cr2, access)) return cpu::Action::kContinue;
        if (as->find_vma(cr2) && as->allocator().pages_free() == 0) process->note_out_of_memory();
    }
    // A fault in user code: its handler runs, or the process dies of it.
    // The stub's `iretq` returns through the frame, pointed at the handler.
    kvm_regs& r = runner->regs();
    thin::UserContext ctx;
    ctx.regs = r;
    ctx.regs.rip = f.rip;
    ctx.regs.rsp = f.rsp;
    ctx.regs.rflags = f.rflags;
    ctx.trap = {f.vector, f.error_code, f.vector == 14 ? cr2 : 0};
    if ((f.cs & 3) != 3 || !process->take_fault(fault.signal, fault.code, fault.addr, ctx))
        return crash_at(fault.description, f.rip, f.rsp, 128 + fault.signal);
    f.rip = ctx.regs.rip;
    f.rsp = ctx.regs.rsp;
    f.rflags = ctx.regs.rflags | x86::rflags::kIOPL3;
    std::memcpy(frame, &f, sizeof f);
    const uint64_t stub_rip = r.rip, stub_rflags = r.rflags;
    r = ctx.regs;
    r.rip = stub_rip, r.rsp = rsp, r.rflags = stub_rflags;  // still in the stub, on its stack
    runner->mark_regs_dirty();
    return cpu::Action::kContinue;
}

cpu::Action ThinVm::Impl::Task::crash(const std::string& why) {
    const kvm_regs& r = runner->regs();
    return crash_at(why, r.rip, r.rsp, kExitGuestCrashed);
}

cpu::Action ThinVm::Impl::Task::crash_at(const std::string& why, uint64_t rip, uint64_t rsp, int status) {
    if (pid != thin::kGuestPid) {  // a child dies of the signal, or of SIGKILL when there is none
        vm.child_exited(*this, status > 128 && status < 128 + 65 ? status - 128 : SIGKILL);
        return cpu::Action::kStop;
    }
    char buf[320];
    std::snprintf(buf, sizeof buf, "guest crashed: %s at rip=0x%" PRIx64 " rsp=0x%" PRIx64, why.c_str(), rip, rsp);
    vm.outcome.diagnostic = buf;
    vm.outcome.status = status;
    return cpu::Action::kStop;
}

uint64_t ThinVm::Impl::Task::syscall_return_address(const kvm_regs& r) {
    const uint64_t entry = GUEST_ENTRY_VA, entry_end = GUEST_ENTRY_VA + memory::kPageSize;
    if (r.rip >= entry && r.rip < entry_end) {
        uint64_t saved = 0;  // the guest's to scribble on: any value is its own return address
        (void)process->mem().read(GUEST_SHARED_VA + SH_SAVE_RCX, &saved, sizeof saved);
        return saved;
    }
    // A site rewritten in place (`out dx, eax; nop`). PVM has stepped past
    // the `out` when it exits; KVM on VT-x/AMD-V steps at the next KVM_RUN
    // (and not at all once RIP is changed), so RIP may still be on it.
    uint8_t at = 0;
    (void)process->mem().read(r.rip, &at, 1);
    return at == loader::kExitReplacement[0] ? r.rip + 1 : r.rip;
}

thin::UserContext ThinVm::Impl::Task::call_context(const kvm_regs& r, bool& via_lstar) {
    // `out` at the LSTAR entry: RIP on it (VT-x/AMD-V) or just past it (PVM).
    const uint64_t lstar = thin::guest_lstar_va();
    via_lstar = r.rip == lstar || r.rip == lstar + 1;
    thin::UserContext ctx;
    ctx.regs = r;
    ctx.regs.rip = via_lstar ? r.rcx : syscall_return_address(r);
    if (via_lstar) ctx.regs.rflags = r.r11;
    return ctx;
}

std::optional<cpu::Action> ThinVm::Impl::Task::signal_interrupts_call(uint64_t nr, thin::UserContext& ctx,
                                                                      bool via_lstar, bool made) {
    if (!take_host_signals() || !process->interrupt_call(nr, ctx, thin::kGuestEntryVa, made)) return std::nullopt;
    if (process->exited()) return process_exited();
    if (via_lstar) return return_from_lstar(static_cast<int64_t>(ctx.regs.rax), ctx);
    return enter_context(ctx);
}

cpu::Action ThinVm::Impl::Task::enter_context(const thin::UserContext& ctx) {
    kvm_regs& r = runner->regs();
    r = ctx.regs;
    r.rflags |= arch::x86::rflags::kIOPL3;  // PVM reports it as 0
    runner->mark_regs_dirty();
    return cpu::Action::kContinue;
}

cpu::Action ThinVm::Impl::Task::process_exited() {
    if (pid != thin::kGuestPid) {
        const int sig = process->killed_by();
        vm.child_exited(*this, sig ? sig : (process->exit_status() & 0xff) << 8);
        return cpu::Action::kStop;
    }
    vm.outcome.status = process->exit_status();
    if (const int sig = process->killed_by())  // one line, as a shell says "Aborted"
        vm.outcome.diagnostic = std::string("guest killed by SIG") + sigabbrev_np(sig);
    vm.outcome.guest_exited = true;
    return cpu::Action::kStop;
}

bool ThinVm::Impl::Task::take_host_signals() {
    uint64_t sigs = pid == thin::kGuestPid ? g_host_signals.exchange(0) : 0;
    uint64_t from_vm = incoming.exchange(0);
    if (!sigs && !from_vm) return false;
    const uint64_t from_kernel = g_kernel_signals.load();
    for (; sigs; sigs &= sigs - 1) {
        const int sig = __builtin_ctzll(sigs) + 1;
        const bool kernel = from_kernel & (1ull << (sig - 1));
        // The timer's SIGALRM is for the process that armed it.
        if (const int64_t owner = thin::timer_owner(); sig == SIGALRM && kernel && owner != pid) {
            std::lock_guard g(vm.tree_mu);
            if (Task* t = vm.live(owner)) t->post(SIGALRM);
            continue;
        }
        // The terminal's signals are the foreground process group's, as
        // the terminal sends them; the others (SIGTERM from `vessel stop`,
        // SIGHUP) are pid 1's, as a container's.
        if (sig == SIGINT || sig == SIGQUIT || sig == SIGWINCH) {
            bool mine;
            {
                std::lock_guard g(vm.tree_mu);
                const int64_t fg = vm.foreground_group;
                mine = vm.members.at(pid).pgid == fg;
                for (auto& [id, m] : vm.members)
                    if (m.task && id != pid && m.pgid == fg) m.task->post(sig);
            }
            if (!mine) continue;
        }
        process->send_signal(sig, kernel ? SI_KERNEL : SI_USER);
    }
    for (; from_vm; from_vm &= from_vm - 1) process->send_signal(__builtin_ctzll(from_vm) + 1, SI_USER);
    return true;
}

cpu::Action ThinVm::Impl::Task::host_signal_while_running() {
    // Not while the guest is inside Vessel's own code (the entry code, on
    // its private stack; a stub running at CPL0): the next exit takes them.
    const uint64_t rip = runner->regs().rip;
    const bool own_code = (rip >= thin::kGuestEntryVa && rip < thin::kGuestEntryVa + memory::kPageSize) ||
                          (rip >= kSystemBase && rip < kSystemEnd);
    if (own_code || !take_host_signals()) return cpu::Action::kContinue;
    thin::UserContext ctx;
    ctx.regs = runner->regs();
    process->deliver_pending(ctx);
    if (process->exited()) return process_exited();
    return ctx.replaced ? enter_context(ctx) : cpu::Action::kContinue;
}

cpu::Action ThinVm::Impl::Task::return_from_lstar(int64_t result, const thin::UserContext& ctx) {
    kvm_regs& r = runner->regs();
    // Where `syscall` went is the platform's (PLATFORM.md): read, not assumed.
    auto sregs = vcpu->get_sregs();
    const bool cpl0 = sregs && (sregs->cs.selector & 3) == 0;
    // Known now: later calls enter the entry code through its own stub for
    // this platform, and most never exit (guest_entry.S).
    if (sregs && !lstar_fast)
        lstar_fast = vcpu->set_msrs({{x86::msr::kLstar, thin::guest_lstar_fast_va(cpl0)}}).has_value();
    if (ctx.replaced) {
        // A handler entered, or a frame returned from: the whole context,
        // RCX, R11 and a non-canonical RIP included (which `sysretq` could
        // not take), so at CPL0 the VMM itself puts the vCPU back at CPL3.
        if (cpl0) {
            sregs->cs = x86::flat_segment(x86::selector::kUserCode, 0xb, 3, true);
            sregs->ss = x86::flat_segment(x86::selector::kUserData, 0x3, 3, false);
            if (auto set = vcpu->set_sregs(*sregs); !set) return crash("leaving CPL0: " + set.error().message);
        }
        return enter_context(ctx);
    }
    r.rax = static_cast<uint64_t>(result);
    // The stub returns to RCX with R11's flags: by `sysretq` at CPL0, by
    // `jmp *%rcx` at CPL3 (whose R11 then is the caller's flags, as Linux
    // leaves it).
    r.rcx = ctx.regs.rip;
    r.r11 = ctx.regs.rflags | (cpl0 ? arch::x86::rflags::kIOPL3 : 0);
    if (cpl0) r.rip = thin::guest_sysret_va();
    r.rflags |= arch::x86::rflags::kIOPL3;
    runner->mark_regs_dirty();
    return cpu::Action::kContinue;
}

cpu::Action ThinVm::Impl::Task::guest_syscall(kvm_run& run) {
    kvm_regs& r = runner->regs();
    thin::SyscallArgs args{r.rax, {r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9}};
    if (vm.stats.syscalls == 0) vm.timer.mark("guest to 1st syscall");
    ++vm.stats.syscalls;
    bool via_lstar;
    thin::UserContext ctx = call_context(r, via_lstar);
    // A signal from outside that came while the VMM served an earlier exit
    // (the vCPU's kick then found the guest in Vessel's own code) is taken
    // before this call, which could otherwise block without seeing it.
    if (signals_waiting())
        if (auto taken = signal_interrupts_call(args.nr, ctx, via_lstar, false)) return *taken;
    int64_t result = process->handle(args, &ctx);
    if (process->exited()) return process_exited();
    // A signal another process sent while the call ran (a child's SIGCHLD
    // during wait4) is delivered on the way back, as Linux does.
    if (result != -EINTR && !ctx.replaced && incoming.load(std::memory_order_relaxed) && take_host_signals()) {
        ctx.regs.rax = static_cast<uint64_t>(result);
        process->deliver_pending(ctx);
        if (process->exited()) return process_exited();
    }
    if (result == -EINTR && !ctx.replaced)
        if (auto taken = signal_interrupts_call(args.nr, ctx, via_lstar)) return *taken;
    // An un-rewritten call leaves through its stub (sysretq at CPL0), also
    // when its context was replaced: whatever RAX a frame restores.
    if (via_lstar && (ctx.replaced || result != -EINTR)) return return_from_lstar(result, ctx);
    if (ctx.replaced) return enter_context(ctx);  // into a signal handler, or back from one
    if (result == -EINTR) {
        // Our own kick (a pause) or an ignored signal interrupted the host
        // call: the guest makes the call again once we are resumed.
        // Registers are left as they are until KVM has finished this exit
        // (on VT-x/AMD-V it steps past the `out` only at the next KVM_RUN;
        // PVM already has): re-enter at once, and on that KVM_EXIT_INTR
        // step back onto the 1-byte `out`.
        restart_syscall = true;
        run.immediate_exit = 1;
        return cpu::Action::kContinue;
    }
    // What the `syscall` instruction and sysret leave behind.
    r.rax = static_cast<uint64_t>(result);
    r.rcx = r.rip;
    r.r11 = r.rflags;
    r.rflags |= arch::x86::rflags::kIOPL3;  // PVM reports it as 0
    runner->mark_regs_dirty();
    return cpu::Action::kContinue;
}

cpu::Action ThinVm::Impl::Task::on_exit(kvm_run& run) {
    switch (run.exit_reason) {
        case KVM_EXIT_IO:
            vm.exits_io.fetch_add(1, std::memory_order_relaxed);
            // A rewritten `syscall`: `out dx, eax` (4 bytes, any port); or
            // an exception stub's one-byte report. Any other port access is
            // not something a thin guest may do.
            if (run.io.direction == KVM_EXIT_IO_OUT && run.io.size == 1 && run.io.port == x86::kExceptionPort &&
                runner->regs().rip > kExceptionStubsAddr &&
                runner->regs().rip <= kExceptionStubsAddr + x86::kExceptionStubsSize)
                return guest_exception();
            if (run.io.direction != KVM_EXIT_IO_OUT || run.io.size != 4 || run.io.count != 1)
                return crash("unexpected " + cpu::describe_exit(run));
            return guest_syscall(run);
        case KVM_EXIT_INTR:
            vm.exits_intr.fetch_add(1, std::memory_order_relaxed);
            if (restart_syscall) {
                restart_syscall = false;
                kvm_regs& r = runner->regs();
                // A signal from outside that came meanwhile is the call's interruption.
                if (signals_waiting()) {
                    bool via_lstar;
                    thin::UserContext ctx = call_context(r, via_lstar);
                    if (auto taken = signal_interrupts_call(r.rax, ctx, via_lstar)) return *taken;
                }
                r.rip -= 1;
                r.rflags |= arch::x86::rflags::kIOPL3;
                runner->mark_regs_dirty();
                return cpu::Action::kContinue;  // the call is made again; a signal waits for it
            }
            if (signals_waiting()) return host_signal_while_running();
            return cpu::Action::kContinue;
        default: vm.exits_other.fetch_add(1, std::memory_order_relaxed); return crash(cpu::describe_exit(run));
    }
}

Result<RunOutcome> ThinVm::run() {
    Impl& m = *impl_;
    m.vcpus.start();
    // Signals to the VMM are the guest's while it runs (one VM per process
    // takes them: the first to run).
    cpu::VcpuRunner* none = nullptr;
    const bool forwarding = g_signal_runner.compare_exchange_strong(none, m.init->runner);
    struct sigaction forward {
    }, saved[std::size(kForwardedSignals)];
    forward.sa_sigaction = on_host_signal;
    sigemptyset(&forward.sa_mask);
    forward.sa_flags = SA_SIGINFO;  // no SA_RESTART: a host call blocked for the guest returns EINTR
    if (forwarding)
        for (size_t i = 0; i < std::size(kForwardedSignals); ++i)
            ::sigaction(kForwardedSignals[i], &forward, &saved[i]);
    if (forwarding && m.restored_timer) ::setitimer(ITIMER_REAL, &*m.restored_timer, nullptr);
    auto r = m.vcpus.run_here(0);
    // pid 1 has ended: so does every other process, as in a pid namespace.
    m.vcpus.stop();
    m.vcpus.join();
    if (forwarding) {
        for (size_t i = 0; i < std::size(kForwardedSignals); ++i) ::sigaction(kForwardedSignals[i], &saved[i], nullptr);
        g_signal_runner = nullptr;
    }
    m.timer.mark("guest run");
    if (r && *r == cpu::VcpuSet::End::kStopped) m.outcome.status = kExitShutdown;
    if (m.process && m.process->unsupported_calls()) m.outcome.unsupported = m.process->unsupported_summary();
    if (const uint64_t n = m.process ? m.process->out_of_memory() : 0)
        m.outcome.out_of_memory = "the guest's memory (--mem " + std::to_string(m.config.mem_size >> 20) +
                                  "M) ran out " + std::to_string(n) + (n == 1 ? " time" : " times") +
                                  ": an allocation failed; raise --mem";
    m.vcpus.finish();
    if (!r) return std::unexpected(r.error());
    return m.outcome;
}

// ---------------------------------------------------------------- control

// Not under the control lock: a pause may wait for run() to start the vCPUs.
Result<> ThinVm::pause() { return impl_->vcpus.pause(); }

Result<> ThinVm::resume() {
    std::lock_guard g(impl_->lock);
    return impl_->vcpus.resume();
}

void ThinVm::shutdown() { impl_->vcpus.stop(); }

Result<SnapshotInfo> ThinVm::snapshot(const SnapshotTarget& target, SnapshotType type) {
    Impl& m = *impl_;
    std::lock_guard g(m.lock);
    if (const VmState state = m.vcpus.state(); state != VmState::kPaused)
        return fail(std::string("VM is ") + to_string(state) + "; pause it before taking a snapshot", EBUSY);
    if (const size_t n = m.count(); n > 1)
        return fail("the VM runs " + std::to_string(n) +
                        " processes; a snapshot of a thin VM holds one process only (for now): take it while "
                        "pid 1 runs alone",
                    EBUSY);
    return m.write_snapshot(target, type);
}

// ---------------------------------------------------------------- snapshots
//
// The records are each component's (cpu/vcpu_state, thin/process_state,
// memory/address_space_state); the directory, memory image and diff chains
// are snapshot_dir's; the configuration's JSON is thin_snapshot's. Here they
// are gathered from this machine and given back to a new one.

Result<SnapshotInfo> ThinVm::Impl::write_snapshot(const SnapshotTarget& target, SnapshotType type) {
    auto ps = process->capture();
    if (!ps) return std::unexpected(ps.error());
    auto vcpu_state = cpu::capture_vcpu(*vcpu, cpu::kThinVcpuMsrs, nullptr);
    if (!vcpu_state) return std::unexpected(vcpu_state.error());
    state::Writer vcpu_w, proc_w, signals_w, as_w;
    cpu::put_vcpu(vcpu_w, *vcpu_state);
    thin::put_process(proc_w, *ps);
    thin::put_signals(signals_w, *ps);
    memory::put_address_space(as_w, *as);
    state::Sections records;
    records[state::Section::kVcpu] = vcpu_w.take();
    records[state::Section::kThinProcess] = proc_w.take();
    records[state::Section::kThinSignals] = signals_w.take();
    records[state::Section::kAddressSpace] = as_w.take();
    nlohmann::json cfg = config_to_json(config, mem->size());
    const thin::ProcessOptions& now = process->options();
    program_view_to_json(cfg, {now.argv, now.envp, now.comm});
    return snapshot::write(target, type, *vm, *mem, dirty, std::move(cfg), std::move(records),
                           [this] { return register_memory(KVM_MEM_LOG_DIRTY_PAGES); });
}

Result<std::unique_ptr<ThinVm>> ThinVm::restore(const std::string& dir, const std::string& kvm_path) {
    using snapshot::view;
    using state::Reader;
    using state::Section;
    std::unique_ptr<ThinVm> self(new ThinVm());  // first, so its timer covers reading the files
    Impl& m = *self->impl_;
    auto chain = snapshot::load_chain(dir, MachineKind::kThin, kThinSections);
    if (!chain) return std::unexpected(chain.error());
    const snapshot::Loaded& newest = chain->front();
    const snapshot::MemoryLayout& layout = newest.memory;
    if (layout.ram_size < kPoolStart) return fail(newest.dir + ": memory layout is malformed", EINVAL);

    auto config = config_from_json(newest.config);
    if (!config) return wrap(newest.dir, config.error());
    config->kvm_path = kvm_path;
    if (config->mem_size != layout.ram_size)
        return fail(newest.dir + ": memory size disagrees with the layout", EINVAL);

    m.config = *config;

    auto mem = snapshot::map_chain(*chain);
    if (!mem) return std::unexpected(mem.error());
    m.mem = std::make_unique<memory::GuestMemory>(std::move(*mem));
    m.timer.mark("read state, map memory");

    auto sandbox = thin::Sandbox::create(config->root, config->rw);
    if (!sandbox) return wrap("restore", sandbox.error());
    if (auto r = m.open_kvm(); !r) return std::unexpected(r.error());
    // Dirty logging from the start: the next snapshot may be a diff on this one.
    if (auto r = m.register_memory(KVM_MEM_LOG_DIRTY_PAGES); !r) return std::unexpected(r.error());
    m.dirty.logging = true;
    m.mem->start_dirty_tracking();
    m.as = std::make_unique<memory::AddressSpace>(*m.mem, kPoolStart);
    if (auto r = memory::get_address_space(Reader(view(newest.sections.at(Section::kAddressSpace))), *m.as, *m.mem,
                                           kPoolStart);
        !r)
        return wrap(newest.dir, r.error());
    auto ps = thin::get_process(Reader(view(newest.sections.at(Section::kThinProcess))));
    if (!ps) return wrap(newest.dir, ps.error());
    if (auto sig = newest.sections.find(Section::kThinSignals); sig != newest.sections.end()) {
        if (auto r = thin::get_signals(Reader(view(sig->second)), *ps); !r) return wrap(newest.dir, r.error());
        if (ps->real_timer.it_value.tv_sec || ps->real_timer.it_value.tv_usec) m.restored_timer = ps->real_timer;
    }

    // The CPUID the program started with (its glibc chose its routines by
    // it), for un-rewritten sites too; a snapshot without the page gets
    // this host's.
    std::vector<x86::CpuidAnswer> answers = thin::GuestEntry::cpuid_answers(*m.as);
    if (answers.empty()) answers = host_cpuid_answers();
    auto cpuid = m.create_vcpu(answers);
    if (!cpuid) return std::unexpected(cpuid.error());
    Reader r(view(newest.sections.at(Section::kVcpu)));
    auto vcpu_state = cpu::get_vcpu(r, cpu::kThinVcpuMsrs, false);
    if (!vcpu_state) return wrap(newest.dir, vcpu_state.error());
    if (!r.at_end()) return fail(newest.dir + ": vCPU state is malformed", EINVAL);
    if (auto res = cpu::apply_vcpu(*m.vcpu, *vcpu_state); !res) return wrap(newest.dir, res.error());
    // Where `syscall` lands may differ on this host: found out again
    // (return_from_lstar), whatever the snapshot's host had learnt.
    if (!m.vcpu->set_msrs({{x86::msr::kLstar, thin::guest_lstar_va()}}))
        return fail("KVM refused the vCPU's MSR_LSTAR", EINVAL);
    m.timer.mark("vcpu state");

    m.finish_setup(std::move(*sandbox), vcpu_state->sregs.cr4 & x86::cr4::kFSGSBASE);
    if (auto res = m.process->restore(*ps); !res) return std::unexpected(res.error());
    auto program = program_view_from_json(newest.config);
    if (!program) return wrap(newest.dir, program.error());
    if (*program)
        m.process->set_program_view(std::move((*program)->argv), std::move((*program)->envp),
                                    std::move((*program)->comm));
    m.restored_from = newest.dir;
    m.dirty.last_snapshot = newest.dir;
    m.timer.mark("process state");
    return self;
}

thin::Sandbox& ThinVm::sandbox() { return impl_->process->sandbox(); }

Description ThinVm::describe() const {
    const Impl& m = *impl_;
    std::lock_guard g(m.lock);
    Description d;
    d.state = m.vcpus.state();
    d.pid = ::getpid();
    d.program = m.config.program;
    d.argv = m.config.argv;
    d.mem_bytes = m.mem ? m.mem->size() : 0;
    d.started_at = m.started_at;
    d.restored_from = m.restored_from;
    if (d.state == VmState::kExited) {
        d.has_exit_status = true;
        d.exit_status = m.outcome.status;
    }
    return d;
}

Metrics ThinVm::metrics() const {
    const Impl& m = *impl_;
    Metrics out;
    out.exits_io = m.exits_io.load(std::memory_order_relaxed);
    out.exits_intr = m.exits_intr.load(std::memory_order_relaxed);
    out.exits_other = m.exits_other.load(std::memory_order_relaxed);
    if (m.process) {
        for (unsigned nr = 0; nr < thin::kMaxSyscall; ++nr)
            if (uint64_t n = m.process->calls(nr)) out.syscalls[std::string(thin::syscall_name(nr))] += n;
        out.unsupported_syscalls = m.process->unsupported_calls();
        out.io_read_bytes = m.process->io_read_bytes();
        out.io_write_bytes = m.process->io_write_bytes();
    }
    out.vcpu_time_ns = m.vcpus.cpu_time_ns();
    out.processes = m.live_count();
    if (m.mem) out.guest_memory_touched_bytes = m.mem->resident_bytes();
    return out;
}

ThinVm::Stats ThinVm::stats() const {
    Stats s = impl_->stats;
    s.exits = impl_->exits_io + impl_->exits_intr + impl_->exits_other;
    s.unsupported_syscalls = impl_->process ? impl_->process->unsupported_calls() : 0;
    return s;
}

}  // namespace vessel::machine

#include "kvm/kvm.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <cstring>
#include <memory>
#include <vector>

namespace vessel::kvm {
namespace {

// These ioctls take a header { __u32 n; __u32 pad; } followed by an array
// of entries. g++ lays the kernel's flexible-array structs out differently
// from C: `entries` sits after an empty struct that takes a byte in C++, so
// kvm_cpuid2::entries is at offset 12 (C: 8) and kvm_msrs::entries at 16
// (C: 8), and the sizes encoded in the ioctl numbers differ too. Using the
// C++ structs passes every entry shifted, and KVM reads other fields (MSR
// index 0, CPUID entries skewed by 4 bytes). So these buffers are built by
// hand with the C layout (EntryBuffer) and the ioctl numbers hand-encoded.
constexpr unsigned long kHeaderSize = 8;  // { __u32 n; __u32 pad; }
constexpr unsigned long kGetSupportedCpuid = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x05, kHeaderSize);
constexpr unsigned long kSetCpuid2 = _IOC(_IOC_WRITE, KVMIO, 0x90, kHeaderSize);
constexpr unsigned long kGetCpuid2 = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x91, kHeaderSize);
constexpr unsigned long kGetMsrs = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x88, kHeaderSize);
constexpr unsigned long kSetMsrs = _IOC(_IOC_WRITE, KVMIO, 0x89, kHeaderSize);
static_assert(sizeof(kvm_cpuid_entry2) == 40 && sizeof(kvm_msr_entry) == 16);

// A C-layout { u32 count; u32 pad; Entry entries[count]; } buffer.
template <class Entry>
class EntryBuffer {
public:
    explicit EntryBuffer(size_t count) : bytes_(kHeaderSize + count * sizeof(Entry), 0) {
        set_count(static_cast<uint32_t>(count));
    }
    void* data() { return bytes_.data(); }
    uint32_t count() const {
        uint32_t n;
        std::memcpy(&n, bytes_.data(), 4);
        return n;
    }
    void set_count(uint32_t n) { std::memcpy(bytes_.data(), &n, 4); }
    size_t capacity() const { return (bytes_.size() - kHeaderSize) / sizeof(Entry); }
    Entry get(size_t i) const {
        Entry e;
        std::memcpy(&e, bytes_.data() + kHeaderSize + i * sizeof(Entry), sizeof e);
        return e;
    }
    void put(size_t i, const Entry& e) { std::memcpy(bytes_.data() + kHeaderSize + i * sizeof(Entry), &e, sizeof e); }

private:
    std::vector<uint8_t> bytes_;
};

constexpr unsigned long kXsaveSize = 4096;  // struct kvm_xsave { __u32 region[1024]; __u32 extra[]; }
constexpr unsigned long kGetXsave = _IOC(_IOC_READ, KVMIO, 0xa4, kXsaveSize);
constexpr unsigned long kSetXsave = _IOC(_IOC_WRITE, KVMIO, 0xa5, kXsaveSize);

template <class T>
Result<T> ioctl_get(int fd, unsigned long request, const char* name) {
    T value{};
    if (::ioctl(fd, request, &value) < 0) return fail_errno(name);
    return value;
}

template <class T>
Result<> ioctl_set(int fd, unsigned long request, const T& value, const char* name) {
    if (::ioctl(fd, request, &value) < 0) return fail_errno(name);
    return {};
}

}  // namespace

Result<System> System::open(const std::string& path) {
    int raw = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (raw < 0) {
        int e = errno;
        switch (e) {
            case ENOENT:
            case ENODEV:
            case ENXIO:
                return fail(path +
                                ": not found — KVM is not available on this host "
                                "(load kvm_intel, kvm_amd or kvm_pvm, or enable virtualization)",
                            ENODEV);
            case EACCES:
            case EPERM:
                return fail(path +
                                ": permission denied — add yourself to the kvm group "
                                "or run as root",
                            e);
            default: return fail(path + ": " + std::strerror(e), e);
        }
    }
    System sys;
    sys.fd_.reset(raw);
    int version = ::ioctl(raw, KVM_GET_API_VERSION, 0);
    if (version != KVM_API_VERSION)
        return fail(path + ": unsupported KVM API version " + std::to_string(version) + " (need " +
                    std::to_string(KVM_API_VERSION) + ")");
    sys.vcpu_mmap_size_ = ::ioctl(raw, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (sys.vcpu_mmap_size_ <= 0) return fail_errno(path + ": KVM_GET_VCPU_MMAP_SIZE");
    return sys;
}

int System::check_extension(int cap) const {
    int r = ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap);
    return r < 0 ? 0 : r;
}

Result<> System::require(const std::vector<RequiredCap>& caps) const {
    for (const auto& c : caps)
        if (check_extension(c.cap) <= 0)
            return fail(std::string("/dev/kvm: missing capability ") + c.name + " — " + c.why);
    return {};
}

Result<Vm> System::create_vm() const {
    int raw;
    do raw = ::ioctl(fd_.get(), KVM_CREATE_VM, 0);
    while (raw < 0 && errno == EINTR);
    if (raw < 0) return fail_errno("KVM_CREATE_VM");
    return Vm(Fd(raw), vcpu_mmap_size_);
}

Result<std::vector<kvm_cpuid_entry2>> System::supported_cpuid() const {
    for (unsigned n = 128; n <= 4096; n *= 2) {
        EntryBuffer<kvm_cpuid_entry2> buf(n);
        if (::ioctl(fd_.get(), kGetSupportedCpuid, buf.data()) == 0) {
            std::vector<kvm_cpuid_entry2> out;
            for (size_t i = 0; i < buf.count() && i < buf.capacity(); ++i) out.push_back(buf.get(i));
            return out;
        }
        if (errno != E2BIG) return fail_errno("KVM_GET_SUPPORTED_CPUID");
    }
    return fail("KVM_GET_SUPPORTED_CPUID: too many entries");
}

int Vm::check_extension(int cap) const {
    int r = ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap);
    return r < 0 ? 0 : r;
}

Result<> Vm::set_user_memory_region(uint32_t slot, uint64_t guest_phys, uint64_t size, void* host, uint32_t flags) {
    kvm_userspace_memory_region r{};
    r.slot = slot;
    r.flags = flags;
    r.guest_phys_addr = guest_phys;
    r.memory_size = size;
    r.userspace_addr = reinterpret_cast<uint64_t>(host);
    return ioctl_set(fd_.get(), KVM_SET_USER_MEMORY_REGION, r, "KVM_SET_USER_MEMORY_REGION");
}

Result<Vcpu> Vm::create_vcpu(int id) {
    int raw = ::ioctl(fd_.get(), KVM_CREATE_VCPU, id);
    if (raw < 0) return fail_errno("KVM_CREATE_VCPU");
    Fd fd(raw);
    void* p = ::mmap(nullptr, vcpu_mmap_size_, PROT_READ | PROT_WRITE, MAP_SHARED, raw, 0);
    if (p == MAP_FAILED) return fail_errno("mmap(kvm_run)");
    return Vcpu(std::move(fd), Mapping(p, vcpu_mmap_size_), id);
}

Result<> Vm::set_tss_addr(uint64_t addr) {
    if (::ioctl(fd_.get(), KVM_SET_TSS_ADDR, addr) < 0) return fail_errno("KVM_SET_TSS_ADDR");
    return {};
}

Result<> Vm::set_identity_map_addr(uint64_t addr) {
    return ioctl_set(fd_.get(), KVM_SET_IDENTITY_MAP_ADDR, addr, "KVM_SET_IDENTITY_MAP_ADDR");
}

Result<> Vm::create_irqchip() {
    if (::ioctl(fd_.get(), KVM_CREATE_IRQCHIP, 0) < 0) return fail_errno("KVM_CREATE_IRQCHIP");
    return {};
}

Result<> Vm::create_pit2() {
    kvm_pit_config cfg{};
    cfg.flags = KVM_PIT_SPEAKER_DUMMY;
    return ioctl_set(fd_.get(), KVM_CREATE_PIT2, cfg, "KVM_CREATE_PIT2");
}

Result<> Vm::irq_line(uint32_t irq, bool level) {
    kvm_irq_level l{};
    l.irq = irq;
    l.level = level ? 1 : 0;
    return ioctl_set(fd_.get(), KVM_IRQ_LINE, l, "KVM_IRQ_LINE");
}

Result<> Vm::ioeventfd(const kvm_ioeventfd& spec) { return ioctl_set(fd_.get(), KVM_IOEVENTFD, spec, "KVM_IOEVENTFD"); }

Result<> Vm::irqfd(const kvm_irqfd& spec) { return ioctl_set(fd_.get(), KVM_IRQFD, spec, "KVM_IRQFD"); }

Result<> Vm::get_dirty_log(uint32_t slot, void* bitmap) {
    kvm_dirty_log log{};
    log.slot = slot;
    log.dirty_bitmap = bitmap;
    return ioctl_set(fd_.get(), KVM_GET_DIRTY_LOG, log, "KVM_GET_DIRTY_LOG");
}

Result<> Vm::enable_cap(uint32_t cap, uint64_t arg0) {
    kvm_enable_cap c{};
    c.cap = cap;
    c.args[0] = arg0;
    return ioctl_set(fd_.get(), KVM_ENABLE_CAP, c, "KVM_ENABLE_CAP");
}

Result<kvm_irqchip> Vm::get_irqchip(uint32_t chip) const {
    kvm_irqchip state{};
    state.chip_id = chip;
    if (::ioctl(fd_.get(), KVM_GET_IRQCHIP, &state) < 0) return fail_errno("KVM_GET_IRQCHIP");
    return state;
}
Result<> Vm::set_irqchip(const kvm_irqchip& s) { return ioctl_set(fd_.get(), KVM_SET_IRQCHIP, s, "KVM_SET_IRQCHIP"); }
Result<kvm_pit_state2> Vm::get_pit2() const {
    return ioctl_get<kvm_pit_state2>(fd_.get(), KVM_GET_PIT2, "KVM_GET_PIT2");
}
Result<> Vm::set_pit2(const kvm_pit_state2& s) { return ioctl_set(fd_.get(), KVM_SET_PIT2, s, "KVM_SET_PIT2"); }
Result<kvm_clock_data> Vm::get_clock() const {
    return ioctl_get<kvm_clock_data>(fd_.get(), KVM_GET_CLOCK, "KVM_GET_CLOCK");
}
Result<> Vm::set_clock(const kvm_clock_data& c) { return ioctl_set(fd_.get(), KVM_SET_CLOCK, c, "KVM_SET_CLOCK"); }

Result<> Vcpu::run() {
    if (::ioctl(fd_.get(), KVM_RUN, 0) < 0) {
        if (errno == EINTR || errno == EAGAIN) {
            run_state()->exit_reason = KVM_EXIT_INTR;
            return {};
        }
        return fail_errno("KVM_RUN");
    }
    return {};
}

Result<kvm_regs> Vcpu::get_regs() const { return ioctl_get<kvm_regs>(fd_.get(), KVM_GET_REGS, "KVM_GET_REGS"); }
Result<> Vcpu::set_regs(const kvm_regs& r) { return ioctl_set(fd_.get(), KVM_SET_REGS, r, "KVM_SET_REGS"); }
Result<kvm_sregs> Vcpu::get_sregs() const { return ioctl_get<kvm_sregs>(fd_.get(), KVM_GET_SREGS, "KVM_GET_SREGS"); }
Result<> Vcpu::set_sregs(const kvm_sregs& s) { return ioctl_set(fd_.get(), KVM_SET_SREGS, s, "KVM_SET_SREGS"); }
Result<kvm_fpu> Vcpu::get_fpu() const { return ioctl_get<kvm_fpu>(fd_.get(), KVM_GET_FPU, "KVM_GET_FPU"); }
Result<> Vcpu::set_fpu(const kvm_fpu& f) { return ioctl_set(fd_.get(), KVM_SET_FPU, f, "KVM_SET_FPU"); }
Result<kvm_xcrs> Vcpu::get_xcrs() const { return ioctl_get<kvm_xcrs>(fd_.get(), KVM_GET_XCRS, "KVM_GET_XCRS"); }
Result<> Vcpu::set_xcrs(const kvm_xcrs& x) { return ioctl_set(fd_.get(), KVM_SET_XCRS, x, "KVM_SET_XCRS"); }
Result<std::vector<uint32_t>> Vcpu::get_xsave() const {
    std::vector<uint32_t> region(1024);
    if (::ioctl(fd_.get(), kGetXsave, region.data()) < 0) return fail_errno("KVM_GET_XSAVE");
    return region;
}
Result<> Vcpu::set_xsave(const std::vector<uint32_t>& region) {
    if (region.size() != 1024) return fail("KVM_SET_XSAVE: region must be 4096 bytes", EINVAL);
    if (::ioctl(fd_.get(), kSetXsave, region.data()) < 0) return fail_errno("KVM_SET_XSAVE");
    return {};
}
Result<kvm_lapic_state> Vcpu::get_lapic() const {
    return ioctl_get<kvm_lapic_state>(fd_.get(), KVM_GET_LAPIC, "KVM_GET_LAPIC");
}
Result<> Vcpu::set_lapic(const kvm_lapic_state& l) { return ioctl_set(fd_.get(), KVM_SET_LAPIC, l, "KVM_SET_LAPIC"); }
Result<kvm_vcpu_events> Vcpu::get_events() const {
    return ioctl_get<kvm_vcpu_events>(fd_.get(), KVM_GET_VCPU_EVENTS, "KVM_GET_VCPU_EVENTS");
}
Result<> Vcpu::set_events(const kvm_vcpu_events& e) {
    return ioctl_set(fd_.get(), KVM_SET_VCPU_EVENTS, e, "KVM_SET_VCPU_EVENTS");
}
Result<kvm_mp_state> Vcpu::get_mp_state() const {
    return ioctl_get<kvm_mp_state>(fd_.get(), KVM_GET_MP_STATE, "KVM_GET_MP_STATE");
}
Result<> Vcpu::set_mp_state(uint32_t state) {
    kvm_mp_state s{state};
    return ioctl_set(fd_.get(), KVM_SET_MP_STATE, s, "KVM_SET_MP_STATE");
}

Result<kvm_debugregs> Vcpu::get_debugregs() const {
    return ioctl_get<kvm_debugregs>(fd_.get(), KVM_GET_DEBUGREGS, "KVM_GET_DEBUGREGS");
}
Result<> Vcpu::set_debugregs(const kvm_debugregs& d) {
    return ioctl_set(fd_.get(), KVM_SET_DEBUGREGS, d, "KVM_SET_DEBUGREGS");
}

Result<> Vcpu::set_cpuid(const std::vector<kvm_cpuid_entry2>& entries) {
    EntryBuffer<kvm_cpuid_entry2> buf(entries.size());
    for (size_t i = 0; i < entries.size(); ++i) buf.put(i, entries[i]);
    if (::ioctl(fd_.get(), kSetCpuid2, buf.data()) < 0) return fail_errno("KVM_SET_CPUID2");
    return {};
}

Result<std::vector<kvm_cpuid_entry2>> Vcpu::get_cpuid() const {
    EntryBuffer<kvm_cpuid_entry2> buf(256);  // KVM_MAX_CPUID_ENTRIES
    if (::ioctl(fd_.get(), kGetCpuid2, buf.data()) < 0) return fail_errno("KVM_GET_CPUID2");
    std::vector<kvm_cpuid_entry2> out;
    for (size_t i = 0; i < buf.count() && i < buf.capacity(); ++i) out.push_back(buf.get(i));
    return out;
}

Result<> Vcpu::set_tsc_offset(uint64_t offset) {
    kvm_device_attr attr{};
    attr.group = KVM_VCPU_TSC_CTRL;
    attr.attr = KVM_VCPU_TSC_OFFSET;
    attr.addr = reinterpret_cast<uint64_t>(&offset);
    return ioctl_set(fd_.get(), KVM_SET_DEVICE_ATTR, attr, "KVM_SET_DEVICE_ATTR(KVM_VCPU_TSC_OFFSET)");
}

Result<std::vector<uint64_t>> Vcpu::get_msrs(const std::vector<uint32_t>& indices) const {
    EntryBuffer<kvm_msr_entry> buf(indices.size());
    for (size_t i = 0; i < indices.size(); ++i) {
        kvm_msr_entry e{};
        e.index = indices[i];
        buf.put(i, e);
    }
    int n = ::ioctl(fd_.get(), kGetMsrs, buf.data());
    if (n < 0) return fail_errno("KVM_GET_MSRS");
    if (static_cast<size_t>(n) != indices.size())
        return fail("KVM_GET_MSRS: MSR " + std::to_string(indices[n]) + " not readable");
    std::vector<uint64_t> out(indices.size());
    for (size_t i = 0; i < indices.size(); ++i) out[i] = buf.get(i).data;
    return out;
}

Result<> Vcpu::set_msrs(const std::vector<std::pair<uint32_t, uint64_t>>& msrs) {
    EntryBuffer<kvm_msr_entry> buf(msrs.size());
    for (size_t i = 0; i < msrs.size(); ++i) {
        kvm_msr_entry e{};
        e.index = msrs[i].first;
        e.data = msrs[i].second;
        buf.put(i, e);
    }
    int n = ::ioctl(fd_.get(), kSetMsrs, buf.data());
    if (n < 0) return fail_errno("KVM_SET_MSRS");
    if (static_cast<size_t>(n) != msrs.size())
        return fail("KVM_SET_MSRS: MSR " + std::to_string(msrs[n].first) + " rejected");
    return {};
}

}  // namespace vessel::kvm

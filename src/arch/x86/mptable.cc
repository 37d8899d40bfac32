#include "arch/x86/mptable.h"

#include <cstddef>
#include <cstring>

namespace vessel::arch::x86 {
namespace {

struct [[gnu::packed]] FloatingPointer {
    char signature[4];  // "_MP_"
    uint32_t physptr;
    uint8_t length;  // in 16-byte units
    uint8_t spec_rev;
    uint8_t checksum;
    uint8_t feature[5];
};
static_assert(sizeof(FloatingPointer) == 16);

struct [[gnu::packed]] ConfigHeader {
    char signature[4];  // "PCMP"
    uint16_t length;
    uint8_t spec_rev;
    uint8_t checksum;
    char oem[8];
    char product[12];
    uint32_t oem_ptr;
    uint16_t oem_size;
    uint16_t entry_count;
    uint32_t lapic;
    uint16_t ext_length;
    uint8_t ext_checksum;
    uint8_t reserved;
};
static_assert(sizeof(ConfigHeader) == 44);

struct [[gnu::packed]] Processor {
    uint8_t type;  // 0
    uint8_t apic_id;
    uint8_t apic_version;
    uint8_t flags;  // 1: enabled, 2: bootstrap processor
    uint32_t signature;
    uint32_t features;
    uint32_t reserved[2];
};
static_assert(sizeof(Processor) == 20);

struct [[gnu::packed]] BusEntry {
    uint8_t type;  // 1
    uint8_t bus_id;
    char bus_type[6];
};
struct [[gnu::packed]] IoApicEntry {
    uint8_t type;  // 2
    uint8_t apic_id;
    uint8_t version;
    uint8_t flags;  // 1: enabled
    uint32_t address;
};
struct [[gnu::packed]] InterruptEntry {
    uint8_t type;      // 3: I/O interrupt, 4: local interrupt
    uint8_t irq_type;  // 0: INT, 1: NMI, 2: SMI, 3: ExtINT
    uint16_t flags;    // 0: polarity and trigger conform to the bus
    uint8_t src_bus;
    uint8_t src_irq;
    uint8_t dst_apic;
    uint8_t dst_pin;
};
static_assert(sizeof(BusEntry) == 8 && sizeof(IoApicEntry) == 8 && sizeof(InterruptEntry) == 8);

constexpr uint8_t kApicVersion = 0x14;
constexpr uint8_t kIoApicVersion = 0x11;
constexpr uint8_t kIsaBus = 0;

uint8_t checksum(const uint8_t* p, size_t n) {
    uint8_t sum = 0;
    for (size_t i = 0; i < n; ++i) sum += p[i];
    return static_cast<uint8_t>(-sum);
}

template <class T>
void append(std::vector<uint8_t>& out, const T& v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    out.insert(out.end(), p, p + sizeof v);
}

}  // namespace

Result<std::vector<uint8_t>> build_mptable(uint64_t addr, unsigned cpus) {
    if (cpus == 0 || cpus > kMaxMpCpus) return fail("MP table: unsupported number of CPUs", EINVAL);
    if (addr % 16) return fail("MP table: address must be 16-byte aligned", EINVAL);

    std::vector<uint8_t> table;
    uint16_t entries = 0;
    for (unsigned i = 0; i < cpus; ++i) {
        Processor p{};
        p.type = 0;
        p.apic_id = static_cast<uint8_t>(i);
        p.apic_version = kApicVersion;
        p.flags = 1 | (i == 0 ? 2 : 0);
        p.signature = 0x600;          // family 6: the value only matters to ancient kernels
        p.features = (1u << 9) | 1u;  // APIC, FPU
        append(table, p);
        ++entries;
    }
    BusEntry bus{1, kIsaBus, {'I', 'S', 'A', ' ', ' ', ' '}};
    append(table, bus);
    ++entries;
    const uint8_t ioapic_id = static_cast<uint8_t>(cpus);
    append(table, IoApicEntry{2, ioapic_id, kIoApicVersion, 1, static_cast<uint32_t>(kIoApicAddress)});
    ++entries;
    // ISA IRQ n -> I/O APIC pin n, which is also how KVM routes GSI n by
    // default, so the in-kernel PIT (GSI 0) and irqfd GSIs agree with the guest.
    for (unsigned irq = 0; irq < kIoApicPins; ++irq) {
        append(table,
               InterruptEntry{3, 0, 0, kIsaBus, static_cast<uint8_t>(irq), ioapic_id, static_cast<uint8_t>(irq)});
        ++entries;
    }
    // The 8259 reaches every LAPIC's LINT0 as ExtINT; NMIs arrive on LINT1.
    append(table, InterruptEntry{4, 3, 0, kIsaBus, 0, 0xff, 0});
    append(table, InterruptEntry{4, 1, 0, kIsaBus, 0, 0xff, 1});
    entries += 2;

    std::vector<uint8_t> out(sizeof(FloatingPointer) + sizeof(ConfigHeader));
    out.insert(out.end(), table.begin(), table.end());

    ConfigHeader h{};
    std::memcpy(h.signature, "PCMP", 4);
    h.length = static_cast<uint16_t>(sizeof(ConfigHeader) + table.size());
    h.spec_rev = 4;
    std::memcpy(h.oem, "VESSEL  ", 8);
    std::memcpy(h.product, "VESSEL-VM   ", 12);
    h.entry_count = entries;
    h.lapic = static_cast<uint32_t>(kLocalApicAddress);
    std::memcpy(out.data() + sizeof(FloatingPointer), &h, sizeof h);
    uint8_t* cfg = out.data() + sizeof(FloatingPointer);
    cfg[offsetof(ConfigHeader, checksum)] = checksum(cfg, h.length);

    FloatingPointer fp{};
    std::memcpy(fp.signature, "_MP_", 4);
    fp.physptr = static_cast<uint32_t>(addr + sizeof(FloatingPointer));
    fp.length = 1;
    fp.spec_rev = 4;
    std::memcpy(out.data(), &fp, sizeof fp);
    out[offsetof(FloatingPointer, checksum)] = checksum(out.data(), sizeof fp);
    if (addr + out.size() > (1ull << 20)) return fail("MP table: must lie below 1 MiB", EINVAL);
    return out;
}

}  // namespace vessel::arch::x86

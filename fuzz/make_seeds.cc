// Writes the seed corpora of fuzz/corpus/ (run by hand after a format changes; fuzz/README.md).
//
// The binary seeds come from the encoders themselves (put_vcpu, put_serial,
// encode_sites, ...), so they stay valid when a format changes; the ELF is
// a hand-made 4 KiB program with one site of each shape.
#include <elf.h>
#include <sys/stat.h>

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "arch/x86/host_cpuid.h"
#include "cpu/vcpu_state.h"
#include "devices/legacy/persist.h"
#include "devices/virtio/persist.h"
#include "devices/virtio/rng.h"
#include "fuzz/fuzz_util.h"
#include "fuzz/thin_syscalls.h"
#include "loader/rewriter.h"
#include "machine/kvm_chips_state.h"
#include "machine/thin_snapshot.h"
#include "memory/address_space_state.h"
#include "tests/devices/virtio_harness.h"
#include "tests/loader/elf_header.h"
#include "thin/process_state.h"
#include "thin/signal_frame.h"

using namespace vessel;
using Bytes = std::vector<uint8_t>;

namespace {

std::string out;

void seed(const std::string& target, const std::string& name, const Bytes& data) {
    ::mkdir((out + "/" + target).c_str(), 0755);
    fuzz::write_file(out + "/" + target + "/" + name, data);
}
void seed(const std::string& target, const std::string& name, const std::string& text) {
    seed(target, name, Bytes(text.begin(), text.end()));
}
Bytes with_prefix(uint8_t first, const Bytes& rest) {
    Bytes b{first};
    b.insert(b.end(), rest.begin(), rest.end());
    return b;
}

// A static executable: ELF header, one program header, then code at file
// offset 0x78 with a mov, a jcc-xor, a copy and an exit site and a cpuid.
Bytes tiny_elf() {
    const uint64_t base = 0x400000, code_off = sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr);
    const uint8_t code[] = {
        0xb8, 0x27, 0x00, 0x00, 0x00, 0x0f, 0x05,              // mov $39,%eax; syscall
        0x75, 0x02, 0x31, 0xc0, 0x0f, 0x05,                    // jne +2; xor %eax,%eax; syscall
        0x48, 0x89, 0xc7, 0x48, 0x89, 0xfe, 0x0f, 0x05,        // mov %rax,%rdi; mov %rdi,%rsi; syscall
        0x0f, 0x05,                                            // syscall
        0x31, 0xc9, 0x89, 0xc8, 0x0f, 0xa2,                    // xor %ecx,%ecx; mov %ecx,%eax; cpuid
        0xb8, 0xe7, 0x00, 0x00, 0x00, 0x31, 0xff, 0x0f, 0x05,  // exit_group(0)
    };
    Bytes f(code_off + sizeof code);
    Elf64_Ehdr eh = testing::elf_header(base + code_off, 1);
    Elf64_Phdr ph{};
    ph.p_type = PT_LOAD;
    ph.p_flags = PF_R | PF_X;
    ph.p_vaddr = ph.p_paddr = base;
    ph.p_filesz = ph.p_memsz = f.size();
    ph.p_align = 4096;
    std::memcpy(f.data(), &eh, sizeof eh);
    std::memcpy(f.data() + sizeof eh, &ph, sizeof ph);
    std::memcpy(f.data() + code_off, code, sizeof code);
    return f;
}

Bytes random_bytes(std::mt19937& rng, size_t n) {
    Bytes b(n);
    for (auto& x : b) x = static_cast<uint8_t>(rng());
    return b;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s CORPUS_DIR (fuzz/corpus)\n", argv[0]);
        return 2;
    }
    out = argv[1];
    ::mkdir(out.c_str(), 0755);

    const Bytes elf = tiny_elf();
    seed("elf", "tiny", elf);
    seed("rewriter", "tiny", elf);
    auto image = loader::parse_elf(elf);
    if (!image) {
        std::fprintf(stderr, "make_seeds: the seed ELF does not parse: %s\n", image.error().message.c_str());
        return 1;
    }
    {
        Bytes b{static_cast<uint8_t>(elf.size()), static_cast<uint8_t>(elf.size() >> 8)};
        b.insert(b.end(), elf.begin(), elf.end());
        Bytes entry = b;
        const std::vector<uint64_t> sites = {
            loader::make_site(0x78 + 5, loader::kMovSite), loader::make_site(0x78 + 11, loader::kJccXorSite),
            loader::make_site(0x78 + 19, loader::kCopySite, 6), loader::make_site(0x78 + 21, loader::kExitSite)};
        auto enc = loader::encode_sites(elf.size(), sites);
        entry.insert(entry.end(), enc.begin(), enc.end());
        seed("rewrite_cache", "entry", entry);
        Bytes img = b;
        uint64_t h[9] = {};
        std::memcpy(h, "VSLIMG04", 8);
        h[1] = elf.size(), h[2] = 4, h[3] = 4096;
        const uint8_t* p = reinterpret_cast<const uint8_t*>(h);
        img.insert(img.end(), p, p + sizeof h);
        img.resize(img.size() + 4096, 0xcc);
        seed("rewrite_cache", "image", img);
    }

    {
        const auto answers = arch::x86::read_host_cpuid();
        Bytes f(16);
        std::memcpy(f.data(), "VSLCPU01", 8);
        const uint64_t n = answers.size();
        std::memcpy(f.data() + 8, &n, 8);
        const uint8_t* p = reinterpret_cast<const uint8_t*>(answers.data());
        f.insert(f.end(), p, p + n * sizeof answers[0]);
        seed("host_cpuid", "this_host", f);
    }

    {
        // A frame as a handler finds it, then an XSAVE image (x87, SSE, AVX):
        // with its magic numbers, and without (a legacy FXSAVE image).
        kvm_regs r{};
        r.rip = 0x401234, r.rsp = 0x7ffffffde000, r.rflags = 0x246, r.rax = 7;
        const uint64_t altstack[3] = {0, 2 /* SS_DISABLE */, 0};
        const Bytes frame = thin::encode_sigframe(r, {}, 0x401000, 1u << 9, altstack, 0x7ffffffdd000,
                                                  thin::SigInfo{10, 0, 0, 1, 0, false});
        std::vector<uint32_t> region(1024, 0);
        region[0] = 0x037f, region[6] = 0x1f80, region[7] = 0xffff, region[128] = 7;
        Bytes image = thin::encode_fpstate(region, 832, 0x7);
        Bytes both = frame;
        both.insert(both.end(), image.begin(), image.end());
        seed("signal_frame", "xsave", both);
        std::memset(image.data() + 464, 0, 4);
        both.resize(frame.size());
        both.insert(both.end(), image.begin(), image.end());
        seed("signal_frame", "fxsave", both);
    }

    {
        cpu::VcpuState thin;
        thin.msrs = {{cpu::kThinVcpuMsrs[0], 1}};
        state::Writer w;
        cpu::put_vcpu(w, thin);
        seed("vcpu_record", "thin", with_prefix(0, w.data()));
        cpu::VcpuState full;
        full.machine.emplace();
        full.machine->cpuid.resize(2);
        full.machine->cpuid[1].function = 1;
        state::Writer wf;
        cpu::put_vcpu(wf, full);
        seed("vcpu_record", "full", with_prefix(1, wf.data()));

        // A state file of two sections; checksums left zero (the harness fixes them).
        state::Writer s;
        s.raw(state::kMagic, 8);
        s.u32(state::kFormatVersion);
        s.u32(2);
        s.u64(0);
        s.u64(0);
        const std::string config = R"({"program":"/bin/true"})";
        for (auto [type, body] : {std::pair{1u, Bytes(config.begin(), config.end())}, std::pair{2u, w.data()}}) {
            s.u32(type);
            s.u32(0);
            s.u64(body.size());
            s.u64(0);
            s.raw(body.data(), body.size());
        }
        seed("state_file", "two_sections", with_prefix(1, s.data()));
    }

    {
        state::Writer w;
        devices::legacy::put_serial(w, devices::legacy::SerialState{});
        seed("device_record", "serial", with_prefix(0, w.data()));
        state::Writer c;
        devices::legacy::put_cmos(c, devices::legacy::CmosState{});
        seed("device_record", "cmos", with_prefix(1, c.data()));
        state::Writer k;
        devices::legacy::put_i8042(k, devices::legacy::I8042State{});
        seed("device_record", "i8042", with_prefix(2, k.data()));
        testing::VirtioGuest g(1 << 20);
        if (!g.attach(std::make_unique<devices::virtio::Rng>()) || !g.start(16)) return 1;
        state::Writer t;
        devices::virtio::put_transport(t, g.transport->save());
        seed("device_record", "transport", with_prefix(3, t.data()));
        state::Writer d;
        machine::put_kvm_devices(d, machine::KvmDeviceState{});
        seed("device_record", "kvm", with_prefix(4, d.data()));
    }

    {
        fuzz::ThinGuest g;
        auto ps = g.process->capture();
        if (!ps) return 1;
        state::Writer w;
        thin::put_process(w, *ps);
        seed("thin_snapshot", "process", with_prefix(0, w.data()));
        state::Writer a;
        memory::put_address_space(a, *g.as);
        seed("thin_snapshot", "address_space", with_prefix(1, a.data()));
        ps->pending_signals = 1ull << (SIGUSR1 - 1);
        ps->restore_mask = 1ull << (SIGUSR1 - 1);
        state::Writer s;
        thin::put_signals(s, *ps);
        seed("thin_snapshot", "signals", with_prefix(3, s.data()));
        seed("thin_snapshot", "config",
             "\x02"
             R"({"program":"/bin/true","argv":["true"],"envp":[],"mem_bytes":67108864,"root":"/",)"
             R"("rw":[{"host":"/tmp","guest":"/w"}],"trace_syscalls":false})");
    }

    seed("http", "get", "GET /vm HTTP/1.1\r\nHost: x\r\n\r\n");
    seed("http", "snapshot",
         "PUT /vm/snapshot?x=%41&y HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 30\r\n\r\n"
         "{\"path\":\"/tmp/s\",\"type\":\"full\"}");
    seed("http", "chunked",
         "PUT /vm/pause HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\nGET /vm/metrics "
         "HTTP/1.1\r\n\r\n");
    seed("vm_api", "snapshot", "\x50{\"path\":\"/tmp/s\",\"type\":\"diff\"}");
    seed("vm_api", "pause", std::string("\x09{}"));
    seed("vm_spec", "create",
         R"({"name":"web-1","program":"/bin/busybox","args":["sh","-c","true"],"mem":"64M","root":"/srv",)"
         R"("rw":[{"host":"/tmp/a","guest":"/data"}],"env":{"A":"b"},"trace_syscalls":true,)"
         R"("limits":{"cpus":0.5,"memory":"128M","pids":16}})");
    seed("vm_spec", "restore", R"({"name":"r","path":"/var/lib/snap","limits":{"memory":"64M"}})");

    // FuzzedDataProvider inputs: any bytes are a program of commands.
    std::mt19937 rng(1);
    for (const char* t : {"virtio_blk", "virtio_net", "virtio_rng", "virtio_vsock", "sys_files", "sys_memory",
                          "sys_process", "sys_time"})
        for (int i = 0; i < 4; ++i) seed(t, "random" + std::to_string(i), random_bytes(rng, 256));
    return 0;
}

// Fuzzes the snapshot's vCPU record decoder (cpu/vcpu_state.h, get_vcpu), thin and full.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "cpu/vcpu_state.h"
#include "fuzz/fuzz_util.h"

using namespace vessel;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const bool machine = data[0] & 1;
    const auto& allowed = machine ? cpu::kFullVcpuMsrs : cpu::kThinVcpuMsrs;
    state::Reader r(std::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
    auto s = cpu::get_vcpu(r, allowed, machine);
    if (!s) return 0;
    FUZZ_CHECK(s->machine.has_value() == machine);
    FUZZ_CHECK(s->msrs.size() <= allowed.size());
    // What decodes must encode and decode again.
    state::Writer w;
    cpu::put_vcpu(w, *s);
    state::Reader again(std::string_view(reinterpret_cast<const char*>(w.data().data()), w.data().size()));
    FUZZ_CHECK(cpu::get_vcpu(again, allowed, machine).has_value() && again.at_end());
    return 0;
}

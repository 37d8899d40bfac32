// Fuzzes a thin snapshot's own sections (machine/thin_snapshot.h): the process, the address space, the config JSON
// and the signal state, and restoring them.
//
// First byte: which section; the rest is its payload.
#include <sys/syscall.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz/thin_syscalls.h"
#include "machine/thin_layout.h"
#include "machine/thin_snapshot.h"
#include "memory/address_space_state.h"
#include "thin/process_state.h"

using namespace vessel;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    state::Reader r(std::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
    switch (data[0] % 4) {
        case 0:
            if (auto s = thin::get_process(r)) {
                fuzz::ThinGuest g;  // files are reopened through the scratch sandbox
                (void)g.process->restore(*s);
            }
            break;
        case 1: {
            fuzz::ThinGuest g;
            if (memory::get_address_space(r, *g.as, *g.mem, machine::kPoolStart)) {
                // Walk the adopted page tables over every VMA.
                for (const auto& [start, v] : g.as->vmas()) {
                    uint8_t b[8];
                    (void)g.as->view().read(v.start, b, sizeof b);
                    (void)g.as->view().read(v.end - sizeof b, b, sizeof b);
                }
                (void)g.as->map_fixed(0x5000'0000, 8192, memory::kProtRead);
            }
            break;
        }
        case 2: {
            auto j = nlohmann::json::parse(data + 1, data + size, nullptr, false);
            if (!j.is_discarded()) {
                (void)machine::config_from_json(j);
                (void)machine::program_view_from_json(j);
            }
            break;
        }
        case 3: {
            thin::ProcessSnapshot s;
            if (thin::get_signals(r, s)) {
                fuzz::ThinGuest g;
                if (g.process->restore(s))  // then a call, after which pending signals are delivered
                    (void)g.process->handle({SYS_getpid, {}});
            }
            break;
        }
    }
    return 0;
}

// Fuzzes the daemon's VM spec (daemon/vm_spec.h): POST /vms and /vms/restore bodies, and what a parsed spec turns into.
#include <cstddef>
#include <cstdint>

#include "daemon/vm_spec.h"
#include "fuzz/fuzz_util.h"

using namespace vessel::daemon;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    auto body = nlohmann::json::parse(data, data + size, nullptr, false);
    if (body.is_discarded()) return 0;
    for (bool restore : {false, true}) {
        auto spec = restore ? parse_restore(body) : parse_create(body);
        if (!spec) {
            FUZZ_CHECK(spec.error().sys_errno == EINVAL || spec.error().sys_errno == ERANGE);
            continue;
        }
        FUZZ_CHECK(spec->name.empty() || valid_name(spec->name));
        // A stored spec reads back as the same arguments.
        VmSpec back = spec_from_json(spec->to_json());
        FUZZ_CHECK(vmm_arguments(back, "/s") == vmm_arguments(*spec, "/s"));
    }
    return 0;
}

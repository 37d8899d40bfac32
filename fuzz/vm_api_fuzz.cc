// Fuzzes the control API's routes and JSON bodies (api/vm_routes.cc) through Router::dispatch.
//
// First byte: method and route; the rest: the request body.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz/fake_vm.h"
#include "fuzz/fuzz_util.h"
#include "machine/api_routes.h"

using namespace vessel;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const char* const kMethods[] = {"GET", "PUT", "POST", "DELETE"};
    static const char* const kPaths[] = {"/vm",          "/vm/metrics",  "/vm/pause", "/vm/resume",
                                         "/vm/snapshot", "/vm/shutdown", "/vm/x/y",   "/"};
    if (size < 1) return 0;
    fuzz::FakeVm vm;
    if (data[0] & 0x40) (void)vm.pause();
    api::Router router = machine::vm_router(vm);
    api::Request req;
    req.method = kMethods[data[0] & 3];
    req.path = kPaths[(data[0] >> 2) & 7];
    req.body.assign(reinterpret_cast<const char*>(data + 1), size - 1);
    api::Response r = router.dispatch(req);
    FUZZ_CHECK(r.status >= 200 && r.status < 600);
    // Every error is the documented {"error": {"code", "message"}}.
    if (r.status >= 400) FUZZ_CHECK(r.body.contains("error") && r.body["error"].contains("message"));
    (void)r.body.dump();
    return 0;
}

// The control API of one VMM process (`vessel run --api-sock PATH`).
// Routes and bodies are documented in docs/api.md.
#pragma once

#include "api/http.h"
#include "vmm/thin_vm.h"

namespace vessel::api {

// Routes for GET /vm, PUT /vm/pause, /vm/resume, /vm/snapshot, /vm/shutdown
// and GET /vm/metrics, acting on `vm` (which must outlive the router).
Router vm_router(vmm::Controllable& vm);

// The JSON forms shared with the daemon.
json to_json(const vmm::Description& d);
json to_json(const vmm::Metrics& m);

}  // namespace vessel::api

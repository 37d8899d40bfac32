// The control API of one VMM process (`vessel run --api-sock PATH`): its
// routes, on api/'s plumbing. Routes and bodies are documented in docs/api.md.
#pragma once

#include "api/http.h"
#include "machine/thin_vm.h"

namespace vessel::machine {

using api::json;

// Routes for GET /vm, PUT /vm/pause, /vm/resume, /vm/snapshot, /vm/shutdown
// and GET /vm/metrics, acting on `vm` (which must outlive the router).
api::Router vm_router(Controllable& vm);

// The JSON forms shared with the daemon.
json to_json(const Description& d);
json to_json(const Metrics& m);

}  // namespace vessel::machine

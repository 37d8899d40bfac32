// The body of POST /vms and POST /vms/restore, validated once at the
// boundary: unknown fields, wrong types and out-of-range values are refused
// with a message naming the field.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "daemon/cgroups.h"

namespace vessel::daemon {

struct RwMount {
    std::string host, guest;
};

struct VmSpec {
    std::string name;  // "" → generated
    std::string program;
    std::vector<std::string> args;
    uint64_t mem_bytes = 64ull << 20;
    std::string root;
    std::vector<RwMount> rw;
    std::vector<std::pair<std::string, std::string>> env;
    bool trace_syscalls = false;
    std::string workdir;       // the guest's working directory ("" → /)
    std::string user;          // the guest's "UID[:GID]" ("" → the daemon's)
    Limits limits;             // what is applied: `requested` plus the defaults
    Limits requested;          // the request's own `limits` (not stored)
    std::string restore_from;  // set for a restored VM

    nlohmann::json to_json() const;
};

// Errors carry EINVAL for 400 (shape: unknown field, wrong type) and ERANGE
// for 422 (a well-formed value the daemon cannot accept).
Result<VmSpec> parse_create(const nlohmann::json& body);
Result<VmSpec> parse_restore(const nlohmann::json& body);
// Reads a spec saved with to_json() back (trusted input).
VmSpec spec_from_json(const nlohmann::json& j);

// Names: 1-63 characters [A-Za-z0-9_.-], starting with a letter or digit.
bool valid_name(const std::string& name);

// `vessel run ...` / `vessel restore ...` arguments (after argv[0]). The
// environment is never among them (any local user reads a command line):
// with `env_file` (a file holding encode_env_file(spec.env), owner-only) it
// is passed as --env-file. `jail`: "" for --no-jail, else the VM's own
// snapshot directory (--snapshot-dir); nullopt: a `vessel` without the jail.
// `user`: the jailed VMM runs as this user and group (--uid, --gid).
struct VmmUser {
    uid_t uid;
    gid_t gid;
};
std::vector<std::string> vmm_arguments(const VmSpec& spec, const std::string& api_socket,
                                       const std::string& env_file = "",
                                       const std::optional<std::string>& jail = std::nullopt,
                                       const std::optional<VmmUser>& user = std::nullopt);
// "UID[:GID]" with numbers or names (a user's own group when no GID).
Result<VmmUser> parse_vmm_user(const std::string& text);

}  // namespace vessel::daemon

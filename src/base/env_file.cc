#include "base/env_file.h"

#include "base/safe_file.h"

namespace vessel {

Result<std::vector<std::string>> read_env_file(const std::string& path) {
    auto read = read_regular_file(path, kMaxEnvFile);
    if (!read) return std::unexpected(read.error());
    const std::string& data = *read;
    const bool nul_separated = data.find('\0') != std::string::npos;
    const char separator = nul_separated ? '\0' : '\n';
    std::vector<std::string> out;
    size_t line = 0;
    for (size_t at = 0; at < data.size();) {
        size_t end = data.find(separator, at);
        if (end == std::string::npos) end = data.size();
        std::string entry = data.substr(at, end - at);
        at = end + 1;
        ++line;
        if (!nul_separated) {
            if (!entry.empty() && entry.back() == '\r') entry.pop_back();
            if (entry.empty() || entry[0] == '#') continue;
        } else if (entry.empty()) {
            continue;
        }
        const size_t eq = entry.find('=');
        if (eq == std::string::npos || eq == 0)
            return fail(path + ": entry " + std::to_string(line) + " is not KEY=VALUE", EINVAL);
        out.push_back(std::move(entry));
    }
    return out;
}

std::string encode_env_file(const std::vector<std::pair<std::string, std::string>>& vars) {
    std::string out;
    for (const auto& [k, v] : vars) {
        out += k;
        out += '=';
        out += v;
        out += '\0';
    }
    return out;
}

}  // namespace vessel

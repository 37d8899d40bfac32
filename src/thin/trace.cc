// --trace-syscalls: one strace-style line per call on the trace stream.
#include <fcntl.h>

#include <cstring>
#include <string>

#include "thin/process.h"

namespace vessel::thin {
namespace {

void append_quoted(std::string& out, const std::string& s, size_t limit) {
    out += '"';
    for (size_t i = 0; i < s.size() && i < limit; ++i) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        switch (c) {
            case '\n': out += "\\n"; break;
            case '\t': out += "\\t"; break;
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            default:
                if (c >= 0x20 && c < 0x7f) {
                    out += static_cast<char>(c);
                } else {
                    char b[8];
                    std::snprintf(b, sizeof b, "\\x%02x", c);
                    out += b;
                }
        }
    }
    out += '"';
    if (s.size() > limit) out += "...";
}

}  // namespace

void trace_syscall(std::FILE* out, Process& p, const SyscallArgs& a, int64_t result) {
    const SyscallInfo* info = syscall_table().find(a.nr);
    std::string line(syscall_name(a.nr));
    line += '(';
    std::string_view sig = info && info->handler ? info->args : std::string_view("xxxxxx");
    for (size_t i = 0; i < sig.size() && i < 6; ++i) {
        if (i) line += ", ";
        uint64_t v = a.a[i];
        char b[40];
        switch (sig[i]) {
            case 'f':
                if (static_cast<int>(v) == AT_FDCWD)
                    line += "AT_FDCWD";
                else
                    line += std::to_string(static_cast<int>(v));
                break;
            case 'i': line += std::to_string(static_cast<int64_t>(v)); break;
            case 'u': line += std::to_string(v); break;
            case 'o':
                std::snprintf(b, sizeof b, "0%llo", static_cast<unsigned long long>(v));
                line += b;
                break;
            case 's': {
                auto s = p.mem().read_cstring(v, 4096);
                if (s)
                    append_quoted(line, *s, 256);
                else {
                    std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
                    line += b;
                }
                break;
            }
            case 'b': {  // a buffer whose length is the next argument
                uint64_t n = std::min<uint64_t>(i + 1 < 6 ? a.a[i + 1] : 0, 32);
                std::string s(n, '\0');
                if (p.mem().read(v, s.data(), n))
                    append_quoted(line, s, 32);
                else {
                    std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
                    line += b;
                }
                if (i + 1 < 6 && a.a[i + 1] > 32) line += "...";
                break;
            }
            case 'p':
                if (v == 0)
                    line += "NULL";
                else {
                    std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
                    line += b;
                }
                break;
            default: std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v)); line += b;
        }
    }
    line += ") = ";
    if (result < 0 && result >= -4095) {
        line += "-1 ";
        const char* name = strerrorname_np(static_cast<int>(-result));
        line += name ? name : std::to_string(-result);
        line += " (";
        line += std::strerror(static_cast<int>(-result));
        line += ')';
        if (!(info && info->handler)) line += refusal_expected(a.nr) ? " [unsupported, expected]" : " [unsupported]";
    } else if (result > 0xffff) {
        char b[24];
        std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(result));
        line += b;
    } else {
        line += std::to_string(result);
    }
    // Accepted and answered without effect: not the real blocker either.
    if (info && info->handler && info->status == SyscallStatus::kStub) line += " [stub]";
    line += '\n';
    std::fputs(line.c_str(), out);
}

}  // namespace vessel::thin

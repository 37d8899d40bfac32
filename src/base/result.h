// Errors as values at layer boundaries.
#pragma once

#include <cerrno>
#include <cstring>
#include <expected>
#include <string>
#include <utility>

namespace vessel {

// What went wrong, phrased for the person who has to fix it. `sys_errno` keeps
// the errno that caused it (0 when none) so callers can branch on it.
struct Error {
    std::string message;
    int sys_errno = 0;
};

template <class T = void>
using Result = std::expected<T, Error>;

inline std::unexpected<Error> fail(std::string message, int sys_errno = 0) {
    return std::unexpected(Error{std::move(message), sys_errno});
}

// "what: strerror(errno)" from the current errno.
inline std::unexpected<Error> fail_errno(const std::string& what) {
    int e = errno;
    return std::unexpected(Error{what + ": " + std::strerror(e), e});
}

// Adds context in front of an error from a lower layer.
inline std::unexpected<Error> wrap(const std::string& context, const Error& inner) {
    return std::unexpected(Error{context + ": " + inner.message, inner.sys_errno});
}

}  // namespace vessel

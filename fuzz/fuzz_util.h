// What several fuzz targets share: a scratch directory per process and
// files made from the input, so readers that take a path or an fd see it.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <span>
#include <string>

#include "base/fd.h"

namespace vessel::fuzz {

// A private directory under $TMPDIR, removed when the process exits.
inline const std::string& scratch_dir() {
    static const std::string dir = [] {
        const char* tmp = std::getenv("TMPDIR");
        std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/vessel-fuzz-XXXXXX";
        if (!::mkdtemp(tmpl.data())) {
            std::perror("vessel fuzz: mkdtemp");
            std::abort();
        }
        return tmpl;
    }();
    // Registered after `dir` is constructed, so it runs before `dir` is destroyed.
    static const bool cleanup = std::atexit([] { std::filesystem::remove_all(scratch_dir()); }) == 0;
    (void)cleanup;
    return dir;
}

// Writes `data` to `path` (replacing it); aborts if the host refuses, which
// is the harness's failure, not the code's under test.
inline void write_file(const std::string& path, std::span<const uint8_t> data) {
    Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd || ::write(fd.get(), data.data(), data.size()) != static_cast<ssize_t>(data.size())) {
        std::perror(("vessel fuzz: " + path).c_str());
        std::abort();
    }
}

// An anonymous file holding `data`, positioned at its start.
inline Fd memfd_with(std::span<const uint8_t> data) {
    Fd fd(::memfd_create("vessel-fuzz", MFD_CLOEXEC));
    if (!fd || ::write(fd.get(), data.data(), data.size()) != static_cast<ssize_t>(data.size()) ||
        ::lseek(fd.get(), 0, SEEK_SET) != 0) {
        std::perror("vessel fuzz: memfd");
        std::abort();
    }
    return fd;
}

// A failed invariant: a crash libFuzzer reports with the input.
[[noreturn]] inline void invariant_failed(const char* what) {
    std::fprintf(stderr, "vessel fuzz: invariant broken: %s\n", what);
    std::abort();
}
#define FUZZ_CHECK(cond)                                      \
    do {                                                      \
        if (!(cond)) ::vessel::fuzz::invariant_failed(#cond); \
    } while (0)

}  // namespace vessel::fuzz

// vessel-decode: finds the `syscall` sites of the executable open on
// descriptor 3 and writes them to standard output in the rewrite cache's
// entry format. `vessel` runs it on a rewrite-cache miss
// (loader/decode_helper.h); errors are one line on standard error and
// exit status 1.
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <span>

#include "base/fd.h"
#include "loader/elf.h"
#include "loader/rewriter.h"

namespace {

int die(const std::string& message) {
    std::fprintf(stderr, "%s\n", message.c_str());
    return 1;
}

}  // namespace

int main() {
    using namespace vessel::loader;
    struct stat st;
    if (::fstat(3, &st) != 0) return die("vessel-decode: no program on descriptor 3 (it is run by vessel)");
    if (st.st_size <= 0) return die("empty file");
    const auto size = static_cast<size_t>(st.st_size);
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, 3, 0);
    if (p == MAP_FAILED) return die(std::string("cannot map the program: ") + std::strerror(errno));
    std::span<const uint8_t> file(static_cast<const uint8_t*>(p), size);
    auto image = parse_elf(file);
    if (!image) return die(image.error().message);
    auto sites = find_sites(file, *image);
    if (!sites) return die(sites.error().message);
    const std::vector<uint8_t> out = encode_sites(size, *sites);
    if (!vessel::write_full(1, out.data(), out.size()))
        return die(std::string("cannot write the sites: ") + std::strerror(errno));
    return 0;
}

#include "state/format.h"

#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "base/fd.h"
#include "base/safe_file.h"

namespace vessel::state {

const char* to_string(RecordFault fault) {
    switch (fault) {
        case RecordFault::kTruncated: return "truncated";
        case RecordFault::kMalformed: return "malformed";
        case RecordFault::kWrongMachine: return "wrong machine";
        case RecordFault::kRefused: return "refused";
    }
    return "?";
}

uint64_t checksum(const void* data, size_t size) { return XXH3_64bits(data, size); }

std::vector<uint8_t> encode_state_file(const Sections& sections) {
    Writer body;
    for (const auto& [type, payload] : sections) {
        body.u32(static_cast<uint32_t>(type));
        body.u32(0);
        body.u64(payload.size());
        body.u64(checksum(payload.data(), payload.size()));
        body.raw(payload.data(), payload.size());
    }
    Writer file;
    file.raw(kMagic, sizeof kMagic);
    file.u32(kFormatVersion);
    file.u32(static_cast<uint32_t>(sections.size()));
    file.u64(body.data().size());
    file.u64(checksum(body.data().data(), body.data().size()));
    file.raw(body.data().data(), body.data().size());
    return file.take();
}

Result<> write_state_file(const std::string& path, const Sections& sections) {
    const std::vector<uint8_t> data = encode_state_file(sections);
    return write_file_atomic(path, data.data(), data.size(), Durable::kYes);
}

Result<Sections> read_state_file(const std::string& path) {
    auto opened = open_regular(path);
    if (!opened) return std::unexpected(opened.error());
    Fd fd = std::move(*opened);
    struct stat st;
    if (::fstat(fd.get(), &st) < 0) return fail_errno(path);
    if (static_cast<uint64_t>(st.st_size) > kMaxStateFile) return fail(path + ": too large for a state file", EINVAL);
    std::string data(static_cast<size_t>(st.st_size), '\0');
    if (!read_full(fd.get(), data.data(), data.size())) return fail_errno(path + ": read");
    auto bad = [&](const std::string& why) { return fail(path + ": " + why, EINVAL); };
    if (data.size() < kHeaderSize) return bad("truncated (no complete header) — not a Vessel snapshot?");
    if (std::memcmp(data.data(), kMagic, sizeof kMagic) != 0) return bad("not a Vessel snapshot state file");
    Reader h(std::string_view(data).substr(sizeof kMagic, kHeaderSize - sizeof kMagic));
    uint32_t version = h.u32(), count = h.u32();
    uint64_t size = h.u64(), sum = h.u64();
    if (version > kFormatVersion)
        return bad("snapshot format version " + std::to_string(version) + " is newer than this vessel supports (" +
                   std::to_string(kFormatVersion) + "); use a newer vessel");
    if (version == 0) return bad("invalid format version 0");
    if (size != data.size() - kHeaderSize)
        return bad("size mismatch (header says " + std::to_string(size) + " bytes, file has " +
                   std::to_string(data.size() - kHeaderSize) + "): truncated or damaged");
    std::string_view body = std::string_view(data).substr(kHeaderSize);
    if (checksum(body.data(), body.size()) != sum) return bad("checksum mismatch: the file is corrupted");
    Sections out;
    Reader r(body);
    for (uint32_t i = 0; i < count; ++i) {
        uint32_t type = r.u32();
        uint32_t flags = r.u32();
        uint64_t len = r.u64();
        uint64_t psum = r.u64();
        if (!r.ok() || flags != 0 || len > body.size()) return bad("malformed section table");
        std::vector<uint8_t> payload(len);
        r.raw(payload.data(), len);
        if (!r.ok()) return bad("section extends past the end of the file");
        if (checksum(payload.data(), payload.size()) != psum)
            return bad("section " + std::to_string(type) + " checksum mismatch: the file is corrupted");
        if (!out.emplace(static_cast<Section>(type), std::move(payload)).second)
            return bad("duplicate section " + std::to_string(type));
    }
    if (!r.at_end()) return bad("trailing bytes after the last section");
    return out;
}

}  // namespace vessel::state

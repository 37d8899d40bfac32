#include "devices/virtio/blk.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace vessel::devices::virtio {

namespace {

struct RequestHeader {
    uint32_t type;
    uint32_t reserved;
    uint64_t sector;
};
static_assert(sizeof(RequestHeader) == 16);

// preadv/pwritev of the whole iovec list at `offset`, in IOV_MAX pieces and
// across short transfers. False on error or end of file.
bool transfer_all(int fd, std::vector<iovec> iov, uint64_t offset, bool write) {
    size_t i = 0;
    while (i < iov.size()) {
        int count = int(std::min<size_t>(iov.size() - i, IOV_MAX));
        ssize_t n = write ? ::pwritev(fd, &iov[i], count, off_t(offset)) : ::preadv(fd, &iov[i], count, off_t(offset));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        offset += uint64_t(n);
        size_t left = size_t(n);
        while (i < iov.size() && left >= iov[i].iov_len) left -= iov[i++].iov_len;
        if (left) {
            iov[i].iov_base = static_cast<uint8_t*>(iov[i].iov_base) + left;
            iov[i].iov_len -= left;
        }
    }
    return true;
}

}  // namespace

Result<BlockConfig> parse_disk_spec(std::string_view spec) {
    BlockConfig c;
    size_t comma = spec.find(',');
    c.path = std::string(spec.substr(0, comma));
    if (c.path.empty()) return fail("--disk: missing file path");
    while (comma != std::string_view::npos) {
        spec.remove_prefix(comma + 1);
        comma = spec.find(',');
        std::string_view opt = spec.substr(0, comma);
        if (opt == "ro") {
            c.read_only = true;
            continue;
        }
        size_t eq = opt.find('=');
        if (eq == std::string_view::npos) return fail("--disk: unknown option '" + std::string(opt) + "'");
        auto r = parse_rate_limit_option(opt.substr(0, eq), opt.substr(eq + 1), c.limit);
        if (!r) return wrap("--disk", r.error());
        if (!*r) return fail("--disk: unknown option '" + std::string(opt) + "'");
    }
    return c;
}

Result<std::unique_ptr<Block>> Block::open(const BlockConfig& config, Clock clock) {
    std::unique_ptr<Block> b(new Block());
    b->read_only_ = config.read_only;
    b->file_.reset(::open(config.path.c_str(), (config.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC));
    if (!b->file_) return fail_errno(config.path);
    struct stat st;
    if (::fstat(b->file_.get(), &st) < 0) return fail_errno(config.path);
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
        return fail(config.path + ": not a regular file or block device", EINVAL);
    off_t end = ::lseek(b->file_.get(), 0, SEEK_END);
    if (end < 0) return fail_errno(config.path);
    b->capacity_ = uint64_t(end) / kSectorSize;  // a partial last sector is not visible
    b->limiter_ = RateLimiter(config.limit, std::move(clock));

    uint32_t seg_max = kQueueSize - 2;  // header and status take a descriptor each
    std::memcpy(&b->config_[0], &b->capacity_, 8);
    std::memcpy(&b->config_[12], &seg_max, 4);
    // The id is the file's device and inode: stable for the file, at most 20 bytes.
    char id[21];
    std::snprintf(id, sizeof id, "%llx-%llx", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
    b->id_ = id;
    return b;
}

uint64_t Block::features() const { return kBlkFSegMax | kBlkFFlush | (read_only_ ? kBlkFRo : 0); }

Result<> Block::activate(Transport& transport) {
    transport_ = &transport;
    if (limiter_.enabled()) {
        int tfd = limiter_.timer_fd();
        if (tfd < 0) return fail_errno("rate limiter timer");
        return transport.watch(tfd, EPOLLIN, [this](uint32_t) {
            limiter_.ack();
            process_queue(0);
        });
    }
    return {};
}

void Block::reset() { transport_ = nullptr; }

void Block::process_queue(unsigned index) {
    if (!transport_ || index != 0) return;
    drain_queue(*transport_, 0, "",
                [&](const DescriptorChain& chain) { return handle(chain) ? Served::kDone : Served::kNotYet; });
}

bool Block::handle(const DescriptorChain& chain) {
    auto& mem = transport_->memory();
    RequestHeader h;
    // Without a header or a status byte there is no way to answer: the driver is broken.
    if (chain.readable_len < sizeof h || chain.writable_len < 1 ||
        chain.read(mem, 0, {reinterpret_cast<uint8_t*>(&h), sizeof h}) != sizeof h) {
        transport_->fail("request without a 16-byte header or a status byte");
        return true;
    }
    uint64_t status_offset = chain.writable_len - 1;
    uint64_t data_len = 0;
    if (h.type == kBlkTIn)
        data_len = status_offset;
    else if (h.type == kBlkTOut)
        data_len = chain.readable_len - sizeof h;

    if (limiter_.enabled() && !limiter_.try_consume(1, data_len)) {
        if (!limiter_.armed()) limiter_.arm(1, data_len);
        return false;
    }

    uint8_t status = kBlkSOk;
    uint32_t written = 0;  // bytes the device wrote into the chain, status excluded
    auto in_range = [&] {
        uint64_t sectors = data_len / kSectorSize;
        return data_len % kSectorSize == 0 && h.sector <= capacity_ && sectors <= capacity_ - h.sector;
    };
    switch (h.type) {
        case kBlkTIn:
            if (!in_range() ||
                !transfer_all(file_.get(), chain.iovecs(mem, true, 0, data_len), h.sector * kSectorSize, false))
                status = kBlkSIoErr;
            else
                written = uint32_t(data_len);
            break;
        case kBlkTOut:
            if (read_only_ || !in_range() ||
                !transfer_all(file_.get(), chain.iovecs(mem, false, sizeof h, data_len), h.sector * kSectorSize, true))
                status = kBlkSIoErr;
            break;
        case kBlkTFlush:
            if (read_only_) break;
            if (::fdatasync(file_.get()) < 0) status = kBlkSIoErr;
            break;
        case kBlkTGetId: {
            std::array<uint8_t, 20> id{};
            std::memcpy(id.data(), id_.data(), std::min(id_.size(), id.size()));
            written = uint32_t(chain.write(mem, 0, std::span(id).first(std::min<uint64_t>(20, status_offset))));
            break;
        }
        default: status = kBlkSUnsupp; break;
    }
    chain.write(mem, status_offset, {&status, 1});
    if (auto r = transport_->queue(0).add_used(mem, chain, written + 1); !r) transport_->fail(r.error().message);
    return true;
}

}  // namespace vessel::devices::virtio

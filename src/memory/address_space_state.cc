#include "memory/address_space_state.h"

#include <map>
#include <vector>

namespace vessel::memory {

using state::Reader;
using state::Writer;

void put_address_space(Writer& w, AddressSpace& as) {
    w.u64(as.tables().root());
    w.u64(as.allocator().next());
    w.u64(as.allocator().end());
    const auto& free_list = as.allocator().free_list();
    w.u64(free_list.size());
    for (uint64_t p : free_list) w.u64(p);
    w.u64(as.vmas().size());
    for (const auto& [start, v] : as.vmas()) {
        w.u64(v.start);
        w.u64(v.end);
        w.u32(static_cast<uint32_t>(v.prot));
        w.str(v.name);
    }
}

state::RecordResult<> get_address_space(Reader r, AddressSpace& as, const GuestMemory& mem, uint64_t pool_start) {
    auto bad = [] { return state::malformed("address-space state is malformed"); };
    uint64_t root = r.u64(), next = r.u64(), end = r.u64();
    if (root & kPageMask || !mem.contains(root, kPageSize)) return bad();
    if (next < pool_start || next > end || end > mem.size() || (next | end) & kPageMask) return bad();
    uint64_t nfree = r.u64();
    if (nfree > mem.size() / kPageSize) return bad();
    std::vector<uint64_t> free_list(nfree);
    for (auto& p : free_list) {
        p = r.u64();
        if (p < pool_start || p >= next || p & kPageMask) return bad();
    }
    uint64_t nvmas = r.u64();
    if (nvmas > (1u << 20)) return bad();
    std::map<uint64_t, Vma> vmas;
    uint64_t last_end = 0;
    for (uint64_t i = 0; i < nvmas; ++i) {
        Vma v;
        v.start = r.u64();
        v.end = r.u64();
        v.prot = static_cast<int>(r.u32());
        v.name = r.str(4096);
        if (!r.ok() || v.start >= v.end || (v.start | v.end) & kPageMask || v.end > kUserAddressEnd ||
            v.start < last_end || v.prot & ~7)
            return bad();
        last_end = v.end;
        vmas.emplace(v.start, std::move(v));
    }
    if (!r.ok() || !r.at_end()) return bad();
    as.tables().adopt(root);
    as.allocator().restore(next, end, std::move(free_list));
    as.restore_vmas(std::move(vmas));
    return {};
}

}  // namespace vessel::memory

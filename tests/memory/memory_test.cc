// Guest memory, page tables, the thin address space and checked guest-virtual
// access. No KVM needed: everything here is plain memory.
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "memory/address_space.h"
#include "memory/guest_memory.h"
#include "memory/guest_virtual.h"
#include "memory/page_allocator.h"
#include "memory/page_tables.h"

namespace vessel::memory {
namespace {

constexpr uint64_t kBase = 0x40'0000;  // a user address well above mmap_min_addr

TEST(GuestMemory, BoundsAreChecked) {
    auto m = GuestMemory::create(1 << 20);
    ASSERT_TRUE(m.has_value()) << m.error().message;
    EXPECT_EQ(m->size(), 1u << 20);
    EXPECT_TRUE(m->contains(0, 1 << 20));
    EXPECT_FALSE(m->contains(1, 1 << 20));
    EXPECT_FALSE(m->contains(~0ull, 2));  // no wrap-around
    EXPECT_EQ(m->host((1 << 20) - 4, 8), nullptr);
    uint32_t v = 0xdeadbeef;
    EXPECT_TRUE(m->write(100, &v, 4).has_value());
    EXPECT_EQ(m->read_obj<uint32_t>(100).value(), 0xdeadbeef);
    EXPECT_FALSE(m->write((1 << 20) - 2, &v, 4).has_value());
    EXPECT_FALSE(GuestMemory::create(0).has_value());
}

TEST(GuestMemory, DiscardZeroes) {
    auto m = GuestMemory::create(1 << 20);
    ASSERT_TRUE(m.has_value());
    std::memset(m->host(4096, 4096), 0x77, 4096);
    ASSERT_TRUE(m->discard(4096, 4096).has_value());
    EXPECT_EQ(m->host(4096, 1)[0], 0);
    EXPECT_FALSE(m->discard(4095, 4096).has_value());  // unaligned
}

// A file written with `bytes` bytes, byte i = i % 251; an open descriptor.
Fd pattern_file(uint64_t bytes) {
    Fd fd(::memfd_create("pattern", MFD_CLOEXEC));
    std::vector<uint8_t> data(bytes);
    for (uint64_t i = 0; i < bytes; ++i) data[i] = static_cast<uint8_t>(i % 251);
    EXPECT_EQ(::write(fd.get(), data.data(), bytes), static_cast<ssize_t>(bytes));
    return fd;
}

// A program image right after 2 MiB-aligned RAM lies right after it in the
// VMM's address space too: KVM gets one slot for both. Anywhere else (a gap
// in guest-physical space, a second region), slots of their own.
TEST(GuestMemory, AFileRegionAfterRamSharesItsKvmSlot) {
    auto m = GuestMemory::create(4 << 20);
    ASSERT_TRUE(m.has_value()) << m.error().message;
    Fd f = pattern_file(3 * 4096 + 100);
    auto gpa = m->add_file_region(f.get(), 3 * 4096 + 100);
    ASSERT_TRUE(gpa.has_value()) << gpa.error().message;
    EXPECT_EQ(*gpa, 4u << 20);
    auto slots = m->kvm_slots();
    ASSERT_EQ(slots.size(), 1u);
    EXPECT_EQ(slots[0].gpa, 0u);
    EXPECT_EQ(slots[0].size, (4u << 20) + 4 * 4096);
    EXPECT_EQ(slots[0].host, m->host_base());
    EXPECT_EQ(m->host(*gpa, 1), m->host_base() + (4 << 20));
    EXPECT_EQ(m->host(*gpa + 4096 + 7, 1)[0], (4096 + 7) % 251);  // the file's bytes
    m->host(*gpa, 1)[0] = 0x55;                                   // private: the file keeps its own
    uint8_t first = 0xff;
    EXPECT_EQ(::pread(f.get(), &first, 1, 0), 1);
    EXPECT_EQ(first, 0);

    auto second = m->add_file_region(f.get(), 4096);  // 2 MiB-aligned: a gap after the first
    ASSERT_TRUE(second.has_value());
    slots = m->kvm_slots();
    ASSERT_EQ(slots.size(), 2u);
    EXPECT_EQ(slots[1].gpa, *second);
    EXPECT_EQ(slots[1].size, 4096u);
    EXPECT_EQ(slots[1].host, m->host(*second, 1));

    auto odd = GuestMemory::create((4 << 20) + 4096);  // RAM not 2 MiB-aligned: the image starts past a gap
    ASSERT_TRUE(odd.has_value());
    ASSERT_TRUE(odd->add_file_region(f.get(), 4096).has_value());
    EXPECT_EQ(odd->kvm_slots().size(), 2u);
}

TEST(PageAllocator, ReusesFreedPagesFirstAndRunsOut) {
    PageAllocator a(0x1000, 0x4000);
    EXPECT_EQ(a.pages_free(), 3u);
    auto p1 = a.allocate(), p2 = a.allocate();
    ASSERT_TRUE(p1 && p2);
    EXPECT_EQ(*p1, 0x1000u);
    a.free(*p1);
    EXPECT_EQ(a.allocate().value(), *p1);
    EXPECT_TRUE(a.allocate().has_value());
    EXPECT_FALSE(a.allocate().has_value());
}

TEST(PageTables, TranslateHonoursPresentUserAndWrite) {
    auto m = GuestMemory::create(1 << 20);
    ASSERT_TRUE(m.has_value());
    PageAllocator alloc(0x1000, m->size());
    PageTables pt(*m, alloc);
    ASSERT_TRUE(pt.init().has_value());
    ASSERT_TRUE(pt.map(kBase, 0x80000, pte::kUser).has_value());  // read-only
    ASSERT_TRUE(pt.map(kBase + 4096, 0x81000, pte::kUser | pte::kWrite).has_value());
    ASSERT_TRUE(pt.map(kBase + 8192, 0x82000, pte::kWrite).has_value());  // supervisor only
    EXPECT_EQ(pt.translate(kBase + 5).value(), 0x80005u);
    EXPECT_FALSE(pt.translate(kBase, true).has_value());
    EXPECT_EQ(pt.translate(kBase + 4096, true).value(), 0x81000u);
    EXPECT_FALSE(pt.translate(kBase + 8192).has_value());
    EXPECT_FALSE(pt.translate(kBase + 3 * 4096).has_value());
    EXPECT_FALSE(pt.translate(1ull << 47).has_value());  // non-canonical
    EXPECT_EQ(pt.unmap(kBase).value(), 0x80000u);
    EXPECT_FALSE(pt.translate(kBase).has_value());
    EXPECT_FALSE(pt.map(1ull << 47, 0x80000, pte::kUser).has_value());
    EXPECT_FALSE(pt.map(kBase, m->size(), pte::kUser).has_value());  // outside RAM
    EXPECT_FALSE(pt.map(kBase + 1, 0x80000, pte::kUser).has_value());
}

// A run of leaves across leaf tables (and the walk's cached leaf table):
// every page where it should be; runs that leave RAM or the user range fail.
TEST(PageTables, MapRunCrossesLeafTables) {
    auto m = GuestMemory::create(8 << 20);
    ASSERT_TRUE(m.has_value());
    PageAllocator alloc(0x1000, 0x100000);
    PageTables pt(*m, alloc);
    ASSERT_TRUE(pt.init().has_value());
    const uint64_t va = (2ull << 20) - 5 * 4096;  // 5 pages before a 2 MiB boundary
    ASSERT_TRUE(pt.map_run(va, 0x200000, 1100, pte::kUser | pte::kWrite).has_value());
    for (uint64_t i = 0; i < 1100; ++i)
        ASSERT_EQ(pt.translate(va + i * 4096 + 3, true).value(), 0x200000 + i * 4096 + 3) << i;
    EXPECT_FALSE(pt.translate(va - 4096).has_value());
    EXPECT_FALSE(pt.translate(va + 1100 * 4096).has_value());
    EXPECT_TRUE(pt.map(va + 1100 * 4096, 0x100000, pte::kUser).has_value());  // after the run: a new walk
    EXPECT_EQ(pt.translate(va + 1100 * 4096).value(), 0x100000u);
    EXPECT_FALSE(pt.map_run(kBase, m->size() - 4096, 2, pte::kUser).has_value());  // leaves RAM
    EXPECT_FALSE(pt.map_run((1ull << 47) - 4096, 0x100000, 2, pte::kUser).has_value());
    EXPECT_FALSE(pt.map_run(kBase, 0x100000, ~0ull / 4096, pte::kUser).has_value());
}

class Space : public ::testing::Test {
protected:
    void SetUp() override {
        auto m = GuestMemory::create(8 << 20);
        ASSERT_TRUE(m.has_value());
        mem_ = std::make_unique<GuestMemory>(std::move(*m));
        as_ = std::make_unique<AddressSpace>(*mem_, 0x1000);
        ASSERT_TRUE(as_->init().has_value());
    }
    std::unique_ptr<GuestMemory> mem_;
    std::unique_ptr<AddressSpace> as_;
};

TEST_F(Space, MapIsZeroedAndRespectsProtection) {
    ASSERT_TRUE(as_->map_fixed(kBase, 3 * 4096, kProtRead | kProtWrite, "x").has_value());
    auto v = as_->view();
    std::vector<uint8_t> buf(3 * 4096, 1);
    ASSERT_TRUE(v.read(kBase, buf.data(), buf.size()));
    EXPECT_EQ(std::count(buf.begin(), buf.end(), 0), 3 * 4096);
    EXPECT_TRUE(v.write(kBase + 4090, "crosses a page", 14));
    char back[15] = {};
    EXPECT_TRUE(v.read(kBase + 4090, back, 14));
    EXPECT_STREQ(back, "crosses a page");
    ASSERT_TRUE(as_->protect(kBase + 4096, 4096, kProtRead).has_value());
    EXPECT_FALSE(v.write(kBase + 4096, "x", 1));
    EXPECT_TRUE(v.write(kBase, "x", 1));
    // A write spanning into the read-only page fails.
    EXPECT_FALSE(v.write(kBase + 4095, "xy", 2));
    // poke ignores protection (the loader filling text).
    EXPECT_TRUE(as_->poke(kBase + 4096, "y", 1));
    EXPECT_EQ(as_->vmas().size(), 3u);  // split into three VMAs
}

TEST_F(Space, UnmapSplitsAndFreesPages) {
    ASSERT_TRUE(as_->map_fixed(kBase, 4 * 4096, kProtRead | kProtWrite).has_value());
    uint64_t free_before = as_->allocator().pages_free();
    ASSERT_TRUE(as_->unmap(kBase + 4096, 2 * 4096).has_value());
    EXPECT_EQ(as_->allocator().pages_free(), free_before + 2);
    EXPECT_TRUE(as_->is_mapped(kBase, 4096));
    EXPECT_FALSE(as_->is_mapped(kBase, 2 * 4096));
    EXPECT_TRUE(as_->is_mapped(kBase + 3 * 4096, 4096));
    EXPECT_EQ(as_->find_vma(kBase + 4096), nullptr);
    EXPECT_FALSE(as_->view().read(kBase + 4096, nullptr, 1));
    EXPECT_FALSE(as_->unmap(kBase + 1, 4096).has_value());
    EXPECT_FALSE(as_->map_fixed(0, 4096, kProtRead).has_value());  // below mmap_min_addr
}

TEST_F(Space, FindFreeIsTopDownAndHonoursHints) {
    auto a = as_->find_free(4096);
    ASSERT_TRUE(a.has_value());
    EXPECT_EQ(*a, AddressSpace::kMmapTop - 4096);
    ASSERT_TRUE(as_->map_fixed(*a, 4096, kProtRead).has_value());
    EXPECT_EQ(as_->find_free(4096).value(), *a - 4096);
    EXPECT_EQ(as_->find_free(4096, kBase).value(), kBase);
    EXPECT_NE(as_->find_free(4096, *a).value(), *a);  // hint taken: look elsewhere
    EXPECT_FALSE(as_->find_free(0).has_value());
}

TEST_F(Space, RunningOutOfGuestMemoryIsENOMEM) {
    auto r = as_->map_fixed(kBase, 64 << 20, kProtRead);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().sys_errno, ENOMEM);
    EXPECT_FALSE(as_->is_mapped(kBase, 4096));  // nothing half-mapped is left
}

TEST_F(Space, CStringsAreBoundedAndChecked) {
    ASSERT_TRUE(as_->map_fixed(kBase, 4096, kProtRead | kProtWrite).has_value());
    auto v = as_->view();
    ASSERT_TRUE(v.write(kBase, "hello", 6));
    EXPECT_EQ(v.read_cstring(kBase, 100).value(), "hello");
    auto tooLong = v.read_cstring(kBase, 3);
    ASSERT_FALSE(tooLong.has_value());
    EXPECT_EQ(tooLong.error().sys_errno, ENAMETOOLONG);
    // A string running off the end of the mapping is EFAULT.
    std::vector<char> fill(4096, 'a');
    ASSERT_TRUE(v.write(kBase, fill.data(), fill.size()));
    auto off_end = v.read_cstring(kBase + 4000, 1 << 20);
    ASSERT_FALSE(off_end.has_value());
    EXPECT_EQ(off_end.error().sys_errno, EFAULT);
    EXPECT_FALSE(v.read_cstring(0, 10).has_value());
    // Huge lengths never wrap.
    EXPECT_FALSE(v.read(kBase, nullptr, ~0ull));
    EXPECT_FALSE(v.read(~0ull - 10, nullptr, 100));
}

}  // namespace
}  // namespace vessel::memory

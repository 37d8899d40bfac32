#include "thin/fd_table.h"

#include <gtest/gtest.h>

namespace vessel::thin {
namespace {

TEST(FdTable, LowestFreeAndLimits) {
    FdTable t;
    auto f = std::make_shared<OpenFile>();
    EXPECT_EQ(t.install(f, false), 0);
    EXPECT_EQ(t.install(f, false), 1);
    EXPECT_EQ(t.install(f, true, 10), 10);
    EXPECT_EQ(t.install(f, false, 10), 11);
    EXPECT_EQ(t.close(1), 0);
    EXPECT_EQ(t.install(f, false), 1);
    EXPECT_EQ(t.close(1), 0);
    EXPECT_EQ(t.close(1), -EBADF);
    EXPECT_TRUE(t.get(10)->cloexec);
    EXPECT_EQ(t.get(5), nullptr);
    EXPECT_EQ(t.install(f, false, -1), -EINVAL);
    EXPECT_EQ(t.install(f, false, FdTable::kMaxFds), -EINVAL);
    EXPECT_EQ(t.install_at(FdTable::kMaxFds, f, false), -EBADF);
    EXPECT_EQ(t.install_at(-1, f, false), -EBADF);
    EXPECT_EQ(t.install_at(FdTable::kMaxFds - 1, f, false), FdTable::kMaxFds - 1);
    EXPECT_EQ(t.install(f, false, FdTable::kMaxFds - 1), -EMFILE);
    for (int i = 0; i < FdTable::kMaxFds; ++i) t.install(f, false);
    EXPECT_EQ(t.install(f, false), -EMFILE);
    // The description is shared, not copied.
    EXPECT_EQ(t.get(0)->file.get(), t.get(500)->file.get());
}

}  // namespace
}  // namespace vessel::thin

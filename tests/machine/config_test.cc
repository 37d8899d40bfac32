// Machine configurations are validated once, by the library, before any
// host resource is touched: tests and benchmarks that link it without the
// CLI get the same refusals as `vessel run`.
#include <gtest/gtest.h>

#include "machine/exit_status.h"
#include "machine/thin_vm.h"

namespace vessel::machine {
namespace {

TEST(ThinVmConfig, MemoryOutsideItsRangeIsRefusedBeforeKvmIsOpened) {
    ThinVmConfig c;
    c.program = "/nonexistent";  // never reached: the range is checked first
    c.argv = {"x"};
    c.kvm_path = "/nonexistent-kvm";
    for (auto [mem, message] :
         {std::pair<uint64_t, const char*>{kMinThinVmMemory - 4096, "--mem: at least 1M is needed"},
          {kMaxThinVmMemory + 4096, "--mem: at most 64G is supported"}}) {
        auto vm = ThinVm::create([&] {
            ThinVmConfig d = c;
            d.mem_size = mem;
            return d;
        }());
        ASSERT_FALSE(vm);
        EXPECT_EQ(vm.error().message, message);
        EXPECT_EQ(exit_status_for(vm.error()), kExitHostError);
    }
}

TEST(ExitStatus, FollowsTheErrnoClassOfTheError) {
    EXPECT_EQ(exit_status_for(Error{"x", ENOENT}), kExitNotFound);
    EXPECT_EQ(exit_status_for(Error{"x", ENOEXEC}), kExitCannotExecute);
    EXPECT_EQ(exit_status_for(Error{"x", EACCES}), kExitHostError);
}

}  // namespace
}  // namespace vessel::machine

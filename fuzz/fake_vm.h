// A machine for the control API's fuzz targets: answers every call at once
// and touches nothing on the host (vmm/control.h).
#pragma once

#include <cerrno>
#include <string>

#include "vmm/control.h"

namespace vessel::fuzz {

class FakeVm : public vmm::Controllable {
public:
    Result<> pause() override {
        if (paused_) return fail("already paused", EBUSY);
        paused_ = true;
        return {};
    }
    Result<> resume() override {
        if (!paused_) return fail("not paused", EBUSY);
        paused_ = false;
        return {};
    }
    Result<vmm::SnapshotInfo> snapshot(const vmm::SnapshotTarget& target, vmm::SnapshotType type) override {
        if (!paused_) return fail("pause the VM first", EBUSY);
        if (type == vmm::SnapshotType::kDiff) return fail("no parent snapshot", ENOTSUP);
        return vmm::SnapshotInfo{.path = target.path, .type = type, .memory_bytes = 4096, .pages = 1, .parent = {}};
    }
    void shutdown() override {}
    vmm::Description describe() const override {
        vmm::Description d;
        d.state = paused_ ? vmm::VmState::kPaused : vmm::VmState::kRunning;
        d.program = "/bin/true";
        d.argv = {"true"};
        return d;
    }
    vmm::Metrics metrics() const override {
        vmm::Metrics m;
        m.syscalls["read"] = 1;
        return m;
    }

private:
    bool paused_ = false;
};

}  // namespace vessel::fuzz

// A machine for the control API's fuzz targets: answers every call at once
// and touches nothing on the host (machine/control.h).
#pragma once

#include <cerrno>
#include <string>

#include "machine/control.h"

namespace vessel::fuzz {

class FakeVm : public machine::Controllable {
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
    Result<machine::SnapshotInfo> snapshot(const machine::SnapshotTarget& target, machine::SnapshotType type) override {
        if (!paused_) return fail("pause the VM first", EBUSY);
        if (type == machine::SnapshotType::kDiff) return fail("no parent snapshot", ENOTSUP);
        return machine::SnapshotInfo{.path = target.path, .type = type, .memory_bytes = 4096, .pages = 1, .parent = {}};
    }
    void shutdown() override {}
    machine::Description describe() const override {
        machine::Description d;
        d.state = paused_ ? machine::VmState::kPaused : machine::VmState::kRunning;
        d.program = "/bin/true";
        d.argv = {"true"};
        return d;
    }
    machine::Metrics metrics() const override {
        machine::Metrics m;
        m.syscalls["read"] = 1;
        return m;
    }

private:
    bool paused_ = false;
};

}  // namespace vessel::fuzz

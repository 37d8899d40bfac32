#include "daemon/metrics.h"

#include <cstdio>
#include <sstream>

namespace vessel::daemon {
namespace {

using json = nlohmann::json;

std::string escape(const std::string& v) {
    std::string out;
    for (char c : v) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '"')
            out += "\\\"";
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
    return out;
}

// Collects samples per metric family so each family is printed once, with
// its HELP and TYPE lines, as the text format requires.
class Families {
public:
    void add(const std::string& name, const char* type, const char* help, const std::string& labels, double value) {
        auto& f = families_[name];
        if (f.type.empty()) {
            f.type = type;
            f.help = help;
            order_.push_back(name);
        }
        std::ostringstream line;
        line.precision(17);
        line << name;
        if (!labels.empty()) line << "{" << labels << "}";
        line << " " << value << "\n";
        f.lines += line.str();
    }
    std::string str() const {
        std::string out;
        for (const auto& name : order_) {
            const auto& f = families_.at(name);
            out += "# HELP " + name + " " + f.help + "\n# TYPE " + name + " " + f.type + "\n" + f.lines;
        }
        return out;
    }

private:
    struct Family {
        std::string type, help, lines;
    };
    std::map<std::string, Family> families_;
    std::vector<std::string> order_;
};

double number(const json& j, const char* key) {
    if (!j.is_object() || !j.contains(key) || !j[key].is_number()) return 0;
    return j[key].get<double>();
}

}  // namespace

std::string format_prometheus(const DaemonSample& d, const std::vector<VmSample>& vms) {
    Families f;
    for (const char* state : {"running", "paused", "exited", "lost", "orphaned"}) {
        auto it = d.by_state.find(state);
        f.add("vessel_vms", "gauge", "VMs known to vesseld, by state.", std::string("state=\"") + state + "\"",
              it == d.by_state.end() ? 0 : static_cast<double>(it->second));
    }
    f.add("vessel_vm_creations_total", "counter", "VMs started by this vesseld instance.", "",
          static_cast<double>(d.created_total));
    f.add("vessel_vm_creation_failures_total", "counter", "VM creations that failed before the VMM ran.", "",
          static_cast<double>(d.create_failures_total));
    for (const auto& vm : vms) {
        std::string l = "vm=\"" + escape(vm.id) + "\",name=\"" + escape(vm.name) + "\"";
        f.add("vessel_vm_up", "gauge", "1 while the VM's VMM process runs.", l, vm.cpu_ns ? 1 : 0);
        f.add("vessel_vm_paused", "gauge", "1 while the VM is paused.", l, vm.state == "paused" ? 1 : 0);
        if (vm.cpu_ns)
            f.add("vessel_vm_host_cpu_seconds_total", "counter",
                  "CPU time of the VMM process (all threads: vCPU and VMM work).", l, *vm.cpu_ns / 1e9);
        if (vm.rss)
            f.add("vessel_vm_host_rss_bytes", "gauge", "Resident memory of the VMM process.", l, double(*vm.rss));
        if (vm.memory_bytes)
            f.add("vessel_vm_cgroup_memory_bytes", "gauge", "Memory charged to the VM's cgroup.", l,
                  double(*vm.memory_bytes));
        if (!vm.vmm.is_object()) continue;
        const json& m = vm.vmm;
        if (m.contains("exits") && m["exits"].is_object())
            for (auto it = m["exits"].begin(); it != m["exits"].end(); ++it)
                if (it.value().is_number())
                    f.add("vessel_vm_exits_total", "counter", "VM exits, by reason.",
                          l + ",reason=\"" + escape(it.key()) + "\"", it.value().get<double>());
        if (m.contains("syscalls") && m["syscalls"].is_object())
            for (auto it = m["syscalls"].begin(); it != m["syscalls"].end(); ++it)
                if (it.value().is_number())
                    f.add("vessel_vm_syscalls_total", "counter", "Guest system calls served by the VMM, by name.",
                          l + ",syscall=\"" + escape(it.key()) + "\"", it.value().get<double>());
        f.add("vessel_vm_unsupported_syscalls_total", "counter", "Guest system calls answered with ENOSYS.", l,
              number(m, "unsupported_syscalls"));
        f.add("vessel_vm_vcpu_seconds_total", "counter", "Time the vCPU spent running guest code.", l,
              number(m, "vcpu_time_ns") / 1e9);
        f.add("vessel_vm_guest_memory_touched_bytes", "gauge", "Guest memory the guest has touched.", l,
              number(m, "guest_memory_touched_bytes"));
        f.add("vessel_vm_processes", "gauge", "Guest processes alive in a thin VM.", l, number(m, "processes"));
        if (m.contains("io_bytes") && m["io_bytes"].is_object())
            for (const char* dir : {"read", "write"})
                f.add("vessel_vm_io_bytes_total", "counter", "Bytes of guest I/O, by direction.",
                      l + ",direction=\"" + dir + "\"", number(m["io_bytes"], dir));
    }
    return f.str();
}

}  // namespace vessel::daemon

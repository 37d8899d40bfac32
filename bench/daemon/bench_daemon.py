#!/usr/bin/env python3
"""vesseld at scale: N idle thin VMs (`/bin/busybox sleep 600`) created
concurrently through the daemon API.

Reports, per round and as medians:
  - creation rate: N / wall time from the first POST /vms to the last 201
    (a 201 means the VMM runs in its cgroups and serves its API socket)
  - CPU per created VM (when a cgroup v1 cpuacct hierarchy is writable, the
    daemon runs in a group of its own there): all CPU time of vesseld and
    its VMMs during the creations / N, and vesseld's own share. Unlike the
    rate, it does not depend on what else the machine is doing.
  - overhead per VM, two ways:
      pss  = sum of Pss from /proc/PID/smaps_rollup of the N VMM processes / N
      avail = drop of MemAvailable (before creation → all N running) / N
    (pss counts only the VMM processes; avail also counts kernel memory
    — KVM structures, page tables, cgroups — and the daemon's growth)
Then removes every VM (DELETE ?force=true). One VM is created and removed
before the rounds: it fills the shared rewrite cache for busybox.

The state directory (database, console logs) is made under $TMPDIR and the
run directory (the VMMs' API sockets) on /dev/shm, a tmpfs as /run is on
systemd hosts; --state-dir and --run-dir choose others.

usage: bench_daemon.py [--build DIR] [--vms 200] [--rounds 3] [--clients 16]
                       [--state-dir DIR] [--run-dir DIR] [--cgroups auto|none]
"""
import argparse, json, os, shutil, socket, statistics, subprocess, sys, tempfile, time
from concurrent.futures import ThreadPoolExecutor


def call(sock, method, path, body=None, timeout=60):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(sock)
    data = json.dumps(body).encode() if body is not None else b""
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {len(data)}\r\n"
    if body is not None:
        head += "Content-Type: application/json\r\n"
    s.sendall(head.encode() + b"\r\n" + data)
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    s.close()
    headers, _, payload = out.partition(b"\r\n\r\n")
    status = int(headers.split(b" ")[1])
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, payload.decode(errors="replace")


def mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024


def pss(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


class CpuAccount:
    """CPU time of a process and its descendants: a cgroup v1 cpuacct group
    of their own (the daemon does not use the cpuacct hierarchy)."""

    def __init__(self, pid):
        self.group = None
        base = "/sys/fs/cgroup/cpuacct"
        if not os.access(os.path.join(base, "cgroup.procs"), os.W_OK):
            return
        try:
            group = os.path.join(base, f"vessel-bench-{os.getpid()}")
            os.mkdir(group)
            with open(os.path.join(group, "cgroup.procs"), "w") as f:
                f.write(str(pid))
            self.group = group
        except OSError:
            pass

    def ns(self):
        if not self.group:
            return None
        with open(os.path.join(self.group, "cpuacct.usage")) as f:
            return int(f.read())

    def close(self):
        if self.group:
            for _ in range(100):
                try:
                    os.rmdir(self.group)
                    return
                except OSError:
                    time.sleep(0.05)


def process_cpu_ns(pid):
    # utime + stime of every thread the process ever had (children excluded)
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1e9 / os.sysconf("SC_CLK_TCK")


def round_(sock, n, clients, daemon_pid, acct):
    subprocess.run(["sync"])
    time.sleep(1)
    before = mem_available()
    spec = {"program": "/bin/busybox", "args": ["sleep", "600"]}
    cpu0, own0 = acct.ns(), process_cpu_ns(daemon_pid)
    t0 = time.monotonic()
    with ThreadPoolExecutor(clients) as ex:
        results = list(ex.map(lambda i: call(sock, "POST", "/vms", spec), range(n)))
    elapsed = time.monotonic() - t0
    cpu1, own1 = acct.ns(), process_cpu_ns(daemon_pid)
    bad = [r for r in results if r[0] != 201]
    if bad:
        sys.exit(f"creation failed: {bad[:3]}")
    vms = [r[1] for r in results]
    time.sleep(2)  # let every guest reach its sleep
    status, listing = call(sock, "GET", "/vms")
    running = [v for v in listing["vms"] if v["state"] == "running"]
    after = mem_available()
    total_pss = sum(pss(v["pid"]) for v in running)
    with ThreadPoolExecutor(clients) as ex:
        list(ex.map(lambda v: call(sock, "DELETE", f"/vms/{v['id']}?force=true"), vms))
    return {
        "created": n,
        "running_after_2s": len(running),
        "seconds": elapsed,
        "rate_vms_per_s": n / elapsed,
        "cpu_ms_per_vm": (cpu1 - cpu0) / n / 1e6 if cpu0 is not None else None,
        "vesseld_cpu_ms_per_vm": (own1 - own0) / n / 1e6,
        "pss_per_vm_mib": total_pss / len(running) / 2**20 if running else 0,
        "memavailable_drop_per_vm_mib": (before - after) / n / 2**20,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(os.path.dirname(__file__), "../../build"))
    ap.add_argument("--vms", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--state-dir", help="parent of the state directory (default: $TMPDIR)")
    ap.add_argument("--run-dir", help="parent of the run directory (default: /dev/shm, else the state directory)")
    ap.add_argument("--cgroups", choices=["auto", "none"], default="auto")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="vesseld-bench-", dir=a.state_dir)
    run_parent = a.run_dir or ("/dev/shm" if os.path.isdir("/dev/shm") else tmp)
    run = tempfile.mkdtemp(prefix="vesseld-bench-run-", dir=run_parent)
    sock = os.path.join(run, "d.sock")
    log = open(os.path.join(tmp, "vesseld.log"), "w")
    args = [os.path.join(a.build, "bin/vesseld"), "--socket", sock, "--run-dir", run, "--state-dir",
            os.path.join(tmp, "state"), "--cgroup-parent", "vessel-bench"]
    if a.cgroups == "none":
        args.append("--no-cgroups")
    d = subprocess.Popen(args, stderr=log)
    acct = CpuAccount(d.pid)
    ok = False
    try:
        for _ in range(500):
            try:
                status, health = call(sock, "GET", "/healthz")
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.01)
        else:
            sys.exit(f"vesseld did not answer; log in {log.name}")
        # One VM first: the VMMs share a cache of the rewritten program, and
        # the rounds measure creations, not busybox being decoded once.
        status, warm = call(sock, "POST", "/vms", {"program": "/bin/busybox", "args": ["true"]})
        if status != 201:
            sys.exit(f"creation failed: {warm}")
        time.sleep(0.5)
        call(sock, "DELETE", f"/vms/{warm['id']}?force=true")
        rounds = []
        for i in range(a.rounds):
            r = round_(sock, a.vms, a.clients, d.pid, acct)
            r["daemon_rss_mib"] = int(open(f"/proc/{d.pid}/statm").read().split()[1]) * 4096 / 2**20
            print(json.dumps(r), flush=True)
            rounds.append(r)
        med = {k: (statistics.median(r[k] for r in rounds) if rounds[0][k] is not None else None) for k in rounds[0]}
        print("median:", json.dumps(med))
        print(f"cgroups: {health['cgroup_mode']}, vmm_api: {health['vmm_api']}, "
              f"host: {os.cpu_count()} CPUs, {os.uname().release}, load average {os.getloadavg()[0]:.1f}")
        ok = True
    finally:
        try:  # VMs outlive the daemon: remove whatever a failed round left
            for v in call(sock, "GET", "/vms")[1]["vms"]:
                call(sock, "DELETE", f"/vms/{v['id']}?force=true")
        except (OSError, KeyError, TypeError):
            pass
        d.terminate()
        d.wait()
        acct.close()
        shutil.rmtree(run, ignore_errors=True)
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"state and log kept in {tmp}", file=sys.stderr)


if __name__ == "__main__":
    main()

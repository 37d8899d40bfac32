#!/usr/bin/env python3
"""vesseld at scale: N idle thin VMs (`/bin/busybox sleep 600`) created
concurrently through the daemon API.

Reports, per round and as medians:
  - creation rate: N / wall time from the first POST /vms to the last 201
  - overhead per VM, two ways:
      pss  = sum of Pss from /proc/PID/smaps_rollup of the N VMM processes / N
      avail = drop of MemAvailable (before creation → all N running) / N
    (pss counts only the VMM processes; avail also counts kernel memory
    — KVM structures, page tables, cgroups — and the daemon's growth)
Then removes every VM (DELETE ?force=true).

usage: bench_daemon.py [--build DIR] [--vms 200] [--rounds 3] [--clients 16]
"""
import argparse, json, os, socket, statistics, subprocess, sys, tempfile, time
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


def round_(sock, n, clients):
    subprocess.run(["sync"])
    time.sleep(1)
    before = mem_available()
    spec = {"program": "/bin/busybox", "args": ["sleep", "600"]}
    t0 = time.monotonic()
    with ThreadPoolExecutor(clients) as ex:
        results = list(ex.map(lambda i: call(sock, "POST", "/vms", spec), range(n)))
    elapsed = time.monotonic() - t0
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
        "pss_per_vm_mib": total_pss / len(running) / 2**20 if running else 0,
        "memavailable_drop_per_vm_mib": (before - after) / n / 2**20,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(os.path.dirname(__file__), "../../build"))
    ap.add_argument("--vms", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=16)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="vesseld-bench-")
    sock = os.path.join(tmp, "d.sock")
    log = open(os.path.join(tmp, "vesseld.log"), "w")
    d = subprocess.Popen([os.path.join(a.build, "bin/vesseld"), "--socket", sock, "--state-dir",
                          os.path.join(tmp, "state"), "--cgroup-parent", "vessel-bench"], stderr=log)
    for _ in range(500):
        if os.path.exists(sock):
            break
        time.sleep(0.01)
    try:
        status, health = call(sock, "GET", "/healthz")
        rounds = []
        for i in range(a.rounds):
            r = round_(sock, a.vms, a.clients)
            r["daemon_rss_mib"] = int(open(f"/proc/{d.pid}/statm").read().split()[1]) * 4096 / 2**20
            print(json.dumps(r), flush=True)
            rounds.append(r)
        med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        print("median:", json.dumps(med))
        print(f"cgroups: {health['cgroup_mode']}, vmm_api: {health['vmm_api']}, "
              f"host: {os.cpu_count()} CPUs, {os.uname().release}")
    finally:
        d.terminate()
        d.wait()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""QEMU's side of bench/snapshot/restore.

save:    start a microvm running GUEST (which idles), migrate it to FILE, quit.
restore: RUNS times, start `qemu -incoming "exec:cat FILE"` and time from
         spawn until QMP reports the VM running (its first guest instruction);
         prints the median in ms.
Usage: qemu_restore.py save|restore MEM GUEST FILE [RUNS]
"""
import json, os, socket, statistics, subprocess, sys, tempfile, time


def qemu(mem, guest, qmp, extra):
    return subprocess.Popen(
        ["qemu-system-x86_64", "-M", "microvm", "-accel", "kvm", "-m", mem, "-nodefaults",
         "-no-user-config", "-display", "none", "-no-reboot", "-kernel", guest,
         "-qmp", f"unix:{qmp},server=on,wait=off"] + extra,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Qmp:
    def __init__(self, path, deadline=20.0):
        end = time.monotonic() + deadline
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX)
                self.s.connect(path)
                break
            except OSError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.0005)
        self.f = self.s.makefile("rwb")
        self.f.readline()  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
        self.f.flush()
        while True:
            msg = json.loads(self.f.readline())
            if "return" in msg or "error" in msg:
                return msg


def main():
    mode, mem, guest, state = sys.argv[1:5]
    runs = int(sys.argv[5]) if len(sys.argv) > 5 else 20
    tmp = tempfile.mkdtemp()
    qmp = os.path.join(tmp, "qmp.sock")
    if mode == "save":
        p = qemu(mem, guest, qmp, [])
        q = Qmp(qmp)
        time.sleep(0.2)
        q.cmd("migrate", uri=f"exec:cat > {state}")
        while q.cmd("query-migrate")["return"].get("status") != "completed":
            time.sleep(0.01)
        q.cmd("quit")
        p.wait()
        return
    times = []
    for _ in range(runs):
        if os.path.exists(qmp):
            os.unlink(qmp)
        t0 = time.monotonic()
        p = qemu(mem, guest, qmp, ["-incoming", f"exec:cat {state}"])
        q = Qmp(qmp)
        while q.cmd("query-status")["return"]["status"] != "running":
            time.sleep(0.0002)
        times.append((time.monotonic() - t0) * 1e3)
        q.cmd("quit")
        p.wait()
    print(f"{statistics.median(times):.2f}")


main()

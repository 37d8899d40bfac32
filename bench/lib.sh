# shellcheck shell=bash disable=SC2034  # variables are used by the scripts that source this
# Shared by the bench/ scripts (sourced, not run).
#
# Environment:
#   VESSEL_BUILD_DIR  build directory (default: build, as ./dev uses); built
#                     here (RelWithDebInfo) if vessel or the guests are missing
#   BENCH_RESULTS     where raw results go (default: $VESSEL_BUILD_DIR/bench/results/DATE)
#   BENCH_NO_BUILD=1  use the build directory as it is
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC_DIR=$(dirname "$BENCH_DIR")
BUILD_DIR=${VESSEL_BUILD_DIR:-build}
[[ $BUILD_DIR = /* ]] || BUILD_DIR=$SRC_DIR/$BUILD_DIR
VESSEL=$BUILD_DIR/bin/vessel
GUESTS=$BUILD_DIR/bench
BUSYBOX=${BUSYBOX:-/bin/busybox}
BENCH_RESULTS=${BENCH_RESULTS:-$GUESTS/results/$(date +%Y-%m-%d)}
mkdir -p "$BENCH_RESULTS"

die() {
  echo "bench: $*" >&2
  exit 2
}

need() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null || die "$c is missing: run bench/setup"
  done
}

build_if_needed() {
  [[ ${BENCH_NO_BUILD:-0} = 1 ]] && return
  if [[ ! -f $BUILD_DIR/build.ninja ]]; then
    cmake -S "$SRC_DIR" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  fi
  # -j2: the development machines have two cores and are shared.
  local log=$BENCH_RESULTS/build.log
  ninja -C "$BUILD_DIR" -j"${BENCH_JOBS:-2}" vessel bench_guests >"$log" 2>&1 ||
    { tail -20 "$log" >&2; die "build failed (log: $log; BENCH_NO_BUILD=1 uses the binaries as they are)"; }
}

check_kvm() {
  [[ -r /dev/kvm && -w /dev/kvm ]] || die "/dev/kvm is not usable"
  [[ -x $BUSYBOX ]] || die "$BUSYBOX is missing: apt-get install busybox-static"
}

# A private, warm rewrite cache so cold-start figures never depend on (or
# pollute) the user's ~/.cache/vessel.
bench_cache() {
  export VESSEL_CACHE_DIR=$BENCH_RESULTS/rewrite-cache
  mkdir -p "$VESSEL_CACHE_DIR"
}

# median < numbers (one per line)
median() {
  sort -g | awk '{v[NR] = $1} END {
    if (NR == 0) { print "nan"; exit }
    if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# csv_field FILE ROW FIELD: one value from hyperfine's --export-csv output
# (columns: command,mean,stddev,median,user,system,min,max; seconds). ROW
# counts commands from 1.
csv_field() {
  awk -F, -v row="$2" -v field="$3" '
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    NR - 1 == row { print $(col[field]) }' "$1"
}

# ms SECONDS -> milliseconds with two decimals
ms() { awk -v s="$1" 'BEGIN { printf "%.2f", s * 1000 }'; }
# ratio A B -> A/B with two decimals
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

verdict() {  # verdict CONDITION-AS-AWK-EXPR
  awk "BEGIN { exit !($1) }" && echo met || echo MISSED
}

machine_info() {
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- commit: $(git -C "$SRC_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)$(
    git -C "$SRC_DIR" diff --quiet HEAD -- src 2>/dev/null || echo ' (plus uncommitted changes in src/)')"
  echo "- cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores"
  echo "- memory: $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
  echo "- kernel: $(uname -r)"
  local kvm=hardware
  [[ -d /sys/module/kvm_pvm ]] && kvm="PVM (kvm_pvm)"
  grep -qwE 'vmx|svm' /proc/cpuinfo && [[ $kvm = hardware ]] && kvm="hardware ($(grep -owE 'vmx|svm' /proc/cpuinfo | head -1))"
  echo "- KVM: $kvm"
  echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- tools: $(hyperfine --version 2>/dev/null | head -1), $(qemu-system-x86_64 --version 2>/dev/null | head -1 | sed 's/ (.*//'), bwrap $(bwrap --version 2>/dev/null | awk '{print $2}'), busybox $($BUSYBOX 2>&1 | head -1 | awk '{print $2}')"
}

# api SOCKET METHOD PATH [JSON]: one request to a control API socket (a
# VMM's --api-sock or vesseld's); fails, printing the reply, unless it is 2xx.
api() {  # api SOCKET METHOD PATH [JSON]
  python3 - "$@" <<'PY'
import json, socket, sys
sock, method, path = sys.argv[1:4]
body = sys.argv[4] if len(sys.argv) > 4 else ""
s = socket.socket(socket.AF_UNIX); s.connect(sock)
s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
          f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}".encode())
data = b""
while chunk := s.recv(65536): data += chunk
status = int(data.split(b" ", 2)[1])
if status >= 300: sys.exit(f"{method} {path}: {data.decode(errors='replace')}")
PY
}

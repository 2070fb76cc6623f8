#!/usr/bin/env bash
# The cost of statistics collection: the lab's forwarding rate through
# mtugate with statistics on (mgmt.interval_ms = 1000, /metrics scraped every
# second) and off (mgmt.interval_ms = 0), in alternating runs, median of N
# each. 64-byte UDP frames replayed at top speed by tcpreplay in the client
# namespace (addressed to a MAC nobody has, so the server's kernel drops them
# at once: a cheap sink); the rate is what mtugate forwarded (its own
# counters) divided by the run's length.
#
# Placement ("confined"): the worker and the veths' NAPI threads (threaded
# NAPI, pinned) all on CPU 1, the generator on CPU 0, so that mtugate's core
# is what limits the rate and a cost on it shows.
#
# Usage: deploy/bench-mgmt.sh [path/to/mtugate] (as root)
#   RUNS=5 (pairs) SECS=5 LAB_PREFIX=mtgm
# Prints one line per run, the medians and the median of the pairs' ratios;
# exits 0. Bounded: about 2 * RUNS * (SECS + 3) seconds; the lab is torn down on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) -eq 0 ]] || { echo "bench-mgmt: needs root" >&2; exit 1; }

BIN=$(readlink -f "${1:-target/release/mtugate}")
RUNS=${RUNS:-5}
SECS=${SECS:-5}
export LAB_PREFIX=${LAB_PREFIX:-mtgm}
C="ip netns exec $LAB_PREFIX-client"
S="ip netns exec $LAB_PREFIX-server"
D="ip netns exec $LAB_PREFIX-dut"
WORK=$(mktemp -d /tmp/mtg-bench-mgmt.XXXXXX)
MTG_PID=""

cleanup() {
  set +e
  [[ -n "$MTG_PID" ]] && kill -KILL "$MTG_PID" 2>/dev/null
  pkill -f "ip netns exec $LAB_PREFIX-" 2>/dev/null
  bash deploy/lab.sh down >/dev/null 2>&1
  rm -rf "$WORK"
}
# A signal ends the run, through the EXIT trap (cleanup runs once), instead
# of letting the script carry on without its lab.
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash deploy/lab.sh up wire >/dev/null 2>&1
# Threaded NAPI on the DUT's veths (they have NAPI once mtugate's XDP
# program is attached), pinned to CPU 1 with the worker. Ours are the
# threads that appear when we turn it on; other labs on the machine have
# their own, which we leave alone.
napi_threads() { pgrep -f '^\[?napi/' | sort || true; }
confine() { # confine NAPI-THREADS-BEFORE-MTUGATE-STARTED
  local before=$1 ours pid
  for dev in in0 out0; do
    # EIO while the veth's NAPI is being set up: retry briefly.
    for _ in $(seq 20); do
      $D sh -c "echo 1 > /sys/class/net/$dev/threaded" 2>/dev/null && break
      sleep 0.1
    done
  done
  sleep 0.2
  ours=$(comm -13 <(echo "$before") <(napi_threads))
  for pid in $ours; do
    taskset -p -c 1 "$pid" >/dev/null
  done
  echo "$ours" | grep -c . >"$WORK/napi.count" || true
}

for mode in on off; do
  interval=$([[ $mode == on ]] && echo 1000 || echo 0)
  sed -e "s|^run_dir = .*|run_dir = \"/run/mtugate-$LAB_PREFIX\"|" \
    -e "s|^interval_ms = .*|interval_ms = $interval|" \
    deploy/configs/lab.toml >"$WORK/$mode.toml"
  grep -q "^interval_ms = $interval\$" "$WORK/$mode.toml"
done

# 1000 64-byte UDP frames (source ports vary) to a MAC nobody has.
python3 - "$WORK/udp64.pcap" "$($C cat /sys/class/net/eth0/address)" <<'PY'
import struct, sys
src = bytes.fromhex(sys.argv[2].replace(":", ""))
dst = bytes.fromhex("02000000c0de")
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF
out = open(sys.argv[1], "wb")
out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
for i in range(1000):
    payload = b"mtugate-bench-" + struct.pack("!I", i)  # 18 bytes
    udp = struct.pack("!HHHH", 10000 + i, 9, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i, 0, 64, 17, 0,
                     bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2]))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    frame = dst + src + b"\x08\x00" + ip + udp
    frame += b"\x00" * (60 - len(frame))
    out.write(struct.pack("<IIII", 0, i, len(frame), len(frame)) + frame)
PY

run_one() { # run_one on|off -> prints "pps busy"
  local mode=$1
  local before
  before=$(napi_threads)
  $D "$BIN" run --config "$WORK/$mode.toml" --final-stats "$WORK/final.json" \
    >"$WORK/out" 2>"$WORK/err" &
  MTG_PID=$!
  for _ in $(seq 50); do grep -q "mtugate running" "$WORK/err" && break; sleep 0.1; done
  confine "$before"
  sleep 0.3
  local scraper=""
  if [[ $mode == on ]]; then
    (for _ in $(seq $((SECS + 2))); do
      $D taskset -c 0 curl -s -m 2 -o /dev/null http://127.0.0.1:9090/metrics
      sleep 1
    done) &
    scraper=$!
  fi
  $C timeout $((SECS + 5)) taskset -c 0 tcpreplay -q -K --topspeed --loop=0 --duration="$SECS" \
    -i eth0 "$WORK/udp64.pcap" >"$WORK/client" 2>&1 || true
  [[ -n "$scraper" ]] && kill "$scraper" 2>/dev/null
  kill -TERM "$MTG_PID"
  for _ in $(seq 50); do kill -0 "$MTG_PID" 2>/dev/null || break; sleep 0.1; done
  MTG_PID=""
  python3 - "$WORK/final.json" "$SECS" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
fwd = j["ports"]["inside"]["forwarded"]
polls = sum(q["polls"] for q in j["queues"])
busy = sum(q["busy_polls"] for q in j["queues"])
rx = sum(p["rx_packets"] for p in j["ports"].values())
print(f"{fwd / float(sys.argv[2]):.0f} {busy / max(polls, 1):.3f} {rx / max(busy, 1):.1f}")
EOF
}

# Other benchmarks on this machine (another lab's processes) are noted per run.
busy_machine() { pgrep -f "ip netns exec mtg[a-z0-9]*-|mtugate-perf" | grep -v "^$$\$" |
  while read -r p; do tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null; echo; done |
  grep -v "exec $LAB_PREFIX-" | grep -c . || true; }

echo "bench-mgmt: $RUNS pairs x $SECS s, order alternating (on/off, off/on, ...); $(nproc) CPUs, $(uname -r)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A R
ratios=""
for i in $(seq "$RUNS"); do
  order="on off"
  ((i % 2 == 0)) && order="off on"
  declare -A P=()
  for mode in $order; do
    others=$(busy_machine)
    read -r pps busy per_round < <(run_one "$mode")
    R[$mode]+="$pps "
    P[$mode]=$pps
    echo "pair $i stats $mode: $pps pps forwarded (worker busy ratio $busy, $per_round frames per busy round, $(cat "$WORK/napi.count") NAPI threads on CPU 1, $others foreign lab processes at start)"
  done
  ratios+="$(python3 -c "print(${P[on]} / ${P[off]})") "
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
on=$(median <<<"${R[on]}")
off=$(median <<<"${R[off]}")
ratio=$(median <<<"$ratios")
python3 -c "print(f'median: stats on {$on} pps, stats off {$off} pps ({100*($on-$off)/$off:+.1f} %); median of the pairs\' on/off ratios {$ratio:.3f} ({100*($ratio-1):+.1f} %)')"

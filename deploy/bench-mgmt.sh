#!/usr/bin/env bash
# The cost of statistics collection: the lab's forwarding rate through
# mtugate with statistics on (mgmt.interval_ms = 1000, /metrics scraped every
# second) and off (mgmt.interval_ms = 0), in alternating runs, median of N
# each. 18-byte UDP payloads (64-byte frames) from iperf3 in the client
# namespace; the rate is what mtugate forwarded (its own counters) divided by
# the run's length.
#
# Placement ("confined"): the worker and the veths' NAPI threads (threaded
# NAPI, pinned) all on CPU 1, the generator on CPU 0, so that mtugate's core
# is what limits the rate and a cost on it shows.
#
# Usage: deploy/bench-mgmt.sh [path/to/mtugate] (as root)
#   RUNS=3 SECS=5 LAB_PREFIX=mtgm
# Prints one line per run and the medians; exits 0. Bounded: about
# 2 * RUNS * (SECS + 3) seconds; the lab is torn down on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) -eq 0 ]] || { echo "bench-mgmt: needs root" >&2; exit 1; }

BIN=$(readlink -f "${1:-target/release/mtugate}")
RUNS=${RUNS:-3}
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
trap cleanup EXIT INT TERM

bash deploy/lab.sh up wire >/dev/null 2>&1
# Threaded NAPI on the DUT's veths, pinned to CPU 1 with the worker. Our
# NAPI threads are the ones that appear when we turn it on (other labs on
# the machine have their own, which we leave alone).
napi_threads() { pgrep -f '^\[?napi/' | sort; }
napi_before=$(napi_threads)
for dev in in0 out0; do
  $D sh -c "echo 1 > /sys/class/net/$dev/threaded"
done
sleep 0.2
ours=$(comm -13 <(echo "$napi_before") <(napi_threads))
for pid in $ours; do
  taskset -p -c 1 "$pid" >/dev/null
done
echo "NAPI threads pinned to CPU 1: $(for p in $ours; do cat /proc/$p/comm; done | tr '\n' ' ')"

for mode in on off; do
  interval=$([[ $mode == on ]] && echo 1000 || echo 0)
  sed -e "s|^listen = .*|&\nrun_dir = \"/run/mtugate-$LAB_PREFIX\"\ninterval_ms = $interval|" \
    deploy/configs/lab.toml >"$WORK/$mode.toml"
done

$S taskset -c 0 iperf3 -s -D -1 -p 5201 >/dev/null 2>&1 || true

run_one() { # run_one on|off -> prints "pps busy"
  local mode=$1
  $D "$BIN" run --config "$WORK/$mode.toml" --final-stats "$WORK/final.json" \
    >"$WORK/out" 2>"$WORK/err" &
  MTG_PID=$!
  for _ in $(seq 50); do grep -q "mtugate running" "$WORK/err" && break; sleep 0.1; done
  $S timeout $((SECS + 5)) taskset -c 0 iperf3 -s -1 -p 5201 >/dev/null 2>&1 &
  local srv=$!
  sleep 0.3
  local scraper=""
  if [[ $mode == on ]]; then
    (for _ in $(seq $((SECS + 2))); do
      $D curl -s -m 2 -o /dev/null http://127.0.0.1:9090/metrics
      sleep 1
    done) &
    scraper=$!
  fi
  $C timeout $((SECS + 5)) taskset -c 0 iperf3 -c 192.0.2.2 -p 5201 -u -b 0 -l 18 -t "$SECS" \
    >"$WORK/client" 2>&1 || true
  wait "$srv" 2>/dev/null || true
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
print(f"{fwd / float(sys.argv[2]):.0f} {busy / max(polls, 1):.3f}")
EOF
}

echo "bench-mgmt: $RUNS x $SECS s per mode, alternating; machine: $(nproc) CPUs, $(uname -r)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A R
for i in $(seq "$RUNS"); do
  for mode in on off; do
    read -r pps busy < <(run_one "$mode")
    R[$mode]+="$pps "
    echo "run $i stats $mode: $pps pps forwarded (worker busy ratio $busy)"
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
on=$(median <<<"${R[on]}")
off=$(median <<<"${R[off]}")
python3 -c "print(f'median: stats on {$on} pps, stats off {$off} pps, difference {100*($on-$off)/$off:+.2f} %')"

#!/usr/bin/env bash
# One TCP stream (iperf3) through mtugate and through the kernel bridge with
# br_netfilter and the TCPMSS rule, rounds interleaved, in the lab.
#
# Usage: deploy/bench-tcp.sh [path/to/mtugate] [ROUNDS] [SECONDS]   (as root)
# Prints one line per run and the medians. Uses LAB_PREFIX (default mtgt) and
# tears its lab down on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(readlink -f "${1:-target/release/mtugate}")
ROUNDS=${2:-3}
SECS=${3:-5}
export LAB_PREFIX=${LAB_PREFIX:-mtgt}
C="ip netns exec $LAB_PREFIX-client"
S="ip netns exec $LAB_PREFIX-server"
D="ip netns exec $LAB_PREFIX-dut"
WORK=$(mktemp -d /tmp/mtg-tcp.XXXXXX)
PID=""
cleanup() {
  set +e
  [[ -n $PID ]] && kill -TERM "$PID" 2>/dev/null && sleep 1
  pkill -f "ip netns exec $LAB_PREFIX-" 2>/dev/null
  bash deploy/lab.sh down >/dev/null 2>&1
  rm -rf "$WORK"
}
# A signal ends the run, through the EXIT trap (cleanup runs once), instead
# of letting the script carry on without its lab.
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

stream() { # prints Gbit/s of one iperf3 run client -> server
  $S timeout $((SECS + 10)) iperf3 -s -1 -p 5301 >/dev/null 2>&1 &
  sleep 0.5
  $C timeout $((SECS + 10)) iperf3 -c 192.0.2.2 -p 5301 -t "$SECS" -J 2>/dev/null |
    python3 -c 'import json,sys; print("%.3f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
  wait
}

sed -e "s|^run_dir = .*|run_dir = \"/run/mtugate-$LAB_PREFIX\"|" deploy/configs/lab.toml >"$WORK/lab.toml"
declare -a M B
for r in $(seq "$ROUNDS"); do
  OUT_MTU=1400 bash deploy/lab.sh up wire >/dev/null
  $D "$BIN" run --config "$WORK/lab.toml" >/dev/null 2>"$WORK/mtg.err" &
  PID=$!
  for _ in $(seq 100); do grep -q "mtugate running" "$WORK/mtg.err" && break; sleep 0.1; done
  $C ping -c 2 -W 1 192.0.2.2 >/dev/null
  m=$(stream)
  kill -TERM "$PID"; wait "$PID" 2>/dev/null || true; PID=""
  OUT_MTU=1400 bash deploy/lab.sh up bridge >/dev/null
  $D sh -c "sysctl -qw net.bridge.bridge-nf-call-iptables=1 && iptables -t mangle -A FORWARD -p tcp --tcp-flags SYN,RST SYN -m tcpmss --mss 1361:1536 -j TCPMSS --set-mss 1360"
  $C ping -c 2 -W 1 192.0.2.2 >/dev/null
  b=$(stream)
  echo "round $r: mtugate (fast path) $m Gbit/s, kernel bridge + TCPMSS $b Gbit/s"
  M+=("$m"); B+=("$b")
done
python3 - "${M[*]}" "${B[*]}" <<'PY'
import statistics, sys
m = [float(x) for x in sys.argv[1].split()]
b = [float(x) for x in sys.argv[2].split()]
mm, mb = statistics.median(m), statistics.median(b)
print(f"median: mtugate {mm:.2f} Gbit/s, kernel bridge {mb:.2f} Gbit/s, ratio {mm / mb:.2f}")
PY

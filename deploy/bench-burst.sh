#!/usr/bin/env bash
# How big a burst mtugate absorbs with its worker's core shared: 5000 SYNs
# from 5000 sources replayed at full speed (tcpreplay --topspeed) while a
# busy loop runs on the worker's core, for each [xsk] ring_size / frames
# setting, RUNS times each. Judged at the server (tcpdump, then tshark:
# SYNs received, clamped) and by mtugate's own accounting of what the
# kernel dropped before it saw a frame.
#
# Usage: deploy/bench-burst.sh [mtugate] [RUNS] ["RING:FRAMES ..."]
#   default: target/release/mtugate 12 "1024:4096 2048:8192 4096:16384"
# Prints one line per run and a summary table (Markdown). As root; lab
# prefix mtgb (LAB_PREFIX); bounded; the lab is torn down on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) -eq 0 ]] || { echo "bench-burst: needs root" >&2; exit 1; }
BIN=$(readlink -f "${1:-target/release/mtugate}")
RUNS=${2:-12}
SETTINGS=${3:-"1024:4096 2048:8192 4096:16384"}
export LAB_PREFIX=${LAB_PREFIX:-mtgb}
WORK=$(mktemp -d /tmp/mtg-burst.XXXXXX)
C="ip netns exec $LAB_PREFIX-client"
S="ip netns exec $LAB_PREFIX-server"
D="ip netns exec $LAB_PREFIX-dut"
cleanup() {
  set +e
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
CMAC=$($C cat /sys/class/net/eth0/address)
SMAC=$($S cat /sys/class/net/eth0/address)
python3 deploy/tools/pcapgen.py syn "$WORK/burst.pcap" --src-mac "$CMAC" --dst-mac "$SMAC" \
  --dst 192.0.2.2 --sources 5000 --src-net 10.0.0.0 2>/dev/null

declare -A LOSSY TOTAL WORST
for s in $SETTINGS; do
  ring=${s%%:*} frames=${s##*:}
  LOSSY[$s]=0 TOTAL[$s]=0 WORST[$s]=0
  for run in $(seq "$RUNS"); do
    sed -e "s|^run_dir = .*|run_dir = \"/run/mtugate-$LAB_PREFIX\"|" \
      -e "s/^steer = .*/steer = \"exceptions\"\nring_size = $ring\nframes = $frames/" \
      deploy/configs/lab.toml >"$WORK/cfg.toml"
    $D "$BIN" run --config "$WORK/cfg.toml" >"$WORK/out" 2>"$WORK/err" &
    M=$!
    for _ in $(seq 100); do grep -q "mtugate running" "$WORK/err" && break; sleep 0.1; done
    $S timeout 30 tcpdump -B 131072 -i eth0 -nn -w "$WORK/cap.pcap" 'tcp[tcpflags] & tcp-syn != 0' 2>"$WORK/td" &
    T=$!
    for _ in $(seq 100); do grep -q "listening on" "$WORK/td" 2>/dev/null && break; sleep 0.05; done
    taskset -c 1 timeout 10 sh -c 'while :; do :; done' &
    H=$!
    sleep 0.3
    $C taskset -c 0 timeout 20 tcpreplay -q --topspeed -i eth0 "$WORK/burst.pcap" >/dev/null 2>&1
    sleep 1
    kill "$H" 2>/dev/null; wait "$H" 2>/dev/null || true
    kill -INT "$T"; wait "$T" 2>/dev/null || true
    kill -TERM "$M"; wait "$M" 2>/dev/null || true
    got=$(tshark -r "$WORK/cap.pcap" -Y "tcp.options.mss_val == 1360" 2>/dev/null | wc -l)
    capdrop=$(grep -o "^[0-9]* packets dropped by kernel" "$WORK/td" | cut -d' ' -f1)
    lost=$((5000 - got))
    said=$(grep -o "frames LOST before mtugate saw them: .*" "$WORK/out" | head -1 || true)
    echo "ring $ring frames $frames run $run: server got $got clamped SYNs of 5000 (capture dropped ${capdrop:-?}); mtugate: ${said:-nothing lost}"
    TOTAL[$s]=$((TOTAL[$s] + 1))
    if ((lost > 0)); then LOSSY[$s]=$((LOSSY[$s] + 1)); fi
    if ((lost > WORST[$s])); then WORST[$s]=$lost; fi
  done
done
echo
echo "| ring_size | frames | UMEM per queue | runs with loss | worst loss (of 5000) |"
echo "|---|---|---|---|---|"
for s in $SETTINGS; do
  ring=${s%%:*} frames=${s##*:}
  echo "| $ring | $frames | $((frames * 4096 / 1048576)) MiB | ${LOSSY[$s]} of ${TOTAL[$s]} | ${WORST[$s]} |"
done

#!/usr/bin/env bash
# End-to-end tests of SYN policing, budgets shared by all workers, bursts
# and lost frames, judged by the server's kernel and a capture on its eth0
# (tcpdump, read by tshark), never by mtugate's own counters alone.
#
#   - a 5000-SYN burst from 5000 sources at full speed (tcpreplay
#     --topspeed) while a busy loop shares the worker's core: nothing lost,
#     every SYN clamped (the default rings absorb it);
#   - the same burst over a small appliance budget (over_limit = "pass"):
#     all 5000 arrive, and the clamped ones stay within
#     burst + rate × elapsed (× 1.1);
#   - a flood from sources in the client's own /24: the client's SYNs are
#     still clamped, and the flood is dropped by the XDP stage;
#   - tiny rings under a burst: the loss is said in the text report,
#     /metrics and `mtugate stats`;
#   - two workers on two queues (a multi-queue veth): traffic spreads, the
#     accounting balances, and the SYN budget is one for both.
#
# Usage: deploy/e2e-limits.sh [path/to/mtugate]   (as root)
# Lab prefix mtgq (LAB_PREFIX to change). Everything is bounded in time; the
# lab is torn down on exit, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
# The lab tests' shared helpers (a path from the repository root, where the
# line above put us).
# shellcheck source-path=SCRIPTDIR/..
source deploy/lib/e2e.sh

e2e_require_root e2e-limits
e2e_bin "${1:-}"
export LAB_PREFIX=${LAB_PREFIX:-mtgq}
e2e_workdir /tmp/mtg-limits.XXXXXX
RUN_DIR=/run/mtugate-$LAB_PREFIX
e2e_hosts
# stop_mtugate is only called with SIGTERM here (the final report is
# written), and waits up to 10 s for the exit, twice the library's default.
MTG_STOP_WAIT=100
HOG=""
CAP=""

cleanup() {
  set +e
  [[ -n $HOG ]] && kill "$HOG" 2>/dev/null
  stop_mtugate
  pkill -f "ip netns exec $LAB_PREFIX-" 2>/dev/null
  bash deploy/lab.sh down >/dev/null 2>&1
  [[ ${KEEP:-0} == 1 ]] && echo "kept $WORK" || rm -rf "$WORK"
}
# A signal ends the run, through the EXIT trap (cleanup runs once), instead
# of letting the script carry on without its lab.
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

lab_up() { # lab_up QUEUES
  QUEUES=$1 bash deploy/lab.sh up wire >/dev/null 2>"$WORK/lab.err" || { cat "$WORK/lab.err" >&2; exit 1; }
  CMAC=$($C cat /sys/class/net/eth0/address)
  SMAC=$($S cat /sys/class/net/eth0/address)
}

# config FILE key=value...: the lab's configuration with these settings
# (queues, cores, ring, frames, steer, rate, burst, ps_rate, ps_burst, over).
config() {
  local file=$1; shift
  local queues="[0]" cores="[1]" ring=4096 frames=16384 steer=exceptions
  local rate=100000 burst=10000 ps_rate=200 ps_burst=200 over=drop kv
  for kv in "$@"; do local "${kv?}"; done
  cat >"$file" <<EOF
mode = "wire"
[[port]]
name = "inside"
iface = "in0"
mtu = 1500
[[port]]
name = "outside"
iface = "out0"
mtu = 1400
[syn_limit]
rate_pps = $rate
burst = $burst
per_source_pps = $ps_rate
per_source_burst = $ps_burst
over_limit = "$over"
[workers]
queues = $queues
cores = $cores
[xsk]
steer = "$steer"
ring_size = $ring
frames = $frames
bpffs = "/run/mtugate/bpffs"
[mgmt]
listen = "127.0.0.1:9090"
interval_ms = 500
run_dir = "$RUN_DIR"
EOF
}

# mtugate's lifecycle is deploy/lib/e2e.sh's. Its capture and capture_stop
# are replaced below: one capture at a time on the server, sized for bursts.

capture() { # capture FILTER...: on the server's eth0, confirmed listening
  CAP_FILE=$WORK/cap.pcap
  CAPN=$((${CAPN:-0} + 1))
  # A large buffer and no per-packet wakeups: a burst at full speed must not
  # overrun the capture (checked: "dropped by kernel" must be 0).
  $S timeout 60 tcpdump -B 131072 -i eth0 -nn -w "$CAP_FILE" "$@" 2>"$WORK/cap.log" &
  CAP=$!
  for _ in $(seq 100); do
    grep -q "listening on" "$WORK/cap.log" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "tcpdump did not start: $(cat "$WORK/cap.log")" >&2
  return 1
}
capture_stop() {
  sleep 1
  kill -INT "$CAP" 2>/dev/null || true
  wait "$CAP" 2>/dev/null || true
  CAP=""
  cp "$WORK/cap.log" "$WORK/cap$CAPN.log"
  if ! grep -q "^0 packets dropped by kernel" "$WORK/cap.log"; then
    bad "capture $CAPN lost packets itself: $(grep dropped "$WORK/cap.log" | tr '\n' ' ')"
  fi
}

# hog CORE SECONDS: a bounded busy loop sharing a core with the worker.
hog() {
  taskset -c "$1" timeout "$2" sh -c 'while :; do :; done' &
  HOG=$!
}
unhog() { [[ -n $HOG ]] && { kill "$HOG" 2>/dev/null; wait "$HOG" 2>/dev/null || true; }; HOG=""; }

# syns FILE: one line per SYN (no ACK) seen: "time mss source".
syns() {
  tshark -r "$1" -Y "tcp.flags.syn == 1 && tcp.flags.ack == 0" \
    -T fields -e frame.time_relative -e tcp.options.mss_val -e ip.src 2>/dev/null
}

replay() { # replay CPU PCAP [tcpreplay options]: in the client, at full speed
  local cpu=$1 pcap=$2; shift 2
  $C taskset -c "$cpu" timeout 30 tcpreplay -q --topspeed -i eth0 "$@" "$pcap" >/dev/null 2>&1
}

gen() { python3 deploy/tools/pcapgen.py "$@" --src-mac "$CMAC" --dst-mac "$SMAC" 2>/dev/null; }

# within_budget CLAMPED ELAPSED RATE BURST: clamped <= (burst + rate × elapsed) × 1.1
within_budget() {
  python3 -c "import sys; c,e,r,b=map(float,sys.argv[1:]); sys.exit(0 if c <= (b + r*e)*1.1 else 1)" "$@"
}
# burst_and_within_budget CLAMPED ELAPSED RATE BURST: also at least the burst.
burst_and_within_budget() { [ "$1" -ge "$4" ] && within_budget "$@"; }

# run_burst CONFIG: the 5000-SYN burst through mtugate run with CONFIG, while a
# busy loop shares the worker's core; the SYNs the server saw go to
# $WORK/syns.txt, and n / clamped count them (all / at 1360).
run_burst() {
  start_mtugate "$1"
  capture 'tcp[tcpflags] & tcp-syn != 0'
  hog 1 15
  sleep 0.3
  replay 0 "$WORK/burst.pcap"
  capture_stop
  unhog
  stop_mtugate
  syns "$CAP_FILE" >"$WORK/syns.txt"
  n=$(wc -l <"$WORK/syns.txt")
  clamped=$(awk '$2 == 1360' "$WORK/syns.txt" | wc -l)
}

# ---------------------------------------------------------------------------
echo "== one queue, one worker"
lab_up 1
gen syn "$WORK/burst.pcap" --dst 192.0.2.2 --sources 5000 --src-net 10.0.0.0

# 1. The burst with the worker's core shared: defaults absorb it.
config "$WORK/default.toml"
run_burst "$WORK/default.toml"
check "5000-SYN burst, worker core shared, default rings: all arrive (got $n)" test "$n" -eq 5000
check "... every one clamped to 1360 (got $clamped)" test "$clamped" -eq 5000
check "... the report says balanced: nothing lost before mtugate" grep -q "accounting: balanced" "$WORK/mtg.out"
granted=$(final "sum(x['run']['syn_granted'] for x in d['xdp'])")
check "... the XDP stage granted all 5000 (got $granted)" test "$granted" -eq 5000

# 2. The same burst over a small budget, over_limit = pass: everything
#    arrives, the clamped ones stay within the budget.
config "$WORK/small.toml" rate=1000 burst=500 over=pass
run_burst "$WORK/small.toml"
unclamped=$(awk '$2 == 1460' "$WORK/syns.txt" | wc -l)
elapsed=$(awk 'NR == 1 {f = $1} {l = $1} END {printf "%.6f", l - f}' "$WORK/syns.txt")
check "burst over a 1000/s burst-500 budget (pass): all 5000 arrive (got $n: $clamped clamped, $unclamped unclamped)" \
  test "$n" -eq 5000 -a $((clamped + unclamped)) -eq 5000
check "... clamped $clamped <= (500 + 1000 × ${elapsed}s) × 1.1, and at least the burst" \
  burst_and_within_budget "$clamped" "$elapsed" 1000 500
passed=$(final "sum(x['run']['syn_over_passed'] for x in d['xdp'])")
check "... the unclamped ones were passed by the XDP stage over the budget ($passed)" test "$passed" -eq "$unclamped"

# 3. A flood from the client's own /24 (not its address) at the port the
#    server listens on: the client's SYNs are clamped, the flood dropped
#    before the copy, and the server's SYN-ACKs to the flood (it answers:
#    static neighbours for the flood's addresses) spend the flooders'
#    budgets, not its own or its real client's.
gen syn "$WORK/flood.pcap" --dst 192.0.2.2 --dport 5201 --sources 100 --per-source 200 --src-net 192.0.2.0 --first-host 100
for h in $(seq 100 199); do $S ip neigh replace "192.0.2.$h" lladdr "$CMAC" dev eth0; done
config "$WORK/flood.toml"
start_mtugate "$WORK/flood.toml"
$S timeout 40 nc -lk 5201 >/dev/null 2>&1 &
capture 'tcp[tcpflags] & tcp-syn != 0 and host 192.0.2.1'
$C taskset -c 0 timeout 8 tcpreplay -q --topspeed --loop=100000 -i eth0 "$WORK/flood.pcap" >/dev/null 2>&1 &
FLOOD=$!
sleep 1
conns=0
for _ in $(seq 5); do
  if $C timeout 3 nc -z -w 2 192.0.2.2 5201 2>/dev/null; then conns=$((conns + 1)); fi
  sleep 0.2
done
wait "$FLOOD" 2>/dev/null || true
capture_stop
stop_mtugate
syns "$CAP_FILE" >"$WORK/syns.txt"
client=$(awk '$3 == "192.0.2.1"' "$WORK/syns.txt" | wc -l)
client_clamped=$(awk '$3 == "192.0.2.1" && $2 == 1360' "$WORK/syns.txt" | wc -l)
limited=$(final "sum(x['run']['syn_source_limited'] for x in d['xdp'])")
check "flood from the client's /24: the client's 5 connections open ($conns)" test "$conns" -eq 5
check "... every SYN of the client reaches the server clamped to 1360 ($client_clamped of $client)" \
  test "$client" -ge 5 -a "$client_clamped" -eq "$client"
check "... the flood was dropped by the XDP stage at its sources' budgets ($limited SYNs)" test "$limited" -gt 10000
synacks=$(final "[x['run']['syn_granted'] for x in d['xdp'] if x['port'] == 'outside'][0]")
check "... the server answered the flood: $synacks SYN-ACKs granted on the outside port" test "$synacks" -gt 100

# 4. Tiny rings: the loss is said everywhere.
gen udp "$WORK/udp.pcap" --src 192.0.2.1 --dst 192.0.2.2 --count 20000 --size 100 --flows 16
config "$WORK/tiny.toml" ring=64 frames=512 steer=all
start_mtugate "$WORK/tiny.toml"
hog 1 10
sleep 0.3
replay 0 "$WORK/udp.pcap"
unhog
sleep 1.5
$D curl -s -m 5 http://127.0.0.1:9090/metrics >"$WORK/metrics.txt" || true
"$BIN" stats --once --run-dir "$RUN_DIR" >"$WORK/view.txt" 2>&1 || true
stop_mtugate
lost=$(awk '/^mtugate_frames_lost_total.*where="xsk_/ {s += $2} END {print s + 0}' "$WORK/metrics.txt")
check "tiny rings: /metrics counts the frames lost before mtugate ($lost)" test "$lost" -gt 0
check "... mtugate stats says LOST" grep -q "^LOST" "$WORK/view.txt"
check "... the text report says NOT BALANCED and how many were lost" \
  sh -c "grep -q 'accounting: NOT BALANCED' '$WORK/mtg.out' && grep -q 'frames LOST before mtugate saw them' '$WORK/mtg.out'"
bash deploy/lab.sh down >/dev/null 2>&1

# ---------------------------------------------------------------------------
echo "== two queues, two workers"
lab_up 2
# The client's veth picks a TX queue per flow (its hash), and a veth's TX
# queue is its peer's RX queue: many flows spread over both queues.
gen syn "$WORK/half0.pcap" --dst 192.0.2.2 --sources 2500 --src-net 10.1.0.0
gen syn "$WORK/half1.pcap" --dst 192.0.2.2 --sources 2500 --src-net 10.2.0.0
gen udp "$WORK/udp0.pcap" --src 192.0.2.1 --dst 192.0.2.2 --count 3000 --size 100 --flows 64
config "$WORK/two.toml" queues="[0, 1]" cores="[0, 1]" rate=1000 burst=500 over=pass steer=all
start_mtugate "$WORK/two.toml"
capture 'tcp[tcpflags] & tcp-syn != 0'
replay 0 "$WORK/half0.pcap" &
R0=$!
replay 1 "$WORK/half1.pcap" &
R1=$!
wait "$R0" "$R1" || true
replay 0 "$WORK/udp0.pcap"
replay 1 "$WORK/udp0.pcap"
capture_stop
stop_mtugate
syns "$CAP_FILE" >"$WORK/syns.txt"
n=$(wc -l <"$WORK/syns.txt")
clamped=$(awk '$2 == 1360' "$WORK/syns.txt" | wc -l)
elapsed=$(awk 'NR == 1 {f = $1} {l = $1} END {printf "%.6f", l - f}' "$WORK/syns.txt")
rx0=$(final "[p['rx_frames'] for p in d['queues'][0]['io'] if p['port']=='inside'][0]")
rx1=$(final "[p['rx_frames'] for p in d['queues'][1]['io'] if p['port']=='inside'][0]")
check "two workers: both queues carried traffic (queue 0: $rx0, queue 1: $rx1 frames)" \
  test "$rx0" -gt 1000 -a "$rx1" -gt 1000
check "... the accounting balances" grep -q "accounting: balanced" "$WORK/mtg.out"
check "... all 5000 SYNs arrive ($n)" test "$n" -eq 5000
check "... one budget for both workers: clamped $clamped <= (500 + 1000 × ${elapsed}s) × 1.1" \
  within_budget "$clamped" "$elapsed" 1000 500

e2e_summary "e2e-limits: "

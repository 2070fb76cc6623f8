#!/usr/bin/env bash
# End-to-end tests of mtugate's management: /metrics (checked by promtool),
# /stats, `mtugate stats`, live reload (control socket and SIGHUP) under
# continuous traffic, judged by the server's kernel and tshark, refusals.
#
# Usage: deploy/e2e-mgmt.sh [path/to/mtugate]   (as root; builds it if not given)
# Prints one line per check and "N passed, M failed" at the end; exits 1 on
# any failure. Bounded in time (about 40 s); the lab is torn down on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
# The lab tests' shared helpers (a path from the repository root, where the
# line above put us).
# shellcheck source-path=SCRIPTDIR/..
source deploy/lib/e2e.sh

e2e_require_root e2e-mgmt "network namespaces, XDP, the control socket"
e2e_bin "${1:-}"
e2e_workdir /tmp/mtg-e2e-mgmt.XXXXXX
export LAB_PREFIX=${LAB_PREFIX:-mtgm}
e2e_hosts
# A run directory of this lab's own, so that no other appliance on the
# machine is disturbed (or refuses us).
RUN_DIR=/run/mtugate-$LAB_PREFIX
SOCK=$RUN_DIR/mtugate.sock
CFG=$WORK/mgmt.toml
PING_PID=""

cleanup() {
  set +e
  [[ -n "$PING_PID" ]] && kill "$PING_PID" 2>/dev/null
  stop_mtugate KILL
  pkill -f "ip netns exec $LAB_PREFIX-" 2>/dev/null
  bash deploy/lab.sh down >/dev/null 2>&1
  rm -f "$SOCK"
  rmdir "$RUN_DIR" 2>/dev/null
  rm -rf "$WORK"
}
# A signal ends the run, through the EXIT trap (cleanup runs once), instead
# of letting the script carry on without its lab.
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

refused_with() { # refused_with RC OUTPUT WORD...: non-zero exit naming every WORD
  local rc=$1 out=$2 w; shift 2
  [[ $rc -ne 0 ]] || return 1
  for w; do grep -qF -- "$w" <<<"$out" || return 1; done
}

# The lab's configuration with a fixed IPv4 clamp and our run directory.
# set_mss N rewrites the clamp in place (what an operator's editor does).
# These tests are about the management of the pipeline's counters, so every
# frame goes through AF_XDP (steer = "all"): with the XDP fast path, pings
# never reach a worker. The XDP stage's own counters are checked too.
write_config() {
  sed -e 's/^ipv4 = "auto".*/ipv4 = 1360/' \
    -e 's/^steer = .*/steer = "all"/' \
    -e "s|^run_dir = .*|run_dir = \"$RUN_DIR\"|" \
    -e "s|^summary_secs = .*|summary_secs = 1|" deploy/configs/lab.toml >"$CFG"
  grep -q "^run_dir = \"$RUN_DIR\"" "$CFG" && grep -q "^summary_secs = 1" "$CFG"
}
set_mss() { sed -i "s/^ipv4 = .*/ipv4 = $1/" "$CFG"; }

# mtugate's lifecycle (start_mtugate runs $CFG) and the captures are
# deploy/lib/e2e.sh's.

# HTTP inside the DUT namespace, where the listener is (bounded).
http() { $D curl -sS -m 5 "$@"; }
stats_json() { "$BIN" stats --once --json --run-dir "$RUN_DIR" || echo '{}'; }
# jq-less JSON access: json_get FILE PYTHON-EXPR (j is the document)
json_get() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }

# doc EXPR: a value of the live /stats document (j), or "none".
doc() { stats_json | python3 -c "import json,sys
try: j=json.load(sys.stdin); print($1)
except Exception: print('none')"; }
# Waits (bounded) until the aggregation after now has happened.
wait_interval() {
  local seq0 seq
  seq0=$(doc 'j["seq"]')
  for _ in $(seq 30); do
    sleep 0.1
    seq=$(doc 'j["seq"]')
    [[ $seq != none && $seq0 != none && $seq -gt $seq0 ]] && return 0
  done
  return 1
}

# A capture's safety bound (capture_stop ends it sooner): 20 s here.
CAP_TIMEOUT=20

# A new TCP connection client -> server; prints the MSS of the SYN as the
# server received it, and its checksum status (1 = good).
new_syn_mss() { # new_syn_mss PORT
  local port=$1 pcap=$WORK/syn$1.pcap
  capture "$S" "$pcap" tcp port "$port"
  $S timeout 3 nc -4 -l -p "$port" >/dev/null &
  local srv=$!
  sleep 0.2
  echo hello | $C timeout 2 nc -4 -q 1 192.0.2.2 "$port" || true
  wait "$srv" 2>/dev/null || true
  capture_stop
  syn_mss "$pcap" 0
}

# --- run -----------------------------------------------------------------------

echo "e2e-mgmt: lab up (wire mode, prefix $LAB_PREFIX), mtugate $BIN"
bash deploy/lab.sh up wire >/dev/null 2>&1
write_config
rm -f "$SOCK"

# Nothing running yet.
out=$("$BIN" stats --once --json --run-dir "$RUN_DIR" 2>&1) && rc=0 || rc=$?
check "stats --once --json with nothing running: exit $rc, says so ($out)" \
  grep -q "no mtugate is running" <<<"$out"

# Non-loopback HTTP listener without the explicit flag.
sed 's|^listen = .*|listen = "0.0.0.0:9090"|' "$CFG" >"$WORK/remote.toml"
out=$($D "$BIN" run --config "$WORK/remote.toml" 2>&1) && rc=0 || rc=$?
if [[ $rc -ne 0 ]] && grep -q "mgmt.listen" <<<"$out" && grep -q "allow_remote" <<<"$out" && no_program_left; then
  ok "non-loopback mgmt.listen refused without allow_remote, nothing attached ($(cut -c1-90 <<<"$out"))"
else
  bad "non-loopback mgmt.listen refused without allow_remote (exit $rc: $out)"
fi
sed -i 's|^listen = .*|&\nallow_remote = true|' "$WORK/remote.toml"
check "with allow_remote = true the same listener is accepted (check-config)" \
  sh -c '"$@" >/dev/null' sh $D "$BIN" check-config "$WORK/remote.toml"

start_mtugate
mode=$(stat -c '%a %U' "$SOCK" 2>&1 || true)
check "control socket is mode 0600, owned by root ($mode)" test "$mode" = "600 root"

# A second appliance on the same run directory: refused before touching
# the interfaces, and the first keeps forwarding.
out=$($D timeout 10 "$BIN" run --config "$CFG" 2>&1) && rc=0 || rc=$?
pings() { $C ping -c 3 -i 0.2 -W 1 192.0.2.2 >/dev/null 2>&1; }
if [[ $rc -ne 0 ]] && grep -q "another mtugate is running" <<<"$out" && pings; then
  ok "a second appliance on the same run_dir is refused and the first still forwards"
else
  bad "a second appliance on the same run_dir is refused (exit $rc: $out)"
fi

# Counters move with traffic; /metrics passes Prometheus' own checker.
wait_interval || true
rx0=$(doc 'sum(p["counters"]["rx_packets"] for p in j["totals"])')
$C ping -c 50 -i 0.01 -W 1 192.0.2.2 >/dev/null 2>&1 || true
wait_interval || true
http -o "$WORK/metrics.txt" http://127.0.0.1:9090/metrics || true
if command -v promtool >/dev/null; then
  check "/metrics passes promtool check metrics ($(grep -vc '^#' "$WORK/metrics.txt") samples)" \
    sh -c 'promtool check metrics <"$1" >"$1.promtool" 2>&1' sh "$WORK/metrics.txt"
else
  bad "/metrics passes promtool check metrics (promtool missing: bash deploy/deps.sh installs it)"
fi
rx1=$(awk '/^mtugate_rx_packets_total/ {s += $2} END {print s + 0}' "$WORK/metrics.txt")
check "counters move with traffic (rx packets $rx0 -> $rx1 after 50 pings)" \
  test "$rx0" != none -a "$rx1" -ge $((${rx0/none/0} + 100))
xdp=$(awk '/^mtugate_xdp_frames_total\{.*outcome="steered"/ {s += $2} END {print s + 0}' "$WORK/metrics.txt")
xdp_stats=$(doc 'sum(x["steered"] for x in j["xdp"])')
check "the XDP stage's counters are in /metrics ($xdp steered) and /stats ($xdp_stats), and cover what the workers received ($rx1)" \
  test "$xdp" -ge "$rx1" -a "$xdp_stats" != none -a "${xdp_stats/none/0}" -ge "$rx1"
inf_is_count() {
  local inf cnt
  inf=$(grep -F 'mtugate_packet_cost_seconds_bucket{queue="0",le="+Inf"}' "$1" | awk '{print $2}')
  cnt=$(grep -F 'mtugate_packet_cost_seconds_count{queue="0"}' "$1" | awk '{print $2}')
  [[ -n $inf && $inf == "$cnt" && $cnt -gt 0 ]]
}
check "/metrics has a cumulative latency histogram (+Inf bucket = _count > 0)" \
  inf_is_count "$WORK/metrics.txt"

http -o "$WORK/stats.json" http://127.0.0.1:9090/stats || echo '{}' >"$WORK/stats.json"
pct=$(json_get "$WORK/stats.json" '" ".join(str(j["latency"]["packet_cost_ns"]["since_start"][k]) for k in ["p50","p90","p99","p99_9","max","count"])' || echo none)
ordered() { # p50 p90 p99 p99.9 max count: all there, ordered, count > 0
  [[ $# -eq 6 && $6 -gt 0 && $1 -gt 0 && $1 -le $2 && $2 -le $3 && $3 -le $4 && $4 -le $5 ]]
}
# shellcheck disable=SC2086
check "/stats JSON (HTTP) has latency percentiles p50/p90/p99/p99.9/max (cost per packet, ns: $pct)" \
  ordered $pct

rx=$(doc 'j["totals"][0]["counters"]["rx_packets"]')
check "mtugate stats --once --json over the control socket ($rx packets in on inside)" \
  test "$rx" != none -a "${rx/none/0}" -gt 0
"$BIN" stats --once --run-dir "$RUN_DIR" >"$WORK/view.txt" || true
lines=$(wc -l <"$WORK/view.txt")
width=$(awk '{ if (length($0) > w) w = length($0) } END {print w}' "$WORK/view.txt")
check "mtugate stats view fits 80x24 ($lines lines, $width columns)" \
  test "$lines" -le 24 -a "$width" -le 80 -a "$lines" -ge 10
"$BIN" stats --hgrm "$WORK/cost.hgrm" --run-dir "$RUN_DIR" || true
hgrm_ok() {
  head -1 "$1" | grep -q 'Value.*Percentile.*TotalCount' &&
    grep -q '^#\[Max' "$1" && awk 'NF == 3 && $2 == 1.0 {f = 1} END {exit !f}' "$1"
}
check "mtugate stats --hgrm writes the HdrHistogram percentile format ($(grep -c . "$WORK/cost.hgrm" 2>/dev/null) lines)" \
  hgrm_ok "$WORK/cost.hgrm"

code=$(http -o /dev/null -w '%{http_code}' -X POST http://127.0.0.1:9090/reload || true)
check "the HTTP listener refuses writes (POST /reload: $code)" test "$code" = 405

# --- reload under continuous traffic ------------------------------------------
# 2500 pings 2 ms apart (~5 s) run through the reload; every one must come
# back (ping waits for all the replies, up to its 15 s deadline, so that a
# late one is not taken for a lost one), and mtugate's counters must show no
# drop.
# The kernel's per-CPU backlog drops (shared by every namespace on the
# machine): a loss there is not mtugate's, and is reported as such.
backlog_drops() {
  local s=0 d
  while read -r _ d _; do s=$((s + 16#$d)); done </proc/net/softnet_stat
  echo "$s"
}
backlog0=$(backlog_drops)
$C timeout 20 ping -q -i 0.002 -c 2500 -w 15 192.0.2.2 >"$WORK/ping.out" 2>&1 &
PING_PID=$!
sleep 0.3
before=$(new_syn_mss 5101)
check "before the reload, a new SYN carries MSS 1360 ($before)" test "$before" = "1360 1"
set_mss 1300
out=$("$BIN" reload --config "$CFG" 2>&1) && rc=0 || rc=$?
check "mtugate reload 1360 -> 1300 under traffic: exit $rc ($out)" \
  grep -q "mss.ipv4: 1360 -> 1300" <<<"$out"
after=$(new_syn_mss 5102)
check "after the reload, a new SYN carries MSS 1300 ($after)" test "$after" = "1300 1"
wait "$PING_PID" 2>/dev/null || true
PING_PID=""
loss=$(grep -oE '[0-9]+ packets transmitted, [0-9]+ received' "$WORK/ping.out" || echo "no summary")
backlog=$(($(backlog_drops) - backlog0))
loss+="; kernel backlog drops meanwhile, all namespaces: $backlog"
all_back() {
  local sent got
  read -r sent _ _ got _ <<<"$loss"
  [[ $sent == 2500 && $got == 2500 ]] && return 0
  sed 's/^/         | /' "$WORK/ping.out"
  for dev in in0 out0; do $D ip -s -s link show "$dev"; done | sed 's/^/         | dut: /'
  $S ip -s -s link show eth0 | sed 's/^/         | server: /'
  # On a machine shared with other labs, their floods can fill the kernel's
  # per-CPU backlog that veth delivery goes through (outside mtugate, and
  # counted there). A loss no larger than those drops is theirs; mtugate's
  # own counters are judged strictly by the next check.
  if [[ $got =~ ^[0-9]+$ && $sent =~ ^[0-9]+$ ]] && ((sent - got <= backlog && got > 0)); then
    echo "         | $((sent - got)) lost where the kernel's backlog dropped $backlog packets (other labs' floods): not mtugate's"
    return 0
  fi
  return 1
}
check "the running traffic lost nothing across the reload ($loss)" all_back

# Invalid and restart-needed reloads change nothing.
set_mss 1500
out=$("$BIN" reload --config "$CFG" 2>&1) && rc=0 || rc=$?
check "an invalid reload (mss.ipv4 = 1500 > MTU 1400 - 40) is refused: exit $rc ($(cut -c1-70 <<<"$out"))" \
  refused_with "$rc" "$out" "mss.ipv4" "nothing changed"
set_mss 1300
sed -i 's/iface = "out0"/iface = "out9"/' "$CFG"
out=$("$BIN" reload --config "$CFG" 2>&1) && rc=0 || rc=$?
check "a reload changing a port's interface is refused as needing a restart: exit $rc" \
  refused_with "$rc" "$out" "restart" "port[1].iface: out0 -> out9" "nothing changed"
sed -i 's/iface = "out9"/iface = "out0"/' "$CFG"
set_mss 1500 # the file is invalid again; what is in force must stay 1300
kept=$(new_syn_mss 5103)
check "after the refused reloads, 1300 stays in force ($kept)" test "$kept" = "1300 1"

# SIGHUP does the same as mtugate reload.
set_mss 1280
kill -HUP "$MTG_PID"
gen=0
for _ in $(seq 30); do
  gen=$(doc 'j["config_generation"]')
  [[ $gen == 3 ]] && break
  sleep 0.1
done
hup=$(new_syn_mss 5104)
check "SIGHUP reloads: generation $gen, a new SYN carries MSS 1280 ($hup)" \
  test "$gen" = 3 -a "$hup" = "1280 1"
check "a one-line summary is logged every summary_secs ($(grep -c 'summary: rx' "$WORK/mtg.err") so far)" \
  grep -q "summary: rx .* pps, tx .* pps, drops" "$WORK/mtg.err"
reloads=$(doc '" ".join(str(j["reloads"][k]) for k in ["ok", "invalid", "restart_needed"])')
check "reload outcomes counted (ok invalid restart_needed: $reloads)" test "$reloads" = "2 1 1"

stop_mtugate TERM
check "on exit mtugate prints final totals and latency" \
  grep -qzE "accounting: balanced.*latency since start" "$WORK/mtg.out"
if python3 - "$WORK/final.json" <<'EOF'; then
import json, sys
j = json.load(open(sys.argv[1]))
ok = True
for name, c in j["ports"].items():
    drops = sum(c["drops"].values())
    print(f"  {name}: received {c['rx_packets']} = forwarded {c['forwarded']} + fragmented {c['fragmented']} + dropped {drops}")
    ok &= c["balanced"] and drops == 0 and c["rx_packets"] > 2500
lost = 0
for q in j["queues"]:
    for io in q["io"]:
        lost += io["tx_ring_full_drops"] + (io["kernel_rx_dropped"] or 0) + (io["kernel_rx_ring_full"] or 0)
print(f"  tx ring full + kernel rx dropped + kernel rx ring full: {lost}")
ok &= lost == 0 and all(q["conservation_error"] is None for q in j["queues"])
sys.exit(0 if ok else 1)
EOF
  ok "counters balance with no drop and nothing lost in the rings (lost = 0)"
else
  bad "counters balance with no drop and nothing lost in the rings"
fi
check "the control socket is removed on a clean exit" test ! -e "$SOCK"
# The XDP stage outlives a clean stop (bypass) until `mtugate detach`.
$D "$BIN" detach --config "$CFG" >/dev/null 2>&1 || true
check "no XDP program left after exit and mtugate detach" no_program_left

# A killed run leaves a stale socket: the next run replaces it.
start_mtugate
stop_mtugate KILL
check "kill -9 leaves the control socket behind" test -S "$SOCK"
start_mtugate
answers() { grep -q 'removed a stale control socket' "$WORK/mtg.err" && "$BIN" stats --once --json --run-dir "$RUN_DIR" >/dev/null; }
check "the next run removes the stale socket and answers" answers
stop_mtugate TERM

e2e_summary "e2e-mgmt: "

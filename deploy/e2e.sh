#!/usr/bin/env bash
# End-to-end tests of mtugate in wire mode, judged by real Linux hosts.
#
# The lab (deploy/lab.sh) puts mtugate in namespace mtg-dut between a client
# and a server on one L2 segment; both hosts' links are at MTU 1500, and
# mtugate's outside port (out0) enforces MTU 1400, like a tunnel. Every check
# is made by the far side's kernel (its TCP stack, PMTU cache, IP reassembly)
# or by tshark on a capture, never by mtugate's own code.
#
# Usage: deploy/e2e.sh [path/to/mtugate]   (as root; builds it if not given)
# Prints one line per check and "N passed, M failed" at the end; exits 1 on
# any failure. Everything is bounded in time; the lab is torn down on exit,
# whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
  echo "e2e: needs root (network namespaces, XDP)" >&2
  exit 1
fi

BIN=${1:-}
if [[ -z "$BIN" ]]; then
  cargo build --release -p mtugate --locked >&2
  BIN=target/release/mtugate
fi
BIN=$(readlink -f "$BIN")
WORK=$(mktemp -d /tmp/mtg-e2e.XXXXXX)
export LAB_PREFIX=${LAB_PREFIX:-mtg}
C="ip netns exec $LAB_PREFIX-client"
S="ip netns exec $LAB_PREFIX-server"
D="ip netns exec $LAB_PREFIX-dut"
PASS=0
FAIL=0
MTG_PID=""
DEMO=${DEMO:-0}

cleanup() {
  set +e
  stop_mtugate KILL
  pkill -f "ip netns exec $LAB_PREFIX-" 2>/dev/null
  bash deploy/lab.sh down >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

ok() { PASS=$((PASS + 1)); echo "ok     - $*"; }
bad() { FAIL=$((FAIL + 1)); echo "FAILED - $*"; }
# In demo mode, show what the hosts saw (indented), else nothing.
show() { if [[ $DEMO == 1 ]]; then sed 's/^/         | /'; else cat >/dev/null; fi; }
check() { # check "name" cmd...   (pass if cmd succeeds)
  local name=$1; shift
  if "$@"; then ok "$name"; else bad "$name"; fi
}

# --- mtugate lifecycle -------------------------------------------------------

start_mtugate() { # start_mtugate CONFIG
  local cfg=$1
  : >"$WORK/mtg.err"
  $D "$BIN" run --config "$cfg" --final-stats "$WORK/final.json" >"$WORK/mtg.out" 2>"$WORK/mtg.err" &
  MTG_PID=$!
  disown "$MTG_PID" # no job-control notice when a test kills it
  for _ in $(seq 100); do
    grep -q "mtugate running" "$WORK/mtg.err" && return 0
    kill -0 "$MTG_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "mtugate did not start:" >&2
  cat "$WORK/mtg.err" >&2
  return 1
}

stop_mtugate() { # stop_mtugate [TERM|KILL]
  local sig=${1:-TERM}
  [[ -n "$MTG_PID" ]] || return 0
  # The pid is `ip netns exec`, which exec'd mtugate: same process.
  kill "-$sig" "$MTG_PID" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$MTG_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$MTG_PID" 2>/dev/null || true
  MTG_PID=""
}

# Packet captures on a host's eth0: started and confirmed listening (bounded)
# before any traffic, so a slow start under load cannot empty them.
CAPS=()
capture() { # capture NS-CMD FILE FILTER...
  local ns=$1 file=$2; shift 2
  # --immediate-mode: hand each packet over at once; otherwise a capture
  # stopped soon after the traffic can end with packets still in the ring.
  $ns timeout 30 tcpdump --immediate-mode -i eth0 -nn -U -w "$file" "$@" 2>"$file.log" &
  CAPS+=($!)
  for _ in $(seq 100); do
    grep -q "listening on" "$file.log" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "tcpdump did not start: $(cat "$file.log")" >&2
  return 1
}
capture_stop() {
  sleep 0.3 # let the last packets reach the capture
  kill -INT "${CAPS[@]}" 2>/dev/null || true
  wait "${CAPS[@]}" 2>/dev/null || true
  CAPS=()
}

config_with() { # config_with KEY-LINE-SED > file : derive a config from the lab's
  sed "$@" deploy/configs/lab.toml
}

forget_pmtu() {
  $C ip route flush cache
  $C ip -6 route flush cache
  $S ip route flush cache
  $S ip -6 route flush cache
}

# --- the checks ----------------------------------------------------------------

# tshark fields of SYNs in a capture: src, MSS, checksum status (1 = good).
syn_fields() {
  tshark -r "$1" -o tcp.check_checksum:TRUE -Y "tcp.flags.syn == 1" \
    -T fields -e tcp.flags.ack -e tcp.options.mss_val -e tcp.checksum.status 2>/dev/null
}

test_mss() { # test_mss 4|6 ADDR PORT EXPECTED
  local fam=$1 addr=$2 port=$3 want=$4
  forget_pmtu
  capture "$S" "$WORK/srv$fam.pcap" tcp port "$port"
  capture "$C" "$WORK/cli$fam.pcap" tcp port "$port"
  $S timeout 4 nc "-$fam" -l -p "$port" >/dev/null &
  sleep 0.3
  echo hello | $C timeout 3 nc "-$fam" -q 1 "$addr" "$port" || true
  capture_stop
  # Server side: the client's SYN (ack=0) arrives clamped, checksum good.
  local srv cli
  {
    echo "server's capture (tshark):"
    tshark -r "$WORK/srv$fam.pcap" -Y "tcp.flags.syn == 1" 2>/dev/null
    echo "client's capture (tshark):"
    tshark -r "$WORK/cli$fam.pcap" -Y "tcp.flags.syn == 1" 2>/dev/null
  } | show
  srv=$(syn_fields "$WORK/srv$fam.pcap" | awk '$1==0 {print $2, $3; exit}')
  cli=$(syn_fields "$WORK/cli$fam.pcap" | awk '$1==1 {print $2, $3; exit}')
  check "IPv$fam: server receives the SYN with MSS $want (got: ${srv:-none}; checksum status 1 = good)" \
    test "$srv" = "$want 1"
  check "IPv$fam: client receives the SYN-ACK with MSS $want (got: ${cli:-none})" \
    test "$cli" = "$want 1"
}

test_bulk() { # test_bulk 4|6 ADDR PORT
  local fam=$1 addr=$2 port=$3
  forget_pmtu
  head -c $((8 * 1024 * 1024)) /dev/urandom >"$WORK/bulk.bin"
  local want got
  want=$(sha256sum <"$WORK/bulk.bin" | cut -d' ' -f1)
  $S timeout 20 nc "-$fam" -l -p "$port" >"$WORK/bulk.rcv" &
  local srv=$!
  sleep 0.3
  local t0=$SECONDS
  $C timeout 15 nc "-$fam" -q 1 "$addr" "$port" <"$WORK/bulk.bin" || true
  wait $srv 2>/dev/null || true
  got=$(sha256sum <"$WORK/bulk.rcv" | cut -d' ' -f1)
  check "IPv$fam: 8 MiB TCP transfer arrives intact in $((SECONDS - t0)) s (sha256 match)" \
    test "$want" = "$got"
}

test_pmtu_v4() {
  forget_pmtu
  local out
  out=$($C ping -M do -s 1472 -c 2 -i 0.3 -W 1 192.0.2.2 2>&1 || true)
  { echo "client: ping -M do -s 1472 192.0.2.2"; head -3 <<<"$out"; echo "client: ip route get 192.0.2.2"; $C ip route get 192.0.2.2; } | show
  check "IPv4: ping -M do -s 1472 gets 'Frag needed ... mtu = 1400'" \
    grep -q "Frag needed and DF set (mtu = 1400)" <<<"$out"
  check "IPv4: client route cache shows mtu 1400" \
    grep -q "mtu 1400" <<<"$($C ip route get 192.0.2.2)"
}

test_pmtu_v6() {
  forget_pmtu
  local out
  out=$($C ping -6 -M do -s 1452 -c 2 -i 0.3 -W 1 2001:db8:1::2 2>&1 || true)
  { echo "client: ping -6 -M do -s 1452 2001:db8:1::2"; head -3 <<<"$out"; echo "client: ip -6 route get 2001:db8:1::2"; $C ip -6 route get 2001:db8:1::2; } | show
  check "IPv6: ping -M do -s 1452 gets 'Packet too big: mtu=1400'" \
    grep -q "Packet too big: mtu=1400" <<<"$out"
  check "IPv6: client route cache shows mtu 1400" \
    grep -q "mtu 1400" <<<"$($C ip -6 route get 2001:db8:1::2)"
}

test_fragmentation() {
  forget_pmtu
  # DF clear; the client fragments at its 1500 link, mtugate re-fragments
  # the 1500-byte first fragment for the 1400 port; the server reassembles.
  capture "$S" "$WORK/frag.pcap" icmp
  local out
  out=$($C ping -M dont -s 3000 -c 3 -i 0.3 -W 1 192.0.2.2 2>&1 || true)
  { echo "client: ping -M dont -s 3000 192.0.2.2"; tail -2 <<<"$out"; } | show
  capture_stop
  check "IPv4: ping -s 3000 with DF clear gets its replies (server reassembled our fragments)" \
    grep -q " 0% packet loss" <<<"$out"
  local biggest
  biggest=$(tshark -r "$WORK/frag.pcap" -Y "ip.src == 192.0.2.1" -T fields -e ip.len 2>/dev/null | sort -n | tail -1)
  check "IPv4: no fragment reaching the server exceeds 1400 bytes (largest: ${biggest:-none})" \
    test -n "$biggest" -a "${biggest:-9999}" -le 1400
  local badsum frags
  badsum=$(tshark -r "$WORK/frag.pcap" -o ip.check_checksum:TRUE -Y "ip.checksum.status == 0" 2>/dev/null | wc -l)
  frags=$(tshark -r "$WORK/frag.pcap" -Y "ip.src == 192.0.2.1 && (ip.flags.mf == 1 || ip.frag_offset > 0)" 2>/dev/null | wc -l)
  check "IPv4: every fragment's header checksum verifies (tshark: $frags fragments, $badsum bad)" \
    test "$badsum" -eq 0 -a "$frags" -gt 0
}

# A UDP datagram of 1472 bytes with DF set (IP_PMTUDISC_PROBE: DF, ignore
# the PMTU cache). Prints how many the server received.
udp_df_probe() {
  rm -f "$WORK/udp.count" "$WORK/udp.ready"
  # The receiver stops 2 s after the last datagram (or 2 s after it is ready
  # if none comes); the outer timeout is only a safety net.
  $S timeout 20 python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("192.0.2.2", 7000)); s.settimeout(2)
open(sys.argv[1], "w").close()
n = 0
try:
    while True:
        d, _ = s.recvfrom(4096); n += len(d) == 1472
except OSError:
    pass
print(n)' "$WORK/udp.ready" >"$WORK/udp.count" &
  local srv=$!
  for _ in $(seq 100); do [[ -e "$WORK/udp.ready" ]] && break; sleep 0.05; done
  $C python3 -c '
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, 10, 3)  # IP_MTU_DISCOVER = IP_PMTUDISC_PROBE
for _ in range(3):
    try: s.sendto(b"x" * 1472, ("192.0.2.2", 7000))
    except OSError: pass
    time.sleep(0.1)'
  wait $srv 2>/dev/null || true
  cat "$WORK/udp.count"
}

test_neighbours() {
  $C ip neigh flush dev eth0
  $C ping -c 1 -W 1 192.0.2.2 >/dev/null 2>&1 || true
  $C ping -6 -c 1 -W 1 2001:db8:1::2 >/dev/null 2>&1 || true
  check "ARP resolves the server through mtugate" \
    grep -qE "192.0.2.2 .*lladdr" <<<"$($C ip neigh show dev eth0)"
  check "ND resolves the server through mtugate" \
    grep -qE "2001:db8:1::2 .*lladdr" <<<"$($C ip -6 neigh show dev eth0)"
}

accounting() { # after stop_mtugate: final.json balanced and consistent
  python3 - "$WORK/final.json" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
ports = j["ports"]
ok = True
tx_pipeline = 0
for name, c in ports.items():
    drops = sum(c["drops"].values())
    lhs = c["rx_packets"]
    rhs = c["forwarded"] + c["fragmented"] + drops
    print(f"  {name}: received {lhs} = forwarded {c['forwarded']} + fragmented {c['fragmented']} + dropped {drops}"
          f"; fragments created {c['fragments_created']}, icmp sent {sum(c['icmp_sent'].values())}")
    ok &= lhs == rhs and c["balanced"] and lhs > 0
    tx_pipeline += c["transmitted"]
rx_io = sum(io["rx_frames"] for q in j["queues"] for io in q["io"])
tx_io = sum(io["tx_frames"] + io["tx_ring_full_drops"] for q in j["queues"] for io in q["io"])
rx_pipeline = sum(c["rx_packets"] for c in ports.values())
print(f"  AF_XDP: frames received {rx_io} (pipeline {rx_pipeline}), frames to TX {tx_io} (pipeline {tx_pipeline})")
ok &= rx_io == rx_pipeline and tx_io == tx_pipeline
ok &= all(q["conservation_error"] is None for q in j["queues"])
sys.exit(0 if ok else 1)
EOF
}

no_program_left() {
  ! $D ip link show in0 | grep -q "prog/xdp" && ! $D ip link show out0 | grep -q "prog/xdp"
}

# Refusals: each must exit non-zero with one line naming the problem, and
# leave no XDP program behind.
refuses() { # refuses "name" "expected text" mtugate-args...
  local name=$1 want=$2; shift 2
  local out rc=0
  out=$($D "$BIN" "$@" 2>&1 >/dev/null) || rc=$?
  echo "$out" | show
  if [[ $rc -ne 0 && $(grep -c . <<<"$out") -ge 1 ]] && grep -q -- "$want" <<<"$out" && no_program_left; then
    ok "$name (exit $rc: $(tail -1 <<<"$out" | cut -c1-110))"
  else
    bad "$name (exit $rc: $out)"
  fi
}

test_refusals() {
  config_with 's/iface = "out0"/iface = "nosuch0"/' >"$WORK/noiface.toml"
  refuses "check-config: unknown interface is named" "interface nosuch0 does not exist" check-config "$WORK/noiface.toml"
  refuses "run: unknown interface, nothing attached" "interface nosuch0 does not exist" run --config "$WORK/noiface.toml"
  config_with 's/cores = \[1\]/cores = [99]/' >"$WORK/nocore.toml"
  refuses "check-config: a core that does not exist is named" "workers.cores: core 99" check-config "$WORK/nocore.toml"
  # A two-queue veth pair inside the DUT namespace, with only queue 0 bound.
  $D ip link add mtgq0 numrxqueues 2 numtxqueues 2 type veth peer name mtgq1 numrxqueues 2 numtxqueues 2
  config_with 's/iface = "in0"/iface = "mtgq0"/; s/iface = "out0"/iface = "mtgq1"/' >"$WORK/queues.toml"
  refuses "run: an unbound RX queue is refused and named" "RX queues 1 that would not be bound" run --config "$WORK/queues.toml"
  $D ip link del mtgq0
  refuses "run --force-zerocopy on veth fails cleanly" "ZeroCopy" run --config deploy/configs/lab.toml --force-zerocopy
}

# --- run -----------------------------------------------------------------------

echo "e2e: lab up (wire mode), mtugate $BIN"
bash deploy/lab.sh up wire >/dev/null 2>&1

test_refusals
start_mtugate deploy/configs/lab.toml
test_neighbours
test_mss 4 192.0.2.2 5001 1360
test_mss 6 2001:db8:1::2 5002 1340
test_bulk 4 192.0.2.2 5003
test_bulk 6 2001:db8:1::2 5004
test_pmtu_v4
test_pmtu_v6
test_fragmentation
forget_pmtu
n=$(udp_df_probe)
check "IPv4 UDP 1500 bytes with DF, policy respect: does not cross (server got $n)" test "$n" -eq 0
stop_mtugate TERM
show <"$WORK/mtg.out"
check "mtugate exits cleanly on SIGTERM and prints final counters" grep -q "accounting: balanced" "$WORK/mtg.out"
if accounting; then ok "packet accounting balances (received = forwarded + fragmented + dropped; AF_XDP rings agree)"; else bad "packet accounting balances"; fi
check "no XDP program left on in0/out0 after exit" no_program_left

config_with 's/policy = "respect"/policy = "clear-udp"/' >"$WORK/clear-udp.toml"
start_mtugate "$WORK/clear-udp.toml"
forget_pmtu
n=$(udp_df_probe)
check "IPv4 UDP 1500 bytes with DF, policy clear-udp: crosses as fragments (server got $n of 3)" test "$n" -eq 3

# Restart: kill -9 under traffic, start again, traffic flows.
$C ping -f -c 200000 -w 3 192.0.2.2 >/dev/null 2>&1 &
flood=$!
sleep 1
stop_mtugate KILL
wait $flood 2>/dev/null || true
check "after kill -9 the XDP program is still attached (what the next run must handle)" \
  $D sh -c "ip link show in0 | grep -q prog/xdp"
start_mtugate deploy/configs/lab.toml
check "restart after kill -9: the leftover program is detected and replaced" \
  grep -q "replaced an XDP program" "$WORK/mtg.err"
pings() { $C ping -c 3 -i 0.2 -W 1 192.0.2.2 >/dev/null 2>&1; }
check "restart after kill -9: traffic flows again" pings
test_mss 4 192.0.2.2 5005 1360
stop_mtugate TERM
check "no XDP program left after the second run" no_program_left

echo "e2e: $PASS passed, $FAIL failed"
[[ $FAIL -eq 0 ]]

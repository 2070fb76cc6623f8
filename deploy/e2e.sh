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
# The lab tests' shared helpers (a path from the repository root, where the
# line above put us).
# shellcheck source-path=SCRIPTDIR/..
source deploy/lib/e2e.sh

e2e_require_root e2e
e2e_bin "${1:-}"
e2e_workdir /tmp/mtg-e2e.XXXXXX
# [xsk] steer for the whole suite: "exceptions" (the XDP program forwards
# what needs no work) or "all" (every frame through AF_XDP).
STEER=${STEER:-exceptions}
[[ $STEER == exceptions || $STEER == all ]] || { echo "e2e: STEER must be exceptions or all" >&2; exit 1; }
LAB="$WORK/lab.toml"
export LAB_PREFIX=${LAB_PREFIX:-mtg}
# Its own run directory, so that labs with other prefixes can run beside it.
sed -e "s/^steer = .*/steer = \"$STEER\"/" -e "s|^run_dir = .*|run_dir = \"/run/mtugate-$LAB_PREFIX\"|" \
  deploy/configs/lab.toml >"$LAB"
e2e_hosts
DEMO=${DEMO:-0}

cleanup() {
  set +e
  stop_mtugate KILL
  pkill -f "ip netns exec $LAB_PREFIX-" 2>/dev/null
  bash deploy/lab.sh down >/dev/null 2>&1
  rm -rf "$WORK"
}
# A signal ends the run, through the EXIT trap (cleanup runs once), instead
# of letting the script carry on without its lab.
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# In demo mode, show what the hosts saw (indented), else nothing.
show() { if [[ $DEMO == 1 ]]; then sed 's/^/         | /'; else cat >/dev/null; fi; }
# mtugate's lifecycle (start_mtugate, stop_mtugate) and the captures
# (capture, capture_stop) are deploy/lib/e2e.sh's.

config_with() { # config_with KEY-LINE-SED > file : derive a config from the lab's
  sed "$@" "$LAB"
}

# --- the checks ----------------------------------------------------------------

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
  srv=$(syn_mss "$WORK/srv$fam.pcap" 0)
  cli=$(syn_mss "$WORK/cli$fam.pcap" 1)
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
  python3 - "$WORK/final.json" "$STEER" <<'EOF'
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
# The XDP stage: every frame it saw has one outcome, and what it steered to
# the sockets reached the workers or is counted as dropped by the kernel.
steer = sys.argv[2]
for i, x in enumerate(j["xdp"]):
    r = x["run"]
    outcomes = (r["fast"] + r["steered"] + r["bypassed"] + r["blocked"] + r["redirect_errors"] + r["passed"]
                + r["syn_source_limited"] + r["syn_over_dropped"])
    rx = sum(q["io"][i]["rx_frames"] for q in j["queues"])
    lost = sum((q["io"][i]["kernel_rx_dropped"] or 0) + (q["io"][i]["kernel_rx_ring_full"] or 0) for q in j["queues"])
    print(f"  XDP {x['iface']}: seen {r['seen']} = fast {r['fast']} + steered {r['steered']} + other {outcomes - r['fast'] - r['steered']};"
          f" steered {r['steered']} = workers {rx} + kernel drops {lost}")
    ok &= r["seen"] == outcomes and r["steered"] == rx + lost and r["seen"] > 0
    ok &= (r["fast"] == 0) if steer == "all" else (r["fast"] > 0)
ok &= len(j["xdp"]) == 2
sys.exit(0 if ok else 1)
EOF
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
  refuses "run --force-zerocopy on veth fails cleanly" "ZeroCopy" run --config "$LAB" --force-zerocopy
}

pings() { $C ping -c 3 -i 0.2 -W 1 192.0.2.2 >/dev/null 2>&1; }

# Frames that need no work cross byte for byte: UDP datagrams of several
# sizes below the tunnel MTU, captured on both hosts and compared whole
# (Ethernet header included: a bump in the wire changes nothing).
test_byte_identical() {
  capture "$C" "$WORK/bi-cli.pcap" udp port 5200
  capture "$S" "$WORK/bi-srv.pcap" udp port 5200
  $C python3 - <<'EOF'
import os, socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for n in (1, 64, 300, 999, 1372):
    s.sendto(os.urandom(n), ("192.0.2.2", 5200))
EOF
  capture_stop
  if python3 - "$WORK/bi-cli.pcap" "$WORK/bi-srv.pcap" <<'EOF'
import struct, sys
def frames(path):
    b = open(path, "rb").read()
    off, out = 24, []
    while off + 16 <= len(b):
        incl = struct.unpack_from("<I", b, off + 8)[0]
        out.append(b[off + 16: off + 16 + incl])
        off += 16 + incl
    return out
a, b = frames(sys.argv[1]), frames(sys.argv[2])
sys.exit(0 if len(a) == 5 and a == b else 1)
EOF
  then ok "frames that need no work arrive byte-identical (5 UDP datagrams, client vs server capture)"
  else bad "frames that need no work arrive byte-identical"; fi
}

# A second mtugate on the same ports, with its own run_dir and listener: it
# must refuse before touching anything, naming the owner, and the first
# keeps forwarding.
test_second_instance() {
  sed -e "s|^run_dir = .*|run_dir = \"$WORK/second\"|" -e 's|^listen = .*|listen = "127.0.0.1:9398"|' \
    "$WORK/clear-udp.toml" >"$WORK/second.toml"
  local before after out rc=0
  if pings; then before=ok; else before=lost; fi
  out=$($D "$BIN" run --config "$WORK/second.toml" 2>&1 >/dev/null) || rc=$?
  echo "$out" | show
  if pings; then after=ok; else after=lost; fi
  if [[ $rc -ne 0 ]] && grep -q "owned by another running mtugate (pid $MTG_PID" <<<"$out" &&
    [[ $before == ok && $after == ok ]] && $D sh -c "ip link show in0 | grep -q prog/xdp"; then
    ok "a second instance (other run_dir) is refused naming the owner, and the first keeps forwarding (ping before: $before, after: $after)"
  else
    bad "a second instance is refused and the first keeps forwarding (exit $rc, ping $before/$after: $out)"
  fi
}

# kill -9 under ping, then a new connection while no worker runs. bypass:
# pings keep arriving and the connection opens (unclamped); block: nothing
# crosses.
killed_run() { # killed_run bypass|block
  local mode=$1 n syn=fail
  $C sh -c 'ping -c 40 -i 0.05 -W 1 192.0.2.2 >"$0" 2>&1' "$WORK/ping-$mode.txt" &
  local p=$!
  sleep 0.5
  stop_mtugate KILL
  $S sh -c 'timeout 3 nc -l 5400 >/dev/null 2>&1 &'
  sleep 0.2
  if $C timeout 2 nc -z -w 1 192.0.2.2 5400 >/dev/null 2>&1; then syn=ok; fi
  wait $p 2>/dev/null || true
  check "after kill -9 the XDP program is still attached ($mode)" $D sh -c "ip link show in0 | grep -q prog/xdp"
  if [[ $mode == bypass ]]; then
    n=$(grep -oE '[0-9]+ received' "$WORK/ping-$mode.txt" | grep -oE '^[0-9]+' || echo 0)
    check "kill -9 with on_failure = bypass: ping goes on ($n of 40 received) and a new connection opens ($syn)" \
      test "$n" -ge 35 -a "$syn" = ok
  else
    n=0
    if $C ping -c 3 -i 0.2 -W 1 192.0.2.2 >/dev/null 2>&1; then n=3; fi
    check "kill -9 with on_failure = block: nothing crosses (ping after the kill: $n of 3, connection: $syn)" \
      test "$n" -eq 0 -a "$syn" = fail
  fi
}

inherited_bypassed() { # final.json of the run after a kill -9 in bypass mode
  python3 - "$WORK/final.json" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
b = sum(x["inherited"]["bypassed"] for x in j["xdp"])
print(f"  bypassed while no mtugate ran: {b}")
sys.exit(0 if b > 0 else 1)
EOF
}

# A live reload that lowers the tunnel MTU reaches the XDP stage too: a
# 1378-byte datagram (DF clear) crosses whole at MTU 1400 (fast path), and
# is fragmented by a worker once the outside MTU is 1300; no restart.
test_reload_mtu() {
  local before after
  send_1378() {
    capture "$S" "$WORK/reload-$1.pcap" udp or "(ip[6:2] & 0x1fff != 0)"
    $C python3 - <<'EOF'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, 10, 0)  # IP_MTU_DISCOVER = IP_PMTUDISC_DONT: DF clear
s.sendto(b"m" * 1350, ("192.0.2.2", 5300))
EOF
    capture_stop
    tshark -r "$WORK/reload-$1.pcap" -Y "ip.src == 192.0.2.1 && (ip.flags.mf == 1 || ip.frag_offset > 0)" 2>/dev/null | wc -l
  }
  forget_pmtu
  before=$(send_1378 before)
  sed -i '/iface = "out0"/{n;s/^mtu = 1400/mtu = 1300/}' "$LAB"
  local out
  out=$($D "$BIN" reload --config "$LAB" 2>&1) || true
  echo "$out" | show
  forget_pmtu
  after=$(send_1378 after)
  sed -i '/iface = "out0"/{n;s/^mtu = 1300/mtu = 1400/}' "$LAB"
  $D "$BIN" reload --config "$LAB" >/dev/null 2>&1 || true
  check "reload of the outside MTU 1400 -> 1300 reaches the XDP stage: a 1378-byte datagram crosses whole before ($before fragments), fragmented after ($after fragments)" \
    test "$before" -eq 0 -a "$after" -eq 2
}

# --- run -----------------------------------------------------------------------

echo "e2e: lab up (wire mode), mtugate $BIN, steer = $STEER"
bash deploy/lab.sh up wire >/dev/null 2>&1

test_refusals
start_mtugate "$LAB"
test_neighbours
test_byte_identical
test_mss 4 192.0.2.2 5001 1360
test_mss 6 2001:db8:1::2 5002 1340
# An IPv6 SYN behind a Destination Options header (scapy, to the server's
# MAC): the XDP stage steers it to a worker, which clamps it.
ext_syn 2001:db8:1::1 2001:db8:1::2 "$($S cat /sys/class/net/eth0/address)" 5007
check "IPv6 SYN behind a Destination Options header: clamped to 1340 at the server (got: ${SYN:-none}), header kept ($EXT of 2 SYNs carry it)" \
  test "$SYN" = "1340 1" -a "$EXT" -eq 2
test_bulk 4 192.0.2.2 5003
test_bulk 6 2001:db8:1::2 5004
test_pmtu_v4
test_pmtu_v6
test_fragmentation
test_reload_mtu
forget_pmtu
n=$(udp_df_probe)
check "IPv4 UDP 1500 bytes with DF, policy respect: does not cross (server got $n)" test "$n" -eq 0
stop_mtugate TERM
show <"$WORK/mtg.out"
check "mtugate exits cleanly on SIGTERM and prints final counters" grep -q "accounting: balanced" "$WORK/mtg.out"
if accounting; then ok "packet accounting balances, both stages (received = forwarded + fragmented + dropped; AF_XDP rings agree; XDP seen = fast + steered + ...; steered = received by workers + kernel drops)"; else bad "packet accounting balances"; fi
check "after a clean stop the XDP stage stays (bypass): traffic still flows" pings
check "after a clean stop the XDP program is still attached (until mtugate detach)" \
  $D sh -c "ip link show in0 | grep -q prog/xdp"

config_with 's/policy = "respect"/policy = "clear-udp"/' >"$WORK/clear-udp.toml"
start_mtugate "$WORK/clear-udp.toml"
check "restart after a clean stop: the pinned link is taken over" \
  grep -q "took over the pinned XDP link" "$WORK/mtg.err"
forget_pmtu
n=$(udp_df_probe)
check "IPv4 UDP 1500 bytes with DF, policy clear-udp: crosses as fragments (server got $n of 3)" test "$n" -eq 3
test_second_instance

# kill -9 with on_failure = bypass: the wire stays up.
killed_run bypass
start_mtugate "$LAB"
check "restart after kill -9: the pinned link is taken over, no window without a program" \
  grep -q "took over the pinned XDP link" "$WORK/mtg.err"
check "restart after kill -9: traffic flows" pings
test_mss 4 192.0.2.2 5005 1360
stop_mtugate TERM
check "the final report counts what was bypassed while no mtugate ran" inherited_bypassed

# kill -9 with on_failure = block: nothing crosses unprocessed.
config_with 's/^on_failure = .*/on_failure = "block"/' >"$WORK/block.toml"
start_mtugate "$WORK/block.toml"
killed_run block
start_mtugate "$WORK/block.toml"
check "restart after kill -9 (block): traffic flows again" pings
test_mss 4 192.0.2.2 5006 1360
stop_mtugate TERM

out=$($D "$BIN" detach --config "$LAB" 2>&1) || true
echo "$out" | show
check "mtugate detach removes the XDP stage: no program left on in0/out0" no_program_left
check "mtugate detach says what it removed" grep -q "in0: XDP stage detached" <<<"$out"

e2e_summary "e2e: "

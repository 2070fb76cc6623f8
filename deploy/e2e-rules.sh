#!/usr/bin/env bash
# End-to-end tests of rules and learned path MTUs (issue 12), judged by real
# Linux hosts and tshark.
#
#   mtgr-client           mtgr-dut              mtgr-server                  mtgr-far
#   eth0 192.0.2.1 <-> in0 [mtugate] out0 <-> eth0 192.0.2.2, .3      eth1 ---- eth0
#                                              (a router: forwards     MTU 1300   198.51.100.2
#                                               198.51.100.0/24)       198.51.100.1
#
# 1. Rules: [mss] is off; one rule clamps only what goes to the server's
#    first address (192.0.2.2 / 2001:db8:1::2). The server's capture shows the
#    client's SYN with MSS 1360 toward .2 and 1460 toward .3, the client's
#    capture the SYN-ACKs likewise (IPv6: 1340 and 1440); /metrics counts by
#    rule name and passes promtool; a live reload moves the rule to .3.
#    random-id: DF datagrams the client sends with ID 0 are fragmented by
#    clear-udp for the 1400-byte outside port with fresh IDs.
# 2. A real PMTU black hole: the server routes to a far host over a 1300-byte
#    link and answers 1500-byte packets with a real ICMP Fragmentation Needed;
#    the client drops every ICMP (iptables). Without [pmtu] learn, the far
#    host's SYN gets MSS 1460 and an upload stalls; with learn (a live
#    reload), the ICMP of a stalled upload is learned, the next SYN toward the
#    far host carries MSS 1260 and the upload completes (sha256 match).
#    The same over IPv6 with the router's real Packet Too Big (MSS 1240).
# 3. A forged Fragmentation Needed from scapy (a quote of no connection that
#    crossed) changes nothing and is counted (no_flow).
#
# Usage: deploy/e2e-rules.sh [path/to/mtugate]   (as root)
# Its own lab prefix (mtgr); everything it creates is removed on exit, also
# on failure. Every wait and every transfer is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
# The lab tests' shared helpers (a path from the repository root, where the
# line above put us).
# shellcheck source-path=SCRIPTDIR/..
source deploy/lib/e2e.sh

e2e_require_root e2e-rules
e2e_bin "${1:-}"
export LAB_PREFIX=mtgr
e2e_workdir /tmp/mtgr-e2e.XXXXXX
# No final report: these tests read /metrics and `mtugate stats`.
MTG_FINAL_STATS=""
NS_FAR=$LAB_PREFIX-far
e2e_hosts
F="ip netns exec $NS_FAR"
# scapy from Debian's python3-scapy (deploy/deps.sh), whatever python3 PATH finds.
PY=/usr/bin/python3
T0=$SECONDS

cleanup() {
  set +e
  stop_mtugate KILL
  pkill -f "ip netns exec $LAB_PREFIX-" 2>/dev/null
  if ip netns list 2>/dev/null | grep -qw "$NS_FAR"; then
    ip netns pids "$NS_FAR" 2>/dev/null | xargs -r kill 2>/dev/null
    ip netns del "$NS_FAR"
  fi
  bash deploy/lab.sh down >/dev/null 2>&1
  rm -rf "$WORK"
}
# A signal ends the run, through the EXIT trap (cleanup runs once), instead
# of letting the script carry on without its lab.
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the lab -----------------------------------------------------------------

OUT_MTU=1500 bash deploy/lab.sh up wire >/dev/null
# A second address on the server, for a prefix no rule names.
$S ip addr add 192.0.2.3/24 dev eth0
$S ip addr add 2001:db8:1::3/64 dev eth0 nodad
# The far host, behind the server acting as a router over a 1300-byte link.
ip netns add "$NS_FAR"
$F ip link set lo up
ip link add eth1 netns "$LAB_PREFIX-server" mtu 1300 type veth peer name eth0 netns "$NS_FAR" mtu 1500
$S ethtool -K eth1 tx off >/dev/null
$F ethtool -K eth0 tx off >/dev/null
$S ip addr add 198.51.100.1/24 dev eth1
$F ip addr add 198.51.100.2/24 dev eth0
$S ip link set eth1 up
$F ip link set eth0 up
$F ip route add default via 198.51.100.1
$S sysctl -qw net.ipv4.ip_forward=1
$C ip route add 198.51.100.0/24 via 192.0.2.2
# The same for IPv6: 2001:db8:2::/64 behind the server.
$S ip addr add 2001:db8:2::1/64 dev eth1 nodad
$F ip addr add 2001:db8:2::2/64 dev eth0 nodad
$F ip -6 route add default via 2001:db8:2::1
$S sysctl -qw net.ipv6.conf.all.forwarding=1
$C ip -6 route add 2001:db8:2::/64 via 2001:db8:1::2
# The black hole: the client's firewall drops every ICMP (and ICMPv6 Packet
# Too Big: the rest of ICMPv6 is neighbour discovery, which it needs).
$C iptables -A INPUT -p icmp -j DROP
$C ip6tables -A INPUT -p icmpv6 --icmpv6-type packet-too-big -j DROP

cfg() { # cfg STEER LEARN OUTSIDE-MTU > file
  cat <<EOF
mode = "wire"
[[port]]
name = "inside"
iface = "in0"
mtu = 1500
[[port]]
name = "outside"
iface = "out0"
mtu = $3
[mss]
ipv4 = "off"    # only what a rule (or a learned path MTU) says
ipv6 = "off"
[df]
policy = "clear-udp"
random_id = true
[[rule]]
name = "first-server"
from = "inside"
dst = ["192.0.2.2/32", "2001:db8:1::2/128"]
mss = { ipv4 = 1360, ipv6 = 1340 }
[pmtu]
learn = $2
[workers]
queues = [0]
cores = [1]
[xsk]
steer = "$1"
bpffs = "/run/mtugate/bpffs"
[mgmt]
listen = "127.0.0.1:9090"
interval_ms = 200
run_dir = "/run/mtugate-$LAB_PREFIX"
EOF
}

# mtugate's lifecycle, the captures (on eth0) and syn_mss are
# deploy/lib/e2e.sh's.

metric() { # metric NAME-WITH-LABELS: its value in /metrics (0 if absent)
  sleep 0.5 # two statistics intervals
  $D curl -sS -m 5 http://127.0.0.1:9090/metrics | awk -v m="$1" '$1 == m {print $2; found = 1} END {if (!found) print 0}'
}
metric_sum() { # metric_sum NAME: the sum of its series (every port and queue)
  sleep 0.5
  $D curl -sS -m 5 http://127.0.0.1:9090/metrics | awk -v m="$1" 'index($1, m "{") == 1 || $1 == m {s += $2} END {print s + 0}'
}

# --- 1. rules: one prefix clamped, the other not, both directions ----------

test_rule() { # test_rule 4|6 ADDR PORT WANT
  local fam=$1 addr=$2 port=$3 want=$4
  capture "$S" "$WORK/s$port.pcap" tcp port "$port"
  capture "$C" "$WORK/c$port.pcap" tcp port "$port"
  $S timeout 4 nc "-$fam" -l -p "$port" >/dev/null &
  sleep 0.3
  echo hello | $C timeout 3 nc "-$fam" -q 1 "$addr" "$port" || true
  capture_stop
  local syn synack
  syn=$(syn_mss "$WORK/s$port.pcap" 0)
  synack=$(syn_mss "$WORK/c$port.pcap" 1)
  check "IPv$fam to $addr: the server receives the SYN with MSS $want (tshark: ${syn:-none}; checksum status 1 = good)" \
    test "$syn" = "$want 1"
  check "IPv$fam from $addr: the client receives the SYN-ACK with MSS $want (tshark: ${synack:-none})" \
    test "$synack" = "$want 1"
}

cfg exceptions false 1400 >"$WORK/rules.toml"
start_mtugate "$WORK/rules.toml"
test_rule 4 192.0.2.2 7101 1360
test_rule 4 192.0.2.3 7102 1460
test_rule 6 2001:db8:1::2 7103 1340
test_rule 6 2001:db8:1::3 7104 1440
m=$(metric 'mtugate_rule_clamped_total{rule="first-server"}')
check "/metrics counts the rule's clamps by name: mtugate_rule_clamped_total{rule=\"first-server\"} = $m (2 SYNs + 2 SYN-ACKs)" \
  test "$m" = 4
if command -v promtool >/dev/null; then
  $D curl -sS -m 5 http://127.0.0.1:9090/metrics >"$WORK/metrics.txt"
  check "/metrics with rules passes promtool check metrics" \
    sh -c 'promtool check metrics <"$1" >/dev/null 2>&1' sh "$WORK/metrics.txt"
fi
# random-id: the client sends DF datagrams of 1500 bytes from an unconnected
# UDP socket, which Linux gives IPv4 ID 0 (it trusts DF: nobody fragments).
# clear-udp fragments them for the 1400-byte outside port; each must get a
# fresh ID of its own, and the server must reassemble all three.
capture "$S" "$WORK/ids.pcap" udp port 7000 or "ip[6:2] & 0x1fff != 0"
capture "$C" "$WORK/ids-c.pcap" udp port 7000
$S timeout 10 python3 -c '
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
srv=$!
for _ in $(seq 100); do [[ -e "$WORK/udp.ready" ]] && break; sleep 0.05; done
$C python3 -c '
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, 10, 3)  # IP_MTU_DISCOVER = IP_PMTUDISC_PROBE: DF
for _ in range(3):
    s.sendto(b"x" * 1472, ("192.0.2.2", 7000)); time.sleep(0.1)'
wait $srv 2>/dev/null || true
capture_stop
ids=$(tshark -r "$WORK/ids.pcap" -Y "ip.src == 192.0.2.1" -T fields -e ip.id 2>/dev/null | sort -u | tr '\n' ' ')
frags=$(tshark -r "$WORK/ids.pcap" -Y "ip.src == 192.0.2.1" 2>/dev/null | wc -l)
sent=$(tshark -r "$WORK/ids-c.pcap" -T fields -e ip.id -e ip.flags.df 2>/dev/null | sort | uniq -c | tr -s ' \t\n' ' ')
check "random-id: the server reassembles all 3 DF datagrams fragmented by clear-udp ($(cat "$WORK/udp.count") of 3, $frags fragments)" \
  test "$(cat "$WORK/udp.count")" = 3 -a "$frags" -eq 6
check "random-id: the client sent 3 datagrams with DF and ID 0 (client's tshark, count id df: $sent)" \
  test "$sent" = " 3 0x0000 1 "
check "random-id: the fragments carry 3 fresh IDs, one per datagram (server's tshark: $ids)" \
  sh -c 'set -- $1; test $# -eq 3 && ! echo "$*" | grep -qw 0x0000' sh "$ids"
m=$(metric_sum mtugate_df_random_id_total)
check "/metrics: mtugate_df_random_id_total = $m" test "$m" = 3
# Rules reload live: the rule now names the second address instead.
sed -i 's|^dst = .*|dst = ["192.0.2.3/32", "2001:db8:1::3/128"]|' "$WORK/rules.toml"
out=$("$BIN" reload --config "$WORK/rules.toml" 2>&1) && rc=0 || rc=$?
check "mtugate reload moves the rule to 192.0.2.3 (exit $rc: $out)" test "$rc" = 0
test_rule 4 192.0.2.3 7105 1360
test_rule 4 192.0.2.2 7106 1460
stop_mtugate

# --- 2. a real PMTU black hole ----------------------------------------------

# An upload of 2 MiB from the client to the far host. Prints the bytes the
# far host received and leaves a capture of the far host's side.
upload() { # upload PORT SECONDS [4|6]
  local port=$1 secs=$2 fam=${3:-4} addr=198.51.100.2
  [[ $fam == 4 ]] || addr=2001:db8:2::2
  head -c $((2 * 1024 * 1024)) /dev/urandom >"$WORK/up.bin"
  rm -f "$WORK/up.rcv"
  # (tcpdump's tcp[] does not reach into IPv6: the SYNs are picked by tshark.)
  capture "$F" "$WORK/far$port.pcap" "ip$([[ $fam == 4 ]] || echo 6)" and tcp port "$port" and less 200
  capture "$C" "$WORK/cli$port.pcap" "ip$([[ $fam == 4 ]] || echo 6)" and tcp port "$port" and less 200
  $F timeout $((secs + 2)) nc "-$fam" -l -p "$port" >"$WORK/up.rcv" &
  local srv=$!
  sleep 0.3
  $C timeout "$secs" nc "-$fam" -q 1 "$addr" "$port" <"$WORK/up.bin" >/dev/null 2>&1 || true
  wait $srv 2>/dev/null || true
  capture_stop
  stat -c %s "$WORK/up.rcv" 2>/dev/null || echo 0
}
intact() { test "$(sha256sum <"$WORK/up.bin" | cut -d' ' -f1)" = "$(sha256sum <"$WORK/up.rcv" | cut -d' ' -f1)"; }

$C ip route flush cache
cfg exceptions false 1500 >"$WORK/pmtu.toml"
start_mtugate "$WORK/pmtu.toml"
got=$(upload 7201 5)
syn=$(syn_mss "$WORK/far7201.pcap" 0)
check "without [pmtu] learn: the far host's SYN carries MSS 1460 (${syn:-none}) and the upload stalls in the black hole ($got of 2097152 bytes in 5 s)" \
  test "$syn" = "1460 1" -a "$got" -lt 2097152
got=$(upload 7202 5)
check "without learn the next connection stalls too ($got of 2097152 bytes)" test "$got" -lt 2097152

sed -i 's/^learn = false/learn = true/' "$WORK/pmtu.toml"
out=$("$BIN" reload --config "$WORK/pmtu.toml" 2>&1) && rc=0 || rc=$?
check "mtugate reload turns learning on live (exit $rc: $out)" test "$rc" = 0
$C ip route flush cache
got=$(upload 7203 4)
learned=$(metric mtugate_pmtu_learned_total)
check "with learn: the router's real Fragmentation Needed (mtu 1300) crossing toward the client is learned (mtugate_pmtu_learned_total = $learned; that upload stalled at $got bytes)" \
  test "${learned%.*}" -ge 1
got=$(upload 7204 20)
syn=$(syn_mss "$WORK/far7204.pcap" 0)
synack=$(syn_mss "$WORK/cli7204.pcap" 1)
check "the next SYN toward the far host carries MSS 1260 (far host's tshark: ${syn:-none})" test "$syn" = "1260 1"
check "and its SYN-ACK reaches the client with MSS 1260 (client's tshark: ${synack:-none})" test "$synack" = "1260 1"
check "the upload completes: $got of 2097152 bytes, sha256 match" intact
m=$(metric mtugate_pmtu_entries)
check "mtugate_pmtu_entries = $m" test "$m" = 1

# IPv6: the router's real Packet Too Big (mtu 1300), the client dropping it.
got=$(upload 7205 4 6)
learned6=$(metric mtugate_pmtu_learned_total)
check "IPv6: the router's Packet Too Big for a stalled upload ($got bytes) is learned (mtugate_pmtu_learned_total $learned -> $learned6)" \
  test "${learned6%.*}" -gt "${learned%.*}"
got=$(upload 7206 20 6)
syn=$(syn_mss "$WORK/far7206.pcap" 0)
synack=$(syn_mss "$WORK/cli7206.pcap" 1)
if intact; then whole=sha256-match; else whole=damaged; fi
check "IPv6: the next SYN carries MSS 1240 (far host: ${syn:-none}), its SYN-ACK too (client: ${synack:-none}), and the upload completes ($got bytes, $whole)" \
  test "$syn" = "1240 1" -a "$synack" = "1240 1" -a "$whole" = sha256-match
m=$(metric mtugate_pmtu_entries)
check "mtugate_pmtu_entries = $m (one per family's far host)" test "$m" = 2

# --- 3. a forged ICMP --------------------------------------------------------

before=$(metric 'mtugate_pmtu_rejected_total{reason="no_flow"}')
$S "$PY" - <<'EOF' >/dev/null 2>&1
from scapy.all import IP, ICMP, TCP, send
# "Fragmentation needed, mtu 600" for a 1500-byte packet client -> .3 on
# ports no connection used: a quote of nothing that crossed mtugate.
q = IP(src="192.0.2.1", dst="192.0.2.3", len=1500, flags="DF") / TCP(sport=40999, dport=9, flags="A")
send(IP(src="192.0.2.2", dst="192.0.2.1") / ICMP(type=3, code=4, nexthopmtu=600) / bytes(q)[:28], count=3, verbose=0)
EOF
after=$(metric 'mtugate_pmtu_rejected_total{reason="no_flow"}')
# (At least 3: the stalled uploads' orphaned sockets may still be
# retransmitting, and their ICMP errors are of flows whose SYN crossed
# before learning was on: no_flow too.)
check "a forged Fragmentation Needed (scapy, wrong quote, sent 3 times) is counted: rejected{no_flow} $before -> $after" \
  test "$((after - before))" -ge 3
test_rule 4 192.0.2.3 7301 1460
m=$(metric mtugate_pmtu_entries)
check "and changes nothing: still $m learned entries; the SYN to 192.0.2.3 kept MSS 1460 (above)" test "$m" = 2
stats=$($D "$BIN" stats --run-dir "/run/mtugate-$LAB_PREFIX" --once 2>&1 || true)
check "mtugate stats shows the rule and the learned path MTUs" \
  bash -c 'grep -q "first-server" <<<"$1" && grep -q "pmtu .*entries 2" <<<"$1"' sh "$stats"
stop_mtugate

e2e_summary "" " ($((SECONDS - T0)) s)"

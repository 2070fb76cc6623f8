#!/usr/bin/env bash
# $C, $S, $D are command prefixes ("ip netns exec NS"): split on purpose.
# shellcheck disable=SC2086
# End-to-end tests of mtugate in router mode, judged by real Linux hosts.
#
# The lab (deploy/lab.sh up router, prefix mtgo) makes mtugate the gateway
# between a client (198.51.100.1, 2001:db8:a::1) and a server (203.0.113.1,
# 2001:db8:b::1; a second network behind it, 192.0.2.1 and 2001:db8:c::1,
# reached by a normal route). The kernel of the DUT holds the addresses,
# routes and neighbours; the route toward the server's own network has
# `mtu 1400` (not locked: mtugate mirrors route metrics the XDP stage's FIB
# lookup does not report), like a tunnel's. Every check is made by the hosts' kernels
# (ping output, their route caches, TCP transfers) or by tshark on captures
# at the hosts, never by mtugate's own code.
#
# Usage: deploy/e2e-router.sh [path/to/mtugate]   (as root; builds it if not given)
# One line per check, "N passed, M failed" at the end, exit 1 on any failure.
# Every run of traffic is bounded in time and count; the lab is torn down on
# exit, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
# The lab tests' shared helpers (a path from the repository root, where the
# line above put us).
# shellcheck source-path=SCRIPTDIR/..
source deploy/lib/e2e.sh

e2e_require_root e2e-router
e2e_bin "${1:-}"
e2e_workdir /tmp/mtgo-e2e.XXXXXX
export LAB_PREFIX=mtgo
CFG="$WORK/router.toml"
sed -e "s|^run_dir = .*|run_dir = \"/run/mtugate-$LAB_PREFIX\"|" deploy/configs/router.toml >"$CFG"
e2e_hosts
# A capture's safety bound (capture_stop ends it sooner): 20 s here.
CAP_TIMEOUT=20
# Only the verdicts are printed, not what the checked commands say.
E2E_CHECK_QUIET=1
BG=() # background helpers (listeners, captures) started by this script
T0=$SECONDS

cleanup() {
  set +e
  stop_mtugate KILL
  # Captures not yet stopped are in CAPS (deploy/lib/e2e.sh).
  for p in "${BG[@]}" "${CAPS[@]}"; do kill "$p" 2>/dev/null; done
  ROUTE_MTU='' bash deploy/lab.sh down >/dev/null 2>&1
  rm -rf "$WORK"
}
# A signal ends the run, through the EXIT trap (cleanup runs once), instead
# of letting the script carry on without its lab.
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# mtugate's lifecycle, the captures, forget_pmtu, wait_listen and syn_mss
# are deploy/lib/e2e.sh's; start_mtugate runs $CFG.

# One TCP connection FROM-NS -> ADDR:PORT carrying a line, both ends captured.
# Sets SYN and SYNACK to what the far ends saw, and GOT to what arrived.
connect() { # connect FAM CLIENT-NS SERVER-NS ADDR PORT
  local fam=$1 cli=$2 srv=$3 addr=$4 port=$5
  forget_pmtu
  capture "$srv" "$WORK/srv.pcap" tcp port "$port"
  capture "$cli" "$WORK/cli.pcap" tcp port "$port"
  $srv timeout 5 nc "-$fam" -l -p "$port" >"$WORK/rcv" &
  BG+=($!)
  wait_listen "$srv" "$port"
  echo "hello $port" | $cli timeout 3 nc "-$fam" -q 1 "$addr" "$port" || true
  sleep 0.2
  capture_stop
  SYN=$(syn_mss "$WORK/srv.pcap" 0)
  SYNACK=$(syn_mss "$WORK/cli.pcap" 1)
  GOT=$(cat "$WORK/rcv" 2>/dev/null || true)
}

test_ping_both_ways() {
  check "IPv4: client pings the server through the router" \
    $C ping -q -c 3 -i 0.2 -W 1 -w 5 203.0.113.1
  check "IPv4: server pings the client through the router" \
    $S ping -q -c 3 -i 0.2 -W 1 -w 5 198.51.100.1
  check "IPv6: client pings the server through the router" \
    $C ping -6 -q -c 3 -i 0.2 -W 1 -w 5 2001:db8:b::1
  check "IPv6: server pings the client through the router" \
    $S ping -6 -q -c 3 -i 0.2 -W 1 -w 5 2001:db8:a::1
}

test_tcp_clamped() { # on the path with the small route MTU
  connect 4 "$C" "$S" 203.0.113.1 5101
  check "IPv4 client->server: TCP data arrives" test "$GOT" = "hello 5101"
  check "IPv4: server receives the SYN clamped to 1360 (got: ${SYN:-none}; checksum 1 = good)" test "$SYN" = "1360 1"
  check "IPv4: client receives the SYN-ACK clamped to 1360 (got: ${SYNACK:-none})" test "$SYNACK" = "1360 1"
  connect 4 "$S" "$C" 198.51.100.1 5102
  check "IPv4 server->client: TCP data arrives" test "$GOT" = "hello 5102"
  check "IPv4 server->client: SYN clamped to 1360 at the client (got: ${SYN:-none})" test "$SYN" = "1360 1"
  connect 6 "$C" "$S" 2001:db8:b::1 5103
  check "IPv6 client->server: TCP data arrives" test "$GOT" = "hello 5103"
  check "IPv6: server receives the SYN clamped to 1340 (got: ${SYN:-none})" test "$SYN" = "1340 1"
  check "IPv6: client receives the SYN-ACK clamped to 1340 (got: ${SYNACK:-none})" test "$SYNACK" = "1340 1"
  connect 6 "$S" "$C" 2001:db8:a::1 5104
  check "IPv6 server->client: TCP data arrives" test "$GOT" = "hello 5104"
  check "IPv6 server->client: SYN clamped to 1340 at the client (got: ${SYN:-none})" test "$SYN" = "1340 1"
}

test_tcp_not_clamped() { # the second server network: a normal route
  connect 4 "$C" "$S" 192.0.2.1 5105
  check "IPv4 to the network with a normal route: TCP data arrives" test "$GOT" = "hello 5105"
  check "IPv4 to the network with a normal route: SYN keeps 1460 (got: ${SYN:-none})" test "$SYN" = "1460 1"
  check "IPv4 to the network with a normal route: SYN-ACK keeps 1460 (got: ${SYNACK:-none})" test "$SYNACK" = "1460 1"
  connect 6 "$C" "$S" 2001:db8:c::1 5106
  check "IPv6 to the network with a normal route: SYN keeps 1440 (got: ${SYN:-none})" test "$SYN" = "1440 1"
  check "IPv6 to the network with a normal route: SYN-ACK keeps 1440 (got: ${SYNACK:-none})" test "$SYNACK" = "1440 1"
}

test_ext_header_syn() {
  # An IPv6 SYN behind a Destination Options header, straight to the
  # router's MAC: clamped like any other, the header kept.
  ext_syn 2001:db8:a::1 2001:db8:b::1 "$($D cat /sys/class/net/in0/address)" 5120
  check "IPv6 SYN behind a Destination Options header: clamped to 1340 at the server (got: ${SYN:-none}), header kept ($EXT of 2 SYNs carry it)" \
    test "$SYN" = "1340 1" -a "$EXT" -eq 2
}

test_too_big() {
  local out
  forget_pmtu
  out=$($C ping -M 'do' -s 1472 -c 2 -i 0.3 -W 1 203.0.113.1 2>&1 || true)
  check "IPv4: ping -M 'do' -s 1472 gets Frag needed (mtu = 1400) from the router's 198.51.100.254" \
    grep -q "From 198.51.100.254 .*Frag needed and DF set (mtu = 1400)" <<<"$out"
  check "IPv4: the client's route cache shows mtu 1400" \
    grep -q "mtu 1400" <<<"$($C ip route get 203.0.113.1)"
  out=$($C ping -6 -M 'do' -s 1452 -c 2 -i 0.3 -W 1 2001:db8:b::1 2>&1 || true)
  check "IPv6: ping -M 'do' -s 1452 gets Packet too big (mtu=1400) from the router's 2001:db8:a::fe" \
    grep -q "From 2001:db8:a::fe .*Packet too big: mtu=1400" <<<"$out"
  check "IPv6: the client's route cache shows mtu 1400" \
    grep -q "mtu 1400" <<<"$($C ip -6 route get 2001:db8:b::1)"
  # DF clear: fragmented to the route MTU by the kernel ([router] fragment
  # = "kernel", the lab config's and the default), reassembled by the server.
  local m
  df_clear_ping "the kernel fragments"
  # /metrics is aggregated once a second ([mgmt] interval_ms): wait for the
  # next aggregation (at most 3 s).
  for _ in $(seq 30); do
    m=$($D curl -s --max-time 3 http://127.0.0.1:9090/metrics || true)
    grep -Eq '^mtugate_xdp_frag_to_kernel_total\{[^}]*port="inside"[^}]*\} [1-9]' <<<"$m" && break
    sleep 0.1
  done
  check "... handed to the kernel by the XDP stage (mtugate_xdp_frag_to_kernel_total on inside > 0)" \
    grep -Eq '^mtugate_xdp_frag_to_kernel_total\{[^}]*port="inside"[^}]*\} [1-9]' <<<"$m"
}

# 1828-byte DF-clear pings to the server: answered, and every fragment the
# server captures is at most the route MTU, 1400.
df_clear_ping() { # df_clear_ping WHO
  local out biggest
  forget_pmtu
  capture "$S" "$WORK/frag.pcap" icmp
  out=$($C ping -M dont -s 1800 -c 2 -i 0.3 -W 1 203.0.113.1 2>&1 || true)
  capture_stop
  biggest=$(tshark -r "$WORK/frag.pcap" -Y "ip.src == 198.51.100.1" -T fields -e ip.len 2>/dev/null | sort -n | tail -1)
  [[ -n $biggest ]] || { echo "frag capture:"; cat "$WORK/frag.pcap.log"; tshark -r "$WORK/frag.pcap" 2>&1 | head; echo "$out"; } >&2
  check "IPv4 DF clear, $1: 1828-byte pings answered, every fragment at the server <= 1400 (largest ${biggest:-none})" \
    bash -c "grep -q ' 0% packet loss' <<<\"\$1\" && [[ -n \$2 && \$2 -le 1400 ]]" _ "$out" "$biggest"
}

test_time_exceeded() {
  local out
  out=$($C ping -t 1 -c 1 -W 1 203.0.113.1 2>&1 || true)
  check "IPv4: ping -t 1 gets Time to live exceeded from the router's 198.51.100.254" \
    grep -q "From 198.51.100.254 .*Time to live exceeded" <<<"$out"
  out=$($C ping -6 -t 1 -c 1 -W 1 2001:db8:b::1 2>&1 || true)
  check "IPv6: ping -t 1 gets Time exceeded: Hop limit from the router's 2001:db8:a::fe" \
    grep -q "From 2001:db8:a::fe .*Time exceeded: Hop limit" <<<"$out"
  out=$($S ping -t 1 -c 1 -W 1 198.51.100.1 2>&1 || true)
  check "IPv4 the other way: Time to live exceeded from the router's 203.0.113.254" \
    grep -q "From 203.0.113.254 .*Time to live exceeded" <<<"$out"
}

test_router_itself() {
  check "the router answers ping on its own addresses (v4 and v6: kernel path)" \
    bash -c "$C ping -q -c 2 -i 0.2 -W 1 198.51.100.254 >/dev/null && $C ping -6 -q -c 2 -i 0.2 -W 1 2001:db8:a::fe >/dev/null"
  local port=5107
  head -c 300000 /dev/urandom >"$WORK/local.bin"
  $D timeout 8 nc -4 -l -p "$port" >"$WORK/local.rcv" &
  BG+=($!)
  wait_listen "$D" "$port"
  $C timeout 6 nc -4 -q 1 198.51.100.254 "$port" <"$WORK/local.bin" || true
  sleep 0.3
  check "the router holds a TCP connection of its own (300 kB to 198.51.100.254 arrive intact)" \
    cmp -s "$WORK/local.bin" "$WORK/local.rcv"
}

route4() { $D ip route change 203.0.113.0/24 dev out0 proto kernel scope link src 203.0.113.254 "$@"; }
route6() { $D ip -6 route change 2001:db8:b::/64 dev out0 proto kernel metric 256 "$@"; }

test_route_change() {
  local out
  route4 mtu 1300
  local t=$SECONDS
  connect 4 "$C" "$S" 203.0.113.1 5108
  check "ip route change ... mtu 1300: the next SYN carries 1260 (got: ${SYN:-none}; no reload)" \
    test "$SYN" = "1260 1"
  forget_pmtu
  out=$($C ping -M 'do' -s 1372 -c 2 -i 0.3 -W 1 203.0.113.1 2>&1 || true)
  check "... and ping -M do -s 1372 gets Frag needed (mtu = 1300)" \
    grep -q "From 198.51.100.254 .*Frag needed and DF set (mtu = 1300)" <<<"$out"
  route6 mtu 1300
  connect 6 "$C" "$S" 2001:db8:b::1 5109
  check "ip -6 route change ... mtu 1300: the next SYN carries 1240 (got: ${SYN:-none})" \
    test "$SYN" = "1240 1"
  echo "         (route changes seen by the first connection after them, $((SECONDS - t)) s for both)"
  # advmss: an auto clamp goes no higher than the route's.
  route4 mtu 1400 advmss 1200
  connect 4 "$C" "$S" 203.0.113.1 5116
  check "ip route change ... mtu 1400 advmss 1200: SYN 1200 (got: ${SYN:-none}), SYN-ACK 1200 (got: ${SYNACK:-none})" \
    test "$SYN $SYNACK" = "1200 1 1200 1"
  route4 mtu lock 1400
  route6 mtu lock 1400
  connect 6 "$C" "$S" 2001:db8:b::1 5117
  check "a locked route MTU works alike: ip -6 route change ... mtu lock 1400, SYN 1340 (got: ${SYN:-none})" \
    test "$SYN" = "1340 1"
  route4 mtu 1400
  route6 mtu 1400
}

test_more_specific_route() {
  # 203.0.113.128/25 without an MTU inside 203.0.113.0/24 mtu 1400: the
  # kernel uses the /25 and its device MTU, so must mtugate.
  $S ip addr add 203.0.113.129/32 dev lo
  $D ip route add 203.0.113.128/25 via 203.0.113.1 dev out0
  connect 4 "$C" "$S" 203.0.113.129 5118
  check "a more specific route without an MTU inside the 1400 one: SYN keeps 1460 (got: ${SYN:-none}), SYN-ACK too (got: ${SYNACK:-none})" \
    test "$SYN $SYNACK" = "1460 1 1460 1"
  $D ip route del 203.0.113.128/25
  connect 4 "$C" "$S" 203.0.113.129 5119
  check "... deleted: the /24's 1400 applies again, SYN 1360 (got: ${SYN:-none})" test "$SYN" = "1360 1"
  $S ip addr del 203.0.113.129/32 dev lo
}

test_neighbour_flush() {
  local dev
  flush_neighbours() { for dev in in0 out0; do $D ip neigh flush dev $dev; $D ip -6 neigh flush dev $dev; done; }
  # A SYN first, toward neighbours the kernel no longer knows (either way):
  # mtugate clamps it and hands it to the kernel's output, which resolves.
  flush_neighbours
  connect 4 "$C" "$S" 203.0.113.1 5110
  check "neighbours flushed, a SYN first: TCP crosses (data arrives)" test "$GOT" = "hello 5110"
  check "... the SYN is clamped all the same (got: ${SYN:-none}), and the SYN-ACK (got: ${SYNACK:-none})" \
    test "$SYN $SYNACK" = "1360 1 1360 1"
  flush_neighbours
  connect 6 "$C" "$S" 2001:db8:b::1 5113
  check "... IPv6 likewise (SYN ${SYN:-none}, SYN-ACK ${SYNACK:-none})" \
    test "$SYN $SYNACK" = "1340 1 1340 1"
  # Through a gateway (the second network): the route MTU is that route's.
  flush_neighbours
  connect 4 "$C" "$S" 192.0.2.1 5114
  check "... via a gateway, the normal route's MSS: SYN keeps 1460 (got: ${SYN:-none})" \
    test "$SYN" = "1460 1"
  flush_neighbours
  connect 6 "$C" "$S" 2001:db8:c::1 5115
  check "... IPv6 via a gateway: SYN keeps 1440 (got: ${SYN:-none})" test "$SYN" = "1440 1"
  flush_neighbours
  check "neighbours flushed on the DUT: IPv4 ping re-resolves and crosses (no manual step)" \
    $C ping -q -c 3 -i 0.2 -W 1 -w 5 203.0.113.1
  check "... IPv6 likewise" \
    $C ping -6 -q -c 3 -i 0.2 -W 1 -w 5 2001:db8:b::1
}

test_reload() {
  # A live reload: a fixed clamp replaces "auto", then "auto" comes back.
  sed -i 's/^ipv4 = "auto".*/ipv4 = 1300/' "$CFG"
  local out
  out=$($D "$BIN" reload --config "$CFG" 2>&1) || true
  connect 4 "$C" "$S" 192.0.2.1 5111
  check "mtugate reload to [mss] ipv4 = 1300: the next SYN carries 1300 (got: ${SYN:-none}; reload said: $out)" \
    test "$SYN" = "1300 1"
  sed -i 's/^ipv4 = 1300/ipv4 = "auto"/' "$CFG"
  $D "$BIN" reload --config "$CFG" >/dev/null 2>&1 || true
  connect 4 "$C" "$S" 203.0.113.1 5112
  check "... and back to auto: 1360 again (got: ${SYN:-none})" test "$SYN" = "1360 1"
}

test_metrics() {
  local m
  m=$($D curl -s --max-time 3 http://127.0.0.1:9090/metrics || true)
  check "/metrics counts Time Exceeded sent (mtugate_icmp_time_exceeded_sent_total)" \
    grep -Eq '^mtugate_icmp_time_exceeded_sent_total\{[^}]*port="inside"[^}]*family="ipv4"[^}]*\} [1-9]' <<<"$m"
  check "/metrics has the XDP stage's to_kernel outcome (ARP, ND, the router's own traffic)" \
    grep -Eq '^mtugate_xdp_frames_total\{[^}]*outcome="to_kernel"[^}]*\} [1-9]' <<<"$m"
  # The route changes above (mtu 1300, advmss, lock, a more specific route)
  # each updated the tries; both /24 and /64 with mtu 1400 are held now.
  local entries updates stale
  entries=$(awk '$1 == "mtugate_route_mirror_entries" {print $2}' <<<"$m")
  updates=$(awk '$1 == "mtugate_route_mirror_updates_total" {print $2}' <<<"$m")
  stale=$(awk '$1 == "mtugate_route_mirror_stale" {print $2}' <<<"$m")
  check "/metrics: the route mirror holds the two 1400 routes (entries ${entries:-none}), followed the changes (updates ${updates:-none}), not stale (${stale:-none})" \
    test "${entries:-0}" -ge 2 -a "${updates:-0}" -ge 5 -a "${stale:-x}" = 0
}

test_counters() {
  stop_mtugate TERM
  check "mtugate's final accounting balances" grep -q "accounting: balanced" "$WORK/mtg.out"
  check "the XDP stage forwarded frames itself (fast > 0)" \
    grep -Eq "in0: seen [0-9]+ = fast [1-9]" "$WORK/mtg.out"
  check "Time Exceeded counted (ttl_expired)" \
    grep -Eq "dropped: ttl_expired +[1-9]" "$WORK/mtg.out"
}

test_two_queues() {
  # A multi-queue port (as on a NIC with RSS): two RX queues, a worker on
  # each, one XDP program. The client's veth picks a TX queue per flow, and
  # that is in0's RX queue, so connections spread over both workers.
  stop_mtugate TERM
  ROUTE_MTU=1400 QUEUES=2 bash deploy/lab.sh up router >/dev/null 2>&1
  # The workers fragment in this run (fragment = "workers"), checked below.
  sed -i -e 's/^queues = .*/queues = [0, 1]/' -e 's/^cores = .*/cores = [0, 1]/' \
    -e 's/^fragment = .*/fragment = "workers"/' "$CFG"
  start_mtugate
  df_clear_ping 'fragment = "workers"'
  forget_pmtu
  capture "$S" "$WORK/mq.pcap" "tcp[tcpflags] & tcp-syn != 0 and tcp[tcpflags] & tcp-ack == 0"
  local i
  for i in $(seq 40); do
    $C timeout 2 nc -4 -z -p $((20000 + i)) 203.0.113.1 5200 >/dev/null 2>&1 || true
  done
  capture_stop
  stop_mtugate TERM
  local n clamped q0 q1 fr
  fr=$(final "d['ports']['inside']['fragmented']" 2>/dev/null || echo 0)
  check "... fragmented by the workers (fragmented on inside: $fr)" test "$fr" -gt 0
  n=$(tshark -r "$WORK/mq.pcap" -T fields -e tcp.options.mss_val 2>/dev/null | wc -l)
  clamped=$(tshark -r "$WORK/mq.pcap" -T fields -e tcp.options.mss_val 2>/dev/null | grep -c '^1360$' || true)
  q0=$(final "sum(p['rx_frames'] for p in d['queues'][0]['io'])" 2>/dev/null || echo 0)
  q1=$(final "sum(p['rx_frames'] for p in d['queues'][1]['io'])" 2>/dev/null || echo 0)
  check "two queues, two workers: 40 SYNs from 40 source ports reach the server clamped to 1360 ($clamped of $n)" \
    test "$n" -eq 40 -a "$clamped" -eq 40
  check "... both workers took SYNs (queue 0: $q0 frames, queue 1: $q1)" test "$q0" -gt 0 -a "$q1" -gt 0
  check "... mtugate's final accounting balances" grep -q "accounting: balanced" "$WORK/mtg.out"
}

ROUTE_MTU=1400 bash deploy/lab.sh up router >/dev/null 2>&1
check "check-config accepts the router config and says who fragments (the kernel) and what happens without a worker" \
  grep -q 'fragmented by the kernel (fragment = "kernel"); with no worker running, frames that need work are forwarded by the kernel, unclamped' \
  <<<"$($D "$BIN" check-config "$CFG" 2>&1)"
start_mtugate
test_ping_both_ways
test_tcp_clamped
test_tcp_not_clamped
test_ext_header_syn
test_too_big
test_time_exceeded
test_router_itself
test_route_change
test_more_specific_route
test_neighbour_flush
test_reload
test_metrics
test_counters
test_two_queues
e2e_summary "e2e-router: " " in $((SECONDS - T0)) s"

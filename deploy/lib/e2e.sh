# shellcheck shell=bash
# Shared helpers of the end-to-end lab tests (deploy/e2e*.sh).
#
# Sourced, not run: a script first changes to the repository root, then
#   source deploy/lib/e2e.sh
# so the path holds whatever directory it was started from.
#
# Only what every script did the same way lives here; what differs only in a
# timeout or a path is a variable the script may set after sourcing. Each
# script keeps its own lab prefix, work directory, cleanup trap and checks.
#
# Every wait here is bounded (a count of short sleeps, or `timeout`), so a
# test that goes wrong fails instead of hanging, and the script's EXIT trap
# still tears the lab down.

# Check counters, read by check and e2e_summary.
PASS=0
FAIL=0
# The running mtugate (`ip netns exec`, which exec's mtugate: same pid).
MTG_PID=""
# Captures started by capture and not yet stopped.
CAPS=()

# --- settings a script may change after sourcing --------------------------------

# 1: check hides the command's output (e2e-router prints only its verdicts).
E2E_CHECK_QUIET=0
# How long stop_mtugate waits for mtugate to exit before SIGKILL, in tenths
# of a second (e2e-limits has always waited twice as long).
MTG_STOP_WAIT=50
# Where start_mtugate asks mtugate to write its final counters; empty: not
# asked. Set from WORK by e2e_workdir.
MTG_FINAL_STATS=""
# The safety bound of a capture, in seconds: capture_stop normally ends it.
CAP_TIMEOUT=30
# The interface a capture listens on (a host's eth0; e2e-perf also watches
# the DUT's in0).
CAP_IFACE=eth0

# --- setup -----------------------------------------------------------------------

e2e_require_root() { # e2e_require_root NAME [WHAT-NEEDS-IT]
  if [[ $(id -u) -ne 0 ]]; then
    echo "$1: needs root (${2:-network namespaces, XDP})" >&2
    exit 1
  fi
}

# e2e_bin [PATH]: sets BIN to the mtugate to test, as an absolute path, so
# that it names the same file wherever it is run from. Without PATH, builds
# the release one.
e2e_bin() {
  BIN=${1:-}
  if [[ -z "$BIN" ]]; then
    cargo build --release -p mtugate --locked >&2
    BIN=target/release/mtugate
  fi
  BIN=$(readlink -f "$BIN")
}

# e2e_workdir TEMPLATE: sets WORK to a new directory made by mktemp (the
# script's cleanup removes it), and the final report's place in it.
e2e_workdir() {
  WORK=$(mktemp -d "$1")
  MTG_FINAL_STATS=$WORK/final.json
}

# e2e_hosts: C, S, D, the command prefixes ("ip netns exec NS") that run a
# command on the lab's client, server and DUT (LAB_PREFIX must be set). They
# are meant to be split into words where used.
e2e_hosts() {
  C="ip netns exec $LAB_PREFIX-client"
  S="ip netns exec $LAB_PREFIX-server"
  D="ip netns exec $LAB_PREFIX-dut"
}

# --- verdicts --------------------------------------------------------------------

ok() { PASS=$((PASS + 1)); echo "ok     - $*"; }
bad() { FAIL=$((FAIL + 1)); echo "FAILED - $*"; }
check() { # check "name" cmd...   (pass if cmd succeeds)
  local name=$1; shift
  if [[ $E2E_CHECK_QUIET == 1 ]]; then
    if "$@" >/dev/null 2>&1; then ok "$name"; else bad "$name"; fi
  else
    if "$@"; then ok "$name"; else bad "$name"; fi
  fi
}

# e2e_summary [LEAD] [TAIL]: the last line, "LEAD N passed, M failed TAIL";
# its status is the script's: non-zero on any failure.
e2e_summary() {
  echo "${1:-}$PASS passed, $FAIL failed${2:-}"
  [[ $FAIL -eq 0 ]]
}

# --- mtugate lifecycle -------------------------------------------------------------

# shellcheck disable=SC2120 # CONFIG is optional
start_mtugate() { # start_mtugate [CONFIG]   (default: $CFG), in the DUT
  local cfg=${1:-${CFG:-}} final=()
  [[ -n $MTG_FINAL_STATS ]] && final=(--final-stats "$MTG_FINAL_STATS")
  : >"$WORK/mtg.err"
  $D "$BIN" run --config "$cfg" "${final[@]}" >"$WORK/mtg.out" 2>"$WORK/mtg.err" &
  MTG_PID=$!
  disown "$MTG_PID" # no job-control notice when a test kills it
  wait_running "$WORK/mtg.err"
}

# wait_running LOG: the mtugate of MTG_PID is ready once LOG says so (at
# most 10 s); fails at once if it exited, showing LOG.
wait_running() {
  local log=$1
  for _ in $(seq 100); do
    grep -q "mtugate running" "$log" && return 0
    kill -0 "$MTG_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "mtugate did not start:" >&2
  cat "$log" >&2
  return 1
}

# shellcheck disable=SC2120 # the signal is optional
stop_mtugate() { # stop_mtugate [TERM|KILL]: then SIGKILL after MTG_STOP_WAIT
  local sig=${1:-TERM}
  [[ -n "$MTG_PID" ]] || return 0
  kill "-$sig" "$MTG_PID" 2>/dev/null || true
  for _ in $(seq "$MTG_STOP_WAIT"); do kill -0 "$MTG_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$MTG_PID" 2>/dev/null || true
  MTG_PID=""
}

no_program_left() { # no XDP program on the DUT's in0 or out0
  ! $D ip link show in0 | grep -q "prog/xdp" && ! $D ip link show out0 | grep -q "prog/xdp"
}

# --- captures ----------------------------------------------------------------------

# capture NS-CMD FILE [OPTION...] [FILTER...]: tcpdump on the host's
# $CAP_IFACE (eth0), started and
# confirmed listening (bounded) before any traffic, so a slow start under
# load cannot empty it. --immediate-mode: hand each packet over at once;
# otherwise a capture stopped soon after the traffic can end with packets
# still in the ring.
capture() {
  local ns=$1 file=$2; shift 2
  $ns timeout "$CAP_TIMEOUT" tcpdump --immediate-mode -i "$CAP_IFACE" -nn -U -w "$file" "$@" 2>"$file.log" &
  CAPS+=($!)
  for _ in $(seq 100); do
    grep -q "listening on" "$file.log" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "tcpdump did not start: $(cat "$file.log")" >&2
  return 1
}
capture_stop() { # ends every capture started since the last capture_stop
  sleep 0.3 # let the last packets reach the capture
  kill -INT "${CAPS[@]}" 2>/dev/null || true
  wait "${CAPS[@]}" 2>/dev/null || true
  CAPS=()
}

# MSS of the first SYN (ACK 0) or SYN-ACK (ACK 1) in a capture, with its TCP
# checksum status (1 = good): "1360 1".
syn_mss() { # syn_mss FILE ACK
  tshark -r "$1" -o tcp.check_checksum:TRUE -Y "tcp.flags.syn == 1 && tcp.flags.ack == $2" \
    -T fields -e tcp.options.mss_val -e tcp.checksum.status 2>/dev/null | head -1 | tr '\t' ' '
}

# final EXPR: a Python expression over d, the final counters of the last
# mtugate run (MTG_FINAL_STATS), printed.
final() {
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$MTG_FINAL_STATS" "$1"
}

# --- the hosts ---------------------------------------------------------------------

# Forgets the path MTUs the client and server learned, so that each test
# starts from the links' own MTUs.
forget_pmtu() {
  local ns
  for ns in "$C" "$S"; do
    $ns ip route flush cache
    $ns ip -6 route flush cache
  done
}

wait_listen() { # wait_listen NS-CMD PORT: until a TCP listener is up (at most 5 s)
  local ns=$1 port=$2
  for _ in $(seq 50); do
    $ns ss -Hltn "sport = :$port" 2>/dev/null | grep -q . && return 0
    sleep 0.1
  done
  echo "no listener on port $port" >&2
}

# ext_syn SRC6 DST6 DST-MAC PORT: two IPv6 SYNs (MSS 1440) behind a
# Destination Options header, sent by scapy (Debian's python3-scapy) from
# the client's eth0 straight to DST-MAC. Sets SYN to the MSS of the first
# one the server captured, with its checksum status ("1340 1"), and EXT to
# how many captured SYNs still carry the header. A host or a flood that adds
# one header must not get past the clamp.
ext_syn() {
  local src=$1 dst=$2 mac=$3 port=$4
  # (libpcap's "tcp" does not look behind extension headers: the filter
  # takes IPv6 with a Destination Options header first.)
  capture "$S" "$WORK/ext.pcap" "ip6 and ip6[6] == 60"
  $C timeout 10 /usr/bin/python3 - "$mac" "$src" "$dst" "$port" <<'PY' >/dev/null 2>&1 || true
import sys
from scapy.all import Ether, IPv6, IPv6ExtHdrDestOpt, TCP, sendp
mac, src, dst, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
syn = (Ether(dst=mac) / IPv6(src=src, dst=dst, hlim=64) / IPv6ExtHdrDestOpt()
       / TCP(sport=40000 + port % 20000, dport=port, flags="S", options=[("MSS", 1440)]))
sendp(syn, iface="eth0", count=2, inter=0.2, verbose=0)
PY
  capture_stop
  SYN=$(syn_mss "$WORK/ext.pcap" 0)
  EXT=$(tshark -r "$WORK/ext.pcap" -Y "ipv6.nxt == 60 && tcp.flags.syn == 1" -T fields -e frame.number 2>/dev/null | wc -l)
}

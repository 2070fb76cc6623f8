#!/usr/bin/env bash
# CI check of the benchmark tool: `mtugate-perf compare --short` in the lab
# (namespaces mtgp-*), then checks of what it wrote: a table row for every
# system in both placements, the goals section, a latency plot with a curve
# per system and placement, the .hgrm files, the flood rows, and JSON with a
# non-zero received rate for every throughput run. Also checks the
# generator's packets as captured on the wire with tshark (an independent
# parser): every profile decodes and every checksum verifies. Then the live
# generator (livegen: raw XDP frames) through the kernel router, judged by
# the DUT's counters and tshark, and a short compare fed by it.
#
# Usage: deploy/e2e-perf.sh [path/to/mtugate-perf [path/to/mtugate]]
#        (as root; builds both in release mode if not given)
# Prints one line per check and "N passed, M failed"; exits 1 on failure.
# Bounded: compare --short takes about 2 to 3 minutes (with the no-drop rate searches); the lab is torn down
# on exit, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR/..
source deploy/lib/e2e.sh
e2e_require_root e2e-perf "network namespaces, XDP, iptables"

PERF=${1:-}
MTG=${2:-}
if [[ -z "$PERF" ]]; then
  cargo build --release -p mtugate-perf -p mtugate --locked >&2
  PERF=target/release/mtugate-perf
  MTG=target/release/mtugate
fi
PERF=$(readlink -f "$PERF")
MTG=$(readlink -f "${MTG:-$(dirname "$PERF")/mtugate}")
export LAB_PREFIX=${LAB_PREFIX:-mtgp}
OUT=$(mktemp -d /tmp/mtgp-e2e.XXXXXX)
e2e_hosts
# The captures' safety bound (capture_stop ends them sooner).
CAP_TIMEOUT=20

cleanup() {
  set +e
  capture_stop
  bash deploy/lab.sh down >/dev/null 2>&1
  rm -rf "$OUT"
}
# A signal ends the run, through the EXIT trap (cleanup runs once), instead
# of letting the script carry on without its lab.
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# check, ok, bad, capture, capture_stop, e2e_summary: deploy/lib/e2e.sh.

# --- the generator's packets, judged by tshark -------------------------------
bash deploy/lab.sh up wire >/dev/null 2>&1
CAP_IFACE=in0 capture "$D" "$OUT/gen.pcap" -B 32768
DMAC=$($S cat /sys/class/net/eth0/address)
PROFILES=udp64,udp64-v6,udp1500,udp1500-df,udp1500-v6,imix,imix-v6,tcp1500,tcp1500-df,tcp1500-v6,syn-flood,syn-flood-v6,syn-legit,syn-legit-v6
$C timeout 20 "$PERF" gen -i eth0 --dst-mac "$DMAC" -p "$PROFILES" --rate 5000 -n 1400 \
  --interval 0 --json "$OUT/gen.json" 2>"$OUT/gen.log" || true
capture_stop
check "gen sent 1400 packets of 14 profiles" \
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['tx_completed']==1400 and len(d['profiles'])==14 and all(n==100 for _,n in d['profiles']), d" "$OUT/gen.json"
n_cap=$(tshark -r "$OUT/gen.pcap" 2>/dev/null | wc -l)
check "1400 generated frames captured ($n_cap)" test "$n_cap" -ge 1400
bad_ck=$(tshark -r "$OUT/gen.pcap" -o ip.check_checksum:TRUE -o udp.check_checksum:TRUE -o tcp.check_checksum:TRUE \
  -Y "ip.checksum.status == 0 || udp.checksum.status == 0 || tcp.checksum.status == 0 || _ws.expert.severity >= error" 2>/dev/null | wc -l)
check "every IPv4, UDP and TCP checksum verifies in tshark ($bad_ck bad)" test "$bad_ck" -eq 0
good_ck=$(tshark -r "$OUT/gen.pcap" -o udp.check_checksum:TRUE -o tcp.check_checksum:TRUE \
  -Y "udp.checksum.status == 1 || tcp.checksum.status == 1" 2>/dev/null | wc -l)
check "checksums were actually verified ($good_ck good)" test "$good_ck" -ge 1300
syn_mss=$(tshark -r "$OUT/gen.pcap" -Y "tcp.flags.syn == 1 && tcp.options.mss_val == 1460" 2>/dev/null | wc -l)
check "SYN profiles carry MSS 1460 ($syn_mss)" test "$syn_mss" -eq 400
bash deploy/lab.sh down >/dev/null 2>&1

# --- livegen: raw XDP frames, judged by the DUT's kernel and tshark ---------
# The router lab with the kernel forwarding. in0 gets GRO (a veth takes
# redirected frames only with NAPI), no XDP program: its XDP frame counter
# then counts only frames that arrived with no skb. Every frame the server
# captures must decode, verify, and carry TTL 63 (64 from the generator,
# one hop): the program restores the header the kernel rewrote in place.
bash deploy/lab.sh up router >/dev/null 2>&1
$D ethtool -K in0 gro on >/dev/null
clang -O2 -g -target bpf -I "/usr/include/$(uname -m)-linux-gnu" -c deploy/perf/xdp_livegen.c -o "$OUT/livegen.o"
IN0MAC=$($D cat /sys/class/net/in0/address)
xdp_in() { $D ethtool -S in0 | awk '/rx_queue_0_xdp_packets:/ {print $2}'; }
srv_in() { $S cat /sys/class/net/eth0/statistics/rx_packets; }
x0=$(xdp_in)
s0=$(srv_in)
capture "$S" "$OUT/live.pcap" -c 300 udp and dst host 203.0.113.1
$C timeout 20 taskset -c 0 "$PERF" livegen -i eth0 --obj "$OUT/livegen.o" --dst-mac "$IN0MAC" \
  --src 198.51.100.1 --dst 203.0.113.1 -p udp64 -d 1 --json "$OUT/live.json" 2>"$OUT/live.log" || true
capture_stop
x1=$(xdp_in)
s1=$(srv_in)
check "livegen ran 1 s and counted its frames" \
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['tx_completed']>=100000 and d['frame_len']==64 and 0.9<d['seconds']<3, d" "$OUT/live.json"
check "in0 received them as XDP frames, with no skb ($((x1 - x0)))" test $((x1 - x0)) -ge 100000
check "the kernel router forwarded them to the server ($((s1 - s0)))" test $((s1 - s0)) -ge 100000
n_live=$(tshark -r "$OUT/live.pcap" 2>/dev/null | wc -l)
check "forwarded live frames captured at the server ($n_live)" test "$n_live" -ge 300
bad_live=$(tshark -r "$OUT/live.pcap" -o ip.check_checksum:TRUE -o udp.check_checksum:TRUE \
  -Y "ip.checksum.status == 0 || udp.checksum.status == 0 || ip.ttl != 63 || frame.len != 64 || _ws.expert.severity >= error" 2>/dev/null | wc -l)
check "each decodes with good checksums, 64 bytes, TTL 63 ($bad_live bad)" test "$bad_live" -eq 0
bash deploy/lab.sh down >/dev/null 2>&1

# --- compare, short -----------------------------------------------------------
start=$(date +%s)
if timeout 300 "$PERF" compare --short --prefix "$LAB_PREFIX" --out "$OUT/cmp" --mtugate "$MTG" >"$OUT/compare.out" 2>"$OUT/compare.err"; then
  ok "compare --short ran ($(($(date +%s) - start)) s)"
else
  bad "compare --short failed:"
  tail -20 "$OUT/compare.err" | sed 's/^/    /'
fi
MD=$OUT/cmp/compare.md
for placement in confined natural; do
  for label in "mtugate, fast path (1 worker)" "mtugate, all via AF_XDP (1 worker)" "kernel router + TCPMSS" "kernel bridge + br_netfilter + TCPMSS" "raw AF_XDP l2fwd (ceiling)"; do
    n=$(grep -cF "| $placement | $label |" "$MD" 2>/dev/null || true)
    # One row in the main table, one in the no-drop rate table.
    check "table rows: $placement, $label" test "${n:-0}" -eq 2
  done
done
check "goals section" grep -q "mtugate fast path / kernel router, 64 B" "$MD"
check "flood table: mtugate with the SYN limit on and off, and the kernel" \
  sh -c "grep -q '| mtugate, SYN limit on | yes |' '$MD' && grep -q '| mtugate, SYN limit off | yes |' '$MD' && grep -q '| kernel router + TCPMSS | yes |' '$MD'"
check "JSON: 20 throughput runs, each received traffic" \
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); t=d['throughput']; assert len(t)==20 and all(x['sink_pps']>0 for x in t), [(x['system'],x['sink_pps']) for x in t]" "$OUT/cmp/compare.json"
check "JSON: 10 no-drop rate searches, each bracketed by its trials" \
  python3 -c "
import json, sys
d = json.load(open(sys.argv[1]))
n = d['ndr']
assert len(n) == 10, len(n)
for x in n:
    t = x['trials']
    assert 1 <= len(t) <= 3, x
    assert all(tr['pass'] == (tr['loss'] <= x['tolerance']) for tr in t), x
    assert x['fail_pps'] is None or x['ndr_pps'] < x['fail_pps'], x
    assert x['ndr_pps'] == max([min(tr['offered_pps'], tr['asked_pps'] or 1e18) for tr in t if tr['pass']] or [0]), x
" "$OUT/cmp/compare.json"
check "JSON: 10 latency runs with probes received" \
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); l=d['latency']; assert len(l)==10 and all(x[2]['received']>0 for x in l)" "$OUT/cmp/compare.json"
start=$(date +%s)
if timeout 180 "$PERF" compare --short --generator live --prefix "$LAB_PREFIX" --out "$OUT/cmp-live" --mtugate "$MTG" \
  --systems router,xdp-redirect,xdp-fwd --scenarios 64,latency >"$OUT/compare-live.out" 2>"$OUT/compare-live.err"; then
  ok "compare --short --generator live ran ($(($(date +%s) - start)) s)"
else
  bad "compare --short --generator live failed:"
  tail -20 "$OUT/compare-live.err" | sed 's/^/    /'
fi
check "JSON (live): 6 throughput runs fed by livegen (kernel, bare redirect, bare FIB forward), each received traffic" \
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); t=d['throughput']; assert d['meta']['generator'].startswith('live') and len(t)==6 and all(x['sink_pps']>0 and x['dut_rx_pps']>0 for x in t), t" "$OUT/cmp-live/compare.json"
check "JSON (live): 6 latency runs, livegen's stamped probes received" \
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); l=d['latency']; assert len(l)==6 and all(x[2]['received']>0 and x[2]['received']<=x[2]['sent'] and x[2]['p50_us']>0 for x in l), l" "$OUT/cmp-live/compare.json"
n_curves=$(grep -c "<polyline" "$OUT/cmp/latency.svg" 2>/dev/null || true)
check "latency.svg has a curve per system and placement ($n_curves)" test "${n_curves:-0}" -eq 10
n_hgrm=$(ls "$OUT"/cmp/latency-*-*.hgrm 2>/dev/null | wc -l)
check ".hgrm percentile distributions written ($n_hgrm)" test "$n_hgrm" -ge 8
check "no lab namespace left behind" sh -c "! ip netns list | grep -q '^$LAB_PREFIX-'"

e2e_summary

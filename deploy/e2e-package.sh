#!/usr/bin/env bash
# End-to-end test of the Debian package, in its own lab (LAB_PREFIX=mtgd).
#
#  1. builds the .deb (deploy/deb/build.sh; --no-build when the release
#     binaries exist), lints it (lintian: no error), installs it (dpkg -i);
#  2. checks what it installed: binaries, conffile, unit, man pages,
#     completions, the system user; `systemd-analyze verify` accepts the
#     unit, `systemd-analyze security --offline` scores it; promtool checks
#     and unit-tests the alert rules;
#  3. runs the *installed* binary as the package's user `mtugate` with only
#     the unit's capabilities (setpriv), in a mount namespace laid out as the
#     unit's sandbox lays it out (RuntimeDirectory=mtugate; of /sys/fs/bpf
#     only the mtugate subdirectory, TemporaryFileSystem= + BindPaths=),
#     on the configuration the package installed with the lab's two ports
#     named, and checks it in the lab, judged by the hosts: MSS clamped in
#     the SYN and the SYN-ACK (IPv4, IPv6), PMTU errors (ICMP, ICMPv6), a
#     transfer, the counters on /metrics (and mtugate_build_info's revision),
#     every metric the dashboard queries present on that live /metrics, and
#     `mtugate reload` as the unit's ExecReload runs it;
#  4. shows the capability set minimal: without any one of the five,
#     `mtugate run` fails naming it, both at the preflight and (with the
#     preflight skipped) when the kernel itself refuses;
#  5. removes (the conffile stays, as policy says) and purges the package:
#     no file of it, no unit, no user or group left;
#  6. has systemd itself run the package's unit (deploy/e2e-systemd.sh: the
#     machine's OS booted in a throwaway container).
#
# Usage: deploy/e2e-package.sh [path/to/mtugate.deb]   (as root)
# Prints one line per check and "N passed, M failed"; exits 1 on a failure.
# Every wait is bounded; the lab, the mounts and the package are removed on
# exit, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
# The lab tests' shared helpers (a path from the repository root, where the
# line above put us).
# shellcheck source-path=SCRIPTDIR/..
source deploy/lib/e2e.sh

e2e_require_root e2e-package "dpkg, network namespaces, XDP"
export LAB_PREFIX=mtgd
T0=$SECONDS
WORK=$(mktemp -d /tmp/mtgd-pkg.XXXXXX)
chmod 0755 "$WORK" # the mtugate user reads its config and writes its stats under it
e2e_hosts
# A capture's safety bound (capture_stop ends it sooner): 20 s here.
CAP_TIMEOUT=20
INSTALLED=0
# The capabilities the service runs with (the unit's AmbientCapabilities).
SVC_CAPS=(net_admin net_raw bpf perfmon ipc_lock)
CONF=/etc/mtugate/mtugate.toml

quiet() { "$@" >/dev/null 2>&1; }
# check, ok, bad, stop_mtugate, capture, capture_stop, forget_pmtu:
# deploy/lib/e2e.sh's (mtugate here is started by start_service, below).

cleanup() {
  set +e
  stop_mtugate
  # Captures not yet stopped are in CAPS (deploy/lib/e2e.sh).
  for p in "${CAPS[@]}"; do kill "$p" 2>/dev/null; done
  bash deploy/lab.sh down >/dev/null 2>&1
  if [[ $INSTALLED == 1 ]] && dpkg-query -W -f='${Status}' mtugate 2>/dev/null | grep -q installed; then
    [[ -f $WORK/pristine.toml ]] && cp "$WORK/pristine.toml" "$CONF"
    dpkg --purge mtugate >/dev/null 2>&1
  fi
  mountpoint -q "$WORK/bpffs" && umount "$WORK/bpffs"
  rm -rf "$WORK"
}
# A signal ends the run, through the EXIT trap (cleanup runs once), instead
# of letting the script carry on without its lab.
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A package left by an earlier run that was killed before its trap: ours
# (this project's maintainer field), so it goes; anything else stays.
if dpkg-query -W -f='${Status}' mtugate 2>/dev/null | grep -q "installed"; then
  if dpkg-query -W -f='${Maintainer}' mtugate | grep -q "mtugate@example.invalid"; then
    echo "e2e-package: purging the mtugate package an earlier run left installed" >&2
    dpkg --purge mtugate >/dev/null
  else
    echo "e2e-package: a mtugate package of someone else is installed here; not replacing it" >&2
    exit 1
  fi
fi

# --- 1. build, lint, install ----------------------------------------------------

DEB=${1:-}
if [[ -z $DEB ]]; then
  t=$SECONDS
  if [[ -x target/release/mtugate && -x target/release/mtugate-perf ]]; then
    DEB=$(bash deploy/deb/build.sh --no-build)
  else
    DEB=$(bash deploy/deb/build.sh)
  fi
  echo "e2e-package: built $DEB in $((SECONDS - t)) s"
fi
check "the package builds ($(basename "$DEB"))" test -s "$DEB"

t=$SECONDS
lintian --tag-display-limit 0 --display-info --display-experimental --pedantic "$DEB" >"$WORK/lintian.txt" 2>&1 || true
grep -v -e "^running with root privileges" "$WORK/lintian.txt" | sed 's/^/         | /' || true
nerr=$(grep -c "^E: " "$WORK/lintian.txt" || true)
nwarn=$(grep -c "^W: " "$WORK/lintian.txt" || true)
check "lintian: no errors ($nerr errors, $nwarn warnings, $((SECONDS - t)) s)" test "$nerr" -eq 0

dpkg-deb -x "$DEB" "$WORK/pkgtree"
cp "$WORK/pkgtree$CONF" "$WORK/pristine.toml"
dpkg-deb -c "$DEB" | awk '{print $6}' | sed 's|^\./|/|; s|/$||' | grep -v '^$' >"$WORK/contents.txt"

INSTALLED=1
check "dpkg -i installs it" quiet dpkg -i "$DEB"

# --- 2. what it installed ---------------------------------------------------------

present() { for f in "$@"; do [[ -e $f ]] || { echo "  missing: $f"; return 1; }; done; }
check "binaries, conffile, unit, man pages, completions, rules, dashboard, examples are in place" present \
  /usr/bin/mtugate /usr/bin/mtugate-perf "$CONF" /lib/systemd/system/mtugate.service \
  /usr/share/man/man1/mtugate.1.gz /usr/share/man/man1/mtugate-run.1.gz /usr/share/man/man1/mtugate-perf.1.gz \
  /usr/share/bash-completion/completions/mtugate /usr/share/zsh/vendor-completions/_mtugate \
  /usr/share/fish/vendor_completions.d/mtugate.fish /usr/lib/tmpfiles.d/mtugate.conf \
  /usr/share/mtugate/prometheus/mtugate-rules.yml /usr/share/mtugate/grafana/mtugate.json \
  /usr/share/doc/mtugate/examples/ipsec-gateway.toml /usr/share/doc/mtugate/copyright
check "$CONF is a conffile" grep -qx "$CONF" <(dpkg-query -W -f='${Conffiles}\n' mtugate | awk '{print $1}')
check "man mtugate-run renders and documents --config" grep -q -- "--config" <(MANWIDTH=100 man -P cat -l /usr/share/man/man1/mtugate-run.1.gz 2>/dev/null)
pw=$(getent passwd mtugate || true)
uid=$(cut -d: -f3 <<<"$pw")
check "system user mtugate: uid ${uid:-none} < 1000, no login shell, no home (${pw:-absent})" \
  test -n "$pw" -a "${uid:-9999}" -lt 1000 -a "$(cut -d: -f7 <<<"$pw")" = /usr/sbin/nologin -a "$(cut -d: -f6 <<<"$pw")" = /nonexistent
ver=$(/usr/bin/mtugate --version)
check "mtugate --version carries the git revision ($ver)" grep -qE '^mtugate [0-9.]+ \(rev [0-9a-f]{12}(-dirty)?\)$' <<<"$ver"
REV=$(sed -n 's/.*(rev \([^)]*\)).*/\1/p' <<<"$ver")
out=$(/usr/bin/mtugate check-config "$CONF" 2>&1) && rc=0 || rc=$?
check "the installed $CONF is valid and attaches nothing (check-config: exit $rc)" \
  grep -q "no \[\[port\]\] is configured, so mtugate attaches nothing" <<<"$out"

out=$(systemd-analyze verify /lib/systemd/system/mtugate.service 2>&1) && rc=0 || rc=$?
[[ -z $out ]] || sed 's/^/         | /' <<<"$out"
check "systemd-analyze verify accepts the unit (exit $rc, no complaint)" test "$rc" -eq 0 -a -z "$out"
score=$(systemd-analyze security --offline=yes /lib/systemd/system/mtugate.service 2>/dev/null |
  sed -n 's/.*Overall exposure level for mtugate.service: \([0-9.]*\).*/\1/p')
check "systemd-analyze security --offline: exposure ${score:-?} (at most 3.0, \"OK\")" \
  awk -v s="${score:-99}" 'BEGIN { exit !(s <= 3.0) }'

cp /usr/share/mtugate/prometheus/mtugate-rules.yml deploy/prometheus/mtugate-rules.test.yml "$WORK/"
check "promtool check rules (the installed rules)" quiet promtool check rules "$WORK/mtugate-rules.yml"
check "promtool test rules (deploy/prometheus/mtugate-rules.test.yml)" \
  sh -c "cd '$WORK' && promtool test rules mtugate-rules.test.yml >/dev/null"

# --- 3. the installed binary, as the service runs it, in the lab -------------------

bash deploy/lab.sh up wire >/dev/null 2>&1
# The pin directory: a bpffs of its own, owned by mtugate (what
# /usr/lib/tmpfiles.d/mtugate.conf makes of /sys/fs/bpf/mtugate).
mkdir -p "$WORK/bpffs" "$WORK/out"
mount -t bpf mtgd-pkg "$WORK/bpffs"
chown mtugate:mtugate "$WORK/bpffs" "$WORK/out"
# The operator names the two ports, as the comments of the file say.
cat >>"$CONF" <<'EOF'

# Named by deploy/e2e-package.sh: the lab's ports.
[[port]]
name = "inside"
iface = "in0"
mtu = 1500

[[port]]
name = "outside"
iface = "out0"
mtu = 1400
EOF
check "with the lab's ports named, check-config (in the lab) accepts $CONF" quiet $D /usr/bin/mtugate check-config "$CONF"

# service_cmd CAPS ENV... -- CMD...: sets SVC to the command line that runs
# CMD in the DUT namespace as the unit runs it, as one process (each step
# execs the next, so a background SVC's pid is mtugate's): user mtugate,
# exactly CAPS (comma-separated, may be empty) as ambient, inheritable and
# bounding set, no new privileges; /run/mtugate a fresh directory of the
# user (RuntimeDirectory=), RLIMIT_MEMLOCK at systemd's and the kernel's
# default of 8 MiB (the unit sets no LimitMEMLOCK=), /sys/fs/bpf an empty tmpfs with only the pin
# directory bound in (TemporaryFileSystem=, BindPaths=). `ip netns exec`
# gives the command a mount namespace of its own (slave of the host's), so
# none of these mounts reaches the host.
service_cmd() {
  local caps=$1; shift
  local set="-all" c
  for c in ${caps//,/ }; do set+=",+$c"; done
  local envs=()
  while [[ $1 != -- ]]; do envs+=("$1"); shift; done
  shift
  # shellcheck disable=SC2016
  SVC=(ip netns exec "$LAB_PREFIX-dut" env "${envs[@]}" sh -c '
    set -e
    bpffs=$1 set=$2; shift 2
    mkdir -p /run/mtugate
    mount -t tmpfs -o mode=0750 mtgd-run /run/mtugate
    chown mtugate:mtugate /run/mtugate
    mount -t tmpfs -o mode=0755 mtgd-bpf /sys/fs/bpf
    mkdir /sys/fs/bpf/mtugate
    mount --bind "$bpffs" /sys/fs/bpf/mtugate
    exec prlimit --memlock=8388608:8388608 setpriv --reuid=mtugate --regid=mtugate --init-groups --no-new-privs \
      --inh-caps="$set" --ambient-caps="$set" --bounding-set="$set" -- "$@"'
    sh "$WORK/bpffs" "$set" "$@")
}

start_service() { # start_service LOGFILE: mtugate run, as the unit runs it
  local log=$1
  service_cmd "$(IFS=,; echo "${SVC_CAPS[*]}")" RUST_LOG=info -- \
    /usr/bin/mtugate run --config "$CONF" --final-stats "$WORK/out/final.json"
  "${SVC[@]}" >"$WORK/mtg.out" 2>"$log" &
  MTG_PID=$!
  wait_running "$log"
}

test_mss() { # test_mss 4|6 ADDR PORT EXPECTED: judged by tshark on both hosts
  local fam=$1 addr=$2 port=$3 want=$4 srv cli
  forget_pmtu
  capture "$S" "$WORK/srv$fam.pcap" tcp port "$port"
  capture "$C" "$WORK/cli$fam.pcap" tcp port "$port"
  $S timeout 4 nc "-$fam" -l -p "$port" >/dev/null &
  sleep 0.3
  echo hello | $C timeout 3 nc "-$fam" -q 1 "$addr" "$port" || true
  capture_stop
  fields() { tshark -r "$1" -o tcp.check_checksum:TRUE -Y "tcp.flags.syn == 1" \
    -T fields -e tcp.flags.ack -e tcp.options.mss_val -e tcp.checksum.status 2>/dev/null; }
  srv=$(fields "$WORK/srv$fam.pcap" | awk '$1==0 {print $2, $3; exit}')
  cli=$(fields "$WORK/cli$fam.pcap" | awk '$1==1 {print $2, $3; exit}')
  check "IPv$fam: the server receives the SYN with MSS $want, checksum good (got: ${srv:-none})" test "$srv" = "$want 1"
  check "IPv$fam: the client receives the SYN-ACK with MSS $want, checksum good (got: ${cli:-none})" test "$cli" = "$want 1"
}

test_pmtu() {
  local out
  forget_pmtu
  out=$($C ping -M do -s 1472 -c 2 -i 0.3 -W 1 192.0.2.2 2>&1 || true)
  check "IPv4 PMTU: ping -M do -s 1472 gets 'Frag needed ... mtu = 1400'" grep -q "Frag needed and DF set (mtu = 1400)" <<<"$out"
  check "IPv4 PMTU: the client's route cache learns mtu 1400" grep -q "mtu 1400" <<<"$($C ip route get 192.0.2.2)"
  out=$($C ping -6 -M do -s 1452 -c 2 -i 0.3 -W 1 2001:db8:1::2 2>&1 || true)
  check "IPv6 PMTU: ping -M do -s 1452 gets 'Packet too big: mtu=1400'" grep -q "Packet too big: mtu=1400" <<<"$out"
  check "IPv6 PMTU: the client's route cache learns mtu 1400" grep -q "mtu 1400" <<<"$($C ip -6 route get 2001:db8:1::2)"
}

test_transfer() {
  local want got
  forget_pmtu
  head -c $((2 * 1024 * 1024)) /dev/urandom >"$WORK/bulk.bin"
  want=$(sha256sum <"$WORK/bulk.bin" | cut -d' ' -f1)
  $S timeout 15 nc -4 -l -p 5010 >"$WORK/bulk.rcv" &
  local srv=$!
  sleep 0.3
  $C timeout 10 nc -4 -q 1 192.0.2.2 5010 <"$WORK/bulk.bin" || true
  wait $srv 2>/dev/null || true
  got=$(sha256sum <"$WORK/bulk.rcv" | cut -d' ' -f1)
  check "IPv4: a 2 MiB TCP transfer arrives intact (sha256)" test "$want" = "$got"
}

metric() { # metric NAME-WITH-LABELS: the sum of the matching samples of /metrics
  awk -v m="$1" 'index($0, m) == 1 { s += $NF } END { print s + 0 }' "$WORK/metrics.txt"
}

echo "e2e-package: lab up ($LAB_PREFIX), the installed mtugate as user mtugate with ${SVC_CAPS[*]}"
start_service "$WORK/mtg.err"
check "mtugate run starts as user mtugate with exactly CAP_${SVC_CAPS[*]^^}" true
pid_in_ns=$(pgrep -f "^/usr/bin/mtugate run --config $CONF" | head -1 || true)
if [[ -n $pid_in_ns ]]; then
  st=$(cat "/proc/$pid_in_ns/status")
  eff=$(awk '/^CapEff:/ {print $2}' <<<"$st")
  want=$(printf '%016x' $(((1 << 12) | (1 << 13) | (1 << 14) | (1 << 38) | (1 << 39))))
  u=$(awk '/^Uid:/ {print $2}' <<<"$st")
  check "the process runs as uid $u (mtugate: $uid) with CapEff $eff (the five: $want)" test "$u" = "$uid" -a "$eff" = "$want"
else
  bad "the running mtugate process is found"
fi

test_mss 4 192.0.2.2 5001 1360
test_mss 6 2001:db8:1::2 5002 1340
test_pmtu
test_transfer

sleep 1.2 # one statistics interval: the counters reach /metrics
$D curl -sf --max-time 5 http://127.0.0.1:9090/metrics >"$WORK/metrics.txt" || true
check "promtool check metrics accepts the live /metrics" sh -c "promtool check metrics <'$WORK/metrics.txt' >/dev/null 2>&1"
v4=$(metric 'mtugate_mss_clamped_total{port="inside",queue="0",family="ipv4"}')
v4b=$(metric 'mtugate_mss_clamped_total{port="outside",queue="0",family="ipv4"}')
v6=$(metric 'mtugate_mss_clamped_total{port="inside",queue="0",family="ipv6"}')
icmp=$(metric 'mtugate_icmp_errors_sent_total{')
check "counters: MSS clamped IPv4 inside $v4, outside $v4b, IPv6 inside $v6; ICMP errors sent $icmp" \
  test "$v4" -ge 1 -a "$v4b" -ge 1 -a "$v6" -ge 1 -a "$icmp" -ge 2
check "mtugate_build_info carries the revision of --version ($REV)" \
  grep -q "^mtugate_build_info{version=\"[0-9.]*\",revision=\"$REV\"} 1$" "$WORK/metrics.txt"

# Every metric the dashboard queries exists on the live /metrics; and its
# queries parse (promtool, as recording rules, Grafana's variables filled).
if python3 - /usr/share/mtugate/grafana/mtugate.json "$WORK/metrics.txt" "$WORK/dash-rules.yml" <<'EOF'
import json, re, sys
dash = json.load(open(sys.argv[1]))
live = {l.split("{")[0].split(" ")[0] for l in open(sys.argv[2]) if l.strip() and not l.startswith("#")}
exprs = []
def walk(panels):
    for p in panels:
        exprs.extend(t["expr"] for t in p.get("targets", []) if t.get("expr"))
        walk(p.get("panels", []))
walk(dash["panels"])
names = sorted({n for e in exprs for n in re.findall(r"\bmtugate_[a-z0-9_]+", e)})
missing = [n for n in names if n not in live]
print(f"  dashboard: {len(exprs)} queries, {len(names)} metric names; missing from /metrics: {missing or 'none'}")
with open(sys.argv[3], "w") as f:
    f.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, e in enumerate(exprs):
        e = e.replace("$__rate_interval", "1m").replace("$instance", ".*")
        f.write(f"      - record: dashboard:q{i}\n        expr: {json.dumps(e)}\n")
sys.exit(1 if missing or not names else 0)
EOF
then ok "every metric name in the dashboard's queries is on the live /metrics"; else bad "every metric name in the dashboard's queries is on the live /metrics"; fi
check "every dashboard query parses (promtool check rules)" quiet promtool check rules "$WORK/dash-rules.yml"

# ExecReload: `mtugate reload` as the user, no capability, in the service's
# mount namespace (where its control socket is).
mpid=$(pgrep -f "^/usr/bin/mtugate run --config $CONF" | head -1 || true)
sed -i '/^name = "outside"/,/^mtu/{s/^mtu = 1400/mtu = 1300/}' "$CONF"
out=$(timeout 10 nsenter --target "${mpid:-1}" --mount --net setpriv --reuid=mtugate --regid=mtugate --init-groups \
  --inh-caps=-all --bounding-set=-all --no-new-privs -- /usr/bin/mtugate reload --config "$CONF" 2>&1) || true
forget_pmtu
ping4=$($C ping -M do -s 1372 -c 2 -i 0.3 -W 1 192.0.2.2 2>&1 || true)
check "ExecReload (mtugate reload as user mtugate, no capability) applies outside mtu 1400 -> 1300 ($(head -1 <<<"$out" | cut -c1-60))" \
  grep -q "Frag needed and DF set (mtu = 1300)" <<<"$ping4"
sed -i '/^name = "outside"/,/^mtu/{s/^mtu = 1300/mtu = 1400/}' "$CONF"

stop_mtugate
check "SIGTERM: mtugate exits and its final counters balance" grep -q "accounting: balanced" "$WORK/mtg.out"

# --- 4. the capability set is minimal -----------------------------------------------

for drop in "${SVC_CAPS[@]}"; do
  keep=()
  for c in "${SVC_CAPS[@]}"; do [[ $c == "$drop" ]] || keep+=("$c"); done
  name="CAP_${drop^^}"
  for mode in preflight kernel; do
    envs=(RUST_LOG=warn)
    [[ $mode == kernel ]] && envs+=(MTUGATE_SKIP_PREFLIGHT=1)
    rc=0
    service_cmd "$(IFS=,; echo "${keep[*]}")" "${envs[@]}" -- \
      timeout -s INT 10 /usr/bin/mtugate run --config "$CONF"
    out=$("${SVC[@]}" 2>&1 >/dev/null) || rc=$?
    line=$(grep "^mtugate: " <<<"$out" | tail -1)
    echo "$line" >>"$WORK/refusals.txt"
    # With the preflight skipped, the message must carry the kernel's own
    # refusal (EPERM, EACCES, ENOBUFS) under the explanation.
    kernel_said=yes
    if [[ $mode == kernel ]] && ! grep -qE "\(os error (1|13|105)\)" <<<"$line"; then kernel_said=no; fi
    if [[ $mode == preflight ]] && grep -qE "\(os error" <<<"$line"; then kernel_said=no; fi
    if [[ $rc -ne 0 && $rc -ne 124 && $kernel_said == yes ]] && grep -q "mtugate run needs $name (.*) — missing" <<<"$line"; then
      ok "without $name ($mode refuses): exit $rc, $(grep -o "mtugate run needs $name ([^)]*)" <<<"$line" | cut -c1-110)"
    else
      bad "without $name ($mode refuses): exit $rc, ${line:-$out}"
    fi
  done
done

if [[ ${VERBOSE:-0} == 1 ]]; then sed 's/^/         | /' "$WORK/refusals.txt"; fi

# --- 5. remove, purge ------------------------------------------------------------------

bash deploy/lab.sh down >/dev/null 2>&1
cp "$WORK/pristine.toml" "$CONF" # the operator's edits undone: prerm's detach has nothing to do
check "dpkg -r removes it" quiet dpkg -r mtugate
check "after dpkg -r: binaries and unit gone, the conffile kept (policy)" \
  test ! -e /usr/bin/mtugate -a ! -e /lib/systemd/system/mtugate.service -a -e "$CONF"
check "dpkg --purge purges it" quiet dpkg --purge mtugate
INSTALLED=0
left=()
while read -r f; do
  [[ -z $f || -d $f ]] && continue
  [[ -e $f ]] && left+=("$f")
done <"$WORK/contents.txt"
for f in /etc/mtugate /etc/systemd/system/multi-user.target.wants/mtugate.service \
  /var/lib/systemd/deb-systemd-helper-enabled/mtugate.service.dsh-also \
  /var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/mtugate.service; do
  [[ -e $f || -L $f ]] && left+=("$f")
done
getent passwd mtugate >/dev/null && left+=("user mtugate")
getent group mtugate >/dev/null && left+=("group mtugate")
dpkg-query -W mtugate >/dev/null 2>&1 && left+=("dpkg database entry")
check "after dpkg --purge nothing is left: no file, unit link, user or group (left: ${left[*]:-nothing})" test ${#left[@]} -eq 0

# --- 6. the unit under a live systemd ------------------------------------------------

# This machine's systemd is not PID 1: deploy/e2e-systemd.sh boots its OS in
# a throwaway container and has systemd run the package there (after the
# purge above, so the container starts from a machine without it).
if bash deploy/e2e-systemd.sh "$DEB" >"$WORK/systemd.txt" 2>&1; then rc=0; else rc=$?; fi
sed 's/^/         | /' "$WORK/systemd.txt"
check "the unit under a live systemd (deploy/e2e-systemd.sh: $(tail -1 "$WORK/systemd.txt" | sed 's/^e2e-systemd: //'))" test "$rc" -eq 0

echo "e2e-package: took $((SECONDS - T0)) s"
e2e_summary "e2e-package: "

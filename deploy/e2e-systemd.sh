#!/usr/bin/env bash
# The Debian package's unit under a live systemd: the machine's own OS is
# booted as a throwaway container (systemd-nspawn over an overlay of /, its
# writes in a tmpfs; private network; basic.target, so the machine's
# services stay down) and the package is installed, started, reloaded,
# stopped and purged there by systemd itself, with every hardening setting
# of deploy/mtugate.service in force. Nothing of it reaches the host: the
# overlay's upper layer is a tmpfs, the network and /run are the
# container's.
#
# Checks: the unconfigured service starts and attaches nothing; with two
# ports named (a client and a server namespace inside the container) it
# runs as user mtugate with exactly the five capabilities, no new
# privileges and a seccomp filter, forwards, sends ICMP "fragmentation
# needed", serves /metrics; `systemctl reload` applies a new MTU and fails
# on a refused file; after `systemctl stop` the XDP stage stays, its pins
# owned by mtugate, and the next start takes the link over; purge leaves no
# program, pin directory, user or unit.
#
# Usage: deploy/e2e-systemd.sh path/to/mtugate.deb   (as root; needs
# systemd-nspawn: Debian's systemd-container). Prints one line per check
# and "N passed, M failed"; exits 1 on a failure. Bounded; torn down on exit.
#
# What the container cannot show as a host would: systemd mounts no bpffs
# at the container's /sys/fs/bpf (the script mounts one, as systemd does on
# a host at boot), and nspawn's own seccomp filter needs `bpf` allowed.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB=$(readlink -f "${1:?usage: e2e-systemd.sh path/to/mtugate.deb}")
[[ $(id -u) -eq 0 ]] || { echo "e2e-systemd: needs root" >&2; exit 1; }
command -v systemd-nspawn >/dev/null || { echo "e2e-systemd: systemd-nspawn missing (apt-get install systemd-container)" >&2; exit 1; }

T0=$SECONDS
CT=$(mktemp -d /tmp/mtgd-ct.XXXXXX)
NAME=mtgd-systemd
NSPAWN=""
PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok     - $*"; }
bad() { FAIL=$((FAIL + 1)); echo "FAILED - $*"; }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }

cleanup() {
  set +e
  if [[ -n $NSPAWN ]] && kill -0 "$NSPAWN" 2>/dev/null; then
    kill -TERM "$NSPAWN" # the container shuts down
    for _ in $(seq 60); do kill -0 "$NSPAWN" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$NSPAWN" 2>/dev/null
  fi
  mountpoint -q "$CT/root" && umount "$CT/root"
  mountpoint -q "$CT/up" && umount "$CT/up"
  rm -rf "$CT"
}
# A signal ends the run, through the EXIT trap (cleanup runs once), instead
# of letting the script carry on without its lab.
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$CT/up" "$CT/root"
mount -t tmpfs mtgd-ct "$CT/up"
mkdir -p "$CT/up/u" "$CT/up/w"
mount -t overlay mtgd-ct -o "lowerdir=/,upperdir=$CT/up/u,workdir=$CT/up/w" "$CT/root"
cp "$DEB" "$CT/root/root/mtugate.deb"

systemd-nspawn -D "$CT/root" -M "$NAME" -b --private-network --capability=all \
  --system-call-filter="bpf perf_event_open" --register=no --keep-unit --console=passive \
  -- systemd.unit=basic.target >"$CT/boot.log" 2>&1 </dev/null &
NSPAWN=$!
CPID=""
state=""
for _ in $(seq 60); do
  CPID=$(pgrep -P "$NSPAWN" | head -1 || true)
  if [[ -n $CPID ]]; then
    state=$(nsenter -t "$CPID" -a systemctl is-system-running 2>/dev/null || true)
    [[ $state == running || $state == degraded ]] && break
  fi
  sleep 0.5
done
if [[ $state != running && $state != degraded ]]; then
  echo "e2e-systemd: the container did not boot (state: ${state:-none}):" >&2
  tail -20 "$CT/boot.log" >&2
  exit 1
fi
ct() { nsenter -t "$CPID" -a "$@"; }
ok "the machine's OS boots in a container (systemd $(ct systemctl --version | awk 'NR==1 {print $2}'), state $state)"

# What systemd does on a host at boot: a bpffs at /sys/fs/bpf (mode 0700).
ct sh -c 'mount -o remount,rw /sys && mkdir -p /sys/fs/bpf && mount -t bpf -o mode=0700 bpf /sys/fs/bpf; mount -o remount,ro /sys'
# A client and a server namespace, joined to the ports a0 and a1.
ct sh -c '
  ip netns add c && ip netns add s
  ip link add a0 type veth peer name e0 netns c
  ip link add a1 type veth peer name e1 netns s
  ip netns exec c ip addr add 192.0.2.1/24 dev e0
  ip netns exec s ip addr add 192.0.2.2/24 dev e1
  for x in c:e0 s:e1; do
    n=${x%:*} e=${x#*:}
    ip netns exec $n ethtool -K $e tx off >/dev/null 2>&1
    ip netns exec $n ethtool -K $e gro on >/dev/null 2>&1
    ip netns exec $n ip link set lo up
    ip netns exec $n ip link set $e up
  done
  sysctl -qw net.ipv6.conf.a0.disable_ipv6=1 net.ipv6.conf.a1.disable_ipv6=1
  ip link set a0 up && ip link set a1 up'

check "dpkg -i installs the package in the container" ct sh -c 'dpkg -i /root/mtugate.deb >/dev/null 2>&1'
own=$(ct stat -c %U /sys/fs/bpf/mtugate 2>&1 || true)
check "postinst made the pin directory /sys/fs/bpf/mtugate (tmpfiles.d), owned by mtugate (owner: $own)" test "$own" = mtugate

# The machine's prometheus package would listen on 9090 in a full boot;
# keep clear of it anyway.
ct sed -i 's/^listen = .*/listen = "127.0.0.1:9190"/' /etc/mtugate/mtugate.toml
ct systemctl start mtugate || true
sleep 1
check "unconfigured: systemd starts the service, which attaches nothing and waits ($(ct systemctl is-active mtugate || true))" \
  sh -c "nsenter -t $CPID -a systemctl is-active -q mtugate && nsenter -t $CPID -a journalctl -u mtugate -o cat --no-pager | grep -q 'no \[\[port\]\] is configured'"

ct sh -c 'printf "\n[[port]]\nname = \"inside\"\niface = \"a0\"\nmtu = 1500\n\n[[port]]\nname = \"outside\"\niface = \"a1\"\nmtu = 1400\n" >>/etc/mtugate/mtugate.toml'
ct systemctl restart mtugate || true
running=no
for _ in $(seq 50); do
  if ct journalctl -u mtugate -o cat --no-pager | grep -q "mtugate running"; then running=yes; break; fi
  sleep 0.1
done
if [[ $running != yes ]]; then ct journalctl -u mtugate -o cat --no-pager | tail -5 | sed 's/^/         | /'; fi
check "with two ports named, systemd runs it: 'mtugate running' in the journal" test $running = yes
pid=$(ct systemctl show -p MainPID --value mtugate)
st=$(ct cat "/proc/$pid/status" 2>/dev/null || true)
want=$(printf '%016x' $(((1 << 12) | (1 << 13) | (1 << 14) | (1 << 38) | (1 << 39))))
uid=$(ct id -u mtugate)
f() { awk -v k="$1:" '$1 == k {print $2}' <<<"$st"; }
check "the service process: uid $(f Uid) (mtugate: $uid), CapEff $(f CapEff) = CapBnd $(f CapBnd) = CapAmb $(f CapAmb) (want $want), NoNewPrivs $(f NoNewPrivs), Seccomp $(f Seccomp)" \
  test "$(f Uid)" = "$uid" -a "$(f CapEff)" = "$want" -a "$(f CapBnd)" = "$want" -a "$(f CapAmb)" = "$want" -a "$(f NoNewPrivs)" = 1 -a "$(f Seccomp)" = 2

out=$(ct ip netns exec c ping -c 3 -i 0.2 -W 1 192.0.2.2 2>&1 || true)
check "the client reaches the server through it ($(grep -o '[0-9]* received' <<<"$out" || echo 0 received))" grep -q " 0% packet loss" <<<"$out"
ct ip netns exec c ip route flush cache
out=$(ct ip netns exec c ping -M do -s 1472 -c 2 -i 0.3 -W 1 192.0.2.2 2>&1 || true)
check "PMTU: ping -M do -s 1472 gets 'Frag needed ... mtu = 1400'" grep -q "Frag needed and DF set (mtu = 1400)" <<<"$out"
m=$(ct curl -sf --max-time 5 http://127.0.0.1:9190/metrics || true)
check "/metrics answers with mtugate_build_info" grep -q "^mtugate_build_info{" <<<"$m"

ct sed -i '/^name = "outside"/,/^mtu/{s/^mtu = 1400/mtu = 1300/}' /etc/mtugate/mtugate.toml
check "systemctl reload (ExecReload=mtugate reload) applies outside mtu 1400 -> 1300" ct systemctl reload mtugate
ct ip netns exec c ip route flush cache
out=$(ct ip netns exec c ping -M do -s 1372 -c 2 -i 0.3 -W 1 192.0.2.2 2>&1 || true)
check "after the reload, ping -M do -s 1372 gets 'Frag needed ... mtu = 1300'" grep -q "Frag needed and DF set (mtu = 1300)" <<<"$out"
ct sh -c 'echo "mtu_typo = 1" >>/etc/mtugate/mtugate.toml'
rc=0
ct systemctl reload mtugate >/dev/null 2>&1 || rc=$?
check "systemctl reload of a refused file fails (exit $rc) and the service stays up" \
  test "$rc" -ne 0 -a "$(ct systemctl is-active mtugate || true)" = active
ct sed -i '/^mtu_typo = 1$/d' /etc/mtugate/mtugate.toml

ct systemctl stop mtugate || true
check "after systemctl stop the XDP stage stays on the ports" sh -c "nsenter -t $CPID -a ip link show a0 | grep -q prog/xdp"
pins=$(ct find /sys/fs/bpf/mtugate -name link -user mtugate 2>/dev/null | wc -l)
check "its two pinned links are the mtugate user's ($pins)" test "$pins" -eq 2
ct systemctl start mtugate || true
took=no
for _ in $(seq 50); do
  if ct journalctl -u mtugate -o cat --no-pager | grep -q "took over the pinned XDP link"; then took=yes; break; fi
  sleep 0.1
done
check "the next start takes the pinned link over" test $took = yes
ct systemctl stop mtugate || true

# The image's policy-rc.d keeps dpkg from stopping services: stopped above.
check "dpkg --purge in the container" ct sh -c 'dpkg --purge mtugate >/dev/null 2>&1'
left=()
ct ip link show a0 | grep -q prog/xdp && left+=("an XDP program on a0")
ct test -e /sys/fs/bpf/mtugate && left+=(/sys/fs/bpf/mtugate)
ct getent passwd mtugate >/dev/null && left+=("user mtugate")
ct test -e /lib/systemd/system/mtugate.service && left+=("the unit")
ct systemctl cat mtugate >/dev/null 2>&1 && left+=("a unit systemd still knows")
check "after the purge nothing is left (left: ${left[*]:-nothing})" test ${#left[@]} -eq 0

echo "e2e-systemd: took $((SECONDS - T0)) s"
echo "e2e-systemd: $PASS passed, $FAIL failed"
[[ $FAIL -eq 0 ]]

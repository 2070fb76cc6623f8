#!/usr/bin/env bash
# mtugate lab: three network namespaces joined by two veth pairs.
#
#   mtg-client            mtg-dut                 mtg-server
#   eth0  <----veth---->  in0   [mtugate]  out0  <----veth---->  eth0
#
# Usage:
#   deploy/lab.sh up [wire|bridge|router]   (or MODE=... deploy/lab.sh up)
#   deploy/lab.sh down
#   deploy/lab.sh status
#   deploy/lab.sh check                      ping v4+v6 client -> server (bounded)
#   deploy/lab.sh exec client|dut|server CMD [ARGS...]
#
# Modes:
#   wire   (default) in0/out0 up, no addresses, IPv6 disabled on them, so the
#          DUT's own kernel stays silent; client 192.0.2.1/24 + 2001:db8:1::1/64,
#          server 192.0.2.2/24 + 2001:db8:1::2/64: one L2 segment with mtugate
#          attached to in0/out0 as a bump in the wire (nothing forwards until
#          it runs).
#   bridge same addressing; the DUT kernel bridges in0+out0 with mtgbr0.
#   router client 198.51.100.1/24 + 2001:db8:a::1/64 via .254 / ::fe (DUT in0),
#          server 203.0.113.1/24 + 2001:db8:b::1/64 via .254 / ::fe (DUT out0),
#          IPv4 and IPv6 forwarding on in the DUT. A second server network
#          behind the server (192.0.2.1 + 2001:db8:c::1 on its lo), routed
#          by the DUT via 203.0.113.1 / 2001:db8:b::1 with a normal route.
#
# Environment:
#   MODE      wire|bridge|router (the argument after `up` wins)
#   OUT_MTU   MTU of DUT out0 and of the server's eth0 (default 1500); the
#             client link stays at 1500.
#   OFFLOADS  off (default) | on. `off` turns off TX checksum offload (and with
#             it TSO/GSO) and TX VLAN insertion on the client's and server's
#             eth0. Needed for AF_XDP: a veth peer with TX checksum offload
#             hands frames on with CHECKSUM_PARTIAL (only the pseudo-header sum
#             in the TCP/UDP checksum field); the XDP path copies those bytes
#             into the UMEM as they are and the frame mtugate transmits is then
#             dropped by the receiver for a bad checksum. VLAN insertion
#             offload keeps the 802.1Q tag out of the frame bytes. Kept `off`
#             in every mode so kernel bridge/router runs are comparable.
#
#   ROUTE_MTU router mode: the DUT's routes toward the server's network
#             (203.0.113.0/24, 2001:db8:b::/64) get `mtu ROUTE_MTU`, as a
#             tunnel's would (default: none).
#   QUEUES    RX/TX queues of every veth (default 1). With more, a sender's
#             TX queue (chosen per flow, or per CPU for packet sockets)
#             is the receiver's RX queue: mtugate can run one worker per
#             queue, as on a multi-queue NIC.
#
#   LAB_PREFIX  prefix of the namespace names (default mtg: mtg-client,
#             mtg-dut, mtg-server); must start with "mtg". Lets two labs run
#             side by side (a test suite and a benchmark).
#
# Only namespaces named $LAB_PREFIX-* are created or removed. The veths are created
# directly inside the namespaces, so no interface of the host is touched and
# deleting a namespace deletes its veths.
#
# `ip netns exec` mounts a fresh sysfs without bpffs, and a bpffs mounted inside
# it lives in that one command's private mount namespace: pins there die with
# the command. mtugate pins its XDP link so that the XDP stage outlives the
# process (bypass/block after a crash), so `up` mounts one bpffs outside /sys,
# at $LAB_BPFFS (default /run/mtugate/bpffs, shared by all labs: every pin goes
# under a directory named after its network namespace), which `ip netns exec`
# keeps; deploy/configs/lab.toml points [xsk] bpffs there. `down` removes the
# pins of its own DUT namespace. libxdp's dispatcher (xdp-loader, xdpsock)
# wants /sys/fs/bpf: `exec` mounts one there for that one command.
#
# XDP_REDIRECT into a veth (mtugate's fast path) needs NAPI on the receiving
# end of the pair: `up` turns GRO on on the client's and server's eth0, in
# every mode, so that kernel and mtugate runs see the same hosts.
set -euo pipefail

LAB_PREFIX=${LAB_PREFIX:-mtg}
[[ $LAB_PREFIX =~ ^mtg[a-z0-9]*$ ]] || { echo "lab: LAB_PREFIX must match ^mtg[a-z0-9]*\$" >&2; exit 1; }
readonly NS_C=$LAB_PREFIX-client NS_D=$LAB_PREFIX-dut NS_S=$LAB_PREFIX-server
readonly ALL_NS=("$NS_C" "$NS_D" "$NS_S")
OUT_MTU=${OUT_MTU:-1500}
ROUTE_MTU=${ROUTE_MTU:-}
OFFLOADS=${OFFLOADS:-off}
QUEUES=${QUEUES:-1}
LAB_BPFFS=${LAB_BPFFS:-/run/mtugate/bpffs}

log() { printf 'lab: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

our_namespaces() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${LAB_PREFIX}-(client|dut|server)\$" || true; }

lab_down() {
    local ns ino
    if ip netns list 2>/dev/null | grep -qw "$NS_D"; then
        # The DUT's pins (a link pinned by mtugate keeps a defunct link object
        # alive after its interface is gone).
        ino=$(ip netns exec "$NS_D" stat -L -c %i /proc/self/ns/net 2>/dev/null || true)
        if [[ -n $ino && -d $LAB_BPFFS/mtugate/$ino ]]; then
            rm -rf "${LAB_BPFFS:?}/mtugate/$ino"
        fi
    fi
    for ns in $(our_namespaces); do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
        ip netns del "$ns"
        log "deleted netns $ns"
    done
}

ns_setup() {
    local ns=$1
    ip netns add "$ns"
    nsx "$ns" ip link set lo up
    # Addresses usable at once; new interfaces inherit `default`.
    nsx "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
    nsx "$ns" sysctl -qw net.ipv6.conf.all.dad_transmits=0 net.ipv6.conf.default.dad_transmits=0
}

host_offloads() {
    local ns=$1 dev=$2
    [[ $OFFLOADS == off ]] || return 0
    # tx off also drops tso/gso/ufo (they depend on TX checksumming).
    nsx "$ns" ethtool -K "$dev" tx off txvlan off tx-vlan-stag-hw-insert off >/dev/null 2>&1 ||
        nsx "$ns" ethtool -K "$dev" tx off >/dev/null
}

dut_quiet() {
    # The DUT's own stack must not speak on a bump-in-the-wire port.
    local dev=$1
    nsx "$NS_D" sysctl -qw "net.ipv6.conf.$dev.disable_ipv6=1"
}

lab_up() {
    local mode=$1
    case $mode in wire | bridge | router) ;; *) die "unknown mode '$mode' (wire|bridge|router)" ;; esac
    [[ $OUT_MTU =~ ^[0-9]+$ ]] || die "OUT_MTU must be a number"
    [[ $OFFLOADS == on || $OFFLOADS == off ]] || die "OFFLOADS must be on or off"
    [[ $QUEUES =~ ^[1-9][0-9]?$ ]] || die "QUEUES must be 1..99"
    [[ -z $ROUTE_MTU || $ROUTE_MTU =~ ^[0-9]+$ ]] || die "ROUTE_MTU must be a number"

    lab_down
    _up_done=0
    trap 'if [[ $_up_done != 1 ]]; then log "up failed, tearing down"; lab_down; fi' EXIT

    local ns
    for ns in "${ALL_NS[@]}"; do ns_setup "$ns"; done

    local q="numtxqueues $QUEUES numrxqueues $QUEUES"
    # shellcheck disable=SC2086 # $q is two option pairs
    ip link add eth0 netns "$NS_C" mtu 1500 $q type veth peer name in0 netns "$NS_D" mtu 1500 $q
    # shellcheck disable=SC2086
    ip link add out0 netns "$NS_D" mtu "$OUT_MTU" $q type veth peer name eth0 netns "$NS_S" mtu "$OUT_MTU" $q

    host_offloads "$NS_C" eth0
    host_offloads "$NS_S" eth0
    # NAPI on the hosts' ends: frames redirected by XDP into in0/out0 land there.
    nsx "$NS_C" ethtool -K eth0 gro on >/dev/null
    nsx "$NS_S" ethtool -K eth0 gro on >/dev/null
    if ! mountpoint -q "$LAB_BPFFS"; then
        mkdir -p "$LAB_BPFFS"
        mount -t bpf mtugate-lab "$LAB_BPFFS"
    fi

    local c4 c6 s4 s6
    case $mode in
    wire | bridge)
        c4=192.0.2.1/24 c6=2001:db8:1::1/64 s4=192.0.2.2/24 s6=2001:db8:1::2/64
        ;;
    router)
        c4=198.51.100.1/24 c6=2001:db8:a::1/64 s4=203.0.113.1/24 s6=2001:db8:b::1/64
        ;;
    esac
    nsx "$NS_C" ip addr add "$c4" dev eth0
    nsx "$NS_C" ip addr add "$c6" dev eth0 nodad
    nsx "$NS_S" ip addr add "$s4" dev eth0
    nsx "$NS_S" ip addr add "$s6" dev eth0 nodad

    case $mode in
    wire)
        dut_quiet in0
        dut_quiet out0
        ;;
    bridge)
        dut_quiet in0
        dut_quiet out0
        nsx "$NS_D" ip link add mtgbr0 type bridge stp_state 0 forward_delay 0
        nsx "$NS_D" sysctl -qw net.ipv6.conf.mtgbr0.disable_ipv6=1
        nsx "$NS_D" ip link set in0 master mtgbr0
        nsx "$NS_D" ip link set out0 master mtgbr0
        nsx "$NS_D" ip link set mtgbr0 up
        ;;
    router)
        nsx "$NS_D" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
        nsx "$NS_D" ip addr add 198.51.100.254/24 dev in0
        nsx "$NS_D" ip addr add 2001:db8:a::fe/64 dev in0 nodad
        nsx "$NS_D" ip addr add 203.0.113.254/24 dev out0
        nsx "$NS_D" ip addr add 2001:db8:b::fe/64 dev out0 nodad
        ;;
    esac

    nsx "$NS_C" ip link set eth0 up
    nsx "$NS_S" ip link set eth0 up
    nsx "$NS_D" ip link set in0 up
    nsx "$NS_D" ip link set out0 up

    if [[ $mode == router ]]; then
        nsx "$NS_C" ip route add default via 198.51.100.254
        nsx "$NS_C" ip -6 route add default via 2001:db8:a::fe
        nsx "$NS_S" ip route add default via 203.0.113.254
        nsx "$NS_S" ip -6 route add default via 2001:db8:b::fe
        # The second server network, with a normal route.
        nsx "$NS_S" ip addr add 192.0.2.1/32 dev lo
        nsx "$NS_S" ip addr add 2001:db8:c::1/128 dev lo
        nsx "$NS_D" ip route add 192.0.2.0/24 via 203.0.113.1 dev out0
        nsx "$NS_D" ip -6 route add 2001:db8:c::/64 via 2001:db8:b::1 dev out0
        if [[ -n $ROUTE_MTU ]]; then
            nsx "$NS_D" ip route replace 203.0.113.0/24 dev out0 proto kernel scope link \
                src 203.0.113.254 mtu "$ROUTE_MTU"
            nsx "$NS_D" ip -6 route replace 2001:db8:b::/64 dev out0 proto kernel metric 256 \
                mtu "$ROUTE_MTU"
        fi
    fi

    _up_done=1
    log "up: mode=$mode OUT_MTU=$OUT_MTU ROUTE_MTU=${ROUTE_MTU:-none} OFFLOADS=$OFFLOADS QUEUES=$QUEUES"
}

lab_mode() {
    if ! ip netns list | grep -qw "$NS_D"; then echo down; return; fi
    if nsx "$NS_D" ip link show mtgbr0 >/dev/null 2>&1; then echo bridge
    elif [[ -n $(nsx "$NS_D" ip -br addr show dev in0 scope global 2>/dev/null | awk '{print $3}') ]]; then echo router
    else echo wire; fi
}

lab_status() {
    local mode ns
    mode=$(lab_mode)
    echo "mode: $mode"
    [[ $mode != down ]] || return 0
    for ns in "${ALL_NS[@]}"; do
        echo "== $ns"
        nsx "$ns" ip -br addr show | grep -v '^lo ' || true
        nsx "$ns" ip -o link show | grep -v ': lo:' |
            sed -E 's/^[0-9]+: ([^:]+):.* mtu ([0-9]+).*/  \1 mtu \2/' || true
        # XDP programs attached (prog id and mode), if any.
        nsx "$ns" ip -d link show | grep -E 'prog/xdp|xdpgeneric|xdpdrv| xdp ' | sed 's/^/  /' || true
    done
    for ns in "$NS_C" "$NS_S"; do
        echo "== $ns eth0 offloads"
        nsx "$ns" ethtool -k eth0 | grep -E '^(tx-checksumming|tcp-segmentation-offload|generic-segmentation-offload|tx-vlan-offload):' | sed 's/^/  /'
    done
}

lab_check() {
    local mode v4 v6 ok=0
    mode=$(lab_mode)
    case $mode in
    wire | bridge) v4=192.0.2.2 v6=2001:db8:1::2 ;;
    router) v4=203.0.113.1 v6=2001:db8:b::1 ;;
    *) die "lab is down" ;;
    esac
    if nsx "$NS_C" ping -q -c 3 -i 0.2 -W 1 -w 5 "$v4" >/dev/null; then echo "ping $v4: ok"; else echo "ping $v4: FAIL"; ok=1; fi
    if nsx "$NS_C" ping -6 -q -c 3 -i 0.2 -W 1 -w 5 "$v6" >/dev/null; then echo "ping $v6: ok"; else echo "ping $v6: FAIL"; ok=1; fi
    return $ok
}

lab_exec() {
    local which=${1:-}
    shift || true
    local ns
    case $which in client) ns=$NS_C ;; dut) ns=$NS_D ;; server) ns=$NS_S ;; *) die "exec client|dut|server CMD..." ;; esac
    [[ $# -gt 0 ]] || die "exec: no command"
    # shellcheck disable=SC2016
    exec ip netns exec "$ns" sh -c 'mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf; exec "$@"' sh "$@"
}

[[ $(id -u) -eq 0 ]] || die "needs root"
cmd=${1:-}
shift || true
case $cmd in
up) lab_up "${1:-${MODE:-wire}}" ;;
down) lab_down ;;
status) lab_status ;;
check) lab_check ;;
exec) lab_exec "$@" ;;
*)
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac

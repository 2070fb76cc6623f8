#!/usr/bin/env bash
# Installs the Debian packages mtugate needs to build and to run its lab.
# Idempotent; quiet when everything is already there.
set -euo pipefail

PKGS=(
  # build: xsk-rs builds the vendored libxdp/libbpf with cc and bindgen
  clang libclang-dev libelf-dev zlib1g-dev pkg-config make gcc m4 binutils
  # the XDP program (xsk/bpf): UAPI headers and libbpf's bpf_helpers.h
  linux-libc-dev libbpf-dev
  # the lab: namespaces, veth, traffic, and independent judges of our packets
  iproute2 iputils-ping ethtool tcpdump tshark iperf3 netcat-openbsd procps python3
  # deploy/e2e-rules.sh: a forged ICMP (scapy), the client's ICMP firewall
  python3-scapy iptables
  # management tests: Prometheus' own checker (promtool) and an HTTP client
  prometheus curl
  # deploy/bench-mgmt.sh: a 64-byte frame generator
  tcpreplay
  # benchmarks (mtugate-perf compare): the kernel's TCPMSS rule, and the
  # kernel headers the sink's tc program is built against (clang, above)
  iptables linux-libc-dev
  # the Debian package (deploy/deb/build.sh, deploy/e2e-package.sh):
  # dpkg-shlibdeps, lintian, systemd-analyze, the maintainer scripts'
  # adduser / deb-systemd-helper, setpriv (util-linux), man for
  # `systemd-analyze verify`'s Documentation= check
  dpkg-dev lintian systemd adduser init-system-helpers util-linux man-db
  # deploy/e2e-systemd.sh: the unit under a live systemd, in a container
  systemd-container
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null; then SUDO=sudo; else
      echo "deps.sh: need root to apt-get install: ${missing[*]}" >&2; exit 1
    fi
  fi
  echo "deps.sh: installing ${missing[*]}"
  $SUDO apt-get update -qq
  # tshark asks whether non-root users may capture; answer no, non-interactively.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  [[ -x "$HOME/.cargo/bin/cargo" ]] && export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null; then
  echo "deps.sh: no Rust toolchain found: install Rust >= 1.85 (rustup.rs) first" >&2
  exit 1
fi

#!/usr/bin/env bash
# The one-command demo (README): installs what it needs, builds mtugate,
# brings up the lab (client | mtugate | server in network namespaces, the
# server side behaving like a 1400-byte tunnel), drives real traffic through
# it, and shows what the hosts saw next to mtugate's counters; then the same
# in router mode, mtugate as the gateway with a route MTU of 1400 toward the
# server. Tears each lab down at the end, whatever happens. Takes about two
# minutes after the build.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
if [[ $(id -u) -ne 0 ]]; then
  echo "demo: run as root (it creates network namespaces and attaches XDP programs)" >&2
  exit 1
fi
bash deploy/deps.sh
cargo build --release -p mtugate
echo "== wire mode: mtugate as a transparent bump in the wire (deploy/e2e.sh)"
DEMO=1 bash deploy/e2e.sh target/release/mtugate
echo
echo "== router mode: mtugate as the gateway, the kernel as its control plane (deploy/e2e-router.sh)"
exec bash deploy/e2e-router.sh target/release/mtugate

#!/usr/bin/env bash
# Runs every test mtugate has: formatting, lints, unit/property/integration
# tests, and (as root) the end-to-end lab tests against real Linux hosts.
# This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

bash deploy/deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --all-features --locked

echo "== end-to-end tests in the lab (network namespaces, real Linux hosts)"
if [[ $(id -u) -ne 0 ]]; then
  if [[ "${CI:-}" == "true" ]]; then
    echo "e2e: CI must run as root: the end-to-end tests cannot be skipped there" >&2
    exit 1
  fi
  echo "##########################################################################" >&2
  echo "## SKIPPED: end-to-end lab tests need root (namespaces, XDP).           ##" >&2
  echo "## Run as root to test against real Linux hosts: bash deploy/test.sh    ##" >&2
  echo "##########################################################################" >&2
  exit 0
fi
cargo build --release -p mtugate -p mtugate-perf --locked
echo "== wire-mode e2e, [xsk] steer = \"exceptions\" (the XDP fast path)"
STEER=exceptions bash deploy/e2e.sh target/release/mtugate
# The same suite with every frame through AF_XDP, against the debug build
# `cargo test` just made: debug builds track the owner of every UMEM frame
# and panic on a wrong move (a frame freed twice, sent while in a ring), so
# this runs that check on the kernel's real rings with all the traffic.
# (The in-memory rings run it in `cargo test`; Miri cannot run the real
# ones: they are shared with the kernel through mmap.)
echo "== wire-mode e2e, [xsk] steer = \"all\", debug build (frame ownership tracker on)"
STEER=all bash deploy/e2e.sh target/debug/mtugate
echo "== router mode: the kernel's FIB in XDP, clamp to the route MTUs, ICMP from the router, live route changes"
bash deploy/e2e-router.sh target/release/mtugate
echo "== SYN policing, shared budgets, bursts, lost frames, two workers on two queues"
bash deploy/e2e-limits.sh target/release/mtugate
bash deploy/e2e-mgmt.sh target/release/mtugate
echo "== rules and learned path MTUs e2e (issue 12)"
bash deploy/e2e-rules.sh target/release/mtugate
bash deploy/e2e-perf.sh target/release/mtugate-perf target/release/mtugate
# The Debian package: built from these release binaries, linted, installed,
# run as its system user with only its capabilities, purged.
bash deploy/e2e-package.sh

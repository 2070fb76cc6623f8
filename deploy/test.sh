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

#!/usr/bin/env bash
# Static analysis of every contract with slither, from its own virtualenv (slither-analyzer
# needs web3<8, the project uses web3 8). Fails on any finding of medium or high impact.
#   contracts/slither.sh [VENV]      (default .venv-slither, created on first use)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$root/.venv-slither}"
if [ ! -x "$venv/bin/slither" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "slither-analyzer==0.11.6"
fi
# Sources are copied out so that crytic-compile sees nothing but the contracts.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/contracts"
cp "$root"/contracts/*.sol "$work/contracts/"
cd "$work"
MEDSWARM_SOLC_PROJECT_SETTINGS=1 "$venv/bin/slither" contracts/ \
  --solc "$root/contracts/solc.js" --solc-standard-json \
  --exclude-informational --exclude-optimization --exclude-low \
  --fail-medium

#!/usr/bin/env bash
# Installs dive, the layer audit's oracle (tests/e2e/test_layer_audit.py, bench/audit_bench.py), into .tools/bin
# (ignored by git) from the Go module proxy, with the Go toolchain on the machine. Nothing downloaded is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
DIVE_VERSION=v0.13.1
BIN="$PWD/.tools/bin"
if [ -x "$BIN/dive" ] && [ "$(cat "$BIN/dive.version" 2>/dev/null)" = "$DIVE_VERSION" ]; then
  exit 0
fi
command -v go >/dev/null || { echo "install-dive: no Go toolchain on PATH; dive $DIVE_VERSION cannot be built" >&2; exit 1; }
mkdir -p "$BIN"
GOBIN="$BIN" GOFLAGS=-mod=mod go install "github.com/wagoodman/dive@$DIVE_VERSION"
echo "$DIVE_VERSION" > "$BIN/dive.version"

#!/usr/bin/env bash
# The inner loop (`npm run check`): what a change should pass before the full test command, in a few
# minutes once built. fmt, clippy, the Rust tests, the addon as `npm run build` makes it (dev profile,
# this machine's linker), TypeScript and jest on it. Not here, only in `npm test`: the tool and
# database set-up, cargo deny, npm audit, the zig-linked builds with their glibc/musl checks, the
# Lambda bootstrap, actionlint, and the package test (package.spec.ts installs the packed platform
# packages, which those builds make). Arguments are passed to jest (e.g. a spec's name).
# Needs what `npm test` set up once: moto_server, PostgreSQL and MariaDB running.
#
# Everything is built first; then the Rust tests and jest run side by side: both spend most of
# their time waiting on moto, the databases and the emulator, not on the 2 cores. Each one's output
# is printed whole when both are done. (`npm test` runs them one after the other.)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pushq/target}"
section() { echo "== [${SECONDS}s] $*"; }

section "cargo fmt / clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

section "build: the Rust tests, the addon (npm run build: dev profile); index.js / index.d.ts as napi wrote them"
cargo test --workspace --exclude pushq-node --no-run --quiet
npm run build --silent
git diff --exit-code -- index.js index.d.ts || {
  echo "index.js/index.d.ts differ from what napi build writes: commit them" >&2
  exit 1
}
npx tsc --noEmit -p .

section "the Rust tests and jest (without the package test), side by side"
export PUSHQ_BIN="$CARGO_TARGET_DIR/debug/pushq"
logs="$(mktemp -d)"
cargo test --workspace --exclude pushq-node >"$logs/cargo.log" 2>&1 &
cargo_pid=$!
npx jest --ci --testPathIgnorePatterns package.spec "$@" >"$logs/jest.log" 2>&1 &
jest_pid=$!
cargo_rc=0 jest_rc=0
wait "$cargo_pid" || cargo_rc=$?
wait "$jest_pid" || jest_rc=$?
section "cargo test (exit $cargo_rc)"
cat "$logs/cargo.log"
section "jest (exit $jest_rc)"
cat "$logs/jest.log"
rm -rf "$logs"
[ "$cargo_rc" -eq 0 ] && [ "$jest_rc" -eq 0 ]

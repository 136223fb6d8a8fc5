#!/usr/bin/env bash
# The inner loop (`npm run check`): what a change should pass before the full test command, in a few
# minutes once built. fmt, clippy, the Rust tests, the addon as `npm run build` makes it (dev profile,
# this machine's linker), TypeScript and jest on it. Not here, only in `npm test`: the tool and
# database set-up, cargo deny, npm audit, the zig-linked builds with their glibc/musl checks, the
# Lambda bootstrap, actionlint, and the package test (package.spec.ts installs the packed platform
# packages, which those builds make). Arguments are passed to jest (e.g. a spec's name).
# Needs what `npm test` set up once: moto_server, PostgreSQL and MariaDB running.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pushq/target}"
section() { echo "== [${SECONDS}s] $*"; }

section "cargo fmt / clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

section "Rust tests"
cargo test --workspace --exclude pushq-node
export PUSHQ_BIN="$CARGO_TARGET_DIR/debug/pushq"

section "the addon (npm run build: dev profile), index.js / index.d.ts as napi wrote them"
npm run build --silent
git diff --exit-code -- index.js index.d.ts || {
  echo "index.js/index.d.ts differ from what napi build writes: commit them" >&2
  exit 1
}

section "TypeScript and jest (without the package test)"
npx tsc --noEmit -p .
npx jest --ci --testPathIgnorePatterns package.spec "$@"

#!/usr/bin/env bash
# Every test pushq has: `npm test` runs this, after `npm ci`. Needs Rust, Node, Python and
# binutils' objdump; scripts/setup.sh installs the rest when missing (moto_server, cargo-lambda,
# cargo-zigbuild + zig, cargo-deny, cfn-lint, actionlint) and starts PostgreSQL and MariaDB if they are down.
# The jest suite starts its own moto_server on a free loopback port.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pushq/target}"

# Each section's heading says how long the run has taken so far (seconds), so a slow part shows.
section() { echo "== [${SECONDS}s] $*"; }

section "set-up: tools and databases the tests need"
bash scripts/setup.sh

section "cargo fmt / clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

section "supply chain: crate licenses, bans and sources (offline); npm advisories for what users install"
cargo deny check licenses bans sources
npm audit --omit=dev

section "Rust tests (core, CLI and Lambda; moto_server, PostgreSQL and MariaDB on 127.0.0.1)"
# pushq-node is a cdylib that links against Node at load time: it is tested through jest below.
cargo test --workspace --exclude pushq-node
# The jest suite drives this build of the CLI (worker, fcm-emulator).
export PUSHQ_BIN="$CARGO_TARGET_DIR/debug/pushq"

section "the Lambda bootstrap for x86_64: built with cargo lambda, glibc floor <= 2.34 (Amazon Linux 2023)"
bash scripts/build-lambda.sh x86_64

section "build the addon as it is packaged (on Linux x64: glibc 2.28 via zig) and check the generated files are committed as napi wrote them"
npm run build:dist --silent
if git rev-parse --git-dir >/dev/null 2>&1; then
  git diff --exit-code -- index.js index.d.ts || {
    echo "index.js/index.d.ts differ from what napi build writes: rebuild and commit them" >&2
    exit 1
  }
fi

section "the release workflow (.github/workflows/release.yml): actionlint"
actionlint

section "TypeScript: the tests type-check against index.d.ts"
npx tsc --noEmit -p .

section "jest (moto_server SQS, the pushq CLI, the databases)"
npx jest --ci

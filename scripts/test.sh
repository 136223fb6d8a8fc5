#!/usr/bin/env bash
# Every test pushq has: `npm test` runs this, after `npm ci`. Needs Rust, Node, Python and
# binutils (objdump, readelf); scripts/setup.sh installs the rest when missing (moto_server,
# cargo-zigbuild + zig, cargo-deny, cfn-lint, actionlint, the arm64 and musl Rust
# targets, qemu-user, an arm64 Node and a musl Node) and starts PostgreSQL and MariaDB if they are
# down. The jest suite starts its own moto_server on a free loopback port.
# The inner loop (fmt, clippy, cargo test, jest on a debug addon) is `npm run check` (scripts/check.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pushq/target}"

# Each section's heading says how long the run has taken so far (seconds), so a slow part shows.
section() { echo "== [${SECONDS}s] $*"; }

# Where setup puts the arm64 and the musl Node the package test runs the other Linux addons on.
export PUSHQ_ARM64_ROOT="${PUSHQ_ARM64_ROOT:-$HOME/.cache/pushq/arm64-node}"
export PUSHQ_MUSL_ROOT="${PUSHQ_MUSL_ROOT:-$HOME/.cache/pushq/musl-node}"

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
# nextest runs every binary's tests at once (the workspace has no doctests): the fault suite's
# 100 s no longer waits for the other binaries, nor they for it. Most tests wait on moto, the
# databases or a child process, so three run at once on two cores (four made a batch deadline of
# 1 s cut an FCM attempt in flight once in four runs).
cargo nextest run --workspace --exclude pushq-node --test-threads 3 --no-fail-fast
# The jest suite drives this build of the CLI (worker, fcm-emulator).
export PUSHQ_BIN="$CARGO_TARGET_DIR/debug/pushq"

section "the packaged artifacts, built fast (dev profile) but linked as they ship: the addon for linux-x64-gnu and linux-arm64-gnu (glibc <= 2.28) and linux-x64-musl (musl only), the Lambda bootstrap for x86_64 and arm64 (glibc <= 2.34), the generated files as napi wrote them"
# One zig target dir, the addon and the Lambda of a target in one cargo invocation (one dependency
# tree per target); `npm run build:dist` / `build:lambda` build the same with the shipped profile.
bash scripts/build-addon.sh --profile dev --lambda linux-x64-gnu linux-arm64-gnu linux-x64-musl
if git rev-parse --git-dir >/dev/null 2>&1; then
  git diff --exit-code -- index.js index.d.ts || {
    echo "index.js/index.d.ts differ from what napi build writes: rebuild and commit them" >&2
    exit 1
  }
fi
# The package test installs and runs these too: arm64 under qemu, musl on musl's Node.
export PUSHQ_CROSS_PLATFORMS="linux-arm64-gnu linux-x64-musl"

section "the release workflow (.github/workflows/release.yml): actionlint"
actionlint

section "TypeScript: the tests type-check against index.d.ts"
npx tsc --noEmit -p .

section "jest (moto_server SQS, the pushq CLI, the databases)"
npx jest --ci

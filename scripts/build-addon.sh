#!/usr/bin/env bash
# The release build of the Node addon, as it is packaged (`npm run build:dist`).
# On a Linux x64 glibc host it cross-links with zig (cargo-zigbuild) against glibc 2.28, so the
# `pushq.linux-x64-gnu.node` it writes loads on any distribution with glibc >= 2.28 (RHEL 8,
# Debian 10, Ubuntu 18.10, Amazon Linux 2023), and checks that with objdump. Elsewhere it is the
# plain `npm run build`. Writes index.js, index.d.ts and the .node at the repository root.
# Needs on Linux x64: `pip install cargo-zigbuild ziglang` (zig may also be on PATH) and objdump.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pushq/target}"
GLIBC_FLOOR="2.28"

if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ] || ldd --version 2>&1 | grep -qi musl; then
  exec npx napi build --platform --release --manifest-path crates/node/Cargo.toml --output-dir .
fi

command -v cargo-zigbuild >/dev/null 2>&1 || {
  echo "cargo-zigbuild is not installed: pip install cargo-zigbuild ziglang" >&2
  exit 1
}
npx napi build --platform --release --cross-compile --target "x86_64-unknown-linux-gnu.$GLIBC_FLOOR" \
  --manifest-path crates/node/Cargo.toml --output-dir .

node=pushq.linux-x64-gnu.node
highest="$(objdump -T "$node" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -t. -k1,1n -k2,2n -k3,3n -u | tail -1)"
echo "$node: $(stat -c %s "$node") bytes, highest glibc symbol GLIBC_$highest (floor $GLIBC_FLOOR)"
if [ "$(printf '%s\n%s\n' "$highest" "$GLIBC_FLOOR" | sort -t. -k1,1n -k2,2n | tail -1)" != "$GLIBC_FLOOR" ]; then
  echo "$node needs GLIBC_$highest, newer than $GLIBC_FLOOR" >&2
  exit 1
fi

#!/usr/bin/env bash
# The release build of the Node addon, as it is packaged (`npm run build:dist`).
#
#   scripts/build-addon.sh                                   # this machine's platform
#   scripts/build-addon.sh linux-arm64-gnu linux-x64-musl    # the Linux platforms, cross-built
#
# On a Linux x64 host every Linux platform is cross-linked with zig (cargo-zigbuild):
#   linux-x64-gnu, linux-arm64-gnu  against glibc 2.28, so the `.node` loads on any distribution with
#                                   glibc >= 2.28 (RHEL 8, Debian 10, Ubuntu 18.10, Amazon Linux 2023);
#                                   checked with objdump -T
#   linux-x64-musl                  against musl (Alpine, `node:*-alpine`); checked with readelf -d:
#                                   no glibc library or symbol version is needed
# Each `pushq.<platform>.node` goes into npm/<platform>/, the folder its package is packed and
# published from (.github/workflows/release.yml); this machine's own is also at the root, where the
# loader finds it first in a clone, and its build (napi build) writes index.js and index.d.ts there.
# Elsewhere (macOS, Windows, an arm64 or musl host) it is the plain `npm run build`, its `.node`
# copied into npm/<platform>/ too.
# Needs on Linux x64: `pip install cargo-zigbuild ziglang`, rustup targets aarch64-unknown-linux-gnu
# and x86_64-unknown-linux-musl for those platforms (scripts/setup.sh adds them), binutils.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pushq/target}"
GLIBC_FLOOR="2.28"

if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ] || ldd --version 2>&1 | grep -qi musl; then
  [ $# -eq 0 ] || { echo "cross-building $* needs a Linux x64 glibc host" >&2; exit 2; }
  npx napi build --platform --release --manifest-path crates/node/Cargo.toml --output-dir .
  for node in pushq.*.node; do
    platform="${node#pushq.}"
    cp "$node" "npm/${platform%.node}/$node"
  done
  exit 0
fi
[ $# -gt 0 ] || set -- linux-x64-gnu

command -v cargo-zigbuild >/dev/null 2>&1 || {
  echo "cargo-zigbuild is not installed: pip install cargo-zigbuild ziglang" >&2
  exit 1
}

# The highest GLIBC_x.y a shared object needs (objdump -T lists each dynamic symbol's version).
glibc_needed() {
  objdump -T "$1" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -t. -k1,1n -k2,2n -k3,3n -u | tail -1
}

check_glibc_floor() {
  local node="$1" highest
  highest="$(glibc_needed "$node")"
  echo "$node: $(stat -c %s "$node") bytes, highest glibc symbol GLIBC_$highest (floor $GLIBC_FLOOR)"
  if [ "$(printf '%s\n%s\n' "$highest" "$GLIBC_FLOOR" | sort -t. -k1,1n -k2,2n | tail -1)" != "$GLIBC_FLOOR" ]; then
    echo "$node needs GLIBC_$highest, newer than $GLIBC_FLOOR" >&2
    return 1
  fi
}

# A musl build needs musl's libc and nothing of glibc: its only NEEDED library is libc.so (musl's
# dynamic linker answers to that name itself), and no symbol carries a GLIBC_ version.
check_musl_only() {
  local node="$1" needed
  needed="$(readelf -d "$node" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort | paste -sd' ')"
  echo "$node: $(stat -c %s "$node") bytes, needs: ${needed:-nothing}"
  if [ "$needed" != "libc.so" ]; then
    echo "$node should need musl's libc.so only, not: $needed" >&2
    return 1
  fi
  if readelf -V "$node" | grep -q 'GLIBC_'; then
    echo "$node references glibc symbol versions: it would not load on musl" >&2
    return 1
  fi
}

check() {
  case "$1" in
    *-gnu.node) check_glibc_floor "$1" ;;
    *-musl.node) check_musl_only "$1" ;;
  esac
}

# This machine's platform: napi build, which also writes index.js and index.d.ts.
cross=()
for platform in "$@"; do
  case "$platform" in
    linux-x64-gnu)
      node="pushq.$platform.node"
      rm -f "$node" "npm/$platform/$node"
      npx napi build --platform --release --cross-compile --target "x86_64-unknown-linux-gnu.$GLIBC_FLOOR" \
        --manifest-path crates/node/Cargo.toml --output-dir .
      check "$node"
      cp "$node" "npm/$platform/$node" ;;
    linux-arm64-gnu | linux-x64-musl) cross+=("$platform") ;;
    *) echo "unknown platform '$platform' (linux-x64-gnu, linux-arm64-gnu or linux-x64-musl)" >&2; exit 2 ;;
  esac
done
[ ${#cross[@]} -gt 0 ] || exit 0

# The other Linux platforms: one cargo zigbuild for all of them, so their last (single-threaded, LTO)
# steps run side by side, and a build with nothing changed is a no-op (napi build recompiles the
# crate each time to collect type definitions, which the host build has already written). The
# library cargo writes is the `.node` napi build would copy, under the platform's name.
triples=() args=()
for platform in "${cross[@]}"; do
  case "$platform" in
    linux-arm64-gnu) triple="aarch64-unknown-linux-gnu"; args+=(--target "$triple.$GLIBC_FLOOR") ;;
    linux-x64-musl) triple="x86_64-unknown-linux-musl"; args+=(--target "$triple") ;;
  esac
  triples+=("$triple")
  rm -f "npm/$platform/pushq.$platform.node"
done
# musl links dynamically, against the process's own libc (Rust's default for musl is static, which
# cannot make a shared library); napi build sets the same flag.
CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C target-feature=-crt-static" \
  cargo zigbuild --release -p pushq-node "${args[@]}"
for i in "${!cross[@]}"; do
  node="npm/${cross[$i]}/pushq.${cross[$i]}.node"
  cp "$CARGO_TARGET_DIR/${triples[$i]}/release/libpushq_node.so" "$node"
  check "$node"
done

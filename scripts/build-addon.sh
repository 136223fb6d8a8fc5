#!/usr/bin/env bash
# The Node addon as it is packaged (`npm run build:dist`), optionally with the Lambda beside it.
#
#   scripts/build-addon.sh                                   # this machine's platform
#   scripts/build-addon.sh linux-arm64-gnu linux-x64-musl    # the Linux platforms, cross-built
#   scripts/build-addon.sh --profile dev --lambda linux-x64-gnu linux-arm64-gnu linux-x64-musl
#                                                            # what the test command builds
#
# --profile NAME  the cargo profile: `dist` (default; fat LTO, what the release publishes) or `dev`
#                 (what the test command's platform checks use: the same linking, built fast).
# --lambda        also builds the Lambda (pushq-lambda) for each gnu platform in the same cargo
#                 invocations, so the addon and the Lambda of one target share one dependency
#                 tree, and packages it as scripts/build-lambda.sh does (dist/lambda/<arch>/).
#
# On a Linux x64 host every Linux platform is cross-linked with zig (cargo-zigbuild):
#   linux-x64-gnu, linux-arm64-gnu  against glibc 2.28, so the `.node` loads on any distribution with
#                                   glibc >= 2.28 (RHEL 8, Debian 10, Ubuntu 18.10, Amazon Linux 2023);
#                                   checked with objdump
#   linux-x64-musl                  against musl (Alpine, `node:*-alpine`); checked with readelf -d:
#                                   no glibc library or symbol version is needed
# Each `pushq.<platform>.node` goes into npm/<platform>/, the folder its package is packed and
# published from (.github/workflows/release.yml); this machine's own is also at the root, where the
# loader finds it first in a clone, and its build (napi build) writes index.js and index.d.ts there.
# Zig builds go to a target dir of their own (scripts/lib/build.sh says why).
# Elsewhere (macOS, Windows, an arm64 or musl host) it is the plain `napi build` for the runner's
# own platform, its `.node` copied into npm/<platform>/ too.
# Needs on Linux x64: `pip install cargo-zigbuild ziglang`, rustup targets aarch64-unknown-linux-gnu
# and x86_64-unknown-linux-musl for those platforms (scripts/setup.sh adds them), binutils.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pushq/target}"
. scripts/lib/build.sh

parse_profile "$@"
# napi build looks for a profile's output under the profile's name, which for dev is `debug`:
# dev is its default, named by no flag.
napi_profile=()
[ "$PROFILE" = dev ] || napi_profile=(--profile "$PROFILE")
lambda=""
platforms=()
for arg in "${ARGS[@]+"${ARGS[@]}"}"; do
  case "$arg" in
    --lambda) lambda=1 ;;
    *) platforms+=("$arg") ;;
  esac
done

if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ] || ldd --version 2>&1 | grep -qi musl; then
  [ ${#platforms[@]} -eq 0 ] && [ -z "$lambda" ] || { echo "cross-building needs a Linux x64 glibc host" >&2; exit 2; }
  npx napi build --platform "${napi_profile[@]+"${napi_profile[@]}"}" --manifest-path crates/node/Cargo.toml --output-dir .
  for node in pushq.*.node; do
    platform="${node#pushq.}"
    cp "$node" "npm/${platform%.node}/$node"
  done
  exit 0
fi
[ ${#platforms[@]} -gt 0 ] || platforms=(linux-x64-gnu)
require_zigbuild

host="" cross=() targets=()
for platform in "${platforms[@]}"; do
  target="$(zig_target "$platform")" ||
    { echo "unknown platform '$platform' (linux-x64-gnu, linux-arm64-gnu or linux-x64-musl)" >&2; exit 2; }
  rm -f "npm/$platform/pushq.$platform.node"
  if [ "$platform" = linux-x64-gnu ]; then host=1; else cross+=("$platform"); fi
  targets+=(--target "$target")
done
packages=(-p pushq-node)
[ -z "$lambda" ] || packages+=(-p pushq-lambda)

# This machine's platform: napi build, which also writes index.js and index.d.ts.
if [ -n "$host" ]; then
  rm -f pushq.linux-x64-gnu.node
  npx napi build --platform --cross-compile --target "$(zig_target linux-x64-gnu)" "${napi_profile[@]+"${napi_profile[@]}"}" \
    --target-dir "$PUSHQ_ZIG_TARGET_DIR" --manifest-path crates/node/Cargo.toml --output-dir . \
    -- "${packages[@]}"
  check_glibc_at_most pushq.linux-x64-gnu.node "$GLIBC_FLOOR" "the addon's floor"
  cp pushq.linux-x64-gnu.node npm/linux-x64-gnu/
fi

# Every platform in one cargo zigbuild, so their last steps run side by side, and a build with
# nothing changed is a no-op (napi build recompiles pushq-node each time it has no cached type
# definitions; the host build has already written them). The x64 target is named again when it was
# built above: the build scripts and proc macros are then built with the same linker as above, and
# the x64 libraries are not built twice. The library cargo writes is the `.node` napi build would
# copy, under the platform's name. musl links dynamically, against the process's own libc (Rust's
# default for musl is static, which cannot make a shared library); napi build sets the same flag.
if [ ${#cross[@]} -gt 0 ]; then
  CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C target-feature=-crt-static" \
    cargo zigbuild --profile "$PROFILE" --target-dir "$PUSHQ_ZIG_TARGET_DIR" "${packages[@]}" "${targets[@]}"
  for platform in "${cross[@]}"; do
    node="npm/$platform/pushq.$platform.node"
    target="$(zig_target "$platform")"
    cp "$(zig_built "$target" libpushq_node.so)" "$node"
    case "$platform" in
      *-gnu) check_glibc_at_most "$node" "$GLIBC_FLOOR" "the addon's floor" ;;
      *-musl) check_musl_only "$node" ;;
    esac
  done
fi

if [ -n "$lambda" ]; then
  for platform in "${platforms[@]}"; do
    case "$platform" in
      linux-x64-gnu) arch=x86_64 ;;
      linux-arm64-gnu) arch=arm64 ;;
      *) continue ;;
    esac
    package_lambda "$arch"
  done
fi

#!/usr/bin/env bash
# Builds the Lambda's `bootstrap` for arm64 and x86_64 (`npm run build:lambda`), zips each, and checks
# that it loads on Amazon Linux 2023 / provided.al2023: the highest GLIBC_x.y symbol version the
# binary needs must be at most 2.34.
#
#   scripts/build-lambda.sh                    # both architectures, the shipped `dist` profile
#   scripts/build-lambda.sh x86_64             # one: arm64 | x86_64
#   scripts/build-lambda.sh --profile dev arm64
#
# Writes dist/lambda/<arch>/bootstrap (the folder the SAM template's CodeUri points at) and
# dist/lambda/pushq-lambda-<arch>.zip, and prints each zip's size and glibc floor.
# It links with zig through cargo-zigbuild, which is what `cargo lambda build` runs underneath
# (cargo-lambda 1.9.2 carries its own cargo-zigbuild 0.23.0; `cargo lambda build --profile dist
# --arm64 -p pushq-lambda` builds an equivalent bootstrap): the same cargo-zigbuild as the addon's
# builds (scripts/build-addon.sh), in the same target dir, against the same glibc, so the test
# command builds both with one dependency tree.
# Needs `pip install cargo-zigbuild ziglang`, the rustup target aarch64-unknown-linux-gnu for arm64,
# and binutils' objdump (its failure fails the build).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pushq/target}"
. scripts/lib/build.sh

parse_profile "$@"
archs=("${ARGS[@]+"${ARGS[@]}"}")
[ ${#archs[@]} -gt 0 ] || archs=(arm64 x86_64)
require_zigbuild

targets=()
for arch in "${archs[@]}"; do
  case "$arch" in
    arm64 | x86_64) targets+=(--target "$(zig_target "$arch")") ;;
    *) echo "unknown architecture '$arch' (arm64 or x86_64)" >&2; exit 2 ;;
  esac
done
cargo zigbuild --profile "$PROFILE" --target-dir "$PUSHQ_ZIG_TARGET_DIR" -p pushq-lambda "${targets[@]}"
for arch in "${archs[@]}"; do
  package_lambda "$arch"
done

#!/usr/bin/env bash
# Builds the Lambda's `bootstrap` for arm64 and x86_64 with cargo lambda (zig links it against an
# old glibc), zips each, and checks that it loads on Amazon Linux 2023 / provided.al2023: the
# highest GLIBC_x.y symbol version the binary needs must be at most 2.34.
#
#   scripts/build-lambda.sh            # both architectures
#   scripts/build-lambda.sh x86_64     # one: arm64 | x86_64
#
# Writes dist/lambda/<arch>/bootstrap (the folder the SAM template's CodeUri points at) and
# dist/lambda/pushq-lambda-<arch>.zip, and prints each zip's size and glibc floor.
# Needs `pip install cargo-lambda` (brings zig) and binutils' objdump (its failure fails the build).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pushq/target}"
MAX_GLIBC="2.34"
[ $# -gt 0 ] || set -- arm64 x86_64

command -v cargo-lambda >/dev/null 2>&1 || {
  echo "cargo-lambda is not installed: pip install cargo-lambda" >&2
  exit 1
}

# The highest GLIBC_x.y version a binary needs, e.g. 2.30 (empty for a static binary: no
# version references). `objdump -p` reads the ELF's version references and, unlike `-T`, also
# succeeds on a static binary, so any failure of it (a missing objdump, a file it cannot read)
# stops the build rather than passing for "needs no glibc".
glibc_floor() {
  local headers
  headers="$(objdump -p "$1")" || {
    echo "objdump -p $1 failed: cannot check which glibc the bootstrap needs" >&2
    return 1
  }
  printf '%s\n' "$headers" | { grep -o 'GLIBC_[0-9][0-9.]*' || true; } | sed 's/GLIBC_//' | sort -t. -k1,1n -k2,2n -k3,3n -u | tail -1
}

for arch in "$@"; do
  case "$arch" in
    arm64) flag=--arm64 ;;
    x86_64) flag=--x86-64 ;;
    *) echo "unknown architecture '$arch' (arm64 or x86_64)" >&2; exit 2 ;;
  esac
  out="dist/lambda/$arch"
  rm -rf "$out" "dist/lambda/pushq-lambda-$arch.zip"
  cargo lambda build --release "$flag" -p pushq-lambda --lambda-dir "$out" --flatten pushq-lambda
  floor="$(glibc_floor "$out/bootstrap")" || exit 1
  (cd "$out" && rm -f ../"pushq-lambda-$arch.zip" && zip -q -X "../pushq-lambda-$arch.zip" bootstrap)
  size=$(stat -c %s "dist/lambda/pushq-lambda-$arch.zip")
  printf '%s: dist/lambda/pushq-lambda-%s.zip %s bytes (%.1f MiB), bootstrap %s bytes, highest glibc symbol %s\n' \
    "$arch" "$arch" "$size" "$(awk "BEGIN { print $size / 1048576 }")" "$(stat -c %s "$out/bootstrap")" "${floor:-none}"
  if [ -n "$floor" ] && [ "$(printf '%s\n%s\n' "$floor" "$MAX_GLIBC" | sort -t. -k1,1n -k2,2n | tail -1)" != "$MAX_GLIBC" ]; then
    echo "$arch bootstrap needs GLIBC_$floor, newer than Amazon Linux 2023's $MAX_GLIBC: it will not load on Lambda" >&2
    exit 1
  fi
done

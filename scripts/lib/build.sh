# Shared by scripts/build-addon.sh and scripts/build-lambda.sh (sourced, not run): the cargo
# profile, the target dir zig builds use, and the checks every packaged binary passes.

# Where every zig-linked build goes: a target dir of its own. cargo-zigbuild sets the linker of the
# x86_64-unknown-linux-gnu triple to its zig wrapper, and on this host that triple is also the
# host's, so the build scripts and proc macros of a zig build carry another linker than those of
# `cargo test`: in one target dir each would invalidate the other and rebuild the whole tree.
PUSHQ_ZIG_TARGET_DIR="${PUSHQ_ZIG_TARGET_DIR:-${CARGO_TARGET_DIR:-$HOME/.cache/pushq/target}-zig}"

# The glibc the Linux gnu binaries are linked against (zig's glibc stubs): the addon's floor; the
# Lambda's (Amazon Linux 2023 has 2.34) is met by the same build.
GLIBC_FLOOR="2.28"
LAMBDA_MAX_GLIBC="2.34"

# parse_profile "$@": reads a leading `--profile NAME` (default dist: the shipped build); sets PROFILE
# and ARGS (the rest). cargo writes a profile's output under its name, except dev's (debug).
parse_profile() {
  PROFILE=dist
  ARGS=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --profile) PROFILE="${2:?--profile needs a name (dev, release, dist)}"; shift 2 ;;
      --profile=*) PROFILE="${1#--profile=}"; shift ;;
      *) ARGS+=("$1"); shift ;;
    esac
  done
  PROFILE_DIR="$PROFILE"
  [ "$PROFILE" != dev ] || PROFILE_DIR=debug
}

# The highest GLIBC_x.y version a binary needs, e.g. 2.28 (empty for one with no version
# references). `objdump -p` reads the ELF's version references and, unlike `-T`, also succeeds on
# a static binary, so a failure of it (no objdump, an unreadable file) stops the build rather than
# passing for "needs no glibc".
glibc_needed() {
  local headers
  headers="$(objdump -p "$1")" || {
    echo "objdump -p $1 failed: cannot check which glibc it needs" >&2
    return 1
  }
  printf '%s\n' "$headers" | { grep -o 'GLIBC_[0-9][0-9.]*' || true; } | sed 's/GLIBC_//' |
    sort -t. -k1,1n -k2,2n -k3,3n -u | tail -1
}

# check_glibc_at_most FILE MAX WHAT: fails when FILE needs a glibc newer than MAX.
check_glibc_at_most() {
  local file="$1" max="$2" what="$3" highest
  highest="$(glibc_needed "$file")" || return 1
  echo "$file: $(stat -c %s "$file") bytes, highest glibc symbol ${highest:+GLIBC_}${highest:-none} (at most $max: $what)"
  if [ -n "$highest" ] && [ "$(printf '%s\n%s\n' "$highest" "$max" | sort -t. -k1,1n -k2,2n | tail -1)" != "$max" ]; then
    echo "$file needs GLIBC_$highest, newer than $max ($what)" >&2
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

# package_lambda ARCH: the Lambda's `bootstrap` for ARCH (arm64 | x86_64) from the pushq-lambda
# the zig build of this profile wrote: dist/lambda/<arch>/bootstrap (the SAM template's CodeUri for
# arm64) and dist/lambda/pushq-lambda-<arch>.zip; fails when it would not load on provided.al2023.
package_lambda() {
  local arch="$1" out="dist/lambda/$1" size
  rm -rf "$out" "dist/lambda/pushq-lambda-$arch.zip"
  mkdir -p "$out"
  cp "$(zig_built "$(zig_target "$arch")" pushq-lambda)" "$out/bootstrap"
  (cd "$out" && zip -q -X "../pushq-lambda-$arch.zip" bootstrap)
  size=$(stat -c %s "dist/lambda/pushq-lambda-$arch.zip")
  printf '%s: dist/lambda/pushq-lambda-%s.zip %s bytes (%.1f MiB, profile %s)\n' \
    "$arch" "$arch" "$size" "$(awk "BEGIN { print $size / 1048576 }")" "$PROFILE"
  check_glibc_at_most "$out/bootstrap" "$LAMBDA_MAX_GLIBC" "Amazon Linux 2023, the Lambda's provided.al2023"
}

# The zig target (triple plus glibc version where it has one) of a Linux platform or Lambda arch.
zig_target() {
  case "$1" in
    linux-x64-gnu | x86_64) echo "x86_64-unknown-linux-gnu.$GLIBC_FLOOR" ;;
    linux-arm64-gnu | arm64) echo "aarch64-unknown-linux-gnu.$GLIBC_FLOOR" ;;
    linux-x64-musl) echo "x86_64-unknown-linux-musl" ;;
    *) return 1 ;;
  esac
}

# The triple of a zig target (its glibc version dropped): the folder cargo writes it to.
triple_of() { sed 's/\.[0-9][0-9.]*$//' <<<"$1"; }

# zig_built TARGET FILE: where the zig build of this profile wrote FILE for TARGET.
zig_built() { echo "$PUSHQ_ZIG_TARGET_DIR/$(triple_of "$1")/$PROFILE_DIR/$2"; }

require_zigbuild() {
  command -v cargo-zigbuild >/dev/null 2>&1 || {
    echo "cargo-zigbuild is not installed: pip install cargo-zigbuild ziglang" >&2
    exit 1
  }
}

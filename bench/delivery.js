// The delivery side against the status quo: pushq's Lambda `bootstrap` (the x86_64 build
// scripts/build-lambda.sh writes) and a Node.js handler written the way the servers sent pushes
// (bench/node-lambda: firebase-admin and `pg` per message), each started as Lambda starts a
// function and fed the same SQS events through a Lambda Runtime API served here. Per function:
// cold start (process start to first poll), pushes per second, CPU per push, DB statements per
// push (pg_stat_statements, each function under its own role) and peak RSS.
'use strict'
const { spawn, execFileSync } = require('child_process')
const fs = require('fs')
const http = require('http')
const path = require('path')
const { root, bin } = require('./lib')

const TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100

function cpuMs(pid) {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS // utime + stime
}

function peakRssMiB(pid) {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) / 1024 : NaN
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

/** Serves the Runtime API, starts the function, feeds it every event; resolves with measurements. */
function runFunction({ command, args, env, events }) {
  return new Promise((resolve, reject) => {
    const queue = events.map((event, i) => ({ id: `req-${i}`, event }))
    let answered = 0
    let failures = 0
    let spawnedAt
    let firstPoll
    let cpuAtFirstPoll
    let child
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
        return
      }
      let body = ''
      req.on('data', (d) => (body += d))
      req.on('end', () => {
        res.end('ok')
        if (/\/invocation\/[^/]+\/(response|error)$/.test(req.url)) {
          if (req.url.endsWith('/error')) failures += events[0].Records.length
          else failures += (JSON.parse(body).batchItemFailures || []).length
          if (++answered === events.length) {
            const done = process.hrtime.bigint()
            const result = {
              coldStartMs: Number(firstPoll - spawnedAt) / 1e6,
              seconds: Number(done - firstPoll) / 1e9,
              cpuMs: cpuMs(child.pid) - cpuAtFirstPoll,
              peakRssMiB: peakRssMiB(child.pid),
              failures,
            }
            child.kill('SIGKILL')
            server.close()
            resolve(result)
          }
        }
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
    })
  })
}

/** Both functions, the same events: `pushes` to users with 3 devices each, 10 per event. */
async function runDelivery({ pg, fcm, pushes }) {
  const lambda = path.join(root, 'dist', 'lambda', 'x86_64', 'bootstrap')
  if (!fs.existsSync(lambda)) execFileSync('bash', [path.join(root, 'scripts', 'build-lambda.sh'), 'x86_64'], { stdio: 'inherit' })
  const list = Array.from({ length: pushes }, (_, i) => ({ userId: `u${i}`, notification: { title: 'Spin 45', body: `Studio ${i % 7}` }, category: 'delivery' }))
  const events = []
  for (let i = 0; i < pushes; i += 10) events.push(sqsEvent(list, i, Math.min(pushes, i + 10)))
  const functions = [
    { name: 'pushq bootstrap (Rust)', role: 'pushq_app', command: lambda, args: [] },
    { name: 'Node.js handler (firebase-admin + pg per message)', role: 'node_app', command: process.execPath, args: [path.join(__dirname, 'node-lambda', 'bootstrap.js')] },
  ]
  try {
    pg.psql('postgres', 'CREATE ROLE node_app LOGIN')
  } catch {}
  const results = []
  for (const f of functions) {
    const db = `bench_delivery_${f.role}_${Date.now()}`
    pg.psql('postgres', `CREATE DATABASE ${db} OWNER ${f.role}`)
    const url = `postgres://${f.role}@127.0.0.1:${pg.port}/${db}`
    execFileSync(bin('pushq'), ['migrate'], { env: { ...process.env, DATABASE_URL: url }, stdio: 'ignore' })
    pg.psql(db, `INSERT INTO pushq_devices (user_id, token, platform) SELECT 'u' || u, 'tok-' || u || '-' || d, 'android' FROM generate_series(0, ${pushes - 1}) u, generate_series(0, 2) d`)
    pg.psql('postgres', 'SELECT pg_stat_statements_reset()')
    process.stderr.write(`delivery: ${f.name}, ${events.length} events of 10\n`)
    const r = await runFunction({
      command: f.command,
      args: f.args,
      env: { DATABASE_URL: url, PUSHQ_DB_POOL_SIZE: '2', PUSHQ_FCM_CREDENTIALS: fcm.credentials, PUSHQ_FCM_ENDPOINT: fcm.url, PUSHQ_LOG: 'warn', NODE_NO_WARNINGS: '1' },
      events,
    })
    const calls = Number(
      pg.psql(
        'postgres',
        `SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
         JOIN pg_roles r ON r.oid = s.userid WHERE d.datname = '${db}' AND r.rolname = '${f.role}'`,
      ),
    )
    const rows = Number(pg.psql(db, "SELECT count(*) FROM pushq_deliveries WHERE status = 'sent'"))
    pg.psql('postgres', `DROP DATABASE ${db} WITH (FORCE)`)
    await fetch(`${fcm.url}/__reset`, { method: 'POST' })
    results.push({ name: f.name, pushes, rows, ...r, pushesPerSecond: pushes / r.seconds, cpuUsPerPush: (r.cpuMs * 1000) / pushes, statementsPerPush: calls / pushes })
  }
  return results
}

module.exports = { runDelivery }

// The batch-size × batching-window experiment, reproduced: pushes to users with 3 devices each,
// enqueued through pushq's Node addon into sqs-lite, delivered by `pushq worker` to the FCM
// emulator, recorded in a PostgreSQL started for the run. Per cell: DB statements and DB time
// per push (pg_stat_statements, the worker's role only), throughput, and enqueue-to-send
// latency from the delivery rows, for a burst (all pushes at once) and for a paced stream.
'use strict'
const { spawn, execFileSync } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')
const { root, bin, sleep, progress } = require('./lib')

const CELLS = [
  { batch: 1, window: 0 },
  { batch: 1, window: 1 },
  { batch: 10, window: 0 },
  { batch: 10, window: 1 },
  { batch: 100, window: 1 }, // above 10 needs a window of at least 1 s, as on AWS
]

async function createQueue(sqsUrl, name) {
  const { SQSClient, CreateQueueCommand } = require('@aws-sdk/client-sqs')
  const sqs = new SQSClient({ endpoint: sqsUrl, region: 'us-east-1', credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' } })
  const out = await sqs.send(new CreateQueueCommand({ QueueName: name }))
  sqs.destroy()
  return out.QueueUrl
}

async function waitForRows(pg, db, want, label) {
  const bar = progress(label, want)
  for (;;) {
    // Final rows: a claimed target's row is `sending` until its batch writes it.
    const n = Number(pg.psql(db, "SELECT count(*) FROM pushq_deliveries WHERE status NOT IN ('sending', 'retrying')"))
    bar.update(n)
    if (n >= want) break
    await sleep(200)
  }
  bar.done()
}

function latency(pg, db, category) {
  const [p50, p95, p99, rows, span, sent] = pg
    .psql(
      db,
      `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), percentile_cont(0.95) WITHIN GROUP (ORDER BY ms),
              percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), count(*),
              extract(epoch FROM max(sent_at) - min(enqueued_at)), count(*) FILTER (WHERE status = 'sent')
       FROM (SELECT extract(epoch FROM sent_at - enqueued_at) * 1000 AS ms, sent_at, enqueued_at, status
             FROM pushq_deliveries WHERE category = '${category}') t`,
    )
    .split('|')
    .map(Number)
  return { p50, p95, p99, rows, seconds: span, sent }
}

function statements(pg, db) {
  const [calls, ms] = pg
    .psql(
      'postgres',
      `SELECT coalesce(sum(calls), 0), coalesce(sum(total_exec_time), 0) FROM pg_stat_statements s
       JOIN pg_database d ON d.oid = s.dbid JOIN pg_roles r ON r.oid = s.userid
       WHERE d.datname = '${db}' AND r.rolname = 'pushq_app'`,
    )
    .split('|')
    .map(Number)
  const top = pg
    .psql(
      'postgres',
      `SELECT regexp_replace(left(query, 70), '\\s+', ' ', 'g'), calls, round(total_exec_time::numeric, 1) FROM pg_stat_statements s
       JOIN pg_database d ON d.oid = s.dbid JOIN pg_roles r ON r.oid = s.userid
       WHERE d.datname = '${db}' AND r.rolname = 'pushq_app' ORDER BY total_exec_time DESC LIMIT 4`,
    )
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [query, n, total] = l.split('|')
      return { query, calls: Number(n), ms: Number(total) }
    })
  return { calls, ms, top }
}

/** One cell: a fresh database and queue, one worker, a burst, then a paced stream. */
async function runCell({ pg, sqsUrl, fcm, batch, window, pushes, paced, rate, concurrency }) {
  const { PushClient } = require(root)
  const db = `bench_b${batch}_w${window}_${Date.now()}`
  pg.psql('postgres', `CREATE DATABASE ${db} OWNER pushq_app`)
  const databaseUrl = `postgres://pushq_app@127.0.0.1:${pg.port}/${db}`
  const env = {
    ...process.env,
    DATABASE_URL: databaseUrl,
    PUSHQ_DB_POOL_SIZE: String(concurrency),
    AWS_ENDPOINT_URL_SQS: sqsUrl,
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'bench',
    AWS_SECRET_ACCESS_KEY: 'bench',
    PUSHQ_FCM_CREDENTIALS: fcm.credentials,
    PUSHQ_FCM_ENDPOINT: fcm.url,
    PUSHQ_LOG: 'info',
  }
  execFileSync(bin('pushq'), ['migrate'], { env, stdio: 'ignore' })
  pg.psql(
    db,
    `INSERT INTO pushq_devices (user_id, token, platform)
     SELECT 'u' || u, 'tok-' || u || '-' || d, 'android' FROM generate_series(0, ${pushes - 1}) u, generate_series(0, 2) d`,
  )
  const queueUrl = await createQueue(sqsUrl, db)
  pg.psql('postgres', 'SELECT pg_stat_statements_reset()') // the extension lives in postgres; stats cover every database
  const log = path.join(os.tmpdir(), `${db}.log`)
  const worker = spawn(
    bin('pushq'),
    ['worker', '--queue-url', queueUrl, '--batch-size', String(batch), '--batching-window', String(window), '--concurrency', String(concurrency)],
    { env, stdio: ['ignore', 'ignore', fs.openSync(log, 'w')] },
  )
  const exited = new Promise((resolve) => worker.once('exit', resolve))
  const client = new PushClient({ queueUrl, endpointUrl: sqsUrl, region: 'us-east-1' })
  const push = (i, category) => client.enqueuePush({ userId: `u${i}`, notification: { title: 'Spin 45 starts in 15 minutes', body: `Studio ${i % 7}` }, category })

  // The burst: every push at once, as a mass send lands.
  const label = `batch ${batch}, window ${window} s`
  await Promise.all(Array.from({ length: pushes }, (_, i) => push(i, 'burst')))
  await waitForRows(pg, db, pushes * 3, `${label}: burst of ${pushes}`)
  const db1 = statements(pg, db)
  const burst = latency(pg, db, 'burst')
  // The batches the worker actually formed (its "batch done" log lines) during the burst.
  const sizes = fs
    .readFileSync(log, 'utf8')
    .split('\n')
    .filter((l) => l.includes('"batch done"'))
    .map((l) => JSON.parse(l).fields.batch_size)
  const batches = sizes.length

  // The paced stream: `rate` pushes per second, for the latency a normal day sees.
  const started = Date.now()
  const sends = []
  for (let i = 0; i < paced; i++) {
    const due = started + (i * 1000) / rate
    const wait = due - Date.now()
    if (wait > 0) await sleep(wait)
    sends.push(push(i, 'paced'))
  }
  await Promise.all(sends)
  await waitForRows(pg, db, pushes * 3 + paced * 3, `${label}: ${paced} at ${rate}/s`)
  const stream = latency(pg, db, 'paced')

  worker.kill('SIGTERM')
  await exited
  await client.close()
  pg.psql('postgres', `DROP DATABASE ${db} WITH (FORCE)`)
  return {
    batch,
    window,
    pushes,
    statementsPerPush: db1.calls / pushes,
    statementsPerBatch: db1.calls / batches,
    meanBatch: pushes / batches,
    dbMsPerPush: db1.ms / pushes,
    topStatements: db1.top,
    pushesPerSecond: pushes / burst.seconds,
    burst,
    paced: stream,
    sentOk: burst.sent === pushes * 3 && stream.sent === paced * 3,
  }
}

async function runExperiment({ pg, sqsUrl, fcm, pushes, paced, rate, concurrency }) {
  const results = []
  for (const c of CELLS) {
    results.push(await runCell({ pg, sqsUrl, fcm, ...c, pushes, paced, rate, concurrency }))
    await fetch(`${fcm.url}/__reset`, { method: 'POST' })
  }
  return results
}

module.exports = { runExperiment, CELLS }

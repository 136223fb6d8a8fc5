// Worker throughput: N pushes (userId, one device each) pre-filled into a moto SQS queue, then
// `pushq worker` drains them into the FCM emulator and a database. Reports messages per second
// from worker start until the queue is empty and every push has its delivery row.
//
//   node bench/worker.js [--pushes 1000] [--concurrency 2] [--batch-size 10] [--db sqlite|postgres]
//
// moto answers SQS at roughly 100 messages/s, and slower as a queue fills: this measures the
// worker *with moto in the loop*, a floor, not what the engine does against real SQS.
'use strict'
const { spawn, execFileSync } = require('child_process')
const path = require('path')
const os = require('os')
const fs = require('fs')
const net = require('net')
const readline = require('readline')

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? process.argv[i + 1] : dflt
}
const N = Number(arg('pushes', 1000))
const CONCURRENCY = arg('concurrency', '2')
const BATCH = arg('batch-size', '10')
const DB = arg('db', 'sqlite')
const BIN = process.env.PUSHQ_BIN || path.join(process.env.CARGO_TARGET_DIR || path.join(os.homedir(), '.cache/pushq/target'), 'dist', 'pushq')

const freePort = () =>
  new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = s.address().port
      s.close(() => resolve(p))
    })
  })

async function main() {
  process.env.AWS_ACCESS_KEY_ID = 'bench'
  process.env.AWS_SECRET_ACCESS_KEY = 'bench'
  process.env.AWS_REGION = 'us-east-1'
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true'
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pushq-bench-'))
  const port = await freePort()
  const moto = spawn('moto_server', ['-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore', detached: true })
  const endpoint = `http://127.0.0.1:${port}`
  for (let i = 0; ; i++) {
    try {
      await fetch(`${endpoint}/moto-api/`)
      break
    } catch {
      if (i > 200) throw new Error('moto did not start')
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  const credentials = path.join(dir, 'sa.json')
  const fcm = spawn(BIN, ['fcm-emulator', '--port', '0', '--write-credentials', credentials], { stdio: ['ignore', 'pipe', 'ignore'] })
  const fcmEndpoint = (await new Promise((r) => readline.createInterface({ input: fcm.stdout }).once('line', r))).replace('listening on ', '')
  let databaseUrl = `sqlite://${path.join(dir, 'bench.db')}`
  if (DB === 'postgres') {
    const name = `pushq_bench_${Date.now()}`
    execFileSync('psql', ['-h', '127.0.0.1', '-U', 'postgres', '-d', 'test', '-qc', `CREATE DATABASE ${name}`])
    databaseUrl = `postgres://postgres@127.0.0.1:5432/${name}`
  }
  const env = { ...process.env, DATABASE_URL: databaseUrl, PUSHQ_FCM_CREDENTIALS: credentials, PUSHQ_FCM_ENDPOINT: fcmEndpoint, AWS_ENDPOINT_URL_SQS: endpoint, PUSHQ_LOG: 'warn' }
  execFileSync(BIN, ['migrate'], { env })

  const { PushClient, DeviceRegistry, DeliveryLog } = require('..')
  const registry = new DeviceRegistry({ databaseUrl })
  for (let i = 0; i < N; i++) await registry.register({ userId: `u${i}`, token: `tok-${i}`, platform: 'android' })
  const { SQSClient, CreateQueueCommand, GetQueueAttributesCommand } = require('@aws-sdk/client-sqs')
  const sqs = new SQSClient({ endpoint })
  const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: 'bench' }))
  const client = new PushClient({ queueUrl: QueueUrl, endpointUrl: endpoint })
  process.stderr.write(`filling the queue with ${N} pushes…\n`)
  const ids = (await Promise.all(Array.from({ length: N }, (_, i) => client.enqueuePush({ userId: `u${i}`, notification: { title: 'Class soon' } })))).map((r) => r.id)
  await client.close()

  const started = process.hrtime.bigint()
  const worker = spawn(BIN, ['worker', '--queue-url', QueueUrl, '--batch-size', BATCH, '--concurrency', CONCURRENCY], { env, stdio: 'ignore' })
  const log = new DeliveryLog({ databaseUrl })
  for (;;) {
    const a = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }))).Attributes
    const left = Number(a.ApproximateNumberOfMessages) + Number(a.ApproximateNumberOfMessagesNotVisible)
    process.stderr.write(`\r${N - left}/${N} done`)
    if (left === 0) break
    await new Promise((r) => setTimeout(r, 200))
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  process.stderr.write('\n')
  const rows = (await Promise.all(ids.map((id) => log.forPush(id)))).flat()
  worker.kill('SIGTERM')
  fcm.kill()
  process.kill(-moto.pid)
  console.log(JSON.stringify({ pushes: N, db: DB, concurrency: Number(CONCURRENCY), batchSize: Number(BATCH), seconds: +seconds.toFixed(2), messagesPerSecond: Math.round(N / seconds), rows: rows.length, sent: rows.filter((r) => r.status === 'sent').length }))
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})

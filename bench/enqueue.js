// Enqueue benchmark: N pushes from one Node process through pushq's enqueuePush vs the same
// pushes through @aws-sdk/client-sqs SendMessageCommand one per push, against the same local
// SQS endpoint. Reports the Node process's CPU time per push (all threads, addon included),
// wall time, and SQS requests per push. Each measurement runs in a fresh child process.
//
//   node bench/enqueue.js [--pushes 10000] [--endpoint http://127.0.0.1:PORT]
//
// Without --endpoint it starts bench/sqs-sink.js (see there why not moto); with --endpoint it
// creates a queue there (e.g. a moto_server) and counts requests itself.
'use strict'
const { spawn, execFileSync } = require('child_process')
const path = require('path')

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? process.argv[i + 1] : dflt
}
const PUSHES = Number(arg('pushes', 10000))
// 'burst': all pushes at once; 'concurrent100': 100 callers that each await one push at a time.
const PATTERNS = { burst: PUSHES, concurrent100: 100 }

function pushFor(i) {
  return {
    userId: `user-${i % 997}`,
    notification: { title: 'Your class starts in 15 minutes', body: `Spin 45 with Alex, studio ${i % 7}` },
    data: { classId: String(100000 + i), kind: 'reminder' },
    android: { priority: 'high', ttl: 3600000 },
    category: 'class-reminder',
  }
}

// One measurement, in a child: `node enqueue.js --child pushq|sdk PATTERN ENDPOINT QUEUE_URL`.
async function child(kind, pattern, endpoint, queueUrl) {
  process.env.AWS_ACCESS_KEY_ID ||= 'bench'
  process.env.AWS_SECRET_ACCESS_KEY ||= 'bench'
  process.env.AWS_REGION ||= 'us-east-1'
  let send, done
  if (kind === 'fcm') {
    // The old design: firebase-admin's messaging().send() per push, straight to FCM (here the
    // emulator: FCM's host is routed to it, and the access token comes from its token endpoint
    // through the same JWT grant firebase-admin's cert credential makes).
    const fcm = JSON.parse(endpoint)
    const account = JSON.parse(require('fs').readFileSync(fcm.credentials, 'utf8'))
    const { routeFcmTo, emulatorCredential } = require('./node-lambda/fcm-route')
    routeFcmTo(fcm.url)
    const credential = emulatorCredential(account)
    const admin = require('firebase-admin/app')
    const { getMessaging } = require('firebase-admin/messaging')
    const app = admin.initializeApp({ credential, projectId: account.project_id }, `bench-${process.pid}`)
    const messaging = getMessaging(app)
    send = (push) => messaging.send({ token: `tok-${push.userId}`, notification: push.notification, data: push.data, android: push.android })
    done = () => admin.deleteApp(app)
  } else if (kind === 'pushq') {
    const { PushClient } = require(path.join(__dirname, '..'))
    const client = new PushClient({ queueUrl, endpointUrl: endpoint })
    send = (push) => client.enqueuePush(push)
    done = () => client.close()
  } else {
    const { SQSClient, SendMessageCommand } = require('@aws-sdk/client-sqs')
    const sqs = new SQSClient({ endpoint })
    send = (push) =>
      sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: JSON.stringify({ v: 1, push }) }))
    done = async () => sqs.destroy()
  }
  // Warm up (connections, credential chain, JIT), then measure.
  await Promise.all(Array.from({ length: 20 }, (_, i) => send(pushFor(i))))
  const width = PATTERNS[pattern]
  let next = 0
  const cpu0 = process.cpuUsage()
  const t0 = process.hrtime.bigint()
  const waits = []
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < PUSHES) {
        const i = next++
        const s0 = process.hrtime.bigint()
        await send(pushFor(i))
        waits.push(Number(process.hrtime.bigint() - s0) / 1e6)
      }
    }),
  )
  const wallMs = Number(process.hrtime.bigint() - t0) / 1e6
  const cpu = process.cpuUsage(cpu0)
  await done()
  waits.sort((a, b) => a - b)
  const waitMean = waits.reduce((a, b) => a + b, 0) / waits.length
  const waitP99 = waits[Math.min(waits.length - 1, Math.floor(waits.length * 0.99))]
  process.stdout.write(JSON.stringify({ cpuUs: cpu.user + cpu.system, wallMs, waitMean, waitP99 }) + '\n')
}

async function counts(endpoint) {
  const res = await fetch(`${endpoint}/__counts`)
  return res.json()
}

/**
 * Runs every measurement: pushq and the SDK against the SQS endpoint, and (with `fcm`, the
 * emulator's { url, credentials }) firebase-admin's send() straight to FCM. Returns rows.
 */
async function measure({ pushes = PUSHES, endpoint, fcm } = {}) {
  let sink
  if (!endpoint) {
    sink = spawn(process.execPath, [path.join(__dirname, 'sqs-sink.js')], { stdio: ['pipe', 'pipe', 'inherit'] })
    const port = await new Promise((resolve) => sink.stdout.once('data', (d) => resolve(String(d).trim())))
    endpoint = `http://127.0.0.1:${port}`
  }
  const queueUrl = `${endpoint}/123456789012/pushq-bench`
  if (!sink) {
    const { SQSClient, CreateQueueCommand } = require('@aws-sdk/client-sqs')
    await new SQSClient({ endpoint, region: 'us-east-1', credentials: { accessKeyId: 'b', secretAccessKey: 'b' } }).send(
      new CreateQueueCommand({ QueueName: 'pushq-bench' }),
    )
  }
  const kinds = fcm ? ['pushq', 'sdk', 'fcm'] : ['pushq', 'sdk']
  const names = { pushq: 'pushq enqueuePush', sdk: 'aws-sdk SendMessageCommand', fcm: 'firebase-admin send() to FCM' }
  const rows = []
  for (const pattern of Object.keys(PATTERNS)) {
    for (const kind of kinds) {
      const before = sink && kind !== 'fcm' ? await counts(endpoint) : null
      const where = kind === 'fcm' ? JSON.stringify(fcm) : endpoint
      const out = execFileSync(process.execPath, [__filename, '--child', kind, pattern, where, queueUrl, '--pushes', String(pushes)], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
        env: { ...process.env, NODE_NO_WARNINGS: '1' },
      })
      const r = JSON.parse(out.trim().split('\n').pop())
      const after = before ? await counts(endpoint) : null
      rows.push({
        client: names[kind],
        pattern: pattern === 'burst' ? `${pushes} at once` : '100 concurrent callers',
        cpuUsPerPush: r.cpuUs / pushes,
        wallMs: r.wallMs,
        pushesPerSecond: (pushes / r.wallMs) * 1000,
        waitMeanMs: r.waitMean,
        waitP99Ms: r.waitP99,
        requestsPerPush: before ? (after.requests - before.requests) / (pushes + 20) : NaN,
      })
      process.stderr.write(`enqueue: ${names[kind]}, ${pattern} done\n`)
    }
  }
  if (sink) sink.stdin.end()
  return rows
}

async function main() {
  const rows = await measure({ endpoint: arg('endpoint') })
  console.table(
    rows.map((r) => ({
      client: r.client,
      pattern: r.pattern,
      'CPU µs/push': r.cpuUsPerPush.toFixed(1),
      'wall ms': r.wallMs.toFixed(0),
      'pushes/s': r.pushesPerSecond.toFixed(0),
      'wait ms (mean)': r.waitMeanMs.toFixed(2),
      'SQS requests/push': r.requestsPerPush.toFixed(3),
    })),
  )
}

module.exports = { measure }

if (process.argv[2] === '--child') {
  child(...process.argv.slice(3, 7)).catch((e) => {
    console.error(e)
    process.exit(1)
  })
} else if (require.main === module) {
  main().catch((e) => {
    console.error(e)
    process.exit(1)
  })
}

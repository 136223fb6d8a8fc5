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
  if (kind === 'pushq') {
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
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < PUSHES) {
        const i = next++
        await send(pushFor(i))
      }
    }),
  )
  const wallMs = Number(process.hrtime.bigint() - t0) / 1e6
  const cpu = process.cpuUsage(cpu0)
  await done()
  process.stdout.write(JSON.stringify({ cpuUs: cpu.user + cpu.system, wallMs }) + '\n')
}

async function counts(endpoint) {
  const res = await fetch(`${endpoint}/__counts`)
  return res.json()
}

async function main() {
  let endpoint = arg('endpoint')
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
  const rows = []
  for (const pattern of Object.keys(PATTERNS)) {
    for (const kind of ['pushq', 'sdk']) {
      const before = sink ? await counts(endpoint) : null
      const out = execFileSync(process.execPath, [__filename, '--child', kind, pattern, endpoint, queueUrl, '--pushes', String(PUSHES)], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
        env: { ...process.env, NODE_NO_WARNINGS: '1' },
      })
      const r = JSON.parse(out.trim().split('\n').pop())
      const after = sink ? await counts(endpoint) : null
      const requests = sink ? after.requests - before.requests : NaN
      const pushes = PUSHES + 20
      rows.push({
        client: kind === 'pushq' ? 'pushq enqueuePush' : 'aws-sdk SendMessageCommand',
        pattern: pattern === 'burst' ? `${PUSHES} at once` : '100 concurrent callers',
        'CPU µs/push': (r.cpuUs / PUSHES).toFixed(1),
        'wall ms': r.wallMs.toFixed(0),
        'pushes/s': ((PUSHES / r.wallMs) * 1000).toFixed(0),
        'SQS requests/push': (requests / pushes).toFixed(3),
      })
      process.stderr.write(`done: ${kind} ${pattern}\n`)
    }
  }
  console.table(rows)
  for (const pattern of new Set(rows.map((r) => r.pattern))) {
    const [p, s] = rows.filter((r) => r.pattern === pattern)
    console.log(`${pattern}: pushq uses ${(p['CPU µs/push'] / s['CPU µs/push']).toFixed(3)}× the SDK's CPU per push`)
  }
  if (sink) sink.stdin.end()
}

if (process.argv[2] === '--child') {
  child(...process.argv.slice(3, 7)).catch((e) => {
    console.error(e)
    process.exit(1)
  })
} else {
  main().catch((e) => {
    console.error(e)
    process.exit(1)
  })
}

// Edges an app server sees: a bounded producer when SQS stalls, a registry that recovers and never
// runs DDL unless asked, and a default client that does not keep its first configuration error.
import { DeviceRegistry, DeliveryLog, PushClient } from '..'
import { drainQueue, freshQueue } from './support/sqs'
import { freshDatabase, PUSHQ_BIN, tempDir } from './support/pushq-bin'
import { execFileSync, spawn } from 'child_process'
import * as fs from 'fs'
import * as http from 'http'
import * as net from 'net'
import * as path from 'path'

const endpointUrl = process.env.PUSHQ_TEST_SQS_ENDPOINT!
const root = path.resolve(__dirname, '..')

/**
 * An SQS endpoint that holds the first `hold` requests (until `stopHolding()`) — accepts them and
 * never answers (a stalled SQS or network) — and forwards every later one to moto. Held requests
 * are dropped, never forwarded: whatever reaches the queue was sent after the stall.
 */
async function holdingProxy(upstream: string, hold: number) {
  const target = new URL(upstream)
  const held = new Set<net.Socket>()
  let heldRequests = 0
  let holding = true
  const server = http.createServer((req, res) => {
    if (holding && heldRequests < hold) {
      heldRequests++
      held.add(req.socket)
      return
    }
    const chunks: Buffer[] = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      const out = http.request(
        { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host } },
        (answer) => {
          res.writeHead(answer.statusCode!, answer.headers)
          answer.pipe(res)
        },
      )
      out.on('error', () => res.destroy())
      out.end(Buffer.concat(chunks))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    heldRequests: () => heldRequests,
    stopHolding: () => {
      holding = false
    },
    close: () => {
      for (const s of held) s.destroy()
      return new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

type Settled = { ok: boolean; code?: string; message?: string; at: number }

/** Enqueues `n` pushes of about 600 bytes (as envelopes) at once; when and how each settled. */
async function enqueueAll(client: PushClient, n: number): Promise<Settled[]> {
  const started = Date.now()
  const pad = 'x'.repeat(500)
  return Promise.all(
    Array.from({ length: n }, (_, i) =>
      client.enqueuePush({ token: `device-${i}`, data: { pad } }).then(
        () => ({ ok: true, at: Date.now() - started }),
        (e) => ({ ok: false, code: e.code, message: e.message, at: Date.now() - started }),
      ),
    ),
  )
}

// The slack above a deadline: far below the SDK's own timeouts and retries (30 s and more), which
// is what a push waited for before it had a deadline; wide for a loaded 2-core machine.
const SLACK_MS = 5000

describe('a stalled SQS', () => {
  test('each of 200 pushes is answered at its deadline, truthfully; none is sent later, and the client recovers', async () => {
    const queueUrl = await freshQueue()
    // Every request is held (its answer never comes) until the stall ends.
    const proxy = await holdingProxy(endpointUrl, Number.MAX_SAFE_INTEGER)
    const timeoutMs = 3000
    const client = new PushClient({ queueUrl, endpointUrl: proxy.url, pushTimeoutMs: timeoutMs })
    try {
      const settled = await enqueueAll(client, 200)
      expect(settled.filter((s) => s.ok)).toEqual([])
      // A push in an unanswered request may be on the queue (PUSHQ_QUEUE_UNKNOWN: enqueue it again
      // with its id); one that never left the client is not (PUSHQ_QUEUE: it will not be sent).
      const unknown = settled.filter((s) => s.code === 'PUSHQ_QUEUE_UNKNOWN')
      const refused = settled.filter((s) => s.code === 'PUSHQ_QUEUE')
      expect(unknown.length + refused.length).toBe(200)
      // At least the pushes of the first eight requests (one push each, or more when they coalesced).
      expect(unknown.length).toBeGreaterThanOrEqual(8)
      for (const s of unknown) expect(s.message).toMatch(/may be on the queue/)
      for (const s of refused) expect(s.message).toMatch(/will not be sent/)
      expect(proxy.heldRequests()).toBeGreaterThanOrEqual(8)
      proxy.stopHolding()
      // Every one by its deadline, the last of the 200 too: an unknown one at it (it was sent
      // again until then), a refused one no earlier than its least time to send (750 ms) before.
      expect(Math.min(...unknown.map((s) => s.at))).toBeGreaterThanOrEqual(timeoutMs - 50)
      expect(Math.min(...refused.map((s) => s.at))).toBeGreaterThanOrEqual(timeoutMs - 750 - 50)
      expect(Math.max(...settled.map((s) => s.at))).toBeLessThan(timeoutMs + SLACK_MS)

      // SQS answers again: the same client works, and none of the 200 was sent behind the
      // caller's back once the stalled requests had given up.
      const { id } = await client.enqueuePush({ token: 'after' })
      const messages = await drainQueue(queueUrl, 1)
      expect(messages.map((m) => JSON.parse(m.Body!).id)).toEqual([id])
    } finally {
      await client.close()
      await proxy.close()
    }
  })

  test('past the backlog, pushes are refused at once; the others wait for their deadline', async () => {
    const queueUrl = await freshQueue()
    const proxy = await holdingProxy(endpointUrl, Number.MAX_SAFE_INTEGER)
    const timeoutMs = 3000
    // 64 KiB: about 100 of the 200 pushes fit.
    const client = new PushClient({ queueUrl, endpointUrl: proxy.url, pushTimeoutMs: timeoutMs, maxBacklogBytes: 65536 })
    try {
      const settled = await enqueueAll(client, 200)
      expect(settled.filter((s) => s.ok)).toEqual([])
      const full = settled.filter((s) => /backlog is full/.test(s.message!))
      const waited = settled.filter((s) => !/backlog is full/.test(s.message!))
      expect(full.length).toBeGreaterThan(50)
      expect(waited.length).toBeGreaterThan(50)
      expect(new Set(full.map((s) => s.code))).toEqual(new Set(['PUSHQ_QUEUE']))
      // At once: before any push could have reached its deadline.
      expect(Math.max(...full.map((s) => s.at))).toBeLessThan(timeoutMs)
      // The others by their deadline: no earlier than their least time to send (750 ms) before it.
      expect(Math.min(...waited.map((s) => s.at))).toBeGreaterThanOrEqual(timeoutMs - 750 - 50)
      expect(Math.max(...waited.map((s) => s.at))).toBeLessThan(timeoutMs + SLACK_MS)
    } finally {
      await client.close()
      await proxy.close()
    }
  })

  test('the options are checked', () => {
    for (const [options, name] of [
      [{ maxBacklogBytes: 1000 }, 'maxBacklogBytes'],
      [{ maxBacklogBytes: 2 ** 40 }, 'maxBacklogBytes'],
      [{ pushTimeoutMs: 0 }, 'pushTimeoutMs'],
      [{ pushTimeoutMs: '5' }, 'pushTimeoutMs'],
    ] as const) {
      expect(() => new PushClient({ queueUrl: 'http://127.0.0.1/1/q', ...(options as any) })).toThrow(
        expect.objectContaining({ code: 'PUSHQ_CONFIG', message: expect.stringContaining(name) }),
      )
    }
  })
})

describe('DeviceRegistry and DeliveryLog', () => {
  function tables(file: string): string[] {
    const out = execFileSync('python3', ['-c', `import sqlite3,sys; print("\\n".join(r[0] for r in sqlite3.connect(sys.argv[1]).execute("select name from sqlite_master where type='table' order by name")))`, file])
    return out.toString().trim().split('\n').filter(Boolean)
  }

  test('never run DDL unless asked: a database without the schema is PUSHQ_DATABASE saying to run pushq migrate', async () => {
    const file = path.join(tempDir(), 'fresh.db')
    const databaseUrl = `sqlite://${file}`
    const registry = new DeviceRegistry({ databaseUrl })
    await expect(registry.register({ userId: 'u1', token: 't1', platform: 'ios' })).rejects.toMatchObject({
      code: 'PUSHQ_DATABASE',
      message: expect.stringContaining('pushq migrate'),
    })
    await expect(new DeliveryLog({ databaseUrl }).forPush('p')).rejects.toMatchObject({ code: 'PUSHQ_DATABASE' })
    expect(tables(file)).toEqual([])
    // Asked to, it applies the schema.
    await new DeviceRegistry({ databaseUrl, migrate: true }).register({ userId: 'u1', token: 't1', platform: 'ios' })
    expect(tables(file)).toEqual(expect.arrayContaining(['pushq_deliveries', 'pushq_devices', 'pushq_rejected']))
    expect(await registry.devices('u1')).toEqual([{ app: 'default', userId: 'u1', token: 't1', kind: 'token', platform: 'ios', live: true, lastSeenAt: expect.any(String) }])
  })

  test('a schema older than this pushq needs is named, with what to do', async () => {
    const databaseUrl = freshDatabase('sqlite')
    execFileSync(PUSHQ_BIN, ['migrate'], { env: { ...process.env, DATABASE_URL: databaseUrl } })
    // As if the database had been migrated by an older pushq, which had none of today's migrations.
    const file = databaseUrl.replace('sqlite://', '')
    execFileSync('python3', ['-c', 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute("delete from _sqlx_migrations"); c.commit()', file])
    await expect(new DeviceRegistry({ databaseUrl }).devices('u1')).rejects.toMatchObject({
      code: 'PUSHQ_DATABASE',
      message: expect.stringMatching(/older than this pushq needs.*pushq migrate/),
    })
  })

  test('a failed first connection is not kept: the next call connects', async () => {
    const dir = path.join(tempDir(), 'not-yet')
    const databaseUrl = `sqlite://${path.join(dir, 'devices.db')}`
    const registry = new DeviceRegistry({ databaseUrl, migrate: true })
    // The directory does not exist yet: SQLite cannot create the file.
    await expect(registry.devices('u1')).rejects.toMatchObject({ code: 'PUSHQ_DATABASE' })
    fs.mkdirSync(dir)
    await registry.register({ userId: 'u1', token: 't1', platform: 'ios' })
    expect(await registry.devices('u1')).toEqual([{ app: 'default', userId: 'u1', token: 't1', kind: 'token', platform: 'ios', live: true, lastSeenAt: expect.any(String) }])
  })
})

test('the module-level enqueuePush reports a configuration error per call, and works once the environment is fixed', async () => {
  const queueUrl = await freshQueue()
  const script = `
    const { enqueuePush } = require(${JSON.stringify(root)})
    ;(async () => {
      const first = await enqueuePush({ token: 'device-1' }).then(() => 'resolved', (e) => e.code)
      process.env.PUSHQ_QUEUE_URL = ${JSON.stringify(queueUrl)}
      const { id } = await enqueuePush({ token: 'device-1' })
      console.log(JSON.stringify({ first, id }))
    })().catch((e) => { console.error(e); process.exit(1) })
  `
  const env: Record<string, string> = { ...process.env, AWS_ENDPOINT_URL_SQS: endpointUrl } as any
  delete env.PUSHQ_QUEUE_URL
  const child = spawn(process.execPath, ['-e', script], { env })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => (stdout += d))
  child.stderr.on('data', (d) => (stderr += d))
  const code = await new Promise((resolve) => child.on('exit', resolve))
  expect(stderr).toBe('')
  expect(code).toBe(0)
  const { first, id } = JSON.parse(stdout)
  expect(first).toBe('PUSHQ_CONFIG')
  const messages = await drainQueue(queueUrl, 1)
  expect(messages.map((m) => JSON.parse(m.Body!).id)).toEqual([id])
})

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
 * An SQS endpoint that, while `held`, accepts every request and never answers it (a stalled SQS
 * or network), and otherwise forwards to moto. Held requests are dropped, never forwarded.
 */
async function holdingProxy(upstream: string) {
  const target = new URL(upstream)
  const held = new Set<net.Socket>()
  let holding = true
  let heldRequests = 0
  const server = http.createServer((req, res) => {
    if (holding) {
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
    release() {
      holding = false
      for (const s of held) s.destroy()
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}

type Settled = { ok: boolean; code?: string; message?: string; at: number }

describe('a stalled SQS', () => {
  test('past the backlog pushes are refused at once, the rest at their deadline; none is sent later, and the client recovers', async () => {
    const queueUrl = await freshQueue()
    const proxy = await holdingProxy(endpointUrl)
    const timeoutMs = 3000
    const client = new PushClient({ queueUrl, endpointUrl: proxy.url, pushTimeoutMs: timeoutMs, maxBacklogBytes: 65536 })
    try {
      const started = Date.now()
      // 200 pushes of about 600 bytes each as envelopes: about 100 fit the 64 KiB backlog.
      const pad = 'x'.repeat(500)
      const settled: Settled[] = await Promise.all(
        Array.from({ length: 200 }, (_, i) =>
          client.enqueuePush({ token: `device-${i}`, data: { pad } }).then(
            () => ({ ok: true, at: Date.now() - started }),
            (e) => ({ ok: false, code: e.code, message: e.message, at: Date.now() - started }),
          ),
        ),
      )
      expect(settled.filter((s) => s.ok)).toEqual([])
      expect(new Set(settled.map((s) => s.code))).toEqual(new Set(['PUSHQ_QUEUE']))
      const full = settled.filter((s) => /backlog is full/.test(s.message!))
      const timedOut = settled.filter((s) => !/backlog is full/.test(s.message!))
      // Both bounds were hit: some pushes found the backlog full, the others waited for SQS.
      expect(full.length).toBeGreaterThan(0)
      expect(timedOut.length).toBeGreaterThan(0)
      expect(proxy.heldRequests()).toBeGreaterThan(0)
      // Refused at once: before any push could have reached its deadline.
      expect(Math.max(...full.map((s) => s.at))).toBeLessThan(timeoutMs)
      // The others at their deadline, the last of them too (not after the SDK's own timeouts and
      // retries, which would take 30 s and more).
      expect(Math.min(...timedOut.map((s) => s.at))).toBeGreaterThanOrEqual(timeoutMs - 50)
      expect(Math.max(...timedOut.map((s) => s.at))).toBeLessThan(timeoutMs + 2000)
      for (const s of timedOut) expect(s.message).toMatch(/not (be sent|known to be enqueued)|will not be sent/)

      // SQS answers again: the same client works, and nothing refused was sent behind the caller's back.
      proxy.release()
      const { id } = await client.enqueuePush({ token: 'after', data: { pad } })
      const messages = await drainQueue(queueUrl, 1)
      expect(messages.map((m) => JSON.parse(m.Body!).id)).toEqual([id])
    } finally {
      proxy.release()
      await client.close()
      await proxy.close()
    }
  })

  test('the options are checked', () => {
    expect(() => new PushClient({ queueUrl: 'http://127.0.0.1/1/q', maxBacklogBytes: 1000 })).toThrow(
      expect.objectContaining({ code: 'PUSHQ_CONFIG', message: expect.stringContaining('maxBacklogBytes') }),
    )
    expect(() => new PushClient({ queueUrl: 'http://127.0.0.1/1/q', pushTimeoutMs: 0 })).toThrow(
      expect.objectContaining({ code: 'PUSHQ_CONFIG', message: expect.stringContaining('pushTimeoutMs') }),
    )
    expect(() => new PushClient({ queueUrl: 'http://127.0.0.1/1/q', pushTimeoutMs: '5' as any })).toThrow(
      expect.objectContaining({ code: 'PUSHQ_CONFIG', message: expect.stringContaining('pushTimeoutMs') }),
    )
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
    expect(await registry.devices('u1')).toEqual([{ userId: 'u1', token: 't1', platform: 'ios', live: true }])
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
    expect(await registry.devices('u1')).toEqual([{ userId: 'u1', token: 't1', platform: 'ios', live: true }])
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

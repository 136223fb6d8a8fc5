// When SQS refuses, stalls or loses its answer, enqueuePush answers truthfully and in bounded
// time: PUSHQ_QUEUE for a push that is not on the queue (a refused connection, a missing queue);
// when SQS stalls, each push answered at its deadline and, past the backlog, refused at once; when
// an answer is lost (the test proxy in front of moto holds or drops it), a held answer outwaited by
// sending the same envelope again, and an answer that never comes PUSHQ_QUEUE_UNKNOWN with the push
// id — enqueued again with that id, it is delivered once ("delivered once" is what FCM, the
// emulator, receives from `pushq worker`). Entries SendMessageBatch fails one by one:
// coalescing.spec.ts.
import { DeliveryLog, PushClient } from '..'
import { dropDatabases, Emulator, freshDatabase, pushq, startEmulator, waitFor, withWorker } from './support/pushq-bin'
import { drainQueue, dropNextAnswers, failNextEntries, freshQueue, holdNextAnswers, proxySent, queueDepth } from './support/sqs'
import * as http from 'http'
import * as net from 'net'

const endpointUrl = process.env.PUSHQ_TEST_SQS_ENDPOINT!

describe('queue failures', () => {
  test('a refused connection rejects with PUSHQ_QUEUE', async () => {
    // A port that was free a moment ago: connections are refused.
    const port = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port
        s.close(() => resolve(p))
      })
    })
    const client = new PushClient({ queueUrl: `http://127.0.0.1:${port}/123456789012/q`, endpointUrl: `http://127.0.0.1:${port}` })
    const started = Date.now()
    await expect(client.enqueuePush({ token: 'device-1' })).rejects.toMatchObject({ code: 'PUSHQ_QUEUE' })
    // Refused connections fail fast; a stalled endpoint is bounded by the push deadline (a stalled SQS, below).
    expect(Date.now() - started).toBeLessThan(30_000)
    await client.close()
  })

  test('a queue that does not exist rejects with PUSHQ_QUEUE', async () => {
    const client = new PushClient({ queueUrl: `${endpointUrl}/123456789012/no-such-queue-${Date.now()}`, endpointUrl })
    await expect(client.enqueuePush({ token: 'device-1' })).rejects.toMatchObject({ code: 'PUSHQ_QUEUE' })
    await client.close()
  })
})

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
})

describe('an answer lost on the way back', () => {
  const proxy = process.env.PUSHQ_TEST_SQS_PROXY!
  let fcm: Emulator
  beforeAll(async () => {
    fcm = await startEmulator()
  })
  afterAll(() => {
    fcm.stop()
    dropDatabases()
  })

  /** Runs `pushq worker` on the queue until every copy on it is consumed; what FCM got for `token`. */
  async function deliverAll(queueUrl: string, id: string, token: string): Promise<string[]> {
    const databaseUrl = freshDatabase('sqlite')
    const env = {
      DATABASE_URL: databaseUrl,
      PUSHQ_FCM_CREDENTIALS: fcm.credentials,
      PUSHQ_FCM_ENDPOINT: fcm.endpoint,
      AWS_ENDPOINT_URL_SQS: process.env.PUSHQ_TEST_SQS_ENDPOINT!,
    }
    pushq(['migrate'], env)
    await withWorker(['--queue-url', queueUrl], env, async () => {
      const deliveries = new DeliveryLog({ databaseUrl })
      await waitFor('the push delivered', 60_000, async () => (await deliveries.forPush(id)).state === 'delivered')
      const empty = { visible: 0, inFlight: 0, delayed: 0 }
      await waitFor('every copy consumed', 60_000, async () => JSON.stringify(await queueDepth(queueUrl)) === JSON.stringify(empty))
    })
    return (await fcm.received()).map((m) => m.body.message.token).filter((t: string) => t === token)
  }

  test('an answer held past the attempt timeout: the same envelope is sent again, the push resolves, one delivery', async () => {
    const queueUrl = await freshQueue()
    // Attempts get a third of the push's 9 s; the first answer comes after 10 s (the old client
    // gave its one request the push's whole 9 s, then said "not enqueued", though SQS had the push).
    await holdNextAnswers(queueUrl, 1, 10_000)
    const client = new PushClient({ queueUrl, endpointUrl: proxy, pushTimeoutMs: 9_000 })
    const { id } = await client.enqueuePush({ token: 'held-device', notification: { title: 'hi' } })
    await client.close()
    const copies = (await proxySent(queueUrl)).map((body) => JSON.parse(body).id)
    expect(copies.length).toBeGreaterThanOrEqual(2)
    expect(new Set(copies)).toEqual(new Set([id]))
    expect(await deliverAll(queueUrl, id, 'held-device')).toEqual(['held-device'])
  }, 120_000)

  test('answers that never come: PUSHQ_QUEUE_UNKNOWN with the push id; enqueued again with that id, one delivery', async () => {
    const queueUrl = await freshQueue()
    await dropNextAnswers(queueUrl, 1_000)
    const client = new PushClient({ queueUrl, endpointUrl: proxy, pushTimeoutMs: 3_000 })
    const push = { token: 'dropped-device', notification: { title: 'hi' } }
    const err: any = await client.enqueuePush(push).then(
      () => null,
      (e) => e,
    )
    expect(err).toMatchObject({ code: 'PUSHQ_QUEUE_UNKNOWN', pushId: expect.any(String) })
    expect(err.message).toContain('may be on the queue')
    // SQS has it (perhaps several times), all under that id.
    const copies = (await proxySent(queueUrl)).map((body) => JSON.parse(body).id)
    expect(copies.length).toBeGreaterThanOrEqual(1)
    expect(new Set(copies)).toEqual(new Set([err.pushId]))

    await client.close()
    // The server retries as the error says, with the push id (on its usual client).
    await dropNextAnswers(queueUrl, 0)
    const retry = new PushClient({ queueUrl, endpointUrl: proxy })
    expect(await retry.enqueuePush({ ...push, id: err.pushId })).toEqual({ id: err.pushId })
    await retry.close()
    expect(await deliverAll(queueUrl, err.pushId, 'dropped-device')).toEqual(['dropped-device'])
  }, 120_000)

  test('a push id must be a UUID; a definite refusal stays PUSHQ_QUEUE', async () => {
    const client = new PushClient({ queueUrl: await freshQueue(), endpointUrl: proxy })
    await expect(client.enqueuePush({ token: 'd', id: 'order-42' })).rejects.toMatchObject({ code: 'PUSHQ_INVALID_PUSH', field: 'id' })
    await client.close()
    // A queue that does not exist: SQS answers 400, the push is not enqueued.
    const missing = new PushClient({ queueUrl: `${(await freshQueue()).replace(/[^/]+$/, '')}no-such-queue`, endpointUrl: proxy })
    await expect(missing.enqueuePush({ token: 'd' })).rejects.toMatchObject({ code: 'PUSHQ_QUEUE' })
    await missing.close().catch(() => undefined)
  })

  test("a batch-mate's nearer deadline does not cut a fresh push's request short", async () => {
    const queueUrl = await freshQueue()
    // 9 s per push, so 3 s per attempt. Eight pushes fill the client's eight requests, each answered
    // after 2 s; meanwhile A, then 1.2 s later B, wait in the client and go out together in one
    // request, whose answer is held 8 s: past A's deadline, not past B's. (The old client gave the
    // request only A's time left and refused both, B too, as not enqueued.)
    await holdNextAnswers(queueUrl, 8, 2_000)
    const client = new PushClient({ queueUrl, endpointUrl: proxy, pushTimeoutMs: 9_000 })
    const fillers: Promise<unknown>[] = []
    for (let i = 0; i < 8; i++) {
      fillers.push(client.enqueuePush({ token: `filler-${i}` }))
      await new Promise((r) => setTimeout(r, 25))
    }
    await holdNextAnswers(queueUrl, 1, 8_000)
    const a = client.enqueuePush({ token: 'older-device' }).then(
      (r) => ({ ok: true, id: r.id }),
      (e) => ({ ok: false, code: e.code }),
    )
    await new Promise((r) => setTimeout(r, 1_200))
    const b = client.enqueuePush({ token: 'fresh-device' })
    expect((await b).id).toMatch(/^[0-9a-f-]{36}$/)
    expect(await a).toMatchObject({ ok: true })
    await Promise.all(fillers)
    await client.close()
    // A and B went out in one request (then again, once its answer was held).
    const bodies = (await proxySent(queueUrl)).map((body) => JSON.parse(body).push.token)
    expect(bodies.filter((t: string) => t === 'fresh-device').length).toBeGreaterThanOrEqual(1)
  })

  test('a split push partly refused says what is known of each part, with the id to enqueue it again', async () => {
    const queueUrl = await freshQueue()
    const client = new PushClient({ queueUrl, endpointUrl: proxy })
    // 600 tokens: two queue messages (at most 500 entries each). SQS refuses one of them for good
    // (the first entry of the next request: either part, as the client batches them).
    const push = { tokens: Array.from({ length: 600 }, (_, i) => `split-${i}`), notification: { title: 'hi' } }
    await failNextEntries(queueUrl, 1, { senderFault: true })
    const err: any = await client.enqueuePush(push).then(
      () => null,
      (e) => e,
    )
    expect(err).toMatchObject({ code: 'PUSHQ_QUEUE_UNKNOWN', pushId: expect.any(String) })
    const said = err.message.match(/part \d of 2: (enqueued|not enqueued)/g).map((p: string) => p.replace(/part \d of 2: /, ''))
    expect(said.sort()).toEqual(['enqueued', 'not enqueued'])
    // Enqueued again with its id: every part is on the queue, each with that id.
    expect(await client.enqueuePush({ ...push, id: err.pushId })).toEqual({ id: err.pushId })
    await client.close()
    const ids = (await proxySent(queueUrl)).map((body) => JSON.parse(body).id)
    expect(new Set(ids)).toEqual(new Set([err.pushId]))
  })
})

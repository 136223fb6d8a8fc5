// enqueuePush answers truthfully when SQS's answer is lost, through the test proxy in front of
// moto: a held answer is outwaited by sending the same envelope again (resolved, delivered once);
// an answer that never comes is PUSHQ_QUEUE_UNKNOWN with the push id, and enqueuing again with
// that id delivers once. "Delivered once" is what FCM (the emulator) receives from `pushq worker`.
import { DeliveryLog, PushClient } from '..'
import { dropDatabases, Emulator, freshDatabase, pushq, startEmulator, startWorker, waitFor } from './support/pushq-bin'
import { dropNextAnswers, failNextEntries, freshQueue, holdNextAnswers, proxySent, queueDepth } from './support/sqs'

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
  const worker = startWorker(['--queue-url', queueUrl], env)
  let log = ''
  worker.stderr!.on('data', (d) => (log += d))
  try {
    const deliveries = new DeliveryLog({ databaseUrl })
    await waitFor('the push delivered', 60_000, async () => (await deliveries.forPush(id)).state === 'delivered')
    const empty = { visible: 0, inFlight: 0, delayed: 0 }
    await waitFor('every copy consumed', 60_000, async () => JSON.stringify(await queueDepth(queueUrl)) === JSON.stringify(empty))
  } catch (e) {
    throw new Error(`${e}\nworker log:\n${log}`)
  } finally {
    worker.kill('SIGTERM')
  }
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

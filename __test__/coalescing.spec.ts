// Under concurrent load the client coalesces pushes into SendMessageBatch calls: every push
// arrives exactly once, and the queue sees far fewer requests than pushes.
import { PushClient } from '..'
import { failNextEntries, freshQueue, proxyCounts, proxySent, queueDepth } from './support/sqs'

test('600 concurrent enqueuePush calls arrive exactly once, in clearly fewer SQS requests', async () => {
  const queueUrl = await freshQueue()
  // Through the counting proxy, which sees every request and body that reaches SQS. 600 pushes at
  // once are 60 batches' worth waiting in the backlog; moto, at tens of messages a second, can take
  // longer than the default 30 s deadline of the last ones; the deadline is not what this test is
  // about (sqs-failures.spec.ts is), so it is set well above that. (It took 2,000 pushes and about
  // 100 s until the test command had to fit its time: 600 show the same coalescing.)
  const client = new PushClient({ queueUrl, endpointUrl: process.env.PUSHQ_TEST_SQS_PROXY!, pushTimeoutMs: 300_000 })
  const n = 600
  const results = await Promise.all(
    Array.from({ length: n }, (_, i) => client.enqueuePush({ token: `device-${i}`, data: { i: String(i) } })),
  )
  await client.close()

  const ids = results.map((r) => r.id)
  expect(new Set(ids).size).toBe(n)

  // SQS holds every push once, and a second copy only of what was in a request the client stopped
  // waiting for: moto under the run's load can take longer than the SDK's 10 s attempt timeout, and
  // the SDK then sends the request again while SQS keeps the first (copies with the same push id,
  // which consumers send once). Nothing the client sent twice on its own.
  const counts = await proxyCounts(queueUrl)
  const copies = counts.AbandonedEntries ?? 0
  expect(await queueDepth(queueUrl)).toEqual({ visible: n + copies, inFlight: 0, delayed: 0 })
  expect(counts['AmazonSQS.SendMessage'] ?? 0).toBe(0)
  // 10 per batch at best; "clearly fewer" = at most one request per 4 pushes on average.
  expect(counts['AmazonSQS.SendMessageBatch']).toBeLessThanOrEqual(n / 4)

  // What was sent: one envelope per push, and each promise settled for its own push.
  // (Reading the messages back out of moto takes minutes; enqueue.spec.ts reads envelopes back.)
  const envelopes = (await proxySent(queueUrl)).map((b) => JSON.parse(b))
  expect(envelopes.length).toBe(n + copies)
  const tokenById = new Map(envelopes.map((e) => [e.id, e.push.token]))
  expect(tokenById.size).toBe(n)
  results.forEach((r, i) => expect(tokenById.get(r.id)).toBe(`device-${i}`))
  // The test's own time: as long as the pushes' deadline above. moto's pace, not pushq's, sets how
  // long this takes; no time is asserted.
}, 300_000)

describe('entries SQS fails', () => {
  test('entries SQS failed on its side are retried until accepted', async () => {
    const queueUrl = await freshQueue()
    const client = new PushClient({ queueUrl, endpointUrl: process.env.PUSHQ_TEST_SQS_PROXY! })
    await failNextEntries(queueUrl, 6)
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => client.enqueuePush({ token: `device-${i}` })))
    await client.close()
    expect(new Set(results.map((r) => r.id)).size).toBe(10)
    expect(await queueDepth(queueUrl)).toEqual({ visible: 10, inFlight: 0, delayed: 0 })
    // Six entries failed, were sent again, and every push reached SQS once.
    expect((await proxyCounts(queueUrl)).InjectedEntryFailure).toBe(6)
    const sent = (await proxySent(queueUrl)).map((b) => JSON.parse(b).id)
    expect(sent.sort()).toEqual(results.map((r) => r.id).sort())
  })

  test('an entry SQS refuses as the sender\'s fault rejects its own promise only', async () => {
    const queueUrl = await freshQueue()
    const client = new PushClient({ queueUrl, endpointUrl: process.env.PUSHQ_TEST_SQS_PROXY! })
    await failNextEntries(queueUrl, 1, { senderFault: true })
    const outcomes = await Promise.allSettled(Array.from({ length: 5 }, (_, i) => client.enqueuePush({ token: `device-${i}` })))
    await client.close()
    const rejected = outcomes.filter((o) => o.status === 'rejected') as PromiseRejectedResult[]
    expect(rejected.length).toBe(1)
    expect(rejected[0].reason).toMatchObject({ code: 'PUSHQ_QUEUE', message: expect.stringContaining('InvalidParameterValue') })
    expect(await queueDepth(queueUrl)).toEqual({ visible: 4, inFlight: 0, delayed: 0 })
  })
})

// Under concurrent load the client coalesces pushes into SendMessageBatch calls: every push
// arrives exactly once, and the queue sees far fewer requests than pushes.
import { PushClient } from '..'
import { freshQueue, proxyCounts, proxySent, queueDepth } from './support/sqs'

test('2,000 concurrent enqueuePush calls arrive exactly once, in clearly fewer SQS requests', async () => {
  const queueUrl = await freshQueue()
  // Through the counting proxy, which sees every request and body that reaches SQS.
  const client = new PushClient({ queueUrl, endpointUrl: process.env.PUSHQ_TEST_SQS_PROXY! })
  const n = 2000
  const results = await Promise.all(
    Array.from({ length: n }, (_, i) => client.enqueuePush({ token: `device-${i}`, data: { i: String(i) } })),
  )
  await client.close()

  const ids = results.map((r) => r.id)
  expect(new Set(ids).size).toBe(n)

  // SQS holds exactly n messages: none lost, none sent twice.
  expect(await queueDepth(queueUrl)).toEqual({ visible: n, inFlight: 0, delayed: 0 })

  const counts = await proxyCounts(queueUrl)
  expect(counts['AmazonSQS.SendMessage'] ?? 0).toBe(0)
  // 10 per batch at best; "clearly fewer" = at most one request per 4 pushes on average.
  expect(counts['AmazonSQS.SendMessageBatch']).toBeLessThanOrEqual(n / 4)

  // What was sent: one envelope per push, and each promise settled for its own push.
  // (Reading 2,000 messages back out of moto takes minutes; enqueue.spec.ts reads envelopes back.)
  const envelopes = (await proxySent(queueUrl)).map((b) => JSON.parse(b))
  expect(envelopes.length).toBe(n)
  const tokenById = new Map(envelopes.map((e) => [e.id, e.push.token]))
  expect(tokenById.size).toBe(n)
  results.forEach((r, i) => expect(tokenById.get(r.id)).toBe(`device-${i}`))
})

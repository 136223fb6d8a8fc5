// FIFO queues: group and deduplication ids, and no per-message delay.
import { PushClient } from '..'
import { drainQueue, freshQueue, queueDepth } from './support/sqs'

const endpointUrl = process.env.PUSHQ_TEST_SQS_ENDPOINT!

test('FIFO: every push reaches the queue, pushes get group ids, delaySeconds is refused', async () => {
  const queueUrl = await freshQueue({ fifo: true })
  const client = new PushClient({ queueUrl, endpointUrl })

  // One key, reused within SQS's five-minute deduplication window: for the same user again, and
  // for another user. None of them may be dropped by SQS: the consumer delivers a key once per
  // device and records the rest as duplicates, and the second user has not had it at all.
  const first = await client.enqueuePush({ userId: 'u1', idempotencyKey: 'welcome', notification: { title: 'Welcome' } })
  const again = await client.enqueuePush({ userId: 'u1', idempotencyKey: 'welcome', notification: { title: 'Welcome' } })
  const otherUser = await client.enqueuePush({ userId: 'u2', idempotencyKey: 'welcome', notification: { title: 'Welcome' } })
  const plain = await client.enqueuePush({ token: 'device-9' })

  await expect(client.enqueuePush({ token: 'device-9', delaySeconds: 5 })).rejects.toMatchObject({
    code: 'PUSHQ_INVALID_PUSH',
    field: 'delaySeconds',
  })
  await client.close()

  const messages = await drainQueue(queueUrl, 4)
  const byId = new Map(messages.map((m) => [JSON.parse(m.Body!).id, m]))
  expect([...byId.keys()].sort()).toEqual([first.id, again.id, otherUser.id, plain.id].sort())
  expect(messages.length).toBe(4)
  for (const [id, m] of byId) {
    expect(m.Attributes!.MessageDeduplicationId).toBe(id)
  }
  expect(byId.get(first.id)!.Attributes!.MessageGroupId).toBe('user:u1')
  expect(byId.get(again.id)!.Attributes!.MessageGroupId).toBe('user:u1')
  expect(byId.get(otherUser.id)!.Attributes!.MessageGroupId).toBe('user:u2')
  expect(byId.get(plain.id)!.Attributes!.MessageGroupId).toBe(plain.id)
  expect(await queueDepth(queueUrl)).toEqual({ visible: 0, inFlight: 0, delayed: 0 })
})

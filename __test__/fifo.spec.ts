// FIFO queues: group and deduplication ids, and no per-message delay.
import { PushClient } from '..'
import { drainQueue, freshQueue, queueDepth } from './support/sqs'

const endpointUrl = process.env.PUSHQ_TEST_SQS_ENDPOINT!

test('FIFO: idempotencyKey deduplicates, pushes get group ids, delaySeconds is refused', async () => {
  const queueUrl = await freshQueue({ fifo: true })
  const client = new PushClient({ queueUrl, endpointUrl })

  const first = await client.enqueuePush({ userId: 'u1', idempotencyKey: 'welcome-u1', notification: { title: 'Welcome' } })
  // The same key again within SQS's 5-minute window is accepted by SQS but not delivered twice.
  await client.enqueuePush({ userId: 'u1', idempotencyKey: 'welcome-u1', notification: { title: 'Welcome' } })
  const other = await client.enqueuePush({ token: 'device-9' })

  await expect(client.enqueuePush({ token: 'device-9', delaySeconds: 5 })).rejects.toMatchObject({
    code: 'PUSHQ_INVALID_PUSH',
    field: 'delaySeconds',
  })
  await client.close()

  const messages = await drainQueue(queueUrl, 2)
  expect(messages.length).toBe(2)
  const byId = new Map(messages.map((m) => [JSON.parse(m.Body!).id, m]))
  const welcome = byId.get(first.id)!
  expect(welcome.Attributes!.MessageGroupId).toBe('user:u1')
  expect(welcome.Attributes!.MessageDeduplicationId).toBe('welcome-u1')
  const plain = byId.get(other.id)!
  expect(plain.Attributes!.MessageGroupId).toBe(other.id)
  expect(plain.Attributes!.MessageDeduplicationId).toBe(other.id)
  expect(await queueDepth(queueUrl)).toEqual({ visible: 0, inFlight: 0, delayed: 0 })
})

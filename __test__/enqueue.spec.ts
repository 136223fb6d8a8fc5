// enqueuePush against a real SQS (moto_server): what lands in the queue is what a consumer reads —
// the envelope with its id, dates, delays, a large tokens list split into several messages,
// enqueuePushes (all or none), and firebase-admin's dryRun flag.
import { PushClient } from '..'
import { drainQueue, freshQueue, queueDepth } from './support/sqs'

const endpointUrl = process.env.PUSHQ_TEST_SQS_ENDPOINT!

describe('enqueuePush', () => {
  let queueUrl: string
  let client: PushClient

  beforeEach(async () => {
    queueUrl = await freshQueue()
    client = new PushClient({ queueUrl, endpointUrl })
  })
  afterEach(() => client.close())

  test('the envelope read back from SQS carries the push as given, with its id', async () => {
    const push = {
      userId: 'user-42',
      notification: { title: 'Your class starts soon', body: 'Spin 45 with Alex' },
      android: { priority: 'high' as const, ttl: 3600000 },
      data: { classId: '981' },
      category: 'class-reminder',
      idempotencyKey: 'reminder-981-user-42',
    }
    const before = Date.now()
    const { id } = await client.enqueuePush(push)
    const [message] = await drainQueue(queueUrl, 1)
    const envelope = JSON.parse(message.Body!)
    expect(envelope).toEqual({ v: 1, id, enqueuedAt: expect.any(Number), push })
    expect(envelope.enqueuedAt).toBeGreaterThanOrEqual(before)
    expect(envelope.enqueuedAt).toBeLessThanOrEqual(Date.now())
    // UUIDv7: version nibble 7, and its millisecond prefix is the enqueue time.
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    expect(parseInt(id.replace(/-/g, '').slice(0, 12), 16)).toBe(envelope.enqueuedAt)
  })

  test('a Date in the push travels as its ISO string', async () => {
    const when = new Date('2026-11-24T10:00:00.000Z')
    await client.enqueuePush({ token: 'device-1', android: { notification: { eventTimestamp: when } } })
    const [message] = await drainQueue(queueUrl, 1)
    expect(JSON.parse(message.Body!).push.android.notification.eventTimestamp).toBe('2026-11-24T10:00:00.000Z')
  })

  test('delaySeconds becomes the message DelaySeconds', async () => {
    // 900 s (the maximum) so that no test run is slow enough to see it elapse.
    await client.enqueuePush({ token: 'device-1', delaySeconds: 900 })
    await client.enqueuePush({ token: 'device-2', delaySeconds: 0 })
    expect(await queueDepth(queueUrl)).toEqual({ visible: 1, inFlight: 0, delayed: 1 })
  })

  test('a large tokens list is split into several envelopes with one id and every token once', async () => {
    const tokens = Array.from({ length: 1234 }, (_, i) => `token-${String(i).padStart(155, '0')}`)
    const { id } = await client.enqueuePush({ tokens, notification: { title: 'hi' } })
    const messages = await drainQueue(queueUrl)
    expect(messages.length).toBeGreaterThan(1)
    const envelopes = messages.map((m) => JSON.parse(m.Body!))
    for (const m of messages) expect(Buffer.byteLength(m.Body!)).toBeLessThanOrEqual(64 * 1024)
    for (const e of envelopes) {
      expect(e.id).toBe(id)
      expect(e.push.tokens.length).toBeLessThanOrEqual(500)
    }
    const got = envelopes.flatMap((e) => e.push.tokens).sort()
    expect(got).toEqual([...tokens].sort())
  })

  test('enqueuePushes: one invalid push and none is enqueued; all valid and all are', async () => {
    const good = { token: 'device-1', notification: { title: 'ok' } }
    const bad = { token: 'device-2', android: { ttl: -5 } }
    await expect(client.enqueuePushes([good, good, bad as any])).rejects.toMatchObject({
      code: 'PUSHQ_INVALID_PUSH',
      field: 'pushes[2].android.ttl',
    })
    expect(await queueDepth(queueUrl)).toEqual({ visible: 0, inFlight: 0, delayed: 0 })
    // A list entry that is not a push object is named by its place in the list.
    await expect(client.enqueuePushes([good, 5 as any])).rejects.toMatchObject({ code: 'PUSHQ_INVALID_PUSH', field: 'pushes[1]' })
    expect(await queueDepth(queueUrl)).toEqual({ visible: 0, inFlight: 0, delayed: 0 })

    const result = await client.enqueuePushes([good, { ...good, token: 'device-3' }])
    const messages = await drainQueue(queueUrl, 2)
    expect(messages.map((m) => JSON.parse(m.Body!).id).sort()).toEqual(result.map((r) => r.id).sort())
  })
})

describe("firebase-admin's dryRun flag", () => {
  test('the queue message of a dry run says so; a dryRun that is not a boolean is refused', async () => {
    const queueUrl = await freshQueue()
    const client = new PushClient({ queueUrl })
    await client.enqueuePush({ token: 'device-1' }, true)
    await client.enqueuePush({ token: 'device-2' })
    const bodies = (await drainQueue(queueUrl, 2)).map((m) => JSON.parse(m.Body!))
    expect(bodies.map((b) => [b.push.token, b.dryRun])).toEqual([
      ['device-1', true],
      ['device-2', undefined],
    ])
    await expect(client.enqueuePush({ token: 'device-1' }, 'yes' as any)).rejects.toMatchObject({ code: 'PUSHQ_INVALID_PUSH', field: 'dryRun' })
    // enqueuePushes takes it too, as firebase-admin's sendEach(messages, dryRun) does.
    await client.enqueuePushes([{ token: 'device-3' }, { topic: 'news' }], true)
    expect((await drainQueue(queueUrl, 2)).map((m) => JSON.parse(m.Body!).dryRun)).toEqual([true, true])
    await client.close()
  })
})

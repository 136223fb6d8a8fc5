// What enqueuePush refuses before anything is sent: a push firebase-admin would not send is
// PUSHQ_INVALID_PUSH naming the field, a payload over FCM's limits is PUSHQ_TOO_LARGE naming the
// largest field, and nothing reaches the queue. (Parity with firebase-admin on a corpus of pushes:
// corpus.spec.ts; enqueuePushes, all or none: enqueue.spec.ts.)
import { PushClient } from '..'
import { drainQueue, freshQueue, queueDepth } from './support/sqs'

const endpointUrl = process.env.PUSHQ_TEST_SQS_ENDPOINT!

describe('bad input from JavaScript', () => {
  let client: PushClient
  let queueUrl: string
  beforeAll(async () => {
    queueUrl = await freshQueue()
    client = new PushClient({ queueUrl, endpointUrl })
  })
  afterAll(() => client.close())

  test.each([
    ['undefined', undefined, 'push'],
    ['null', null, 'push'],
    ['a string', 'hello', 'push'],
    ['a BigInt', { token: 't', data: { n: 10n } }, 'push'],
    ['a cycle', (() => { const o: any = { token: 't' }; o.self = o; return o })(), 'push'],
    ['no target', { notification: { title: 'x' } }, 'target'],
    ['a number as token', { token: 5 }, 'token'],
    ['10,001 tokens', { tokens: Array.from({ length: 10001 }, (_, i) => `t${i}`) }, 'tokens'],
    ['100,000 user ids', { userIds: Array.from({ length: 100000 }, (_, i) => `u${i}`) }, 'userIds'],
    ['an unknown field', { token: 't', priority: 'high' }, 'priority'],
    ['a constructor key', { token: 't', constructor: 'x' }, 'constructor'],
    ['an own __proto__ key', JSON.parse('{"token":"t","__proto__":{"polluted":true}}'), '__proto__'],
    ['a constructor key in data with a number', { token: 't', data: { constructor: 5 } }, 'data.constructor'],
    ['a lone surrogate in a title', { token: 't', notification: { title: 'a\uD800b' } }, 'notification.title'],
    ['a lone surrogate in a data key', { token: 't', data: { ['k\uDC00']: 'v' } }, 'data.k\\udc00'],
    ['NUL in a user id', { userId: 'a\u0000b' }, 'userId'],
    ['a 600-character token', { token: 'x'.repeat(600) }, 'token'],
    ['nesting 1,000 levels deep', (() => { const p: any = { token: 't', apns: { payload: {} } }; let c = p.apns.payload; for (let i = 0; i < 1000; i++) c = c.a = {}; return p })(), 'apns.payload.a.a.a'],
    ['an object whose getter throws', { token: 't', get data(): any { throw new Error('boom') } }, 'push'],
  ])('%s is PUSHQ_INVALID_PUSH naming the field, and nothing is enqueued', async (_, push, field) => {
    const err = await client.enqueuePush(push as any).then(() => null, (e) => e)
    expect(err).toMatchObject({ code: 'PUSHQ_INVALID_PUSH' })
    expect(err.field.startsWith(field)).toBe(true)
    expect(await queueDepth(queueUrl)).toEqual({ visible: 0, inFlight: 0, delayed: 0 })
  })

  test('a 5 MB title is PUSHQ_TOO_LARGE, and nothing is enqueued', async () => {
    await expect(client.enqueuePush({ token: 't', notification: { title: 'x'.repeat(5 * 1024 * 1024) } })).rejects.toMatchObject({
      code: 'PUSHQ_TOO_LARGE',
      message: expect.stringContaining('4096'),
    })
    expect(await queueDepth(queueUrl)).toEqual({ visible: 0, inFlight: 0, delayed: 0 })
  })
})

describe('payloads over FCM limits', () => {
  let queueUrl: string
  let client: PushClient

  beforeEach(async () => {
    queueUrl = await freshQueue()
    client = new PushClient({ queueUrl, endpointUrl })
  })
  afterEach(() => client.close())

  test('a payload over FCM limits is refused with PUSHQ_TOO_LARGE and not enqueued', async () => {
    const big = 'x'.repeat(4100)
    await expect(client.enqueuePush({ token: 'device-1', data: { big } })).rejects.toMatchObject({
      code: 'PUSHQ_TOO_LARGE',
      message: expect.stringContaining('4096'),
    })
    // Topics have half the room: 3,000 bytes is fine for a token, too large for a topic.
    const mid = 'x'.repeat(3000)
    await expect(client.enqueuePush({ topic: 'news', data: { mid } })).rejects.toMatchObject({
      code: 'PUSHQ_TOO_LARGE',
      message: expect.stringContaining('2048'),
    })
    await client.enqueuePush({ token: 'device-1', data: { mid } })
    const messages = await drainQueue(queueUrl)
    expect(messages.map((m) => JSON.parse(m.Body!).push.token)).toEqual(['device-1'])
  })
})

test('PUSHQ_TOO_LARGE names the largest field', async () => {
  const client = new PushClient({ queueUrl: await freshQueue() })
  const err = await client.enqueuePush({ token: 't', data: { small: 'x', report: 'r'.repeat(5000) } }).then(() => null, (e: unknown) => e)
  expect(err).toMatchObject({ code: 'PUSHQ_TOO_LARGE', field: 'data.report', message: expect.stringContaining('the largest field is data.report') })
  await client.close()
})

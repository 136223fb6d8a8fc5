// Configuration and queue errors: typed codes, bounded time, nothing half-done.
import { DeliveryLog, DeviceRegistry, PushClient, enqueuePush, isPushqError } from '..'
import { freshQueue, queueDepth } from './support/sqs'
import { tempDir } from './support/pushq-bin'
import * as net from 'net'
import * as path from 'path'

const endpointUrl = process.env.PUSHQ_TEST_SQS_ENDPOINT!

// jest gives each test file a copy of process.env that native code does not see: tests of what
// the addon reads from the environment run in child processes (lifecycle.spec.ts); here the real
// environment has no PUSHQ_QUEUE_URL (global-setup removed it).
describe('configuration', () => {

  test('no queue URL in sqs mode is PUSHQ_CONFIG, never a silent fallback', () => {
    expect(() => new PushClient({ endpointUrl })).toThrow(expect.objectContaining({ code: 'PUSHQ_CONFIG', message: expect.stringContaining('queueUrl') }))
    expect(() => new PushClient({ queueUrl: '' })).toThrow(expect.objectContaining({ code: 'PUSHQ_CONFIG' }))
  })

  test('the module-level enqueuePush rejects with PUSHQ_CONFIG when the environment has no queue', async () => {
    await expect(enqueuePush({ token: 'device-1' })).rejects.toMatchObject({ code: 'PUSHQ_CONFIG' })
  })

  test('bad options name the option', () => {
    const bad = [
      [{ queueURL: 'http://x/1/q' }, 'options.queueURL'],
      [{ queueUrl: 42 }, 'options.queueUrl'],
      [{ queueUrl: 'not a url' }, 'queueUrl'],
      [{ queueUrl: 'http://127.0.0.1/1/q', mode: 'kafka' }, 'mode'],
    ] as const
    for (const [options, name] of bad) {
      expect(() => new PushClient(options as any)).toThrow(
        expect.objectContaining({ code: 'PUSHQ_CONFIG', message: expect.stringContaining(name) }),
      )
    }
  })
})

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
    // Refused connections fail fast; a stalled endpoint is bounded by the push deadline (edges.spec.ts).
    expect(Date.now() - started).toBeLessThan(30_000)
    await client.close()
  })

  test('a queue that does not exist rejects with PUSHQ_QUEUE', async () => {
    const client = new PushClient({ queueUrl: `${endpointUrl}/123456789012/no-such-queue-${Date.now()}`, endpointUrl })
    await expect(client.enqueuePush({ token: 'device-1' })).rejects.toMatchObject({ code: 'PUSHQ_QUEUE' })
    await client.close()
  })
})

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

describe('arguments of the wrong type', () => {
  test('a push id, user id or token that is not a string rejects with PUSHQ_INVALID_ARGUMENT naming it', async () => {
    const databaseUrl = `sqlite://${path.join(tempDir(), 'arguments.db')}`
    const registry = new DeviceRegistry({ databaseUrl, migrate: true })
    expect(await registry.devices('nobody')).toEqual([])
    const log = new DeliveryLog({ databaseUrl })
    const calls: [() => Promise<unknown>, string][] = [
      [() => log.waitFor({ id: '0193' } as any), 'pushId: must be a string (got an object)'],
      [() => log.forPush({} as any), 'pushId: must be a string (got an object)'],
      [() => (log.forPush as any)(), 'pushId: must be a string (got undefined)'],
      [() => log.forUser(7 as any), 'userId: must be a string (got a number)'],
      [() => registry.devices(42 as any), 'userId: must be a string (got a number)'],
      [() => registry.unregister(null as any), 'token: must be a string (got null)'],
    ]
    for (const [call, message] of calls) {
      const error = await call().then(() => undefined, (e: unknown) => e)
      expect(isPushqError(error)).toBe(true)
      expect(error).toMatchObject({ code: 'PUSHQ_INVALID_ARGUMENT', message: expect.stringContaining(message) })
    }
  })
})

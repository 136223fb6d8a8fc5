// The whole pipeline from Node: enqueuePush → SQS (moto) → `pushq worker` → FCM (emulator) →
// the database, on SQLite, PostgreSQL and MariaDB. Every push is delivered once per device and
// recorded once.
import { DeliveryLog, DeviceRegistry, PushClient } from '..'
import { freshQueue, queueDepth } from './support/sqs'
import { dropDatabases, Emulator, freshDatabase, pushq, startEmulator, startWorker, waitFor } from './support/pushq-bin'

const endpointUrl = process.env.PUSHQ_TEST_SQS_ENDPOINT!
let fcm: Emulator
beforeAll(async () => {
  fcm = await startEmulator()
})
afterAll(() => {
  fcm.stop()
  dropDatabases()
})

describe.each(['sqlite', 'postgres', 'mysql'] as const)('%s', (kind) => {
  test('every push is delivered once per device and recorded once', async () => {
    const databaseUrl = freshDatabase(kind)
    const queueUrl = await freshQueue()
    const env = {
      DATABASE_URL: databaseUrl,
      PUSHQ_FCM_CREDENTIALS: fcm.credentials,
      PUSHQ_FCM_ENDPOINT: fcm.endpoint,
      AWS_ENDPOINT_URL_SQS: endpointUrl,
    }
    pushq(['migrate'], env)
    const registry = new DeviceRegistry({ databaseUrl })
    const users = Array.from({ length: 6 }, (_, i) => `${kind}-user-${i}`)
    for (const [i, user] of users.entries()) {
      await registry.register({ userId: user, token: `${kind}-tok-${i}-a`, platform: 'android' })
      await registry.register({ userId: user, token: `${kind}-tok-${i}-b`, platform: 'ios' })
    }

    const client = new PushClient({ queueUrl, endpointUrl })
    const pushes = [
      ...users.map((userId) => ({ userId, notification: { title: 'Class soon' }, category: 'reminder' })),
      { userIds: users.slice(0, 3), data: { promo: 'dec' } },
      { token: `${kind}-direct`, notification: { title: 'direct' } },
    ]
    const ids = (await Promise.all(pushes.map((p) => client.enqueuePush(p)))).map((r) => r.id)
    await client.close()

    const worker = startWorker(['--queue-url', queueUrl, '--batch-size', '10'], env)
    let log = ''
    worker.stderr!.on('data', (d) => (log += d))
    const deliveries = new DeliveryLog({ databaseUrl })
    const rowsFor = async () => Promise.all(ids.map(async (id) => (await deliveries.forPush(id)).deliveries))
    try {
      const states = async () => Promise.all(ids.map(async (id) => (await deliveries.forPush(id)).state))
      await waitFor('the delivery log', 60_000, async () => (await states()).every((state) => state === 'delivered'))
    } catch (e) {
      throw new Error(`${e}\nworker log:\n${log}`)
    }
    const exited = new Promise<number | null>((resolve) => worker.once('exit', resolve))
    worker.kill('SIGTERM')
    expect(await exited).toBe(0)

    const rows = await rowsFor()
    // FCM's name for each message it accepted, as firebase-admin's send() resolved with.
    const fcmMessageId = expect.stringMatching(/^projects\/[^/]+\/messages\/./)
    users.forEach((user, i) =>
      expect(rows[i]).toEqual([
        { app: 'default', target: `${kind}-tok-${i}-a`, userId: user, status: 'sent', attempts: 1, fcmMessageId },
        { app: 'default', target: `${kind}-tok-${i}-b`, userId: user, status: 'sent', attempts: 1, fcmMessageId },
      ]),
    )
    expect(rows[users.length].map((r) => r.target)).toEqual([0, 1, 2].flatMap((i) => [`${kind}-tok-${i}-a`, `${kind}-tok-${i}-b`]))
    expect(rows[users.length + 1]).toEqual([{ app: 'default', target: `${kind}-direct`, status: 'sent', attempts: 1, fcmMessageId }])

    // FCM got exactly one request per (push, device).
    const sent = (await fcm.received()).map((m) => m.body.message.token).filter((t: string) => t.startsWith(`${kind}-`))
    const expectedSends = users.length * 2 + 6 + 1
    expect(sent.length).toBe(expectedSends)
    expect(await queueDepth(queueUrl)).toEqual({ visible: 0, inFlight: 0, delayed: 0 })
  })
})

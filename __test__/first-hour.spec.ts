// A Node developer's first hour with pushq, written the way they write it: scripts that end
// without close(), firebase-admin's dryRun flag, a LocalStack-style queue URL, errors caught as
// `unknown`, and the delivery log read while a push is on its way.
import { DeliveryLog, DeviceRegistry, PushClient, isPushqError } from '..'
import { execFileSync } from 'child_process'
import { drainQueue, freshQueue } from './support/sqs'
import { dropDatabases, freshDatabase, runScript, startEmulator, tempDir } from './support/pushq-bin'

afterAll(dropDatabases)

describe('local mode keeps what it was given', () => {
  test('a script that enqueues and ends without close() still delivers every push, then exits', async () => {
    const databaseUrl = freshDatabase('sqlite')
    const { code, stdout, stderr } = await runScript(
      `const { enqueuePush, PushClient } = require('pushq')
const client = new PushClient({ mode: 'local' })
;(async () => {
  const ids = []
  for (let i = 0; i < 4; i++) ids.push((await client.enqueuePush({ token: 'device-' + i, notification: { title: 'hi' } })).id)
  ids.push((await enqueuePush({ topic: 'news' })).id)
  console.log(JSON.stringify(ids))
})()`,
      { DATABASE_URL: databaseUrl, PUSHQ_MODE: 'local' },
    )
    expect(stderr).not.toContain('Error')
    expect(code).toBe(0)
    const ids: string[] = JSON.parse(stdout)
    const log = new DeliveryLog({ databaseUrl })
    const states = await Promise.all(ids.map((id) => log.forPush(id)))
    // Without FCM credentials nothing reaches a device: every target is dry_run, never sent, and
    // local mode says so once.
    expect(states.map((s) => [s.state, s.deliveries.map((d) => d.status)])).toEqual(Array(5).fill(['delivered', ['dry_run']]))
    expect(stderr.match(/no FCM credentials .*recorded dry_run and not sent/g)).toHaveLength(1)
  })

  test('a database that cannot be opened rejects the push with PUSHQ_DATABASE instead of resolving', async () => {
    const client = new PushClient({ mode: 'local', databaseUrl: `sqlite://${tempDir()}/no/such/dir/pushq.db` })
    await expect(client.enqueuePush({ token: 'device-1' })).rejects.toMatchObject({
      code: 'PUSHQ_DATABASE',
      message: expect.stringContaining('local mode cannot open its database'),
    })
    await client.close()
  })

  test('a delivery that fails after its push was accepted makes flush() reject with PUSHQ_DELIVERY naming the push', async () => {
    const databaseUrl = freshDatabase('postgres')
    const client = new PushClient({ mode: 'local', databaseUrl })
    await client.enqueuePush({ token: 'device-1' })
    await client.flush()
    // The database loses the log table under the running engine: every later batch fails.
    execFileSync('psql', [databaseUrl, '-qc', 'DROP TABLE pushq_deliveries'])
    const { id } = await client.enqueuePush({ token: 'device-2' })
    const err = await client.flush().then(() => null, (e: unknown) => e)
    expect(isPushqError(err)).toBe(true)
    expect(err).toMatchObject({ code: 'PUSHQ_DELIVERY', message: expect.stringContaining(id) })
    expect((err as Error).message).toContain('pushq_deliveries')
    // Reported once: a later flush has nothing new to report.
    await expect(client.flush()).resolves.toBeUndefined()
    await client.close()
  })

  test('module-level flush() and close() work on the default client; a second close() waits as the first', async () => {
    const databaseUrl = freshDatabase('sqlite')
    const fcm = await startEmulator()
    try {
      // The last push's send takes a while, so that a close() returning early would show.
      await fetch(`${fcm.endpoint}/__faults`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ rules: [{ token: 'device-3', delayMs: 1500 }] }),
      })
      const { code, stdout, stderr } = await runScript(
        `const { enqueuePush, flush, close, DeliveryLog } = require('pushq')
;(async () => {
  const { id } = await enqueuePush({ token: 'device-1' })
  await flush()
  const afterFlush = (await new DeliveryLog().forPush(id)).state
  const second = await enqueuePush({ token: 'device-2' })
  await close()
  const afterClose = (await new DeliveryLog().forPush(second.id)).state
  // After close(), the next module-level push starts a new default client.
  const third = await enqueuePush({ token: 'device-3' })
  // A second close() while the first is under way waits for the same deliveries.
  const first = close()
  await close()
  const afterSecondClose = (await new DeliveryLog().forPush(third.id)).state
  await first
  console.log(JSON.stringify([afterFlush, afterClose, afterSecondClose]))
})()`,
        { DATABASE_URL: databaseUrl, PUSHQ_MODE: 'local', PUSHQ_FCM_CREDENTIALS: fcm.credentials, PUSHQ_FCM_ENDPOINT: fcm.endpoint },
      )
      expect(stderr).not.toContain('Error')
      expect(code).toBe(0)
      expect(JSON.parse(stdout)).toEqual(['delivered', 'delivered', 'delivered'])
    } finally {
      fcm.stop()
    }
  })
})

describe("firebase-admin's dryRun flag", () => {
  test('enqueuePush(push, true) is sent with validate_only and logged as a dry run, not delivered', async () => {
    const fcm = await startEmulator()
    try {
      const databaseUrl = freshDatabase('sqlite')
      const { code, stdout, stderr } = await runScript(
        `const { PushClient } = require('pushq')
;(async () => {
  const client = new PushClient({ mode: 'local' })
  const dry = await client.enqueuePush({ token: 'device-1', notification: { title: 'check me' } }, true)
  const real = await client.enqueuePush({ token: 'device-2', notification: { title: 'for real' } }, false)
  await client.close()
  console.log(JSON.stringify([dry.id, real.id]))
})()`,
        { DATABASE_URL: databaseUrl, PUSHQ_FCM_CREDENTIALS: fcm.credentials, PUSHQ_FCM_ENDPOINT: fcm.endpoint },
      )
      expect(stderr).not.toContain('Error')
      expect(code).toBe(0)
      const [dry, real] = JSON.parse(stdout)
      const received = await fcm.received()
      // Both pushes may go out in one batch, in either order.
      expect(received.map((m) => [m.body.message.token, m.validateOnly]).sort()).toEqual([
        ['device-1', true],
        ['device-2', false],
      ])
      const log = new DeliveryLog({ databaseUrl })
      expect((await log.forPush(dry)).deliveries).toMatchObject([{ target: 'device-1', status: 'dry_run' }])
      // As firebase-admin's send() resolved with FCM's message name, and sendEach() counted.
      expect(await log.forPush(real)).toMatchObject({
        successCount: 1,
        failureCount: 0,
        deliveries: [{ target: 'device-2', status: 'sent', fcmMessageId: expect.stringMatching(/^projects\/[^/]+\/messages\/./) }],
      })
    } finally {
      fcm.stop()
    }
  })

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

describe('SQS as a developer meets it', () => {
  test('a LocalStack-style queue URL is its own endpoint: no endpointUrl needed', async () => {
    // moto's queue URLs carry its host, as LocalStack's do.
    const queueUrl = await freshQueue()
    expect(new URL(queueUrl).host).toBe(new URL(process.env.PUSHQ_TEST_SQS_ENDPOINT!).host)
    const client = new PushClient({ queueUrl })
    const { id } = await client.enqueuePush({ token: 'device-1' })
    await client.close()
    expect((await drainQueue(queueUrl, 1)).map((m) => JSON.parse(m.Body!).id)).toEqual([id])
  })

  test('an SQS error is one line naming the queue and the endpoint, with awsCode and the detail as cause', async () => {
    const queueUrl = (await freshQueue()) + '-missing'
    const client = new PushClient({ queueUrl })
    let caught: unknown
    try {
      await client.enqueuePush({ token: 'device-1' })
    } catch (e) {
      caught = e
    }
    await client.close()
    if (!isPushqError(caught)) throw new Error(`not a pushq error: ${String(caught)}`)
    // Narrowed: code, awsCode and cause are typed.
    expect(caught.code).toBe('PUSHQ_QUEUE')
    expect(caught.message).not.toContain('\n')
    expect(caught.message).toContain(queueUrl)
    expect(caught.message).toContain(`at ${new URL(queueUrl).origin}`)
    expect(caught.awsCode).toMatch(/NonExistentQueue|QueueDoesNotExist/)
    // The AWS SDK's whole error, for whoever wants it.
    expect(caught.cause).toMatchObject({ message: expect.stringContaining('ServiceError') })
    expect(caught.message.length).toBeLessThan(400)
  })

  test('no usable AWS credentials is PUSHQ_CONFIG, saying where credentials come from', async () => {
    const queueUrl = await freshQueue()
    const { code, stdout } = await runScript(
      `const { PushClient } = require('pushq')
new PushClient({ queueUrl: ${JSON.stringify(queueUrl)} }).enqueuePush({ token: 'device-1' })
  .then(() => console.log('resolved'), (e) => console.log(JSON.stringify({ code: e.code, message: e.message })))`,
      {
        AWS_ACCESS_KEY_ID: '',
        AWS_SECRET_ACCESS_KEY: '',
        AWS_EC2_METADATA_DISABLED: 'true',
        AWS_CONFIG_FILE: '/nonexistent',
        AWS_SHARED_CREDENTIALS_FILE: '/nonexistent',
      },
    )
    expect(code).toBe(0)
    const answer = JSON.parse(stdout)
    expect(answer.code).toBe('PUSHQ_CONFIG')
    expect(answer.message).toContain('AWS credentials: none usable for SQS')
    expect(answer.message).toContain('AWS_ACCESS_KEY_ID')
  })
})

describe('DeliveryLog tells pending from unknown, and waits', () => {
  test('forPush: unknown id, pending push, delivered push; waitFor resolves once delivered', async () => {
    const databaseUrl = freshDatabase('sqlite')
    const log = new DeliveryLog({ databaseUrl, migrate: true })
    // No push can have this id (a push id is 1 to 64 characters).
    const impossible = 'x'.repeat(65)
    expect(await log.forPush(impossible)).toEqual({ id: impossible, state: 'unknown', deliveries: [], successCount: 0, failureCount: 0 })
    const client = new PushClient({ mode: 'local', databaseUrl })
    const { id } = await client.enqueuePush({ userId: 'ana', notification: { title: 'hi' } })
    const answer = await log.waitFor(id, { timeoutMs: 10_000 })
    expect(answer).toMatchObject({ id, state: 'delivered', deliveries: [{ target: 'user:ana', status: 'no_devices' }] })
    expect(await log.forPush(id)).toEqual(answer)
    await client.close()

    // An id a push could have, with nothing recorded: pending (a database cannot tell a push
    // still on the queue from one never enqueued).
    const neverEnqueued = '019abcde-0000-7000-8000-000000000000'
    expect((await log.forPush(neverEnqueued)).state).toBe('pending')
    // A pushq id from the future was never given out.
    expect((await log.forPush('7fffffff-0000-7000-8000-000000000000')).state).toBe('unknown')
    await expect(log.waitFor(neverEnqueued, { timeoutMs: 50 })).rejects.toMatchObject({ code: 'PUSHQ_TIMEOUT', message: expect.stringContaining(neverEnqueued) })
    await expect(log.waitFor(impossible)).rejects.toMatchObject({ code: 'PUSHQ_INVALID_ARGUMENT' })
    // A misspelt option is refused, not a silent 30 s wait.
    await expect(log.waitFor(id, { timeout: 5 } as any)).rejects.toMatchObject({ code: 'PUSHQ_INVALID_ARGUMENT', message: expect.stringContaining('options.timeout') })
  })
})

describe('DeviceRegistry and DeliveryLog check what they are given, as PushClient does', () => {
  test('an unknown option is PUSHQ_CONFIG naming it, not a silent default database', () => {
    for (const make of [(o: any) => new DeviceRegistry(o), (o: any) => new DeliveryLog(o)]) {
      let err: unknown
      try {
        make({ databseUrl: 'sqlite://elsewhere.db' })
      } catch (e) {
        err = e
      }
      expect(err).toMatchObject({ code: 'PUSHQ_CONFIG', message: expect.stringContaining('options.databseUrl: unknown option') })
    }
  })

  test('a missing or mistyped device field is PUSHQ_INVALID_DEVICE with field', async () => {
    const registry = new DeviceRegistry({ databaseUrl: freshDatabase('sqlite'), migrate: true })
    await expect(registry.register({ userId: 'u1', token: 't1' } as any)).rejects.toMatchObject({ code: 'PUSHQ_INVALID_DEVICE', field: 'platform' })
    await expect(registry.register({ userId: 7, token: 't1', platform: 'ios' } as any)).rejects.toMatchObject({ code: 'PUSHQ_INVALID_DEVICE', field: 'userId' })
    await expect(registry.register({ userId: 'u1', token: 't1', platform: 'ios', plaform: 'x' } as any)).rejects.toMatchObject({
      code: 'PUSHQ_INVALID_DEVICE',
      field: 'plaform',
    })
  })

  test('errors name the option or variable the database came from', async () => {
    await expect(new DeviceRegistry({ databaseUrl: 'redis://127.0.0.1' }).devices('u1')).rejects.toMatchObject({
      code: 'PUSHQ_DATABASE',
      message: expect.stringMatching(/^options\.databaseUrl: /),
    })
    // From the environment (jest's process.env is a copy: the variable is set for a script).
    const { stdout } = await runScript(
      `const { DeliveryLog } = require('pushq')
new DeliveryLog().forPush('x').catch((e) => console.log(JSON.stringify({ code: e.code, message: e.message })))`,
      { DATABASE_URL: 'redis://127.0.0.1' },
    )
    expect(JSON.parse(stdout)).toMatchObject({ code: 'PUSHQ_DATABASE', message: expect.stringMatching(/^DATABASE_URL: /) })
  })

  test('an unreachable PostgreSQL fails within seconds, naming host and port but not the password', async () => {
    const registry = new DeviceRegistry({ databaseUrl: 'postgres://pushq:s3cret-pw@127.0.0.1:1/test' })
    const err = await registry.devices('u1').then(() => null, (e: unknown) => e)
    expect(err).toMatchObject({ code: 'PUSHQ_DATABASE', message: expect.stringContaining('PostgreSQL at 127.0.0.1:1 could not be reached within 5 s') })
    expect((err as Error).message).not.toContain('s3cret-pw')
  }, 15_000)
})

describe('types and messages a developer relies on', () => {
  test('PUSHQ_TOO_LARGE names the largest field', async () => {
    const client = new PushClient({ queueUrl: await freshQueue() })
    const err = await client.enqueuePush({ token: 't', data: { small: 'x', report: 'r'.repeat(5000) } }).then(() => null, (e: unknown) => e)
    expect(err).toMatchObject({ code: 'PUSHQ_TOO_LARGE', field: 'data.report', message: expect.stringContaining('the largest field is data.report') })
    await client.close()
  })

  test('isPushqError tells pushq errors from others', () => {
    expect(isPushqError(Object.assign(new Error('x'), { code: 'PUSHQ_QUEUE' }))).toBe(true)
    expect(isPushqError(Object.assign(new Error('x'), { code: 'ECONNREFUSED' }))).toBe(false)
    expect(isPushqError({ code: 'PUSHQ_QUEUE' })).toBe(false)
    expect(isPushqError('PUSHQ_QUEUE')).toBe(false)
    expect(isPushqError(undefined)).toBe(false)
  })
})

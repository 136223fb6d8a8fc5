// Local mode (`mode: 'local'`): no AWS; the process delivers what it enqueues itself, to FCM (the
// emulator) or, without FCM credentials, recorded dry_run and sent to no device, and records it in
// the database. As a developer meets it: the README's example server, scripts run with node that
// end with or without close(), flush() and close() on the default client, firebase-admin's dryRun
// flag, several apps; what it keeps (a push is stored before enqueuePush resolves, so a process
// killed right after, or one that cannot deliver it yet, leaves it to the next local-mode process);
// and how it says why, where the mistake was made (an FCM that keeps failing, a database that cannot
// be opened, credentials that cannot be read).
import { DeliveryLog, DeviceRegistry, PushClient, isPushqError } from '..'
import { execFile, execFileSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'
import { dropDatabases, freshDatabase, runScript, startEmulator, tempDir } from './support/pushq-bin'

const root = path.resolve(__dirname, '..')

afterAll(dropDatabases)

function runExample(env: Record<string, string>) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, [path.join(root, 'examples', 'local-server.js')], { env: { ...process.env, ...env, PUSHQ_EXAMPLE_JSON: '1' } }, (err, stdout, stderr) =>
      resolve({ code: err ? (err as any).code ?? 1 : 0, stdout, stderr }),
    )
  })
}

const expected = {
  'class reminder to ana': ['token-ana-phone sent', 'token-ana-tablet sent'],
  'promo to ben and chris': ['token-ben-iphone sent', 'user:chris no_devices'],
  'closure to a topic': ['topic:gym-berlin sent'],
}

describe('the example server (the README\'s first command)', () => {
  test('without credentials the example server records every target dry_run and says so once; PUSHQ_LOG sets how much it prints', async () => {
    const withoutFcm = { PUSHQ_FCM_CREDENTIALS: '', GOOGLE_APPLICATION_CREDENTIALS: '' }
    const { code, stdout, stderr } = await runExample({ DATABASE_URL: freshDatabase('sqlite'), ...withoutFcm })
    expect(code).toBe(0)
    // Without FCM credentials nothing reaches a device: each target is recorded dry_run, and local
    // mode says so once, at start.
    const dryRun = Object.fromEntries(Object.entries(expected).map(([k, rows]) => [k, rows.map((r) => r.replace(/ sent$/, ' dry_run'))]))
    expect(JSON.parse(stdout.trim().split('\n').pop()!)).toEqual(dryRun)
    const notice = 'pushq local mode: no FCM credentials (PUSHQ_FCM_CREDENTIALS or GOOGLE_APPLICATION_CREDENTIALS): pushes are recorded dry_run and not sent to any device'
    const [first, ...rest] = stderr.trim().split('\n')
    expect(first).toBe(notice)
    // At info (the default): one line per push, saying what became of its targets.
    const perPush = (lines: string[]) => lines.map((l) => l.replace(/^pushq local mode: push [0-9a-f-]{36}: /, '')).sort()
    expect(perPush(rest)).toEqual(['dry_run 1', 'dry_run 2', 'dry_run 1, no_devices 1'].sort())
    expect(stderr).not.toContain('would send')

    // At debug: also what FCM would have received, one line per device.
    const debug = await runExample({ DATABASE_URL: freshDatabase('sqlite'), ...withoutFcm, PUSHQ_LOG: 'debug' })
    expect(debug.code).toBe(0)
    expect(debug.stderr.match(/would send/g)?.length).toBe(4)
    expect(debug.stderr).toContain('"token":"token-ana-phone"')

    // At warn: nothing but that nothing is sent.
    const quiet = await runExample({ DATABASE_URL: freshDatabase('sqlite'), ...withoutFcm, PUSHQ_LOG: 'warn' })
    expect(quiet.code).toBe(0)
    expect(quiet.stderr.trim()).toBe(notice)
  })

  test('with FCM credentials, local mode sends to FCM (the emulator) and records the same', async () => {
    const fcm = await startEmulator()
    try {
      const { code, stdout, stderr } = await runExample({
        DATABASE_URL: freshDatabase('sqlite'),
        PUSHQ_FCM_CREDENTIALS: fcm.credentials,
        PUSHQ_FCM_ENDPOINT: fcm.endpoint,
      })
      // Only the one line per push (PUSHQ_LOG's default, info): nothing failed.
      expect(stderr.trim().split('\n').map((l) => l.replace(/^pushq local mode: push [0-9a-f-]{36}: /, '')).sort()).toEqual(['no_devices 1, sent 1', 'sent 1', 'sent 2'])
      expect(code).toBe(0)
      expect(JSON.parse(stdout.trim().split('\n').pop()!)).toEqual(expected)
      const targets = (await fcm.received()).map((m) => m.body.message.token ?? `topic:${m.body.message.topic}`).sort()
      expect(targets).toEqual(['token-ana-phone', 'token-ana-tablet', 'token-ben-iphone', 'topic:gym-berlin'])
    } finally {
      fcm.stop()
    }
  })
})

async function faults(endpoint: string, rules: unknown[]) {
  await fetch(`${endpoint}/__faults`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ rules }) })
}

/** A script that starts a local-mode client, runs `body` with it, and prints what close() says. */
const script = (body: string) => `const { PushClient } = require('pushq')
;(async () => {
  const client = new PushClient({ mode: 'local' })
  ${body}
  await client.close().then(() => console.log(JSON.stringify({ closed: true })), (e) => console.log(JSON.stringify({ code: e.code, message: e.message })))
})()`

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

  test('a process killed right after enqueuePush resolved: the next local-mode process delivers the push', async () => {
    const fcm = await startEmulator()
    try {
      // FCM answers after 10 s: the delivery is under way when the process dies.
      await faults(fcm.endpoint, [{ delayMs: 10_000 }])
      const env = { DATABASE_URL: freshDatabase('sqlite'), PUSHQ_FCM_CREDENTIALS: fcm.credentials, PUSHQ_FCM_ENDPOINT: fcm.endpoint }
      const killed = await runScript(
        `const { PushClient } = require('pushq')
;(async () => {
  const client = new PushClient({ mode: 'local' })
  const { id } = await client.enqueuePush({ token: 'kept-device', notification: { title: 'hi' } })
  console.log(id)
  process.kill(process.pid, 'SIGKILL')
})()`,
        env,
      )
      const id = killed.stdout.trim()
      expect(id).toMatch(/^[0-9a-f-]{36}$/)
      const log = new DeliveryLog({ databaseUrl: env.DATABASE_URL })
      expect((await log.forPush(id)).state).toBe('pending')

      await faults(fcm.endpoint, [])
      const next = await runScript(script(''), env)
      expect(next.code).toBe(0)
      expect(JSON.parse(next.stdout)).toEqual({ closed: true })
      expect(await log.forPush(id)).toMatchObject({ state: 'delivered', deliveries: [{ target: 'kept-device', status: 'sent' }] })
    } finally {
      fcm.stop()
    }
  }, 90_000)

  test("an app without a key: the push stays stored, flush() says so; once the key is configured it is delivered", async () => {
    const fcm = await startEmulator(['default', 'kiosk'])
    try {
      const keys = JSON.parse(fs.readFileSync(fcm.credentials, 'utf8'))
      const defaultOnly = path.join(tempDir(), 'default-only.json')
      fs.writeFileSync(defaultOnly, JSON.stringify({ default: keys.default }))
      const databaseUrl = freshDatabase('sqlite')
      const env = { DATABASE_URL: databaseUrl, PUSHQ_FCM_ENDPOINT: fcm.endpoint }

      const first = await runScript(
        script(`const { id } = await client.enqueuePush({ token: 'kiosk-device', app: 'kiosk', notification: { title: 'hi' } })
  console.log(id)`),
        { ...env, PUSHQ_FCM_CREDENTIALS: defaultOnly },
      )
      const [id, closed] = first.stdout.trim().split('\n')
      expect(JSON.parse(closed)).toMatchObject({ code: 'PUSHQ_DELIVERY', message: expect.stringContaining('NO_CREDENTIALS_FOR_APP') })
      expect(JSON.parse(closed).message).toContain('stay stored')
      const log = new DeliveryLog({ databaseUrl })
      expect(await log.forPush(id)).toMatchObject({ state: 'pending', deliveries: [{ target: 'kiosk-device', status: 'retrying', errorCode: 'NO_CREDENTIALS_FOR_APP' }] })

      // The key is added: the next local-mode process delivers it, to the app's own project.
      const next = await runScript(script(''), { ...env, PUSHQ_FCM_CREDENTIALS: fcm.credentials })
      expect(JSON.parse(next.stdout)).toEqual({ closed: true })
      expect(await log.forPush(id)).toMatchObject({ state: 'delivered', deliveries: [{ target: 'kiosk-device', status: 'sent' }] })
      const received = await fcm.received()
      expect(received.map((m) => [m.project, m.body.message.token])).toEqual([['kiosk', 'kiosk-device']])
    } finally {
      fcm.stop()
    }
  }, 90_000)
})

describe('flush() and close()', () => {
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
})

describe('several apps', () => {
  test('several apps in local mode: the client\'s app or the push\'s picks the user\'s devices; FIDs; forUser; expiresAt', async () => {
    // Without FCM credentials local mode records each target dry_run, sending nothing (what each
    // app's project gets is the engine's, tested with the emulator in crates/delivery/tests/apps.rs:
    // jest's process.env does not reach the addon's environment).
    const databaseUrl = freshDatabase('sqlite')
    const client = new PushClient({ mode: 'local', databaseUrl, app: 'member' })
    try {
      // The registry's app is the default for devices that name none.
      const registry = new DeviceRegistry({ databaseUrl, migrate: true, app: 'member' })
      await registry.register({ userId: 'ana', token: 'ana-member', platform: 'ios' })
      await registry.register({ userId: 'ana', fid: 'ana-trainer-fid', platform: 'android', app: 'trainer' })
      expect(await registry.devices('ana', { app: 'trainer' })).toEqual([
        { app: 'trainer', userId: 'ana', token: 'ana-trainer-fid', kind: 'fid', platform: 'android', live: true, lastSeenAt: expect.any(String) },
      ])
      expect(Date.now() - Date.parse((await registry.devices('ana'))[0].lastSeenAt)).toBeLessThan(60_000)
      await expect(registry.register({ userId: 'ana', token: 't', fid: 'f', platform: 'ios' })).rejects.toMatchObject({ code: 'PUSHQ_INVALID_DEVICE', field: 'fid' })

      const log = new DeliveryLog({ databaseUrl })
      // The log takes the app per call; as a constructor option it would filter nothing.
      expect(() => new DeliveryLog({ databaseUrl, app: 'member' } as any)).toThrow(expect.objectContaining({ code: 'PUSHQ_CONFIG' }))
      const before = new Date()
      // The client's app for a push that names none; the push's own otherwise.
      const member = await client.enqueuePush({ userId: 'ana', notification: { title: 'class at 6' } })
      const trainer = await client.enqueuePush({ userId: 'ana', app: 'trainer', notification: { title: 'new plan' } })
      for (const { id } of [member, trainer]) expect((await log.waitFor(id)).state).toBe('delivered')

      const rows = await log.forUser('ana', { since: before })
      expect(rows.map((r) => [r.pushId, r.app, r.target, r.status]).sort()).toEqual(
        [
          [member.id, 'member', 'ana-member', 'dry_run'],
          [trainer.id, 'trainer', 'fid:ana-trainer-fid', 'dry_run'],
        ].sort(),
      )
      expect(rows.every((r) => r.sentAt == null)).toBe(true)
      expect((await log.forUser('ana', { app: 'trainer' })).map((r) => r.pushId)).toEqual([trainer.id])
      expect(await log.forUser('ana', { since: new Date(Date.now() + 60_000) })).toEqual([])
      await expect(log.forUser('ana', { since: 'last monday' })).rejects.toMatchObject({ code: 'PUSHQ_INVALID_ARGUMENT' })

      // A time already past is refused; a Date to come is accepted and the push goes out.
      await expect(client.enqueuePush({ token: 'ana-member', expiresAt: new Date(Date.now() - 1000) })).rejects.toMatchObject({
        code: 'PUSHQ_INVALID_PUSH',
        field: 'expiresAt',
      })
      const later = await client.enqueuePush({ token: 'ana-member', expiresAt: new Date(Date.now() + 3_600_000) })
      expect((await log.waitFor(later.id)).deliveries).toMatchObject([{ app: 'member', target: 'ana-member', status: 'dry_run' }])
      expect(() => new PushClient({ mode: 'local', databaseUrl, app: 'my app' })).toThrow(expect.objectContaining({ code: 'PUSHQ_CONFIG', message: expect.stringContaining('app') }))
    } finally {
      await client.close()
    }
  })
})

describe('local mode says why', () => {
  test('with FCM answering UNAVAILABLE, each attempt says so and close() rejects naming it', async () => {
    const fcm = await startEmulator()
    try {
      await fetch(`${fcm.endpoint}/__faults`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ rules: [{ error: 'UNAVAILABLE' }] }),
      })
      const { code, stdout, stderr } = await runScript(
        `const { PushClient } = require('pushq')
;(async () => {
  const client = new PushClient({ mode: 'local' })
  await client.enqueuePush({ token: 'device-1', notification: { title: 'hi' } })
  await client.close().then(() => console.log('{}'), (e) => console.log(JSON.stringify({ code: e.code, message: e.message })))
})()`,
        { DATABASE_URL: freshDatabase('sqlite'), PUSHQ_FCM_CREDENTIALS: fcm.credentials, PUSHQ_FCM_ENDPOINT: fcm.endpoint },
      )
      expect(code).toBe(0)
      expect(stderr).toMatch(/push \S+: retrying 1 \(UNAVAILABLE\)/)
      expect(stderr).toMatch(/attempt 1 of 5 failed: 1 target\(s\) not final \(UNAVAILABLE\); trying again in/)
      expect(JSON.parse(stdout)).toMatchObject({ code: 'PUSHQ_DELIVERY', message: expect.stringContaining('UNAVAILABLE') })
    } finally {
      fcm.stop()
    }
  }, 90_000)

  test('a database that cannot be opened rejects the push with PUSHQ_DATABASE instead of resolving', async () => {
    const client = new PushClient({ mode: 'local', databaseUrl: `sqlite://${tempDir()}/no/such/dir/pushq.db` })
    await expect(client.enqueuePush({ token: 'device-1' })).rejects.toMatchObject({
      code: 'PUSHQ_DATABASE',
      message: expect.stringContaining('local mode cannot open its database'),
    })
    await client.close()
  })

  test('a database that refuses connections rejects the push within seconds, saying so and where the URL came from', async () => {
    const client = new PushClient({ mode: 'local', databaseUrl: 'postgres://pushq:s3cret-pw@127.0.0.1:1/test' })
    const err = await client.enqueuePush({ token: 'device-1' }).then(() => null, (e: unknown) => e)
    expect(err).toMatchObject({ code: 'PUSHQ_DATABASE', message: expect.stringContaining('(options.databaseUrl)') })
    expect((err as Error).message).toMatch(/PostgreSQL at 127\.0\.0\.1:1 could not be reached within 5 s: .*[Cc]onnection refused/)
    expect((err as Error).message).not.toContain('s3cret-pw')
    await client.close().catch(() => undefined)
  }, 30_000)

  test('a databaseUrl option that is no database URL is named as the option, not DATABASE_URL', async () => {
    const client = new PushClient({ mode: 'local', databaseUrl: 'redis://127.0.0.1' })
    await expect(client.enqueuePush({ token: 'device-1' })).rejects.toMatchObject({
      code: 'PUSHQ_DATABASE',
      message: expect.stringContaining('local mode cannot open its database: options.databaseUrl: expected a URL'),
    })
    await client.close().catch(() => undefined)
  })

  test('a SQLite file that cannot be created is named by its path', async () => {
    const file = `${tempDir()}/no/such/dir/pushq.db`
    const client = new PushClient({ mode: 'local', databaseUrl: `sqlite://${file}` })
    await expect(client.enqueuePush({ token: 'device-1' })).rejects.toMatchObject({
      code: 'PUSHQ_DATABASE',
      message: expect.stringContaining(`cannot open the SQLite file ${file}`),
    })
    await client.close().catch(() => undefined)
  })

  test('FCM credentials that cannot be read are PUSHQ_CONFIG naming the variable, not a database error', async () => {
    const { code, stdout } = await runScript(
      `const { PushClient } = require('pushq')
const client = new PushClient({ mode: 'local' })
client.enqueuePush({ token: 'device-1' }).then(() => console.log('{}'), (e) => console.log(JSON.stringify({ code: e.code, message: e.message })))`,
      { DATABASE_URL: freshDatabase('sqlite'), PUSHQ_FCM_CREDENTIALS: '{"type": "service_account", "private_key": "not a key"' },
    )
    expect(code).toBe(0)
    const err = JSON.parse(stdout)
    expect(err).toMatchObject({ code: 'PUSHQ_CONFIG', message: expect.stringContaining('PUSHQ_FCM_CREDENTIALS') })
    expect(err.message).not.toContain('not a key')
  })
})

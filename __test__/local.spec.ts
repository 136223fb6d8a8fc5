// Local mode, as the README's first command runs it: no AWS, SQLite, FCM log sink or emulator.
import { DeliveryLog, DeviceRegistry, PushClient } from '..'
import { execFile } from 'child_process'
import * as path from 'path'
import { freshDatabase, startEmulator } from './support/pushq-bin'

const root = path.resolve(__dirname, '..')

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

test('DeviceRegistry: register, list, move a token, unregister; bad devices name the field', async () => {
  const registry = new DeviceRegistry({ databaseUrl: freshDatabase('sqlite'), migrate: true })
  await registry.register({ userId: 'u1', token: 't1', platform: 'ios' })
  await registry.register({ userId: 'u1', token: 't2', platform: 'android' })
  // A token re-registered by another user moves to that user.
  await registry.register({ userId: 'u2', token: 't2', platform: 'android' })
  const device = (userId: string, token: string, platform: string) => ({ app: 'default', userId, token, kind: 'token', platform, live: true, lastSeenAt: expect.any(String) })
  expect(await registry.devices('u1')).toEqual([device('u1', 't1', 'ios')])
  expect(await registry.devices('u2')).toEqual([device('u2', 't2', 'android')])
  expect(await registry.unregister('t1')).toBe(true)
  expect(await registry.unregister('t1')).toBe(false)
  expect(await registry.devices('u1')).toEqual([])
  await expect(registry.register({ userId: '', token: 't3', platform: 'ios' })).rejects.toMatchObject({
    code: 'PUSHQ_INVALID_DEVICE',
    message: expect.stringContaining('userId'),
  })
  await expect(new DeviceRegistry({ databaseUrl: 'redis://127.0.0.1' }).devices('u1')).rejects.toMatchObject({ code: 'PUSHQ_DATABASE' })
})

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

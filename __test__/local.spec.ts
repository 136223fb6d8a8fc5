// Local mode, as the README's first command runs it: no AWS, SQLite, FCM log sink or emulator.
import { DeviceRegistry } from '..'
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

test('the example server delivers and records through the log sink without credentials; PUSHQ_LOG sets how much it prints', async () => {
  const withoutFcm = { PUSHQ_FCM_CREDENTIALS: '', GOOGLE_APPLICATION_CREDENTIALS: '' }
  const { code, stdout, stderr } = await runExample({ DATABASE_URL: freshDatabase('sqlite'), ...withoutFcm })
  expect(code).toBe(0)
  expect(JSON.parse(stdout.trim().split('\n').pop()!)).toEqual(expected)
  // At info (the default): one line per push, saying what became of its targets.
  const perPush = (text: string) => text.trim().split('\n').map((l) => l.replace(/^pushq local mode: push [0-9a-f-]{36}: /, '')).sort()
  expect(perPush(stderr)).toEqual(['no_devices 1, sent 1', 'sent 1', 'sent 2'])
  expect(stderr).not.toContain('would send')

  // At debug: also what FCM would have received, one line per device.
  const debug = await runExample({ DATABASE_URL: freshDatabase('sqlite'), ...withoutFcm, PUSHQ_LOG: 'debug' })
  expect(debug.code).toBe(0)
  expect(debug.stderr.match(/would send/g)?.length).toBe(4)
  expect(debug.stderr).toContain('"token":"token-ana-phone"')

  // At warn: nothing, when nothing went wrong.
  const quiet = await runExample({ DATABASE_URL: freshDatabase('sqlite'), ...withoutFcm, PUSHQ_LOG: 'warn' })
  expect(quiet.code).toBe(0)
  expect(quiet.stderr).toBe('')
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
  expect(await registry.devices('u1')).toEqual([{ userId: 'u1', token: 't1', platform: 'ios', live: true }])
  expect(await registry.devices('u2')).toEqual([{ userId: 'u2', token: 't2', platform: 'android', live: true }])
  expect(await registry.unregister('t1')).toBe(true)
  expect(await registry.unregister('t1')).toBe(false)
  expect(await registry.devices('u1')).toEqual([])
  await expect(registry.register({ userId: '', token: 't3', platform: 'ios' })).rejects.toMatchObject({
    code: 'PUSHQ_INVALID_DEVICE',
    message: expect.stringContaining('userId'),
  })
  await expect(new DeviceRegistry({ databaseUrl: 'redis://127.0.0.1' }).devices('u1')).rejects.toMatchObject({ code: 'PUSHQ_DATABASE' })
})

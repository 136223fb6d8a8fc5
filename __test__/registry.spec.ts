// DeviceRegistry: register a user's devices, list them, move a token to the user who registers it
// again, unregister it; a device with a field missing, mistyped or unknown is PUSHQ_INVALID_DEVICE
// naming the field. (The database it opens: database.spec.ts; devices of several apps:
// local.spec.ts.)
import { DeviceRegistry } from '..'
import { freshDatabase, runScript } from './support/pushq-bin'

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

test('a missing or mistyped device field is PUSHQ_INVALID_DEVICE with field', async () => {
  const registry = new DeviceRegistry({ databaseUrl: freshDatabase('sqlite'), migrate: true })
  await expect(registry.register({ userId: 'u1', token: 't1' } as any)).rejects.toMatchObject({ code: 'PUSHQ_INVALID_DEVICE', field: 'platform' })
  await expect(registry.register({ userId: 7, token: 't1', platform: 'ios' } as any)).rejects.toMatchObject({ code: 'PUSHQ_INVALID_DEVICE', field: 'userId' })
  await expect(registry.register({ userId: 'u1', token: 't1', platform: 'ios', plaform: 'x' } as any)).rejects.toMatchObject({
    code: 'PUSHQ_INVALID_DEVICE',
    field: 'plaform',
  })
})

test("without an app option the registry's app is PUSHQ_APP, checked as the client's is", async () => {
  // In a process of its own: jest's process.env is not the environment the addon reads.
  const script = `
    const { DeviceRegistry } = require('pushq')
    const databaseUrl = process.env.TEST_DATABASE_URL
    ;(async () => {
      try {
        const registry = new DeviceRegistry({ databaseUrl, migrate: true })
        await registry.register({ userId: 'u1', token: 't1', platform: 'ios' })
        console.log(JSON.stringify((await registry.devices('u1')).map((d) => d.app)))
      } catch (e) {
        console.log(JSON.stringify({ code: e.code, message: e.message }))
      }
    })()
  `
  const bad = await runScript(script, { TEST_DATABASE_URL: freshDatabase('sqlite'), PUSHQ_APP: 'not an app!' })
  expect(JSON.parse(bad.stdout)).toEqual({ code: 'PUSHQ_CONFIG', message: expect.stringContaining('PUSHQ_APP') })
  const member = await runScript(script, { TEST_DATABASE_URL: freshDatabase('sqlite'), PUSHQ_APP: 'member' })
  expect(JSON.parse(member.stdout)).toEqual(['member'])
})

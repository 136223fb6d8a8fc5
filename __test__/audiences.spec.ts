// Audience pushes (mass sends) as a server meets them: `enqueuePush({ audience: { all: true } })`
// in local mode reaches every live device of the app once, and `DeliveryLog.forPush` answers
// with counts per status and the expansion's state, never a row per device; a segment name that
// could carry SQL is refused at enqueue (the promise rejects, naming the field).
import { DeliveryLog, DeviceRegistry, PushClient, isPushqError } from '..'
import type { Push } from '..'
import { dropDatabases, freshDatabase, runScript, startEmulator } from './support/pushq-bin'

afterAll(dropDatabases)

describe('audience pushes', () => {
  test('a segment name with SQL in it, or an audience beside another target, is refused at enqueue', async () => {
    const databaseUrl = freshDatabase('sqlite')
    const client = new PushClient({ mode: 'local', databaseUrl })
    try {
      for (const [push, field] of [
        [{ audience: { segment: "gym_7'; DROP TABLE pushq_devices; --" } }, 'audience.segment'],
        [{ audience: { segment: 'Gym-7' } }, 'audience.segment'],
        [{ audience: { all: false } }, 'audience.all'],
        [{ audience: {} }, 'audience'],
        [{ audience: { all: true }, userId: 'ana' }, 'target'],
      ] as [unknown, string][]) {
        const err = await client.enqueuePush(push as Push).then(
          () => null,
          (e) => e,
        )
        expect(isPushqError(err)).toBe(true)
        expect(err).toMatchObject({ code: 'PUSHQ_INVALID_PUSH', field })
      }
    } finally {
      await client.close()
    }
  })

  test('local mode: every live device of the app once, in pages; forPush answers with counts, not rows', async () => {
    const fcm = await startEmulator(['member', 'trainer'])
    try {
      const databaseUrl = freshDatabase('sqlite')
      const registry = new DeviceRegistry({ databaseUrl, migrate: true, app: 'member' })
      for (let i = 0; i < 25; i++) await registry.register({ userId: `u${i}`, token: `member-${i}`, platform: 'android' })
      await registry.register({ userId: 'u0', token: 'trainer-0', platform: 'android', app: 'trainer' })
      const { code, stdout, stderr } = await runScript(
        `const { PushClient } = require('pushq')
const client = new PushClient({ mode: 'local', app: 'member' })
;(async () => {
  const { id } = await client.enqueuePush({ audience: { all: true }, notification: { title: 'Closed on Monday' } })
  await client.close()
  console.log(id)
})()`,
        { DATABASE_URL: databaseUrl, PUSHQ_FCM_CREDENTIALS: fcm.credentials, PUSHQ_FCM_ENDPOINT: fcm.endpoint, PUSHQ_AUDIENCE_PAGE_SIZE: '10' },
      )
      expect(stderr).not.toContain('rror')
      expect(code).toBe(0)
      const id = stdout.trim()
      const answer = await new DeliveryLog({ databaseUrl }).forPush(id)
      expect(answer).toMatchObject({
        state: 'delivered',
        deliveries: [],
        successCount: 25,
        failureCount: 0,
        audience: { expansion: 'expanded', pages: 3, pagesDone: 3, devices: 25, counts: { sent: 25 } },
      })
      const sent = (await fcm.received()).map((m) => `${m.project}/${m.body.message.token}`).sort()
      expect(sent).toEqual(Array.from({ length: 25 }, (_, i) => `member/member-${i}`).sort())
    } finally {
      fcm.stop()
    }
  }, 60_000)
})

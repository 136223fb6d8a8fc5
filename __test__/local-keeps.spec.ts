// Local mode keeps what it accepted until it is final: a push is stored in the database before
// enqueuePush resolves, so a process killed right after loses nothing, and a push that cannot be
// delivered yet (its app has no key) stays stored, flush() says so, and the next local-mode
// process delivers it. Each process is a script run with node, as a developer runs one.
import * as fs from 'fs'
import * as path from 'path'
import { DeliveryLog } from '..'
import { dropDatabases, freshDatabase, runScript, startEmulator, tempDir } from './support/pushq-bin'

afterAll(dropDatabases)

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

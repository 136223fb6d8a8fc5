// Local mode says why, where the mistake was made: an FCM that keeps failing, a database that
// refuses connections, a URL or a file that cannot be used, a key that cannot be read. Each as a
// developer meets it: a script run with node, or a client in the test's own process.
import { PushClient } from '..'
import { freshDatabase, runScript, startEmulator, tempDir } from './support/pushq-bin'

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

// Preferences (the recipient rules' data), the enqueue-time refusals of advertising pushes, and
// the biennial consent reminder through Node and `pushq consent reminders`. (What the consumer
// does with them, on three databases and at the 21:00 and 08:00 boundaries:
// crates/delivery/tests/rules.rs.)
import { execFileSync } from 'child_process'

import { DeliveryLog, DeviceRegistry, PushClient, Preferences } from '..'
import { dropDatabases, freshDatabase, pushq } from './support/pushq-bin'

afterAll(dropDatabases)

test('Preferences: consent with the time of each grant and withdrawal, opt-outs, quiet hours', async () => {
  const prefs = new Preferences({ databaseUrl: freshDatabase('sqlite'), migrate: true })
  const none = await prefs.get('u1')
  expect(none).toEqual({
    app: 'default',
    userId: 'u1',
    advertising: { granted: false },
    night: { granted: false },
    optedOut: [],
  })
  const before = Date.now()
  await prefs.setAdvertisingConsent('u1', { granted: true, night: true })
  await prefs.optOut('u1', 'marketing')
  await prefs.optOut('u1', 'events')
  await prefs.optIn('u1', 'events')
  await prefs.setQuietHours('u1', { start: '22:30', end: '07:00', timeZone: 'Asia/Seoul' })
  const got = await prefs.get('u1')
  expect(got).toMatchObject({
    advertising: { granted: true, grantedAt: expect.any(String) },
    night: { granted: true },
    optedOut: ['marketing'],
    quietHours: { start: '22:30', end: '07:00', timeZone: 'Asia/Seoul' },
  })
  expect(Date.parse(got.advertising.grantedAt!)).toBeGreaterThanOrEqual(before - 1000)
  // Withdrawing advertising consent withdraws night-time consent with it; the grant's time stays.
  await prefs.setAdvertisingConsent('u1', { granted: false })
  const withdrawn = await prefs.get('u1')
  expect(withdrawn.advertising).toEqual({ granted: false, grantedAt: got.advertising.grantedAt, withdrawnAt: expect.any(String) })
  expect(withdrawn.night.granted).toBe(false)
  // Cleared quiet hours keep the user's time zone; setTimeZone sets or clears it alone.
  await prefs.setQuietHours('u1', null)
  expect(await prefs.get('u1')).toMatchObject({ timeZone: 'Asia/Seoul' })
  expect((await prefs.get('u1')).quietHours).toBeUndefined()
  await prefs.setTimeZone('u1', 'America/New_York')
  expect((await prefs.get('u1')).timeZone).toBe('America/New_York')
  await prefs.setTimeZone('u1', null)
  expect((await prefs.get('u1')).timeZone).toBeUndefined()
  // Another app's preferences are its own.
  expect((await prefs.get('u1', { app: 'trainer' })).optedOut).toEqual([])
})

test('Preferences: a bad argument is PUSHQ_INVALID_ARGUMENT naming the field; nothing is stored', async () => {
  const prefs = new Preferences({ databaseUrl: freshDatabase('sqlite'), migrate: true })
  await expect(prefs.setQuietHours('u1', { start: '7:00', end: '08:00', timeZone: 'Asia/Seoul' })).rejects.toMatchObject({ code: 'PUSHQ_INVALID_ARGUMENT', field: 'start' })
  await expect(prefs.setQuietHours('u1', { start: '22:00', end: '24:00', timeZone: 'Asia/Seoul' })).rejects.toMatchObject({ code: 'PUSHQ_INVALID_ARGUMENT', field: 'end' })
  await expect(prefs.setQuietHours('u1', { start: '22:00', end: '07:00', timeZone: 'Seoul' })).rejects.toMatchObject({ code: 'PUSHQ_INVALID_ARGUMENT', field: 'timeZone' })
  await expect(prefs.setAdvertisingConsent('u1', { granted: 'yes' } as any)).rejects.toMatchObject({ code: 'PUSHQ_INVALID_ARGUMENT', field: 'granted' })
  await expect(prefs.setAdvertisingConsent('', { granted: true })).rejects.toMatchObject({ code: 'PUSHQ_INVALID_ARGUMENT', field: 'userId' })
  await expect(prefs.setAdvertisingConsent('u1', { granted: false, night: true })).rejects.toMatchObject({ code: 'PUSHQ_INVALID_ARGUMENT', field: 'night' })
  await expect(prefs.setTimeZone('u1', 'Mars/Olympus')).rejects.toMatchObject({ code: 'PUSHQ_INVALID_ARGUMENT', field: 'timeZone' })
  await expect(prefs.optOut('u1', '')).rejects.toMatchObject({ code: 'PUSHQ_INVALID_ARGUMENT', field: 'category' })
  await expect(prefs.get('u1', { app: 'not an app' })).rejects.toMatchObject({ code: 'PUSHQ_INVALID_ARGUMENT' })
  expect(await prefs.get('u1')).toMatchObject({ advertising: { granted: false }, optedOut: [] })
})

test('an advertising push is refused at enqueue without the prefix on every title, or without a user target', async () => {
  // Refused before anything is sent: the client needs no reachable queue.
  const client = new PushClient({ queueUrl: 'http://127.0.0.1:9/123456789012/unreachable', region: 'us-east-1' })
  const ad = { advertising: true, notification: { title: '(광고) 50% off' } }
  await expect(client.enqueuePush({ ...ad, userId: 'u1', android: { notification: { title: '50% off' } } })).rejects.toMatchObject({
    code: 'PUSHQ_INVALID_PUSH',
    field: 'android.notification.title',
  })
  await expect(client.enqueuePush({ ...ad, userId: 'u1', notification: { title: 'Sale' } })).rejects.toMatchObject({ code: 'PUSHQ_INVALID_PUSH', field: 'notification.title' })
  await expect(client.enqueuePush({ ...ad, topic: 'news' })).rejects.toMatchObject({ code: 'PUSHQ_INVALID_PUSH', field: 'topic' })
  await expect(client.enqueuePush({ ...ad, token: 'tok' })).rejects.toMatchObject({ code: 'PUSHQ_INVALID_PUSH', field: 'token' })
  await expect(client.enqueuePush({ userId: 'u1', advertising: 'yes' } as any)).rejects.toMatchObject({ code: 'PUSHQ_INVALID_PUSH', field: 'advertising' })
  await client.close()
})

test('consentReminders and `pushq consent reminders` list the consents two years old, oldest first', async () => {
  const databaseUrl = freshDatabase('postgres')
  const prefs = new Preferences({ databaseUrl, migrate: true })
  for (const user of ['old', 'older', 'recent', 'withdrawn']) await prefs.setAdvertisingConsent(user, { granted: true, night: user === 'old' })
  await prefs.setAdvertisingConsent('withdrawn', { granted: false })
  // The database's own hand ages the grants: 'older' three years ago, 'old' and 'withdrawn' 731 days.
  const age = (user: string, days: number) =>
    execFileSync('psql', [databaseUrl, '-qc', `UPDATE pushq_preferences SET advertising_granted_at = now() - interval '${days} days' WHERE user_id = '${user}'`])
  age('older', 3 * 365)
  age('old', 731)
  age('withdrawn', 731)
  const due = await prefs.consentReminders()
  expect(due.map((r) => [r.userId, r.night])).toEqual([
    ['older', false],
    ['old', true],
  ])
  expect((await prefs.consentReminders({ olderThanDays: 0 })).map((r) => r.userId)).toEqual(['older', 'old', 'recent'])
  expect(await prefs.consentReminders({ app: 'trainer' })).toEqual([])
  const csv = pushq(['consent', 'reminders'], { DATABASE_URL: databaseUrl })
  const lines = csv.trim().split('\n')
  expect(lines[0]).toBe('app,user_id,granted_at,night')
  expect(lines.slice(1).map((l) => l.split(',')[1])).toEqual(['older', 'old'])
  const json = JSON.parse(pushq(['consent', 'reminders', '--format', 'json'], { DATABASE_URL: databaseUrl }))
  expect(json).toEqual(due.map((r) => ({ app: 'default', userId: r.userId, grantedAt: r.grantedAt, night: r.night })))
})

test('local mode applies the recipient rules as the Lambda and the worker do: suppressed, deferred', async () => {
  const databaseUrl = freshDatabase('sqlite')
  const registry = new DeviceRegistry({ databaseUrl, migrate: true })
  await registry.register({ userId: 'none', token: 'tok-none', platform: 'ios' })
  await registry.register({ userId: 'quiet', token: 'tok-quiet', platform: 'ios' })
  // Quiet hours (UTC) from an hour ago to half an hour ahead.
  const hhmm = (offsetMinutes: number) => new Date(Date.now() + offsetMinutes * 60_000).toISOString().slice(11, 16)
  await new Preferences({ databaseUrl }).setQuietHours('quiet', { start: hhmm(-60), end: hhmm(30), timeZone: 'UTC' })
  const client = new PushClient({ mode: 'local', databaseUrl })
  const ad = await client.enqueuePush({ userId: 'none', advertising: true, notification: { title: '(광고) 30% off' } })
  const quiet = await client.enqueuePush({ userId: 'quiet', notification: { title: 'Spin class' } })
  await client.flush()
  const log = new DeliveryLog({ databaseUrl })
  expect((await log.forPush(ad.id)).deliveries).toEqual([expect.objectContaining({ target: 'tok-none', status: 'suppressed', errorCode: 'NO_CONSENT' })])
  const deferred = await log.forPush(quiet.id)
  expect(deferred.deliveries).toEqual([expect.objectContaining({ target: 'tok-quiet', status: 'deferred', errorCode: 'QUIET_HOURS' })])
  // Not final: waitFor waits for the copy enqueued for the end of the quiet hours.
  expect(deferred.state).toBe('pending')
  await expect(log.waitFor(quiet.id, { timeoutMs: 200 })).rejects.toMatchObject({ code: 'PUSHQ_TIMEOUT' })
  await client.close()
})

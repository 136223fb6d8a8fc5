// DeliveryLog: forPush tells an id no push can have (unknown) from a push not yet delivered
// (pending) and a delivered one; waitFor resolves once a push is delivered, and rejects at its
// timeout or on a bad argument. (forUser and apps: local.spec.ts; scheduled and cancelled pushes:
// scheduled.spec.ts; the database it opens: database.spec.ts.)
import { DeliveryLog, PushClient } from '..'
import { freshDatabase } from './support/pushq-bin'

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

// pushq's typed errors: isPushqError tells them from other errors; a pushq error is one line with
// its code, and, where they apply, awsCode and the underlying error as cause; a method given an
// argument of the wrong type rejects with PUSHQ_INVALID_ARGUMENT naming it. (Which code a failure
// gets is tested with its feature: options, validation, sqs-failures, database, local.)
import { DeliveryLog, DeviceRegistry, PushClient, cancelPush, isPushqError } from '..'
import { freshQueue } from './support/sqs'
import { tempDir } from './support/pushq-bin'
import * as path from 'path'

test('isPushqError tells pushq errors from others', () => {
  expect(isPushqError(Object.assign(new Error('x'), { code: 'PUSHQ_QUEUE' }))).toBe(true)
  expect(isPushqError(Object.assign(new Error('x'), { code: 'ECONNREFUSED' }))).toBe(false)
  expect(isPushqError({ code: 'PUSHQ_QUEUE' })).toBe(false)
  expect(isPushqError('PUSHQ_QUEUE')).toBe(false)
  expect(isPushqError(undefined)).toBe(false)
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

describe('arguments of the wrong type', () => {
  test('a push id, user id or token that is not a string rejects with PUSHQ_INVALID_ARGUMENT naming it', async () => {
    const databaseUrl = `sqlite://${path.join(tempDir(), 'arguments.db')}`
    const registry = new DeviceRegistry({ databaseUrl, migrate: true })
    expect(await registry.devices('nobody')).toEqual([])
    const log = new DeliveryLog({ databaseUrl })
    const calls: [() => Promise<unknown>, string][] = [
      [() => log.waitFor({ id: '0193' } as any), 'pushId: must be a string (got an object)'],
      [() => log.forPush({} as any), 'pushId: must be a string (got an object)'],
      [() => (log.forPush as any)(), 'pushId: must be a string (got undefined)'],
      [() => log.forUser(7 as any), 'userId: must be a string (got a number)'],
      [() => registry.devices(42 as any), 'userId: must be a string (got a number)'],
      [() => registry.unregister(null as any), 'token: must be a string (got null)'],
    ]
    for (const [call, message] of calls) {
      const error = await call().then(() => undefined, (e: unknown) => e)
      expect(isPushqError(error)).toBe(true)
      expect(error).toMatchObject({ code: 'PUSHQ_INVALID_ARGUMENT', message: expect.stringContaining(message) })
    }
  })
})

test("cancelPush given a push id that is not a string rejects with PUSHQ_INVALID_ARGUMENT, not napi's TypeError", async () => {
  const client = new PushClient({ queueUrl: 'http://127.0.0.1:1/000000000000/q', databaseUrl: `sqlite://${path.join(tempDir(), 'cancel.db')}` })
  try {
    for (const call of [() => client.cancelPush(42 as any), () => cancelPush({ id: 'x' } as any)]) {
      const error = await call().then(() => undefined, (e: unknown) => e)
      expect(isPushqError(error)).toBe(true)
      expect(error).toMatchObject({ code: 'PUSHQ_INVALID_ARGUMENT', message: expect.stringContaining('pushId: must be a string') })
    }
  } finally {
    await client.close()
  }
})

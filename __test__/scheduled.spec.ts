// Pushes scheduled ahead (`sendAt`) and cancelled (`cancelPush`), against moto's EventBridge
// Scheduler (it serves the API but never fires: a test fires a schedule by sending its
// Target.Input to the queue, as the scheduler would), `pushq worker` and the FCM emulator.
import {
  CreateScheduleGroupCommand,
  DeleteScheduleCommand,
  GetScheduleCommand,
  CreateScheduleCommand,
  SchedulerClient,
  paginateListSchedules,
} from '@aws-sdk/client-scheduler'
import { CreateQueueCommand, SendMessageCommand } from '@aws-sdk/client-sqs'
import { randomUUID } from 'crypto'
import { DeliveryLog, DeviceRegistry, PushClient } from '..'
import { freshQueue, queueDepth, sqs } from './support/sqs'
import { Emulator, freshDatabase, pushq, runScript, startEmulator, waitFor, withWorker as runWorker } from './support/pushq-bin'

const moto = process.env.PUSHQ_TEST_SQS_ENDPOINT!
const scheduler = new SchedulerClient({ endpoint: moto, region: 'us-east-1' })
const schedulerRoleArn = 'arn:aws:iam::123456789012:role/pushq-scheduler'
const scheduleGroup = `pushq-test-${randomUUID().slice(0, 8)}`
const DAY = 86_400_000

let fcm: Emulator
beforeAll(async () => {
  fcm = await startEmulator()
  await scheduler.send(new CreateScheduleGroupCommand({ Name: scheduleGroup }))
})
afterAll(() => fcm.stop())

/** A migrated SQLite database, a queue, and a client scheduling into this file's group. */
async function setUp(opts: { fifo?: boolean } = {}) {
  const databaseUrl = freshDatabase('sqlite')
  const queueUrl = opts.fifo
    ? (await sqs.send(
        new CreateQueueCommand({
          QueueName: `pushq-${randomUUID()}.fifo`,
          Attributes: { FifoQueue: 'true', ContentBasedDeduplication: 'true' },
        }),
      )).QueueUrl!
    : await freshQueue()
  const env = {
    DATABASE_URL: databaseUrl,
    PUSHQ_FCM_CREDENTIALS: fcm.credentials,
    PUSHQ_FCM_ENDPOINT: fcm.endpoint,
    AWS_ENDPOINT_URL_SQS: moto,
  }
  pushq(['migrate'], env)
  const client = new PushClient({ queueUrl, databaseUrl, schedulerRoleArn, scheduleGroup })
  return { databaseUrl, queueUrl, env, client, log: new DeliveryLog({ databaseUrl }) }
}

/** Every page of them (moto, like the service, answers a page at a time). */
async function schedulesOf(pushId: string) {
  const all = []
  for await (const page of paginateListSchedules({ client: scheduler }, { GroupName: scheduleGroup, NamePrefix: pushId })) {
    all.push(...(page.Schedules ?? []))
  }
  return all
}

/** Fires a schedule as EventBridge Scheduler would: its input, to its target queue. */
async function fire(pushId: string, queueUrl: string, dedup?: string) {
  const s = await scheduler.send(new GetScheduleCommand({ Name: pushId, GroupName: scheduleGroup }))
  await sqs.send(
    new SendMessageCommand({
      QueueUrl: queueUrl,
      MessageBody: s.Target!.Input!,
      MessageGroupId: s.Target!.SqsParameters?.MessageGroupId,
      MessageDeduplicationId: dedup,
    }),
  )
}

/** Runs `pushq worker` until `done` holds, then stops it; its stderr is in the error if not. */
async function withWorker(queueUrl: string, env: Record<string, string>, done: () => Promise<boolean>) {
  await runWorker(['--queue-url', queueUrl, '--batch-size', '10'], env, () => waitFor('the delivery log', 60_000, done))
}

const sentTo = async (prefix: string) =>
  (await fcm.received()).map((m) => m.body.message.token).filter((t: string) => t?.startsWith(prefix))

test('a push two days ahead is one schedule: target, time, group and input; nothing is on the queue', async () => {
  const { queueUrl, client, log } = await setUp()
  const sendAt = new Date(Date.now() + 2 * DAY)
  const { id } = await client.enqueuePush({ userIds: ['member-1', 'member-2'], notification: { title: 'Spin class in 2 days' }, sendAt })
  await client.close()

  const s = await scheduler.send(new GetScheduleCommand({ Name: id, GroupName: scheduleGroup }))
  expect(s.ScheduleExpression).toBe(`at(${sendAt.toISOString().slice(0, 19)})`)
  expect(s.ScheduleExpressionTimezone).toBe('UTC')
  expect(s.ActionAfterCompletion).toBe('DELETE')
  expect(s.FlexibleTimeWindow).toEqual({ Mode: 'OFF' })
  expect(s.Target!.Arn).toBe(`arn:aws:sqs:us-east-1:123456789012:${queueUrl.split('/').pop()}`)
  expect(s.Target!.RoleArn).toBe(schedulerRoleArn)
  const envelope = JSON.parse(s.Target!.Input!)
  expect(envelope).toMatchObject({ v: 1, id, push: { userIds: ['member-1', 'member-2'], sendAt: sendAt.toISOString() } })
  expect(await schedulesOf(id)).toHaveLength(1)
  expect(await queueDepth(queueUrl)).toEqual({ visible: 0, inFlight: 0, delayed: 0 })

  const state = await log.forPush(id)
  expect(state).toMatchObject({ state: 'scheduled', sendAt: sendAt.toISOString(), deliveries: [] })
})

test('cancelPush before it fires deletes the schedule, and the log says cancelled', async () => {
  const { client, log } = await setUp()
  const { id } = await client.enqueuePush({ userId: 'member-3', notification: { title: 'PT tomorrow 7:00' }, sendAt: new Date(Date.now() + DAY) })
  expect(await schedulesOf(id)).toHaveLength(1)

  expect(await client.cancelPush(id)).toEqual({ id, cancelled: true })
  expect(await schedulesOf(id)).toHaveLength(0)
  expect((await log.forPush(id)).state).toBe('cancelled')
  await client.close()
})

test('cancelPush deletes every schedule of a push deferred to many minutes, past the first page of the list', async () => {
  const { client } = await setUp()
  const { id } = await client.enqueuePush({ userId: 'member-4', notification: { title: 'Yoga at 9' }, sendAt: new Date(Date.now() + DAY) })
  // Deferral schedules as the consumer names them (<id>.p<part>.<minute>.<hash of the users>):
  // 120 users deferred to 120 different minutes by their quiet hours.
  const first = Math.floor(Date.now() / 60_000) + 60
  const original = await scheduler.send(new GetScheduleCommand({ Name: id, GroupName: scheduleGroup }))
  for (let n = 0; n < 120; n++) {
    await scheduler.send(
      new CreateScheduleCommand({
        Name: `${id}.p0.${first + n}.${(0x10000000 + n).toString(16)}`,
        GroupName: scheduleGroup,
        ScheduleExpression: original.ScheduleExpression,
        FlexibleTimeWindow: { Mode: 'OFF' },
        Target: original.Target,
      }),
    )
  }
  expect(await schedulesOf(id)).toHaveLength(121)

  expect(await client.cancelPush(id)).toEqual({ id, cancelled: true })
  expect(await schedulesOf(id)).toHaveLength(0)
  await client.close()
})

test('fired early, the copy waits for sendAt; fired twice, it is delivered once', async () => {
  // On a FIFO queue every sendAt is a schedule (FIFO queues have no per-message delay).
  const { queueUrl, env, client, databaseUrl, log } = await setUp({ fifo: true })
  const user = `early-${randomUUID().slice(0, 8)}`
  await new DeviceRegistry({ databaseUrl }).register({ userId: user, token: `${user}-tok`, platform: 'android' })
  const sendAt = new Date(Date.now() + 4_000)
  const { id } = await client.enqueuePush({ userId: user, notification: { title: 'Doors open' }, sendAt })
  await client.close()
  expect(await schedulesOf(id)).toHaveLength(1)

  await fire(id, queueUrl, 'first')
  await fire(id, queueUrl, 'second')
  await withWorker(queueUrl, env, async () => (await log.forPush(id)).state === 'delivered')

  const rows = await log.forUser(user)
  expect(rows.map((r) => r.status)).toEqual(['sent'])
  expect(Date.parse(rows[0].sentAt!)).toBeGreaterThanOrEqual(sendAt.getTime())
  expect(await sentTo(`${user}-`)).toEqual([`${user}-tok`])
})

test('cancelPush after it fired, before delivery: every target is recorded cancelled and nothing is sent', async () => {
  const { queueUrl, env, client, databaseUrl, log } = await setUp({ fifo: true })
  const users = [`c1-${randomUUID().slice(0, 8)}`, `c2-${randomUUID().slice(0, 8)}`]
  const registry = new DeviceRegistry({ databaseUrl })
  for (const u of users) await registry.register({ userId: u, token: `${u}-tok`, platform: 'ios' })
  const { id } = await client.enqueuePush({ userIds: users, notification: { title: 'Class cancelled?' }, sendAt: new Date(Date.now() + 2_000) })
  await fire(id, queueUrl)

  expect(await client.cancelPush(id)).toEqual({ id, cancelled: true })
  await client.close()
  await withWorker(queueUrl, env, async () => (await log.forPush(id)).deliveries.length === 2)

  const answer = await log.forPush(id)
  expect(answer.state).toBe('cancelled')
  expect(answer.deliveries.map((d) => [d.target, d.status])).toEqual(users.map((u) => [`${u}-tok`, 'cancelled']))
  expect(await sentTo('c1-')).toEqual([])
  expect(await sentTo('c2-')).toEqual([])
})

test('a push due within 900 s is an SQS delay and creates no schedule', async () => {
  const { queueUrl, client } = await setUp()
  const { id } = await client.enqueuePush({ token: 'soon', data: { k: 'v' }, sendAt: new Date(Date.now() + 120_000) })
  await client.close()
  expect(await schedulesOf(id)).toHaveLength(0)
  expect(await queueDepth(queueUrl)).toEqual({ visible: 0, inFlight: 0, delayed: 1 })
})

test('a cancelled push whose targets are all final already says cancelled: false', async () => {
  const { queueUrl, env, client, databaseUrl, log } = await setUp({ fifo: true })
  const user = `done-${randomUUID().slice(0, 8)}`
  await new DeviceRegistry({ databaseUrl }).register({ userId: user, token: `${user}-tok`, platform: 'android' })
  const { id } = await client.enqueuePush({ userId: user, notification: { title: 'now' }, sendAt: new Date(Date.now() + 1_500) })
  await fire(id, queueUrl)
  await withWorker(queueUrl, env, async () => (await log.forPush(id)).state === 'delivered')
  // The schedule moto keeps (it never fires or deletes) stands for one the scheduler deleted.
  await scheduler.send(new DeleteScheduleCommand({ Name: id, GroupName: scheduleGroup }))

  expect(await client.cancelPush(id)).toEqual({ id, cancelled: false })
  expect((await log.forPush(id)).state).toBe('delivered')
  await client.close()
})

describe('bad sendAt: PUSHQ_INVALID_PUSH naming sendAt, nothing scheduled or enqueued', () => {
  const now = Date.now()
  test.each([
    ['a past time', { sendAt: new Date(now - 60_000) }],
    ['more than 365 days ahead', { sendAt: new Date(now + 366 * DAY) }],
    ['words', { sendAt: 'tomorrow at 7' }],
    ['no time zone', { sendAt: '2027-01-05T07:00:00' }],
    ['a number', { sendAt: now + DAY }],
    ['with delaySeconds', { sendAt: new Date(now + DAY), delaySeconds: 10 }],
    ['not before expiresAt', { sendAt: new Date(now + 2 * DAY), expiresAt: new Date(now + DAY) }],
  ])('%s', async (_, fields) => {
    const { queueUrl, client } = await setUp()
    const id = randomUUID()
    const err = await client.enqueuePush({ id, token: 't', ...fields } as any).then(
      () => null,
      (e) => e,
    )
    expect(err).toMatchObject({ code: 'PUSHQ_INVALID_PUSH', field: 'sendAt' })
    await client.close()
    expect(await schedulesOf(id)).toHaveLength(0)
    expect(await queueDepth(queueUrl)).toEqual({ visible: 0, inFlight: 0, delayed: 0 })
  })
})

test('without schedulerRoleArn or a database, a push beyond 900 s is PUSHQ_CONFIG naming what is missing', async () => {
  const queueUrl = await freshQueue()
  const sendAt = new Date(Date.now() + DAY)
  const noRole = new PushClient({ queueUrl, databaseUrl: freshDatabase('sqlite'), scheduleGroup })
  await expect(noRole.enqueuePush({ token: 't', sendAt })).rejects.toMatchObject({ code: 'PUSHQ_CONFIG', message: expect.stringContaining('schedulerRoleArn') })
  const saved = process.env.DATABASE_URL
  delete process.env.DATABASE_URL
  try {
    const noDb = new PushClient({ queueUrl, schedulerRoleArn, scheduleGroup })
    await expect(noDb.enqueuePush({ token: 't', sendAt })).rejects.toMatchObject({ code: 'PUSHQ_CONFIG', message: expect.stringContaining('databaseUrl') })
    await noDb.close()
  } finally {
    if (saved !== undefined) process.env.DATABASE_URL = saved
  }
  await noRole.close()
  expect(await queueDepth(queueUrl)).toEqual({ visible: 0, inFlight: 0, delayed: 0 })
})

describe('local mode', () => {
  test('a push due in 3 s is delivered by the same process, not before its time', async () => {
    const databaseUrl = freshDatabase('sqlite')
    const user = `local-${randomUUID().slice(0, 8)}`
    const out = await runScript(
      `const { PushClient, DeviceRegistry, DeliveryLog } = require('pushq')
      ;(async () => {
        await new DeviceRegistry({ migrate: true }).register({ userId: '${user}', token: '${user}-tok', platform: 'android' })
        const client = new PushClient({ mode: 'local' })
        const sendAt = new Date(Date.now() + 3000)
        const { id } = await client.enqueuePush({ userId: '${user}', notification: { title: 'hi' }, sendAt })
        const log = new DeliveryLog()
        const before = await log.forPush(id)
        const done = await log.waitFor(id, { timeoutMs: 20000 })
        const rows = await log.forUser('${user}')
        console.log(JSON.stringify({ before: before.state, after: done.state, sendAt: sendAt.getTime(), rows }))
        await client.close()
      })().catch((e) => { console.error(e); process.exit(1) })`,
      { DATABASE_URL: databaseUrl, PUSHQ_FCM_CREDENTIALS: fcm.credentials, PUSHQ_FCM_ENDPOINT: fcm.endpoint },
    )
    expect(out.code).toBe(0)
    const got = JSON.parse(out.stdout.trim().split('\n').pop()!)
    expect(got.before).toBe('scheduled')
    expect(got.after).toBe('delivered')
    expect(got.rows.map((r: any) => r.status)).toEqual(['sent'])
    expect(Date.parse(got.rows[0].sentAt)).toBeGreaterThanOrEqual(got.sendAt)
  })

  test('a push that falls due while no process runs is delivered by the next one', async () => {
    const databaseUrl = freshDatabase('sqlite')
    const env = { DATABASE_URL: databaseUrl, PUSHQ_FCM_CREDENTIALS: fcm.credentials, PUSHQ_FCM_ENDPOINT: fcm.endpoint }
    const token = `later-${randomUUID().slice(0, 8)}`
    const first = await runScript(
      `const { PushClient } = require('pushq')
      ;(async () => {
        const client = new PushClient({ mode: 'local' })
        const { id } = await client.enqueuePush({ token: '${token}', data: { a: 'b' }, sendAt: new Date(Date.now() + 2000) })
        await client.close()
        console.log(id)
      })().catch((e) => { console.error(e); process.exit(1) })`,
      env,
    )
    expect(first.code).toBe(0)
    const id = first.stdout.trim()
    const log = new DeliveryLog({ databaseUrl })
    expect((await log.forPush(id)).state).toBe('scheduled')
    expect(await sentTo(token)).toEqual([])
    // Its time passes while no process runs.
    await waitFor('the push to fall due', 10_000, async () => (await log.forPush(id)).state === 'pending')

    const second = await runScript(
      `const { PushClient } = require('pushq')
      ;(async () => { await new PushClient({ mode: 'local' }).close() })().catch((e) => { console.error(e); process.exit(1) })`,
      env,
    )
    expect(second.code).toBe(0)
    expect((await log.forPush(id)).deliveries.map((d) => d.status)).toEqual(['sent'])
    expect(await sentTo(token)).toEqual([token])
  })
})

test('with PUSHQ_PRODUCER_METRICS=emf a server prints one EMF line per schedule created and deleted', async () => {
  const databaseUrl = freshDatabase('sqlite')
  const queueUrl = await freshQueue()
  pushq(['migrate'], { DATABASE_URL: databaseUrl })
  const out = await runScript(
    `const { PushClient } = require('pushq')
    ;(async () => {
      const client = new PushClient({ queueUrl: ${JSON.stringify(queueUrl)} })
      const { id } = await client.enqueuePush({ userId: 'm', data: { a: 'b' }, sendAt: new Date(Date.now() + 86400000) })
      await client.cancelPush(id)
      await client.close()
    })().catch((e) => { console.error(e); process.exit(1) })`,
    {
      DATABASE_URL: databaseUrl,
      PUSHQ_SCHEDULER_ROLE_ARN: schedulerRoleArn,
      PUSHQ_SCHEDULE_GROUP: scheduleGroup,
      PUSHQ_PRODUCER_METRICS: 'emf',
      PUSHQ_METRICS_NAMESPACE: 'pushq-test',
    },
  )
  expect(out.stderr).toBe('')
  const lines = out.stdout.trim().split('\n').map((l) => JSON.parse(l))
  expect(lines).toEqual([
    expect.objectContaining({ Service: 'pushq-producer', ScheduledCreated: 1 }),
    expect.objectContaining({ Service: 'pushq-producer', ScheduledDeleted: 1 }),
  ])
  expect(lines[0]._aws.CloudWatchMetrics[0]).toEqual({
    Namespace: 'pushq-test',
    Dimensions: [['Service']],
    Metrics: [{ Name: 'ScheduledCreated', Unit: 'Count' }],
  })
})

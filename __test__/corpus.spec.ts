// Validation parity with firebase-admin, through the binding: every corpus push firebase-admin
// rejects is rejected with PUSHQ_INVALID_PUSH naming the field, and nothing reaches the queue;
// every push it accepts is enqueued. (Body equality is checked in Rust, on the fixture this
// file proves current: crates/model/tests/fcm_corpus.rs.)
import { PushClient } from '..'
import { freshQueue, queueDepth, drainQueue } from './support/sqs'
import * as fs from 'fs'
import * as path from 'path'

// eslint-disable-next-line @typescript-eslint/no-var-requires
const { generateFixture } = require('./corpus/generate')
// eslint-disable-next-line @typescript-eslint/no-var-requires
const { validateMessage } = require('./corpus/oracle')

type Case = { name: string; push: any; field?: string; valid: boolean; body?: unknown; firebaseAdmin?: 'accepts' }
const fixturePath = path.join(__dirname, '..', 'crates', 'model', 'tests', 'fixtures', 'fcm_corpus.json')
const cases: Case[] = generateFixture()

test('the Rust fixture is what firebase-admin says today (regenerate: node __test__/corpus/generate.js)', () => {
  expect(JSON.parse(fs.readFileSync(fixturePath, 'utf8'))).toEqual(JSON.parse(JSON.stringify(cases)))
})

test('the oracle is firebase-admin 14: a fid is a target of its own', () => {
  // firebase-admin 13 ignores `fid` (and would send it alongside the token).
  expect(() => validateMessage({ fid: 'f', token: 't' })).toThrow(/Exactly one of fid, topic, token or condition/)
  expect(() => validateMessage({ fid: 'f', notification: { title: 't' } })).not.toThrow()
})

test('firebase-admin accepts every push the corpus says only FCM refuses', () => {
  const fcmOnly = cases.filter((c) => c.firebaseAdmin === 'accepts')
  expect(fcmOnly.length).toBeGreaterThanOrEqual(15)
  for (const c of fcmOnly) {
    expect(() => validateMessage(JSON.parse(JSON.stringify(c.push)))).not.toThrow()
  }
})

test('the corpus holds at least 60 messages, valid and invalid', () => {
  expect(cases.length).toBeGreaterThanOrEqual(60)
  expect(cases.filter((c) => c.valid).length).toBeGreaterThanOrEqual(30)
  expect(cases.filter((c) => !c.valid).length).toBeGreaterThanOrEqual(30)
})

describe('verdicts through enqueuePush', () => {
  let client: PushClient
  let queueUrl: string
  beforeAll(async () => {
    queueUrl = await freshQueue()
    client = new PushClient({ queueUrl, endpointUrl: process.env.PUSHQ_TEST_SQS_ENDPOINT! })
  })
  afterAll(() => client.close())

  test('every push firebase-admin or FCM refuses is PUSHQ_INVALID_PUSH naming its field, and none is enqueued', async () => {
    const invalid = cases.filter((c) => !c.valid)
    const outcomes = await Promise.all(
      invalid.map((c) =>
        client.enqueuePush(c.push).then(
          () => ({ name: c.name, code: 'accepted', field: undefined }),
          (e: any) => ({ name: c.name, code: e.code, field: e.field }),
        ),
      ),
    )
    expect(outcomes).toEqual(invalid.map((c) => ({ name: c.name, code: 'PUSHQ_INVALID_PUSH', field: c.field })))
    expect(await queueDepth(queueUrl)).toEqual({ visible: 0, inFlight: 0, delayed: 0 })
  })

  test('every push firebase-admin accepts is enqueued', async () => {
    const valid = cases.filter((c) => c.valid)
    const ids = await Promise.all(valid.map((c) => client.enqueuePush(c.push).then((r) => r.id)))
    // Pushes with delaySeconds wait in the queue as delayed messages.
    const delayed = valid.filter((c) => c.push.delaySeconds > 0).length
    expect(delayed).toBeGreaterThan(0)
    expect(await queueDepth(queueUrl)).toEqual({ visible: valid.length - delayed, inFlight: 0, delayed })
    const immediate = ids.filter((_, i) => !(valid[i].push.delaySeconds > 0))
    // moto answers ~44 messages/s, slower under a parallel jest worker: the corpus's ~50 pushes
    // get the test's own time, not drainQueue's default 30 s.
    const messages = await drainQueue(queueUrl, immediate.length, { deadlineMs: 100_000 })
    expect(new Set(messages.map((m) => JSON.parse(m.Body!).id))).toEqual(new Set(immediate))
  })
})

// PushClient's options and the environment it reads: an option that is missing, unknown or of the
// wrong type is PUSHQ_CONFIG naming it (never a silent fallback), a queue URL that names its own
// endpoint needs no endpointUrl, and missing AWS credentials are PUSHQ_CONFIG saying where they come
// from. (The default client of the module-level functions: lifecycle.spec.ts.)
import { PushClient, enqueuePush } from '..'
import { drainQueue, freshQueue } from './support/sqs'
import { runScript } from './support/pushq-bin'

const endpointUrl = process.env.PUSHQ_TEST_SQS_ENDPOINT!

// jest gives each test file a copy of process.env that native code does not see: tests of what
// the addon reads from the environment run in child processes (lifecycle.spec.ts); here the real
// environment has no PUSHQ_QUEUE_URL (global-setup removed it).
describe('configuration', () => {
  test('no queue URL in sqs mode is PUSHQ_CONFIG, never a silent fallback', () => {
    expect(() => new PushClient({ endpointUrl })).toThrow(expect.objectContaining({ code: 'PUSHQ_CONFIG', message: expect.stringContaining('queueUrl') }))
    expect(() => new PushClient({ queueUrl: '' })).toThrow(expect.objectContaining({ code: 'PUSHQ_CONFIG' }))
  })

  test('the module-level enqueuePush rejects with PUSHQ_CONFIG when the environment has no queue', async () => {
    await expect(enqueuePush({ token: 'device-1' })).rejects.toMatchObject({ code: 'PUSHQ_CONFIG' })
  })

  test('bad options name the option', () => {
    const bad = [
      [{ queueURL: 'http://x/1/q' }, 'options.queueURL'],
      [{ queueUrl: 42 }, 'options.queueUrl'],
      [{ queueUrl: 'not a url' }, 'queueUrl'],
      [{ queueUrl: 'http://127.0.0.1/1/q', mode: 'kafka' }, 'mode'],
    ] as const
    for (const [options, name] of bad) {
      expect(() => new PushClient(options as any)).toThrow(
        expect.objectContaining({ code: 'PUSHQ_CONFIG', message: expect.stringContaining(name) }),
      )
    }
  })
})

describe('the deadline and backlog options (pushTimeoutMs, maxBacklogBytes)', () => {
  test('the options are checked', () => {
    for (const [options, name] of [
      [{ maxBacklogBytes: 1000 }, 'maxBacklogBytes'],
      [{ maxBacklogBytes: 2 ** 40 }, 'maxBacklogBytes'],
      [{ pushTimeoutMs: 0 }, 'pushTimeoutMs'],
      [{ pushTimeoutMs: '5' }, 'pushTimeoutMs'],
    ] as const) {
      expect(() => new PushClient({ queueUrl: 'http://127.0.0.1/1/q', ...(options as any) })).toThrow(
        expect.objectContaining({ code: 'PUSHQ_CONFIG', message: expect.stringContaining(name) }),
      )
    }
  })
})

describe('SQS as a developer meets it', () => {
  test('a LocalStack-style queue URL is its own endpoint: no endpointUrl needed', async () => {
    // moto's queue URLs carry its host, as LocalStack's do.
    const queueUrl = await freshQueue()
    expect(new URL(queueUrl).host).toBe(new URL(process.env.PUSHQ_TEST_SQS_ENDPOINT!).host)
    const client = new PushClient({ queueUrl })
    const { id } = await client.enqueuePush({ token: 'device-1' })
    await client.close()
    expect((await drainQueue(queueUrl, 1)).map((m) => JSON.parse(m.Body!).id)).toEqual([id])
  })

  test('no usable AWS credentials is PUSHQ_CONFIG, saying where credentials come from', async () => {
    const queueUrl = await freshQueue()
    const { code, stdout } = await runScript(
      `const { PushClient } = require('pushq')
new PushClient({ queueUrl: ${JSON.stringify(queueUrl)} }).enqueuePush({ token: 'device-1' })
  .then(() => console.log('resolved'), (e) => console.log(JSON.stringify({ code: e.code, message: e.message })))`,
      {
        AWS_ACCESS_KEY_ID: '',
        AWS_SECRET_ACCESS_KEY: '',
        AWS_EC2_METADATA_DISABLED: 'true',
        AWS_CONFIG_FILE: '/nonexistent',
        AWS_SHARED_CREDENTIALS_FILE: '/nonexistent',
      },
    )
    expect(code).toBe(0)
    const answer = JSON.parse(stdout)
    expect(answer.code).toBe('PUSHQ_CONFIG')
    expect(answer.message).toContain('AWS credentials: none usable for SQS')
    expect(answer.message).toContain('AWS_ACCESS_KEY_ID')
  })
})

// close() and process lifetime, as a server sees them; ESM, and the module-level enqueuePush's
// default client, configured from the environment on each call until it is.
import { PushClient } from '..'
import { drainQueue, freshQueue, queueDepth } from './support/sqs'
import { spawn } from 'child_process'
import * as path from 'path'

const endpointUrl = process.env.PUSHQ_TEST_SQS_ENDPOINT!
const root = path.resolve(__dirname, '..')

/** Runs a Node script in a child process; resolves with its exit code and output. */
function runNode(args: string[], env: Record<string, string> = {}) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, cwd: root })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.on('exit', (code) => resolve({ code, stdout, stderr }))
  })
}

describe('close()', () => {
  test('flushes every push handed over before it, then rejects new ones with PUSHQ_CLOSED', async () => {
    const queueUrl = await freshQueue()
    const client = new PushClient({ queueUrl, endpointUrl })
    const settled: string[] = []
    const pending = Array.from({ length: 50 }, (_, i) =>
      client.enqueuePush({ token: `device-${i}` }).then((r) => (settled.push(r.id), r)),
    )
    await client.close()
    // Every push handed over before close() was answered by SQS by the time close() resolved.
    expect(settled.length).toBe(50)
    await Promise.all(pending)
    expect((await queueDepth(queueUrl)).visible).toBe(50)

    await expect(client.enqueuePush({ token: 'late' })).rejects.toMatchObject({ code: 'PUSHQ_CLOSED' })
    await expect(client.enqueuePushes([{ token: 'late' }])).rejects.toMatchObject({ code: 'PUSHQ_CLOSED' })
    await client.close() // a second close is harmless
    expect((await queueDepth(queueUrl)).visible).toBe(50)
  })
})

describe('process lifetime', () => {
  test('a process that enqueues and never calls close() still exits, with its push delivered', async () => {
    const queueUrl = await freshQueue()
    const script = `
      const { PushClient } = require(${JSON.stringify(root)})
      const client = new PushClient({ queueUrl: process.env.Q, endpointUrl: process.env.E })
      // Not awaited, never closed: the pending push keeps the process up until SQS answers, no longer.
      client.enqueuePush({ userId: 'u1' }).then((r) => console.log(r.id))
    `
    const { code, stdout, stderr } = await runNode(['-e', script], { Q: queueUrl, E: endpointUrl })
    expect(stderr).toBe('')
    expect(code).toBe(0)
    const [message] = await drainQueue(queueUrl, 1)
    expect(JSON.parse(message.Body!).id).toBe(stdout.trim())
  })

  test('an idle client does not keep the process alive', async () => {
    const script = `
      const { PushClient } = require(${JSON.stringify(root)})
      globalThis.client = new PushClient({ queueUrl: 'http://127.0.0.1:9/1/q', endpointUrl: 'http://127.0.0.1:9' })
    `
    const { code } = await runNode(['-e', script])
    expect(code).toBe(0)
  })
})

describe('module formats and the default client', () => {
  test('ESM import works; enqueuePush and new PushClient() read PUSHQ_QUEUE_URL and AWS_ENDPOINT_URL_SQS', async () => {
    const queueUrl = await freshQueue()
    const script = `
      import { enqueuePush, PushClient } from 'pushq'
      import pushq from 'pushq'
      if (typeof PushClient !== 'function' || pushq.enqueuePush !== enqueuePush) throw new Error('bad exports')
      const { id } = await enqueuePush({ topic: 'news', notification: { title: 'hello' } })
      // A client without options reads the same environment.
      const client = new PushClient()
      const second = await client.enqueuePush({ token: 'device-1' })
      await client.close()
      console.log(id, second.id)
    `
    const { code, stdout, stderr } = await runNode(['--input-type=module', '-e', script], {
      PUSHQ_QUEUE_URL: queueUrl,
      AWS_ENDPOINT_URL_SQS: endpointUrl,
      NODE_PATH: '',
    })
    expect(stderr).toBe('')
    expect(code).toBe(0)
    const [first, second] = stdout.trim().split(' ')
    const messages = await drainQueue(queueUrl, 2)
    const byId = new Map(messages.map((m) => [JSON.parse(m.Body!).id, JSON.parse(m.Body!).push]))
    expect(byId).toEqual(new Map<string, unknown>([[first, { topic: 'news', notification: { title: 'hello' } }], [second, { token: 'device-1' }]]))
  })

  test('the module-level enqueuePush reports a configuration error per call, and works once the environment is fixed', async () => {
    const queueUrl = await freshQueue()
    const script = `
    const { enqueuePush } = require(${JSON.stringify(root)})
    ;(async () => {
      const first = await enqueuePush({ token: 'device-1' }).then(() => 'resolved', (e) => e.code)
      process.env.PUSHQ_QUEUE_URL = ${JSON.stringify(queueUrl)}
      const { id } = await enqueuePush({ token: 'device-1' })
      console.log(JSON.stringify({ first, id }))
    })().catch((e) => { console.error(e); process.exit(1) })
  `
    const env: Record<string, string> = { ...process.env, AWS_ENDPOINT_URL_SQS: endpointUrl } as any
    delete env.PUSHQ_QUEUE_URL
    const child = spawn(process.execPath, ['-e', script], { env })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const code = await new Promise((resolve) => child.on('exit', resolve))
    expect(stderr).toBe('')
    expect(code).toBe(0)
    const { first, id } = JSON.parse(stdout)
    expect(first).toBe('PUSHQ_CONFIG')
    const messages = await drainQueue(queueUrl, 1)
    expect(messages.map((m) => JSON.parse(m.Body!).id)).toEqual([id])
  })
})

// Topic subscriptions through pushq (DeviceRegistry.subscribe/unsubscribe/topics): stored in the
// database, enqueued as a topic change, and made at FCM (the emulator, which keeps each project's
// topic membership) by `pushq worker` with the app's key, so no server needs firebase-admin. The
// request pushq's consumer makes is compared with the one firebase-admin 14.5 makes for the same
// token and topic, both captured by the emulator.
import * as crypto from 'crypto'
import * as fs from 'fs'
import * as path from 'path'
import { initializeApp, deleteApp } from 'firebase-admin/app'
import { getMessaging } from 'firebase-admin/messaging'
import { DeviceRegistry } from '..'
import { freshQueue } from './support/sqs'
import { Emulator, freshDatabase, runScript, startEmulator, waitFor, withWorker } from './support/pushq-bin'

let fcm: Emulator
beforeAll(async () => {
  fcm = await startEmulator()
})
afterAll(() => fcm.stop())

/** A call to the emulator's control endpoints; its JSON answer (null when it answers none). */
async function emulator(method: string, path: string, body?: unknown) {
  const init = body === undefined ? { method } : { method, body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }
  const answer = await fetch(`${fcm.endpoint}${path}`, init)
  if (!answer.ok) throw new Error(`the emulator refused ${method} ${path}: ${await answer.text()}`)
  const text = await answer.text()
  return text ? JSON.parse(text) : null
}
const members = async (topic: string): Promise<string[]> => (await emulator('GET', '/__topics'))['pushq-emulator']?.[topic] ?? []
const topicRequests = async (): Promise<any[]> => (await emulator('GET', '/__received')).topicRequests

/** A database, a queue, and the environment of a server script and of `pushq worker`. */
async function setUp() {
  const databaseUrl = freshDatabase('sqlite')
  const queueUrl = await freshQueue()
  const env = { DATABASE_URL: databaseUrl, PUSHQ_QUEUE_URL: queueUrl, PUSHQ_FCM_CREDENTIALS: fcm.credentials, PUSHQ_FCM_ENDPOINT: fcm.endpoint }
  // The schema, as an operator's `pushq migrate` would have applied it.
  await new DeviceRegistry({ databaseUrl, migrate: true }).devices('nobody')
  return { databaseUrl, queueUrl, env }
}

/** Runs a server's script (in a process of its own: the addon reads that process's environment). */
async function server(env: Record<string, string>, body: string) {
  const script = `
    const { DeviceRegistry, enqueuePush, close } = require('pushq')
    const registry = new DeviceRegistry()
    ;(async () => {
      ${body}
      await close()
    })().catch((e) => { console.error(e.code, e.message); process.exit(1) })
  `
  const out = await runScript(script, env)
  if (out.code !== 0) throw new Error(`server script failed: ${out.stderr}`)
  return out.stdout
}

const worker = (queueUrl: string, env: Record<string, string>, until: () => Promise<void>) =>
  withWorker(['--queue-url', queueUrl, '--visibility-timeout', '3'], env, until)

/** An access token of the emulator's project, fetched with its service-account key as Google's auth libraries do. */
async function accessToken(): Promise<string> {
  const key = JSON.parse(fs.readFileSync(fcm.credentials, 'utf8'))
  const now = Math.floor(Date.now() / 1000)
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url')
  const claims = { iss: key.client_email, scope: 'https://www.googleapis.com/auth/firebase.messaging', aud: key.token_uri, iat: now, exp: now + 3600 }
  const unsigned = `${part({ alg: 'RS256', typ: 'JWT' })}.${part(claims)}`
  const signature = crypto.createSign('RSA-SHA256').update(unsigned).sign(key.private_key).toString('base64url')
  const body = new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: `${unsigned}.${signature}` })
  const answer = await (await fetch(key.token_uri, { method: 'POST', body })).json()
  return answer.access_token
}

/** firebase-admin 14.5's subscribeToTopic and unsubscribeFromTopic, over HTTP/2 to the emulator instead of fcm.googleapis.com. */
async function firebaseAdmin(token: string, topic: string) {
  const access = await accessToken()
  const app = initializeApp(
    { projectId: 'pushq-emulator', credential: { getAccessToken: async () => ({ access_token: access, expires_in: 3600 }) } },
    `oracle-${crypto.randomUUID()}`,
  )
  // The module object firebase-admin required (an ES import would give this file a copy).
  const http2 = require('http2')
  const connect = http2.connect
  http2.connect = (_authority: unknown, ...rest: unknown[]) => {
    const session = connect(fcm.endpoint, ...rest)
    // firebase-admin sends the pseudo-header ':scheme' as 'https:' (url.parse's protocol), which
    // Google's front end takes and the emulator's HTTP/2 stack (RFC 9113: 'https') refuses.
    const request = session.request.bind(session)
    session.request = (headers: Record<string, string>, ...more: unknown[]) =>
      request({ ...headers, ':scheme': headers[':scheme']?.replace(/:$/, '') }, ...more)
    return session
  }
  try {
    const subscribed = await getMessaging(app).subscribeToTopic(token, topic)
    const unsubscribed = await getMessaging(app).unsubscribeFromTopic(token, topic)
    expect([subscribed, unsubscribed]).toEqual([
      { successCount: 1, failureCount: 0, errors: [] },
      { successCount: 1, failureCount: 0, errors: [] },
    ])
  } finally {
    http2.connect = connect
    await deleteApp(app)
  }
}

/**
 * A topic request as FCM reads it: method, path and query, body, and every header but these:
 * - the two that name the client library and its runtime (firebase-admin's `x-firebase-client:
 *   fire-admin-node/14.5.1`, `x-goog-api-client: gl-node/… fire-admin/14.5.1`), which pushq, not
 *   being firebase-admin, does not send;
 * - `host`: the worker reaches the plain-HTTP emulator over HTTP/1.1, where HTTP/2 (firebase-admin
 *   here, and pushq against FCM) carries it as `:authority`, which the emulator does not list;
 * - `accept: *\/*`, which pushq's HTTP client sends on every request and firebase-admin does not.
 * The access token's value differs by design (each client fetched its own); its form is compared.
 */
function request(r: any) {
  const { 'x-firebase-client': _client, 'x-goog-api-client': _runtime, host: _host, accept: _accept, authorization, ...headers } = r.headers
  return { method: r.method, path: r.path, body: r.body, headers: { ...headers, authorization: authorization.replace(/ .*/, ' <access token>') } }
}

test("pushq's subscribe and unsubscribe requests are firebase-admin 14.5's, byte for byte", async () => {
  // A token with characters encodeURIComponent escapes, and a private topic (its '/' escaped).
  const token = 'cX9:APA91b-é_~.(1)'
  const topic = '/topics/private/gym-berlin_1'
  await emulator('POST', '/__reset')
  await firebaseAdmin(token, topic)
  const oracle = (await topicRequests()).map(request)
  expect(oracle.map((r) => r.method)).toEqual(['POST', 'DELETE'])

  const { queueUrl, env } = await setUp()
  await emulator('POST', '/__reset')
  await server(env, `
    await registry.subscribe({ token: ${JSON.stringify(token)}, topic: ${JSON.stringify(topic)} })
  `)
  await worker(queueUrl, env, () => waitFor('the subscribe call', 30_000, async () => (await topicRequests()).length === 1))
  await server(env, `
    await registry.unsubscribe({ token: ${JSON.stringify(token)}, topic: ${JSON.stringify(topic)} })
  `)
  await worker(queueUrl, env, () => waitFor('the unsubscribe call', 30_000, async () => (await topicRequests()).length === 2))
  expect((await topicRequests()).map(request)).toEqual(oracle)
})

test('a user subscribed to a topic who registers a second device has both subscribed; a topic push reaches both; an unregistered device leaves', async () => {
  const { queueUrl, env } = await setUp()
  const tokens = [`a-${crypto.randomUUID()}`, `b-${crypto.randomUUID()}`].sort()
  const topic = `members-${crypto.randomUUID().slice(0, 8)}`
  await server(env, `
    await registry.register({ userId: 'u1', token: '${tokens[0]}', platform: 'android' })
    await registry.subscribe({ userId: 'u1', topic: '${topic}' })
    await registry.register({ userId: 'u1', token: '${tokens[1]}', platform: 'ios' })
    console.log(JSON.stringify(await registry.topics({ token: '${tokens[1]}' })))
  `).then((out) => expect(JSON.parse(out)).toEqual([topic]))
  await worker(queueUrl, env, () => waitFor('both devices subscribed', 30_000, async () => (await members(topic)).length === 2))
  expect(await members(topic)).toEqual(tokens)

  await server(env, `await enqueuePush({ topic: '${topic}', notification: { title: 'Gym closes early today' } })`)
  const reached = async () => (await fcm.received()).find((m) => m.body.message.topic === topic)?.reached
  await worker(queueUrl, env, () => waitFor('the topic push', 30_000, async () => (await reached()) !== undefined))
  expect(await reached()).toEqual(tokens)

  await server(env, `await registry.unregister('${tokens[0]}')`)
  await worker(queueUrl, env, () => waitFor('the unregistered device unsubscribed', 30_000, async () => (await members(topic)).length === 1))
  expect(await members(topic)).toEqual([tokens[1]])

  // The phone changes hands: registered by another user, it leaves the first user's topics.
  await server(env, `await registry.register({ userId: 'u2', token: '${tokens[1]}', platform: 'ios' })`)
  await worker(queueUrl, env, () => waitFor('the moved device unsubscribed', 30_000, async () => (await members(topic)).length === 0))
  expect(await members(topic)).toEqual([])
})

test('an FCM answering 403 with HTML hands the change back; it completes once the fault is gone', async () => {
  const { queueUrl, env } = await setUp()
  const token = `t-${crypto.randomUUID()}`
  const topic = `t-${crypto.randomUUID().slice(0, 8)}`
  await emulator('POST', '/__faults', { rules: [{ on: 'topics', token, status: 403, body: '<html>Forbidden</html>' }] })
  await server(env, `await registry.subscribe({ token: '${token}', topic: '${topic}' })`)
  const refused = async () => (await topicRequests()).filter((r) => r.token === token && r.status === 403).length
  await worker(queueUrl, env, async () => {
    await waitFor('the refused call', 30_000, async () => (await refused()) >= 1)
    expect(await members(topic)).toEqual([])
    await emulator('POST', '/__faults', { rules: [] })
    await waitFor('the change made after the fix', 30_000, async () => (await members(topic)).length === 1)
  })
  expect(await members(topic)).toEqual([token])
})

test('a bad topic, or a subscription naming no one or two, is refused with the field named; nothing is stored', async () => {
  const registry = new DeviceRegistry({ databaseUrl: freshDatabase('sqlite'), migrate: true })
  const refused = (field: string) => expect.objectContaining({ code: 'PUSHQ_INVALID_ARGUMENT', field })
  await expect(registry.subscribe({ userId: 'u1', topic: 'gym berlin' })).rejects.toEqual(refused('topic'))
  await expect(registry.subscribe({ userId: 'u1', topic: 'news/daily' })).rejects.toEqual(refused('topic'))
  await expect(registry.subscribe({ topic: 'news' } as any)).rejects.toEqual(refused('userId'))
  await expect(registry.unsubscribe({ userId: 'u1', token: 't', topic: 'news' })).rejects.toEqual(refused('token'))
  await expect(registry.subscribe({ userId: 'u1', topic: 'news', tpoic: 'x' } as any)).rejects.toEqual(refused('tpoic'))
  await expect(registry.topics({} as any)).rejects.toEqual(refused('userId'))
  expect(await registry.topics({ userId: 'u1' })).toEqual([])
})

test("the README and the examples hold no firebase-admin call a server still needs (only '// before:' lines show one)", () => {
  const root = path.resolve(__dirname, '..')
  const files = ['README.md', ...fs.readdirSync(path.join(root, 'examples')).map((f) => path.join('examples', f))]
  const calls = /firebase-admin['"]|getMessaging\(|\.messaging\(\)|initializeApp\(|subscribeToTopic\(|unsubscribeFromTopic\(|sendEach(ForMulticast)?\(|sendMulticast\(/
  const found = files.flatMap((file) =>
    fs
      .readFileSync(path.join(root, file), 'utf8')
      .split('\n')
      .map((line, i) => ({ file, line: i + 1, text: line.trim() }))
      .filter(({ text }) => calls.test(text) && !text.startsWith('// before:')),
  )
  expect(found).toEqual([])
  // The README does show the calls it replaces.
  expect(fs.readFileSync(path.join(root, 'README.md'), 'utf8')).toMatch(/\/\/ before: .*subscribeToTopic\(/)
})

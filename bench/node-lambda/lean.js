// The status quo done with care, as a Lambda: the handler a careful Node.js engineer writes for the
// same job with the same libraries ("Node.js handler, lean"). Per batch: one SELECT of every
// record's user's tokens (`user_id = ANY($1)`), then every record at once (Promise.all), each token
// sent with firebase-admin `send()` over keep-alive connections (an https.Agent of up to 100
// sockets, given to the app as its `httpAgent`), then one multi-row INSERT of the batch's sent rows.
// A record whose body does not parse, or any of whose sends failed, is a batch item failure.
//
// Transport: in firebase-admin 14.5.1 `send()` always goes through its AuthorizedHttpClient
// (`https.request` with the app's `httpAgent`), i.e. HTTP/1.1: only `sendEach()`,
// `sendEachForMulticast()` and the topic calls have an HTTP/2 path, the one
// `enableLegacyHttpTransport()` turns off, so that call would change nothing here. This handler's
// sends are HTTP/1.1 in every configuration, over TLS when FCM's stand-in serves TLS.
'use strict'
const fs = require('fs')
const https = require('https')
const { Pool } = require('pg')
const { initializeApp } = require('firebase-admin/app')
const { getMessaging } = require('firebase-admin/messaging')
const { routeFcmTo, emulatorCredential } = require('./fcm-route')

const account = JSON.parse(fs.readFileSync(process.env.PUSHQ_FCM_CREDENTIALS, 'utf8'))
routeFcmTo(process.env.PUSHQ_FCM_ENDPOINT)
const httpAgent = new https.Agent({ keepAlive: true, maxSockets: 100 })
const app = initializeApp({ credential: emulatorCredential(account), projectId: account.project_id, httpAgent })
const messaging = getMessaging(app)
const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: Number(process.env.PUSHQ_DB_POOL_SIZE) || 2 })

const SELECT_TOKENS = 'SELECT user_id, token FROM pushq_devices WHERE user_id = ANY($1) AND invalidated_at IS NULL'
// One statement whatever the batch's size: the rows travel as one array per column.
const INSERT_SENT = `INSERT INTO pushq_deliveries (push_id, target, user_id, status, fcm_message_id, attempts, category, enqueued_at, sent_at)
  SELECT push_id, target, user_id, 'sent', fcm_message_id, 1, category, to_timestamp(enqueued_ms / 1000.0), now()
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::float8[])
    AS r(push_id, target, user_id, fcm_message_id, category, enqueued_ms)
  ON CONFLICT DO NOTHING`

/** The record's envelope, or undefined when its body is not one. */
function parse(record) {
  try {
    const { id, enqueuedAt, push } = JSON.parse(record.body)
    if (typeof id === 'string' && push && typeof push.userId === 'string') return { messageId: record.messageId, id, enqueuedAt, push }
  } catch {}
  return undefined
}

exports.handler = async (event) => {
  const failed = new Set()
  const pushes = []
  for (const record of event.Records) {
    const parsed = parse(record)
    if (parsed) pushes.push(parsed)
    else failed.add(record.messageId)
  }
  const tokensOf = new Map()
  if (pushes.length) {
    const { rows } = await pool.query(SELECT_TOKENS, [[...new Set(pushes.map((p) => p.push.userId))]])
    for (const { user_id: user, token } of rows) {
      if (!tokensOf.has(user)) tokensOf.set(user, [])
      tokensOf.get(user).push(token)
    }
  }
  const sent = []
  await Promise.all(
    pushes.map(async (p) => {
      const tokens = tokensOf.get(p.push.userId) || []
      const results = await Promise.allSettled(tokens.map((token) => messaging.send({ token, notification: p.push.notification })))
      results.forEach((r, i) => {
        if (r.status === 'fulfilled') sent.push({ p, token: tokens[i], fcmMessageId: r.value })
        else failed.add(p.messageId)
      })
    }),
  )
  if (sent.length) {
    const column = (f) => sent.map(f)
    try {
      await pool.query(INSERT_SENT, [
        column((s) => s.p.id),
        column((s) => s.token),
        column((s) => s.p.push.userId),
        column((s) => s.fcmMessageId),
        column((s) => s.p.push.category ?? null),
        column((s) => s.p.enqueuedAt),
      ])
    } catch {
      for (const s of sent) failed.add(s.p.messageId)
    }
  }
  return { batchItemFailures: [...failed].map((itemIdentifier) => ({ itemIdentifier })) }
}

// The status quo, as a Lambda ("Node.js handler, naive: sendEach per message, pg per message"):
// the way each app server sent pushes before pushq, moved into an SQS-triggered Node.js handler.
// The records one after another; per message one query for the user's tokens, then one
// firebase-admin `sendEach()` of a message per device and one INSERT of the delivery row per
// device sent. `sendEach()` speaks HTTP/2 (firebase-admin ≥ 12.3) on a connection of its own per
// call; with BENCH_FCM_HTTP1 set (the benchmark's plain HTTP/1.1 configuration) it is switched to
// firebase-admin's HTTP/1.1 transport. Fed the same envelopes as pushq's bootstrap, against the
// same emulator and database.
'use strict'
const { Pool } = require('pg')
const { initializeApp } = require('firebase-admin/app')
const { getMessaging } = require('firebase-admin/messaging')
const { routeFcmTo, emulatorCredential } = require('./fcm-route')

const account = JSON.parse(require('fs').readFileSync(process.env.PUSHQ_FCM_CREDENTIALS, 'utf8'))
routeFcmTo(process.env.PUSHQ_FCM_ENDPOINT)
const app = initializeApp({ credential: emulatorCredential(account), projectId: account.project_id })
const messaging = getMessaging(app)
if (process.env.BENCH_FCM_HTTP1) messaging.enableLegacyHttpTransport()
const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: 2 })

exports.handler = async (event) => {
  const batchItemFailures = []
  for (const record of event.Records) {
    try {
      const { id, enqueuedAt, push } = JSON.parse(record.body)
      const { rows } = await pool.query('SELECT token FROM pushq_devices WHERE user_id = $1 AND invalidated_at IS NULL', [push.userId])
      if (rows.length === 0) continue
      const { responses } = await messaging.sendEach(rows.map(({ token }) => ({ token, notification: push.notification })))
      let failed = false
      for (const [i, sent] of responses.entries()) {
        if (!sent.success) {
          failed = true
          continue
        }
        await pool.query(
          `INSERT INTO pushq_deliveries (push_id, target, user_id, status, fcm_message_id, attempts, category, enqueued_at, sent_at)
           VALUES ($1, $2, $3, 'sent', $4, 1, $5, to_timestamp($6 / 1000.0), now()) ON CONFLICT DO NOTHING`,
          [id, rows[i].token, push.userId, sent.messageId, push.category ?? null, enqueuedAt],
        )
      }
      if (failed) batchItemFailures.push({ itemIdentifier: record.messageId })
    } catch (e) {
      batchItemFailures.push({ itemIdentifier: record.messageId })
    }
  }
  return { batchItemFailures }
}

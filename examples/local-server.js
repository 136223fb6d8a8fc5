// What a Node server does with pushq, in local mode: no AWS, the delivery engine in-process,
// SQLite (DATABASE_URL, default sqlite://pushq-dev.db), and FCM's log sink unless FCM
// credentials are set (PUSHQ_FCM_CREDENTIALS). Run: node examples/local-server.js
'use strict'
const { PushClient, DeviceRegistry, DeliveryLog } = require('..') // in your server: require('pushq')

async function main() {
  const databaseUrl = process.env.DATABASE_URL || 'sqlite://pushq-dev.db'

  // Devices are registered once, when the app reports its FCM token. `migrate: true` applies
  // pushq's schema to this development database; in production, `pushq migrate` does that once.
  const devices = new DeviceRegistry({ databaseUrl, migrate: true })
  await devices.register({ userId: 'ana', token: 'token-ana-phone', platform: 'android' })
  await devices.register({ userId: 'ana', token: 'token-ana-tablet', platform: 'android' })
  await devices.register({ userId: 'ben', token: 'token-ben-iphone', platform: 'ios' })

  // The server's whole push code: enqueue and move on.
  const pushq = new PushClient({ mode: 'local', databaseUrl })
  const pushes = {
    'class reminder to ana': {
      userId: 'ana',
      notification: { title: 'Spin 45 starts in 15 minutes', body: 'Studio 2, with Alex' },
      android: { priority: 'high', ttl: 900000 },
      category: 'class-reminder',
    },
    'promo to ben and chris': {
      userIds: ['ben', 'chris'],
      notification: { title: '2 weeks free', body: 'Bring a friend in December' },
      apns: { payload: { aps: { badge: 1 } } },
      category: 'promo',
    },
    'closure to a topic': { topic: 'gym-berlin', notification: { title: 'Closed on Sunday' } },
  }
  const ids = {}
  for (const [name, push] of Object.entries(pushes)) {
    ids[name] = (await pushq.enqueuePush(push)).id
  }
  await pushq.close() // waits until everything handed over has been delivered and recorded

  const log = new DeliveryLog({ databaseUrl })
  const summary = {}
  for (const [name, id] of Object.entries(ids)) {
    const rows = (await log.forPush(id)).deliveries
    summary[name] = rows.map((r) => `${r.target} ${r.status}`)
    console.log(`${name} (push ${id}):`)
    for (const r of rows) console.log(`  ${r.target.padEnd(20)} ${r.status}${r.errorCode ? ` (${r.errorCode})` : ''}`)
  }
  if (process.env.PUSHQ_EXAMPLE_JSON) console.log(JSON.stringify(summary))
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})

// Pushes TypeScript must accept, imported as a user imports them. Type-checked by
// `npx tsc --noEmit -p .`, never run; rejected.ts holds what it must refuse.
import { DeliveryLog, PushClient, close, enqueuePush, flush, isPushqError } from 'pushq'
import type { Push, PushBase, PushDeliveries, PushqErrorCode, TokenPush, UsersPush } from 'pushq'

declare const client: PushClient

// One of each target.
const eachTarget: Push[] = [
  { token: 'device-1' },
  { topic: 'gym-berlin' },
  { topic: '/topics/gym-berlin' },
  { condition: "'sports' in topics && 'news' in topics" },
  { tokens: ['device-1', 'device-2'] },
  { userId: 'user-42' },
  { userIds: ['user-42', 'user-43'] },
  { audience: { all: true } },
  { audience: { segment: 'gym_42' }, app: 'member' },
]
void client.enqueuePushes(eachTarget)

// An audience push's log: counts, never rows.
async function audienceCounts(log: DeliveryLog, id: string): Promise<number> {
  const answer: PushDeliveries = await log.forPush(id)
  const a = answer.audience
  if (a === undefined) return answer.deliveries.length
  const expansion: 'expanding' | 'expanded' | 'failed' | 'cancelled' = a.expansion
  void expansion
  return (a.counts.sent ?? 0) + a.pages + a.pagesDone + a.devices
}
void audienceCounts

// Every common field at once, on the module-level function and on a client.
const everything = {
  token: 'device-1',
  idempotencyKey: 'reminder-981-user-42',
  delaySeconds: 900,
  category: 'class-reminder',
  data: { classId: '981' },
  notification: { title: 'Spin 45', body: 'Studio 2', imageUrl: 'https://example.com/a.png' },
  android: {
    collapseKey: 'class-981',
    priority: 'high',
    ttl: 900_000,
    restrictedPackageName: 'com.example.gym',
    data: { deepLink: 'gym://class/981' },
    notification: {
      channelId: 'reminders',
      eventTimestamp: new Date(),
      priority: 'max',
      visibility: 'public',
      lightSettings: { color: '#ff0000', lightOnDurationMillis: 200, lightOffDurationMillis: 800 },
      vibrateTimingsMillis: [0, 200],
      proxy: 'deny',
    },
    fcmOptions: { analyticsLabel: 'reminder' },
    directBootOk: true,
  },
  apns: {
    headers: { 'apns-priority': '10' },
    payload: {
      aps: { alert: { title: 'Spin 45', locKey: 'REMINDER', locArgs: ['Alex'] }, badge: 1, sound: { name: 'bell.caf', critical: true, volume: 0.5 } },
      classId: 981,
    },
    fcmOptions: { imageUrl: 'https://example.com/a.png' },
  },
  webpush: { headers: { Urgency: 'high' }, notification: { title: 'Spin 45', requireInteraction: true }, fcmOptions: { link: 'https://example.com' } },
  fcmOptions: { analyticsLabel: 'reminder' },
} satisfies TokenPush
void enqueuePush(everything)
void client.enqueuePush({ ...everything, android: { notification: { eventTimestamp: '2025-01-01T00:00:00Z' } } })

// The common part built once, the target added per call.
const reminder: PushBase = { notification: { title: 'Your class starts soon' }, category: 'class-reminder' }
void client.enqueuePush({ ...reminder, userId: 'user-42' })
const promo: UsersPush = { ...reminder, userIds: ['user-42'], category: 'promo' }
void client.enqueuePushes([promo, { ...reminder, topic: 'gym-berlin' }])

// A target chosen at run time is still one target.
declare const byTopic: boolean
void client.enqueuePush(byTopic ? { topic: 'gym-berlin' } : { tokens: ['device-1'] })
void client.enqueuePush({ ...(byTopic ? { topic: 'gym-berlin' } : { userId: 'user-42' }), data: { k: 'v' } })

// A target field set to undefined is no target (JSON drops it), so this push has one.
void client.enqueuePush({ token: 'device-1', userId: undefined })

// What the promises resolve to.
async function ids(): Promise<string[]> {
  const { id } = await client.enqueuePush({ token: 'device-1' })
  const many = await client.enqueuePushes([{ token: 'device-1' }, { userId: 'user-42' }])
  return [id, ...many.map((e) => e.id)]
}
void ids

// firebase-admin habits: `aps` takes custom keys (as firebase-admin's `Aps` does), and
// `webpush.notification` is a typed WebpushNotification that also allows any other field.
void client.enqueuePush({
  token: 'device-1',
  apns: { payload: { aps: { alert: 'Spin 45', 'interruption-level': 'time-sensitive', 'relevance-score': 0.8 } } },
  webpush: {
    notification: {
      title: 'Spin 45',
      dir: 'ltr',
      actions: [{ action: 'book', title: 'Book' }],
      vibrate: [100, 50, 100],
      timestamp: Date.now(),
      customField: { any: 'thing' },
    },
  },
})

// The dry-run flag, as firebase-admin's send(message, dryRun).
void client.enqueuePush({ token: 'device-1' }, true)
void enqueuePush({ token: 'device-1' }, false)

// A caught error narrows to PushqError: code, field and awsCode are typed.
async function handled(): Promise<string | undefined> {
  try {
    await client.flush()
    await flush()
    await close()
  } catch (e) {
    if (isPushqError(e)) {
      const code: PushqErrorCode = e.code
      const detail: string | undefined = e.field ?? e.awsCode ?? e.cause?.message
      return `${code} ${detail}`
    }
  }
  return undefined
}
void handled

// The delivery log: one push's state, and waiting for it.
async function states(log: DeliveryLog): Promise<string[]> {
  const now = await log.forPush('id')
  const later: PushDeliveries = await log.waitFor('id', { timeoutMs: 5_000 })
  return [now.state, ...later.deliveries.map((d) => d.status)]
}
void states

// firebase-admin's own message types, as a server written for firebase-admin holds them.
declare const multicast: import('firebase-admin/messaging').MulticastMessage
void client.enqueuePush(multicast)
declare const fidMulticast: import('firebase-admin/messaging').FidMulticastMessage
void client.enqueuePush(fidMulticast)
declare const tokenMessage: import('firebase-admin/messaging').TokenMessage
void client.enqueuePush(tokenMessage)
declare const topicMessage: import('firebase-admin/messaging').TopicMessage
void client.enqueuePush(topicMessage)

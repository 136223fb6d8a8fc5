import { PushClient, enqueuePush } from 'pushq' // CommonJS: const { PushClient, enqueuePush } = require('pushq')

const pushq = new PushClient({ queueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/pushq' })

const { id } = await pushq.enqueuePush({
  userId: 'user-42',
  notification: { title: 'Your class starts in 15 minutes', body: 'Spin 45 with Alex' },
  android: { priority: 'high' },
  category: 'class-reminder',
})

// With PUSHQ_QUEUE_URL set, the module-level function needs no client:
await enqueuePush({ topic: 'gym-berlin', notification: { title: 'Closed on Sunday' } })

// A reminder booked with the class, days ahead (an EventBridge Scheduler schedule; the client
// needs schedulerRoleArn and databaseUrl, or PUSHQ_SCHEDULER_ROLE_ARN and DATABASE_URL) …
const classStartsAt = new Date('2027-01-08T07:00:00+09:00')
const reminder = await pushq.enqueuePush({
  userIds: ['user-42', 'user-43'],
  notification: { title: 'Spin 45 tomorrow at 7:00', body: 'Studio 2, with Alex' },
  sendAt: new Date(classStartsAt.getTime() - 24 * 60 * 60 * 1000),
  expiresAt: classStartsAt,
  category: 'class-reminder',
})
// … and cancelled with the class: nothing is sent, the log says `cancelled`.
await pushq.cancelPush(reminder.id)

// A mass send: every device of the app, or your view pushq_segment_gym_42 (a user_id column).
await pushq.enqueuePush({ audience: { segment: 'gym_42' }, notification: { title: 'Yoga moves to room 2' } })

await pushq.close() // on shutdown: waits for pushes already handed over

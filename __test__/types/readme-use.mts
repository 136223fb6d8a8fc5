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

await pushq.close() // on shutdown: waits for pushes already handed over

// Test helpers over the real SQS API of moto_server (started by global-setup).
import {
  CreateQueueCommand,
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  Message,
  ReceiveMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs'
import { randomUUID } from 'crypto'

const sqs = new SQSClient({ endpoint: process.env.PUSHQ_TEST_SQS_ENDPOINT, region: 'us-east-1' })

/** A new, empty queue with a unique name; FIFO when asked. */
export async function freshQueue(opts: { fifo?: boolean } = {}): Promise<string> {
  const name = `pushq-${randomUUID()}${opts.fifo ? '.fifo' : ''}`
  const attributes: Record<string, string> = opts.fifo ? { FifoQueue: 'true', ContentBasedDeduplication: 'false' } : {}
  const out = await sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: attributes }))
  return out.QueueUrl!
}

/**
 * Receives (and deletes) what is in the queue: until `expected` messages arrived and nothing
 * else is visible (delayed messages beyond `expected` are left), or, without `expected`, until
 * the queue is empty, delayed messages included. Bounded by `deadlineMs`.
 */
export async function drainQueue(queueUrl: string, expected?: number, deadlineMs = 60_000): Promise<Message[]> {
  const got: Message[] = []
  const deadline = Date.now() + deadlineMs
  let empties = 0
  while (Date.now() < deadline) {
    const out = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 1,
        MessageSystemAttributeNames: ['All'],
      }),
    )
    const messages = out.Messages ?? []
    if (messages.length > 0) {
      empties = 0
      got.push(...messages)
      await sqs.send(
        new DeleteMessageBatchCommand({
          QueueUrl: queueUrl,
          Entries: messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle! })),
        }),
      )
      continue
    }
    empties++
    const depth = await queueDepth(queueUrl)
    if (expected !== undefined && got.length >= expected && depth.visible + depth.inFlight === 0) break
    if (expected === undefined && empties >= 2 && depth.visible + depth.inFlight + depth.delayed === 0) break
  }
  return got
}

/** Messages visible, in flight and delayed. */
export async function queueDepth(queueUrl: string) {
  const out = await sqs.send(
    new GetQueueAttributesCommand({
      QueueUrl: queueUrl,
      AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesDelayed'],
    }),
  )
  const a = out.Attributes ?? {}
  return {
    visible: Number(a.ApproximateNumberOfMessages ?? 0),
    inFlight: Number(a.ApproximateNumberOfMessagesNotVisible ?? 0),
    delayed: Number(a.ApproximateNumberOfMessagesDelayed ?? 0),
  }
}

/** Requests the counting proxy forwarded for one queue, by SQS action. */
export async function proxyCounts(queueUrl: string): Promise<Record<string, number>> {
  const res = await fetch(`${process.env.PUSHQ_TEST_SQS_PROXY}/__counts?queue=${encodeURIComponent(queueUrl)}`)
  return res.json()
}

/** Message bodies sent to a queue through the counting proxy, in order. */
export async function proxySent(queueUrl: string): Promise<string[]> {
  const res = await fetch(`${process.env.PUSHQ_TEST_SQS_PROXY}/__sent?queue=${encodeURIComponent(queueUrl)}`)
  return res.json()
}

/** Makes the next `entries` SendMessageBatch entries for the queue fail at the proxy. */
export async function failNextEntries(queueUrl: string, entries: number, opts: { senderFault?: boolean } = {}) {
  const q = new URLSearchParams({ queue: queueUrl, entries: String(entries), senderFault: opts.senderFault ? '1' : '0' })
  await fetch(`${process.env.PUSHQ_TEST_SQS_PROXY}/__fail?${q}`, { method: 'POST' })
}

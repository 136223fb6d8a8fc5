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

if (!process.env.PUSHQ_TEST_SQS_ENDPOINT) {
  throw new Error('PUSHQ_TEST_SQS_ENDPOINT is not set: run the tests through jest (global-setup starts moto_server)')
}
/** A client of moto_server directly (not through the counting proxy). */
export const sqs = new SQSClient({ endpoint: process.env.PUSHQ_TEST_SQS_ENDPOINT, region: 'us-east-1' })

/** A new, empty queue with a unique name; FIFO when asked. */
export async function freshQueue(opts: { fifo?: boolean } = {}): Promise<string> {
  const name = `pushq-${randomUUID()}${opts.fifo ? '.fifo' : ''}`
  const attributes: Record<string, string> = opts.fifo ? { FifoQueue: 'true', ContentBasedDeduplication: 'false' } : {}
  const out = await sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: attributes }))
  return out.QueueUrl!
}

/**
 * Receives (and deletes) what is in the queue. With `expected`: until at least that many messages
 * arrived and a receive then comes back empty (so extra messages, e.g. duplicates, are returned
 * too; delayed ones are left). Without: until two receives in a row come back empty and nothing is
 * left in the queue, delayed messages included. Never past `deadlineMs` (default 30 s, under the
 * test timeout): then it returns what it has, for the test's assertion to report.
 */
export async function drainQueue(
  queueUrl: string,
  expected?: number,
  opts: { deadlineMs?: number } = {},
): Promise<Message[]> {
  const got: Message[] = []
  const deadline = Date.now() + (opts.deadlineMs ?? 30_000)
  let empties = 0
  while (Date.now() < deadline) {
    const out = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 1,
        AttributeNames: ['All'],
        MessageSystemAttributeNames: ['All'],
        MessageAttributeNames: ['All'],
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
    if (expected !== undefined) {
      if (got.length >= expected) break
      continue
    }
    if (empties >= 2) {
      const depth = await queueDepth(queueUrl)
      if (depth.visible + depth.inFlight + depth.delayed === 0) break
    }
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

function proxy(pathAndQuery: string): string {
  const base = process.env.PUSHQ_TEST_SQS_PROXY
  if (!base) throw new Error('PUSHQ_TEST_SQS_PROXY is not set: run the tests through jest (global-setup starts the proxy)')
  return `${base}${pathAndQuery}`
}

function queueQuery(queueUrl?: string): string {
  return queueUrl === undefined ? '' : `?queue=${encodeURIComponent(queueUrl)}`
}

/**
 * Requests the counting proxy forwarded, by SQS action (`AmazonSQS.SendMessageBatch`, ...): for one
 * queue (by its QueueUrl), or for the whole run. Test files run in parallel against the same proxy,
 * so assertions should use the per-queue counts of their own fresh queue.
 */
export async function proxyCounts(queueUrl?: string): Promise<Record<string, number>> {
  const res = await fetch(proxy(`/__counts${queueQuery(queueUrl)}`))
  return (await res.json()) as Record<string, number>
}

/** Zeroes the proxy's counters for one queue, or all of them (which other test files may be using). */
export async function resetProxyCounts(queueUrl?: string): Promise<void> {
  const res = await fetch(proxy(`/__reset${queueQuery(queueUrl)}`), { method: 'POST' })
  await res.arrayBuffer()
}

/** Message bodies sent to a queue through the counting proxy, in order. */
export async function proxySent(queueUrl: string): Promise<string[]> {
  const res = await fetch(proxy(`/__sent${queueQuery(queueUrl)}`))
  return (await res.json()) as string[]
}

/** Makes the next `entries` SendMessageBatch entries for the queue fail at the proxy. */
export async function failNextEntries(queueUrl: string, entries: number, opts: { senderFault?: boolean } = {}) {
  const q = new URLSearchParams({ queue: queueUrl, entries: String(entries), senderFault: opts.senderFault ? '1' : '0' })
  const res = await fetch(proxy(`/__fail?${q}`), { method: 'POST' })
  await res.arrayBuffer()
}

/** Holds the answers to the next `requests` SendMessageBatch requests for the queue `ms` ms (SQS has their messages at once). */
export async function holdNextAnswers(queueUrl: string, requests: number, ms: number) {
  const q = new URLSearchParams({ queue: queueUrl, requests: String(requests), ms: String(ms) })
  const res = await fetch(proxy(`/__hold?${q}`), { method: 'POST' })
  await res.arrayBuffer()
}

/** Cuts the connection after SQS took the next `requests` SendMessageBatch requests for the queue, before their answers. */
export async function dropNextAnswers(queueUrl: string, requests: number) {
  const q = new URLSearchParams({ queue: queueUrl, requests: String(requests) })
  const res = await fetch(proxy(`/__drop?${q}`), { method: 'POST' })
  await res.arrayBuffer()
}

// The test infrastructure itself, with the AWS JS SDK only (no pushq): moto_server answers SQS, the
// counting proxy forwards requests unchanged and counts them per action and per queue, and the
// helpers in support/sqs.ts create, drain and measure queues.
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  SendMessageBatchCommand,
  SendMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs'
import { randomUUID } from 'crypto'
import { drainQueue, freshQueue, proxyCounts, queueDepth, resetProxyCounts, sqs } from './support/sqs'

const viaProxy = new SQSClient({ endpoint: process.env.PUSHQ_TEST_SQS_PROXY, region: 'us-east-1' })

afterAll(() => viaProxy.destroy())

// Asked of the servers themselves, not of the variables global-setup wrote.
test('the SQS endpoint is a moto_server, and the proxy is another server that forwards to it', async () => {
  const endpoint = process.env.PUSHQ_TEST_SQS_ENDPOINT!
  const proxy = process.env.PUSHQ_TEST_SQS_PROXY!
  // A queue made through the proxy is one the endpoint has ...
  const QueueName = `pushq-infra-${randomUUID()}`
  const made = await viaProxy.send(new CreateQueueCommand({ QueueName }))
  const found = await sqs.send(new GetQueueUrlCommand({ QueueName }))
  expect(found.QueueUrl).toBe(made.QueueUrl)
  // ... and the endpoint is moto: moto's own API lists that queue in its SQS state.
  const state = await fetch(`${endpoint}/moto-api/data.json`)
  expect(state.status).toBe(200)
  expect(JSON.stringify((await state.json()).sqs)).toContain(QueueName)
  // The proxy's counters answer at the proxy and not at the endpoint: they are two servers.
  const counts = await fetch(`${proxy}/__counts`)
  expect(counts.status).toBe(200)
  await counts.arrayBuffer()
  const notProxy = await fetch(`${endpoint}/__counts`)
  expect(notProxy.status).toBe(404)
  await notProxy.arrayBuffer()
})

test('25 messages sent through the proxy all reach moto, and the proxy counts 25 SendMessage', async () => {
  const queueUrl = await freshQueue()
  await resetProxyCounts(queueUrl)
  const bodies = Array.from({ length: 25 }, (_, i) => JSON.stringify({ n: i, nonce: Math.random() }))

  await Promise.all(bodies.map((MessageBody) => viaProxy.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody }))))

  const messages = await drainQueue(queueUrl, 25)
  const received = messages.map((m) => m.Body!)
  expect(new Set(received).size).toBe(25)
  expect(received.sort()).toEqual([...bodies].sort())
  expect(messages[0].Attributes?.SentTimestamp).toBeDefined() // drainQueue asks for all attributes
  expect(await proxyCounts(queueUrl)).toEqual({ 'AmazonSQS.SendMessage': 25 })
  expect((await proxyCounts())['AmazonSQS.SendMessage']).toBeGreaterThanOrEqual(25)
  expect(await queueDepth(queueUrl)).toEqual({ visible: 0, inFlight: 0, delayed: 0 })
})

// 200 SendMessageBatch requests at once, as 2,000 concurrent pushes make. Spread over 20 queues:
// moto 5 recomputes every queue attribute (an O(depth) scan) on each message it accepts, so
// 2,000 messages in one queue cost ~30 s of moto CPU, which is moto's cost, not the proxy's.
test('the proxy carries 200 concurrent SendMessageBatch requests (2,000 messages) unchanged', async () => {
  const queues = await Promise.all(Array.from({ length: 20 }, () => freshQueue()))
  const requests = Array.from({ length: 200 }, (_, r) => ({
    QueueUrl: queues[r % queues.length],
    Entries: Array.from({ length: 10 }, (_, i) => ({ Id: `m${i}`, MessageBody: `message ${r * 10 + i}` })),
  }))

  const results = await Promise.all(requests.map((input) => viaProxy.send(new SendMessageBatchCommand(input))))

  expect(results.flatMap((r) => r.Failed ?? [])).toEqual([])
  expect(results.flatMap((r) => r.Successful ?? [])).toHaveLength(2000)
  for (const queueUrl of queues) {
    expect(await proxyCounts(queueUrl)).toEqual({ 'AmazonSQS.SendMessageBatch': 10 })
    expect(await queueDepth(queueUrl)).toEqual({ visible: 100, inFlight: 0, delayed: 0 })
  }
  // What reached moto is what was sent: one queue read back in full.
  const messages = await drainQueue(queues[0], 100)
  const expected = requests.filter((q) => q.QueueUrl === queues[0]).flatMap((q) => q.Entries.map((e) => e.MessageBody))
  expect(messages.map((m) => m.Body).sort()).toEqual(expected.sort())
})

test('the proxy counts query-protocol requests by their Action, and resets per queue', async () => {
  const queueUrl = await freshQueue()
  const form = new URLSearchParams({ Action: 'GetQueueAttributes', QueueUrl: queueUrl, 'AttributeName.1': 'All' })
  const res = await fetch(`${process.env.PUSHQ_TEST_SQS_PROXY}/`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      // moto routes on the credential scope of the signature; it does not check the signature.
      authorization: 'AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0',
    },
    body: form.toString(),
  })
  await res.arrayBuffer()
  expect(res.status).toBe(200)
  await viaProxy.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['All'] }))
  expect(await proxyCounts(queueUrl)).toEqual({ 'AmazonSQS.GetQueueAttributes': 2 })

  await resetProxyCounts(queueUrl)
  expect(await proxyCounts(queueUrl)).toEqual({})
})

test('freshQueue makes FIFO queues without content-based deduplication', async () => {
  const queueUrl = await freshQueue({ fifo: true })
  expect(queueUrl).toMatch(/\.fifo$/)
  const { Attributes } = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['All'] }))
  expect(Attributes).toMatchObject({ FifoQueue: 'true', ContentBasedDeduplication: 'false' })
  const other = await freshQueue({ fifo: true })
  expect(other).not.toBe(queueUrl)
})

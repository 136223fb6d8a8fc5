// A minimal SQS endpoint for throughput benchmarks: answers SendMessage and SendMessageBatch
// (JSON protocol) with real MD5s and message ids, keeps nothing, and counts requests.
// moto is the SQS of the tests; at ~100 messages/s it would measure itself, not the client.
'use strict'
const http = require('http')
const crypto = require('crypto')

const counts = { requests: 0, messages: 0 }
const md5 = (s) => crypto.createHash('md5').update(s, 'utf8').digest('hex')

const server = http.createServer((req, res) => {
  if (req.url === '/__counts') {
    res.setHeader('content-type', 'application/json')
    return res.end(JSON.stringify(counts))
  }
  const chunks = []
  req.on('data', (c) => chunks.push(c))
  req.on('end', () => {
    const target = String(req.headers['x-amz-target'] || '')
    const input = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}')
    let out
    if (target === 'AmazonSQS.SendMessage') {
      counts.requests++
      counts.messages++
      out = { MD5OfMessageBody: md5(input.MessageBody), MessageId: crypto.randomUUID() }
    } else if (target === 'AmazonSQS.SendMessageBatch') {
      counts.requests++
      counts.messages += input.Entries.length
      out = {
        Successful: input.Entries.map((e) => ({ Id: e.Id, MessageId: crypto.randomUUID(), MD5OfMessageBody: md5(e.MessageBody) })),
        Failed: [],
      }
    } else {
      res.statusCode = 400
      out = { __type: 'com.amazonaws.sqs#UnsupportedOperation', message: `sink does not answer ${target}` }
    }
    res.setHeader('content-type', 'application/x-amz-json-1.0')
    res.end(JSON.stringify(out))
  })
})
server.keepAliveTimeout = 60_000
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${server.address().port}\n`)
})
process.stdin.on('end', () => process.exit(0))
process.stdin.resume()

// Forwards every request to the SQS endpoint in argv[2] and counts them per SQS action and per
// queue, so tests can see how many requests reached SQS. GET /__counts[?queue=URL] reads them;
// GET /__sent?queue=URL lists the message bodies sent to a queue, in the order they were sent.
// POST /__fail?queue=URL&entries=N[&senderFault=1] makes the next N SendMessageBatch entries for
// that queue fail (answered as SQS answers a failed entry; they never reach SQS).
// Prints its port on stdout; exits when its stdin closes (the test run ended).
'use strict'
const http = require('http')

const upstream = new URL(process.argv[2])
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 })
const total = {}
const perQueue = new Map()
const sent = new Map()
const failures = new Map() // queue -> { left, senderFault }

function count(action, queue) {
  total[action] = (total[action] || 0) + 1
  if (queue) {
    const q = perQueue.get(queue) || {}
    q[action] = (q[action] || 0) + 1
    perQueue.set(queue, q)
  }
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://proxy')
  if (url.pathname === '/__counts') {
    const queue = url.searchParams.get('queue')
    res.setHeader('content-type', 'application/json')
    return res.end(JSON.stringify(queue ? perQueue.get(queue) || {} : total))
  }
  if (url.pathname === '/__fail') {
    const queue = url.searchParams.get('queue')
    failures.set(queue, { left: Number(url.searchParams.get('entries')), senderFault: url.searchParams.get('senderFault') === '1' })
    return res.end('ok')
  }
  if (url.pathname === '/__sent') {
    res.setHeader('content-type', 'application/json')
    return res.end(JSON.stringify(sent.get(url.searchParams.get('queue')) || []))
  }
  const chunks = []
  req.on('data', (c) => chunks.push(c))
  req.on('end', () => {
    let body = Buffer.concat(chunks)
    let injected = []
    let action = String(req.headers['x-amz-target'] || '')
    let queue
    try {
      const input = JSON.parse(body.toString('utf8'))
      queue = input.QueueUrl
      const fail = failures.get(queue)
      if (fail && fail.left > 0 && input.Entries) {
        const n = Math.min(fail.left, input.Entries.length)
        fail.left -= n
        injected = input.Entries.slice(0, n).map((e) => ({
          Id: e.Id,
          SenderFault: fail.senderFault,
          Code: fail.senderFault ? 'InvalidParameterValue' : 'InternalError',
          Message: 'injected by the test proxy',
        }))
        for (let i = 0; i < n; i++) count('InjectedEntryFailure', queue)
        input.Entries = input.Entries.slice(n)
        body = input.Entries.length ? Buffer.from(JSON.stringify(input)) : Buffer.alloc(0)
      }
      const bodies = input.Entries ? input.Entries.map((e) => e.MessageBody) : input.MessageBody ? [input.MessageBody] : []
      if (queue && bodies.length) sent.set(queue, (sent.get(queue) || []).concat(bodies))
    } catch {
      const form = new URLSearchParams(body.toString('utf8'))
      action = action || `AmazonSQS.${form.get('Action')}`
      queue = form.get('QueueUrl') || undefined
    }
    count(action, queue)
    if (injected.length > 0 && !body.length) {
      // Every entry failed: answer as SQS would, without asking it.
      res.setHeader('content-type', 'application/x-amz-json-1.0')
      return res.end(JSON.stringify({ Successful: [], Failed: injected }))
    }
    const headers = { ...req.headers, host: upstream.host, 'content-length': String(body.length) }
    const out = http.request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers, agent },
      (up) => {
        if (injected.length === 0) {
          res.writeHead(up.statusCode, up.headers)
          return up.pipe(res)
        }
        const parts = []
        up.on('data', (c) => parts.push(c))
        up.on('end', () => {
          const out = JSON.parse(Buffer.concat(parts).toString('utf8'))
          out.Failed = (out.Failed || []).concat(injected)
          const text = JSON.stringify(out)
          const headers = { ...up.headers, 'content-length': String(Buffer.byteLength(text)) }
          delete headers['x-amz-crc32']
          res.writeHead(up.statusCode, headers)
          res.end(text)
        })
      },
    )
    out.on('error', (e) => {
      res.statusCode = 502
      res.end(String(e))
    })
    out.end(body)
  })
})
server.keepAliveTimeout = 60_000
server.listen(0, '127.0.0.1', () => process.stdout.write(`${server.address().port}\n`))
process.stdin.on('end', () => process.exit(0))
process.stdin.resume()

// Forwards every request to the SQS endpoint in argv[2] and counts them per SQS action and per
// queue, so tests can see how many requests reached SQS. GET /__counts[?queue=URL] reads them;
// GET /__sent?queue=URL lists the message bodies sent to a queue, in the order they were sent.
// Prints its port on stdout; exits when its stdin closes (the test run ended).
'use strict'
const http = require('http')

const upstream = new URL(process.argv[2])
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 })
const total = {}
const perQueue = new Map()
const sent = new Map()

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
  if (url.pathname === '/__sent') {
    res.setHeader('content-type', 'application/json')
    return res.end(JSON.stringify(sent.get(url.searchParams.get('queue')) || []))
  }
  const chunks = []
  req.on('data', (c) => chunks.push(c))
  req.on('end', () => {
    const body = Buffer.concat(chunks)
    let action = String(req.headers['x-amz-target'] || '')
    let queue
    try {
      const input = JSON.parse(body.toString('utf8'))
      queue = input.QueueUrl
      const bodies = input.Entries ? input.Entries.map((e) => e.MessageBody) : input.MessageBody ? [input.MessageBody] : []
      if (queue && bodies.length) sent.set(queue, (sent.get(queue) || []).concat(bodies))
    } catch {
      const form = new URLSearchParams(body.toString('utf8'))
      action = action || `AmazonSQS.${form.get('Action')}`
      queue = form.get('QueueUrl') || undefined
    }
    count(action, queue)
    const headers = { ...req.headers, host: upstream.host }
    const out = http.request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers, agent },
      (up) => {
        res.writeHead(up.statusCode, up.headers)
        up.pipe(res)
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

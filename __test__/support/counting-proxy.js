// Forwards every request unchanged to the SQS endpoint in argv[2] and counts them per SQS action
// and per queue, so tests can see how many requests reached SQS. Run as a child process by
// global-setup (jest workers are separate processes: an in-process server would not be shared).
//
//   GET  /__counts[?queue=URL]  {"AmazonSQS.SendMessageBatch": 3, ...}, for the whole run or one queue
//   POST /__reset[?queue=URL]   zeroes the counters (all of them, or one queue's)
//   GET  /__sent?queue=URL      the message bodies sent to a queue, in the order they were sent
//   POST /__fail?queue=URL&entries=N[&senderFault=1]  makes the next N SendMessageBatch entries for
//        that queue fail (answered as SQS answers a failed entry; they never reach SQS)
//   POST /__hold?queue=URL&requests=N&ms=M  the next N SendMessageBatch requests for that queue
//        reach SQS at once, and their answers are held M ms before they go back
//   POST /__drop?queue=URL&requests=N  the next N SendMessageBatch requests for that queue reach
//        SQS, and then the connection is cut before the answer (the client never hears back)
//
// A request the client stops waiting for (it closes the connection before the answer: its attempt
// timed out) still reaches SQS, which keeps its messages; the SDK then sends the request again.
// Those are counted as "Abandoned", and their messages as "AbandonedEntries", so a test can tell
// such copies from a client that sent a push twice.
//
// The action is the X-Amz-Target header (JSON protocol), else Action= of a query-protocol form
// body or query string. The queue is QueueUrl of the JSON body (or of the form).
//
// Prints its port on stdout. Exits when its stdin closes, which happens when the jest process that
// spawned it exits for any reason (even SIGKILL); argv[3], if given, is the process group of
// moto_server, which it then kills too, so an interrupted run leaves nothing behind.
'use strict'
const http = require('http')

const upstream = new URL(process.argv[2])
const motoGroup = Number(process.argv[3]) || 0
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 })
let total = {}
const perQueue = new Map()
const sent = new Map()
const failures = new Map() // queue -> { left, senderFault }
const holds = new Map() // queue -> { left, ms }
const drops = new Map() // queue -> { left }
/** Takes one use of a queue's rule in `rules`, if it has one left. */
function takeRule(rules, queue) {
  const rule = rules.get(queue)
  if (!rule || rule.left <= 0) return undefined
  rule.left -= 1
  return rule
}

function count(action, queue) {
  total[action] = (total[action] || 0) + 1
  if (queue) {
    const q = perQueue.get(queue) || {}
    q[action] = (q[action] || 0) + 1
    perQueue.set(queue, q)
  }
}

function json(res, value) {
  const text = JSON.stringify(value)
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

// Hop-by-hop headers belong to one connection. moto answers `Connection: close`; passing that on
// would make the proxy close every client connection, so clients could never keep one alive.
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade']
function endToEnd(headers) {
  const out = { ...headers }
  for (const h of HOP_BY_HOP) delete out[h]
  return out
}

/** Sends the request upstream; retries once when a reused keep-alive socket was closed under it. */
function forward(req, body, onResponse, onError, retried = false) {
  const headers = { ...endToEnd(req.headers), host: upstream.host, 'content-length': String(body.length) }
  const out = http.request(
    { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers, agent },
    onResponse,
  )
  out.on('error', (e) => {
    if (!retried && out.reusedSocket && (e.code === 'ECONNRESET' || e.code === 'EPIPE')) {
      return forward(req, body, onResponse, onError, true)
    }
    onError(e)
  })
  out.end(body)
}

const server = http.createServer((req, res) => {
  req.on('error', () => {})
  res.on('error', () => {})
  const url = new URL(req.url, 'http://proxy')
  if (url.pathname === '/__counts') {
    const queue = url.searchParams.get('queue')
    return json(res, queue ? perQueue.get(queue) || {} : total)
  }
  if (url.pathname === '/__reset') {
    const queue = url.searchParams.get('queue')
    if (queue) perQueue.delete(queue)
    else {
      total = {}
      perQueue.clear()
    }
    return json(res, {})
  }
  if (url.pathname === '/__fail') {
    const queue = url.searchParams.get('queue')
    failures.set(queue, { left: Number(url.searchParams.get('entries')), senderFault: url.searchParams.get('senderFault') === '1' })
    return json(res, {})
  }
  if (url.pathname === '/__hold') {
    holds.set(url.searchParams.get('queue'), { left: Number(url.searchParams.get('requests')), ms: Number(url.searchParams.get('ms')) })
    return json(res, {})
  }
  if (url.pathname === '/__drop') {
    drops.set(url.searchParams.get('queue'), { left: Number(url.searchParams.get('requests')) })
    return json(res, {})
  }
  if (url.pathname === '/__sent') {
    return json(res, sent.get(url.searchParams.get('queue')) || [])
  }
  const chunks = []
  req.on('data', (c) => chunks.push(c))
  req.on('end', () => {
    let body = Buffer.concat(chunks)
    let injected = []
    let action = String(req.headers['x-amz-target'] || '')
    let queue
    let input
    let forwarded = 0 // messages this request carries on to SQS
    try {
      input = JSON.parse(body.toString('utf8'))
    } catch {}
    if (input && typeof input === 'object') {
      queue = typeof input.QueueUrl === 'string' ? input.QueueUrl : undefined
      const fail = failures.get(queue)
      if (fail && fail.left > 0 && Array.isArray(input.Entries)) {
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
      const bodies = Array.isArray(input.Entries)
        ? input.Entries.map((e) => e.MessageBody)
        : typeof input.MessageBody === 'string'
          ? [input.MessageBody]
          : []
      forwarded = bodies.length
      if (queue && bodies.length) sent.set(queue, (sent.get(queue) || []).concat(bodies))
    } else {
      // Query protocol (older SDKs): Action and QueueUrl are form fields or query parameters.
      const form = new URLSearchParams(body.toString('utf8'))
      const formAction = form.get('Action') || url.searchParams.get('Action')
      if (!action) action = formAction ? `AmazonSQS.${formAction}` : `${req.method} ${url.pathname}`
      queue = form.get('QueueUrl') || url.searchParams.get('QueueUrl') || undefined
    }
    count(action, queue)
    const batchAction = action === 'AmazonSQS.SendMessageBatch'
    const hold = batchAction ? takeRule(holds, queue) : undefined
    const drop = batchAction ? takeRule(drops, queue) : undefined
    res.on('close', () => {
      if (res.writableFinished) return
      count('Abandoned', queue)
      for (let i = 0; i < forwarded; i++) count('AbandonedEntries', queue)
    })
    if (injected.length > 0 && !body.length) {
      // Every entry failed: answer as SQS would, without asking it.
      const text = JSON.stringify({ Successful: [], Failed: injected })
      res.writeHead(200, { 'content-type': 'application/x-amz-json-1.0', 'content-length': Buffer.byteLength(text) })
      return res.end(text)
    }
    forward(
      req,
      body,
      (up) => {
        up.on('error', () => res.destroy())
        if (drop) {
          // SQS has the messages; the client never hears so.
          count('Dropped', queue)
          up.resume()
          return up.on('end', () => req.socket.destroy())
        }
        if (hold) {
          count('Held', queue)
          const parts = []
          up.on('data', (c) => parts.push(c))
          return up.on('end', () =>
            setTimeout(() => {
              if (res.destroyed) return
              res.writeHead(up.statusCode, endToEnd(up.headers))
              res.end(Buffer.concat(parts))
            }, hold.ms),
          )
        }
        if (injected.length === 0) {
          res.writeHead(up.statusCode, endToEnd(up.headers))
          return up.pipe(res)
        }
        const parts = []
        up.on('data', (c) => parts.push(c))
        up.on('end', () => {
          const out = JSON.parse(Buffer.concat(parts).toString('utf8'))
          out.Failed = (out.Failed || []).concat(injected)
          const text = JSON.stringify(out)
          const headers = { ...endToEnd(up.headers), 'content-length': String(Buffer.byteLength(text)) }
          delete headers['x-amz-crc32']
          res.writeHead(up.statusCode, headers)
          res.end(text)
        })
      },
      (e) => {
        process.stderr.write(`counting-proxy: ${req.method} ${action} upstream error: ${e}\n`)
        if (res.headersSent) return res.destroy()
        res.writeHead(502, { 'content-type': 'text/plain' })
        res.end(String(e))
      },
    )
  })
})
server.keepAliveTimeout = 60_000
server.headersTimeout = 65_000
server.listen(0, '127.0.0.1', () => process.stdout.write(`${server.address().port}\n`))

function shutdown() {
  if (motoGroup) {
    try {
      process.kill(-motoGroup, 'SIGTERM')
    } catch {}
  }
  process.exit(0)
}
process.stdin.on('end', shutdown)
process.stdin.on('close', shutdown)
process.stdin.on('error', shutdown)
process.stdin.resume()
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)

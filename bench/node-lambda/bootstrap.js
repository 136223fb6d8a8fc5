// A minimal custom-runtime loop (what the Node.js managed runtime does): poll the Runtime API
// for the next event, run the handler, post its result. The handler's module is the first
// argument (a file in this folder; handler.js, the naive one, when none is given).
'use strict'
const path = require('path')
const api = `http://${process.env.AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation`
const { handler } = require(path.join(__dirname, path.basename(process.argv[2] || 'handler.js')))

async function loop() {
  for (;;) {
    const next = await fetch(`${api}/next`)
    const id = next.headers.get('lambda-runtime-aws-request-id')
    const event = await next.json()
    try {
      const result = await handler(event)
      await fetch(`${api}/${id}/response`, { method: 'POST', body: JSON.stringify(result) })
    } catch (e) {
      await fetch(`${api}/${id}/error`, { method: 'POST', body: JSON.stringify({ errorMessage: String(e) }) })
    }
  }
}

loop().catch((e) => {
  console.error(e)
  process.exit(1)
})

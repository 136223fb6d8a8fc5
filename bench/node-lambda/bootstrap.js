// A minimal custom-runtime loop (what the Node.js managed runtime does): poll the Runtime API
// for the next event, run the handler, post its result.
'use strict'
const api = `http://${process.env.AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation`
const { handler } = require('./handler')

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

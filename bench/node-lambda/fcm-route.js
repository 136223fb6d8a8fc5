// Points firebase-admin at the FCM emulator: connections to fcm.googleapis.com go to the
// emulator's address instead, over what firebase-admin asked for: `https.request` (HTTP/1.1:
// `send()`) and `http2.connect` (HTTP/2: `sendEach()`, `sendEachForMulticast()`). Over TLS the
// emulator's certificate is verified as any other (its CA comes from NODE_EXTRA_CA_CERTS); a
// plain-HTTP emulator gets HTTP/1.1 and HTTP/2 with prior knowledge. The access token comes from
// the emulator's token endpoint through the JWT grant firebase-admin's cert credential makes
// (signed with the service account's key).
'use strict'
const http = require('http')
const https = require('https')
const http2 = require('http2')
const crypto = require('crypto')

const FCM_HOST = 'fcm.googleapis.com'

function routeFcmTo(endpoint) {
  const target = new URL(endpoint)
  const tls = target.protocol === 'https:'
  const port = target.port || (tls ? 443 : 80)
  // Without an agent of the caller's, keep-alive connections as Node's global agent keeps them.
  const agent = tls ? new https.Agent({ keepAlive: true }) : new http.Agent({ keepAlive: true })
  // The caller's agent (firebase-admin's `httpAgent`) is used as given over TLS; for a plain
  // emulator, an http.Agent with its settings (keep-alive, sockets) stands in for it.
  const plainAgents = new WeakMap()
  const agentFor = (given) => {
    if (!given) return agent
    if (tls) return given
    if (!plainAgents.has(given)) plainAgents.set(given, new http.Agent({ ...given.options }))
    return plainAgents.get(given)
  }
  const originalRequest = https.request
  https.request = function (options, cb) {
    if (options && (options.hostname === FCM_HOST || options.host === FCM_HOST)) {
      // servername '': no SNI, and the certificate is checked against the address connected to.
      const routed = { ...options, protocol: target.protocol, host: target.hostname, hostname: target.hostname, port, agent: agentFor(options.agent), servername: '' }
      return (tls ? originalRequest : http.request).call(this, routed, cb)
    }
    return originalRequest.apply(this, arguments)
  }
  const originalConnect = http2.connect
  http2.connect = function (authority, options, listener) {
    const url = typeof authority === 'string' ? new URL(authority) : authority
    if (url && url.hostname === FCM_HOST) {
      if (typeof options === 'function') [options, listener] = [{}, options]
      const session = originalConnect.call(this, target.origin, options, listener)
      // firebase-admin (13.10) sends the URL's protocol as `:scheme`, colon included ("https:").
      // FCM takes it; the emulator's HTTP/2 server (hyper's h2), like nghttp2, resets such a
      // stream as malformed (a scheme has no colon), so the colon goes here and nothing else.
      const request = session.request
      session.request = function (headers, ...rest) {
        const scheme = headers && headers[':scheme']
        if (typeof scheme === 'string' && scheme.endsWith(':')) headers = { ...headers, ':scheme': scheme.slice(0, -1) }
        return request.call(this, headers, ...rest)
      }
      return session
    }
    return originalConnect.apply(this, arguments)
  }
}

function emulatorCredential(account) {
  return {
    async getAccessToken() {
      const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url')
      const now = Math.floor(Date.now() / 1000)
      const claims = { iss: account.client_email, scope: 'https://www.googleapis.com/auth/firebase.messaging', aud: account.token_uri, iat: now, exp: now + 3600 }
      const unsigned = `${b64({ alg: 'RS256', typ: 'JWT' })}.${b64(claims)}`
      const signature = crypto.sign('RSA-SHA256', Buffer.from(unsigned), account.private_key).toString('base64url')
      const res = await fetch(account.token_uri, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: `${unsigned}.${signature}` }),
      })
      return res.json()
    },
  }
}

module.exports = { routeFcmTo, emulatorCredential }

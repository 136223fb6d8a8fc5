// Points firebase-admin at the FCM emulator: requests to fcm.googleapis.com go to it over HTTP,
// and the access token comes from its token endpoint through the JWT grant firebase-admin's cert
// credential makes (signed with the service account's key).
'use strict'
const http = require('http')
const https = require('https')
const crypto = require('crypto')

function routeFcmTo(endpoint) {
  const target = new URL(endpoint)
  const agent = new http.Agent({ keepAlive: true })
  const original = https.request
  https.request = function (options, cb) {
    if (options && (options.hostname === 'fcm.googleapis.com' || options.host === 'fcm.googleapis.com')) {
      return http.request({ ...options, protocol: 'http:', host: target.hostname, hostname: target.hostname, port: target.port, agent }, cb)
    }
    return original.apply(this, arguments)
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

// Writes crates/model/tests/fixtures/fcm_corpus.json: each corpus push as JSON carries it (the
// channel pushq receives through: a Date becomes its ISO string), with firebase-admin's verdict
// and body. `node __test__/corpus/generate.js` regenerates it; corpus.spec.ts fails when stale.
'use strict'
const fs = require('fs')
const path = require('path')
const messages = require('./messages')
const { oracle } = require('./oracle')

const FIXTURE = path.join(__dirname, '..', '..', 'crates', 'model', 'tests', 'fixtures', 'fcm_corpus.json')

function generateFixture() {
  const names = new Set()
  return messages.map(({ name, push, field, fcmRefuses }) => {
    if (names.has(name)) throw new Error(`duplicate corpus name ${name}`)
    names.add(name)
    const verdict = oracle(push)
    // A corpus consistency check, not a test of pushq: a case marked invalid must be invalid to
    // firebase-admin, unless it is one FCM refuses, which firebase-admin must accept.
    const adminRejects = field !== undefined && !fcmRefuses
    if (verdict.valid === adminRejects) {
      throw new Error(`corpus case ${name}: marked ${adminRejects ? 'invalid' : 'valid to firebase-admin'}, firebase-admin says ${verdict.valid ? 'valid' : verdict.error}`)
    }
    const entry = { name, push: JSON.parse(JSON.stringify(push === undefined ? null : push)), valid: field === undefined }
    if (field !== undefined) entry.field = field
    // The body firebase-admin would POST: for an FCM-refused case, what the emulator must refuse.
    if (verdict.valid) entry.body = verdict.body
    if (fcmRefuses) entry.firebaseAdmin = 'accepts'
    return entry
  })
}

if (require.main === module) {
  fs.mkdirSync(path.dirname(FIXTURE), { recursive: true })
  const fixture = generateFixture()
  fs.writeFileSync(FIXTURE, JSON.stringify(fixture, null, 2) + '\n')
  const valid = fixture.filter((c) => c.valid).length
  const fcmOnly = fixture.filter((c) => c.firebaseAdmin === 'accepts').length
  console.log(`${FIXTURE}: ${fixture.length} cases, ${valid} valid, ${fixture.length - valid} invalid (${fcmOnly} of them only to FCM)`)
}

module.exports = { generateFixture, FIXTURE }

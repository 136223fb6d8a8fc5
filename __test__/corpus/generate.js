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
  return messages.map(({ name, push, field }) => {
    if (names.has(name)) throw new Error(`duplicate corpus name ${name}`)
    names.add(name)
    const verdict = oracle(push)
    // A corpus consistency check, not a test of pushq: a case marked invalid must be invalid.
    if (verdict.valid === (field !== undefined)) {
      throw new Error(`corpus case ${name}: marked ${field ? 'invalid' : 'valid'}, firebase-admin says ${verdict.valid ? 'valid' : verdict.error}`)
    }
    const entry = { name, push: JSON.parse(JSON.stringify(push === undefined ? null : push)), valid: verdict.valid }
    if (field !== undefined) entry.field = field
    if (verdict.valid) entry.body = verdict.body
    return entry
  })
}

if (require.main === module) {
  fs.mkdirSync(path.dirname(FIXTURE), { recursive: true })
  const fixture = generateFixture()
  fs.writeFileSync(FIXTURE, JSON.stringify(fixture, null, 2) + '\n')
  const valid = fixture.filter((c) => c.valid).length
  console.log(`${FIXTURE}: ${fixture.length} cases, ${valid} valid, ${fixture.length - valid} invalid`)
}

module.exports = { generateFixture, FIXTURE }

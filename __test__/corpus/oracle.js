// firebase-admin (14) as the oracle: its own validateMessage decides what is valid and what FCM
// body it would POST for one device. pushq's own fields (targets beyond fid/token/topic/condition,
// id, app, idempotencyKey, expiresAt, delaySeconds, sendAt, category) have no firebase-admin counterpart:
// their rules are pushq's (README) and are checked here first.
'use strict'
const path = require('path')

// The exact functions messaging.send() runs (internal modules, so not in the package's exports).
const lib = path.dirname(require.resolve('firebase-admin'))
const { deepCopy } = require(path.join(lib, 'utils', 'deep-copy'))
const { validateMessage } = require(path.join(lib, 'messaging', 'messaging-internal'))

const TARGETS = ['token', 'fid', 'topic', 'condition', 'tokens', 'fids', 'userId', 'userIds']
const PUSHQ_FIELDS = ['id', 'tokens', 'fids', 'userId', 'userIds', 'app', 'idempotencyKey', 'expiresAt', 'delaySeconds', 'sendAt', 'category']
// RFC 3339 with a time zone: what a JS Date becomes in JSON (2026-11-26T22:00:00.000Z).
const DATE_TIME = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/

const isNonEmptyString = (v) => typeof v === 'string' && v !== ''
const chars = (s) => [...s].length
const isDateTime = (v) =>
  v instanceof Date ? !Number.isNaN(v.getTime()) : typeof v === 'string' && DATE_TIME.test(v) && !Number.isNaN(Date.parse(v))

function pushqRules(push) {
  const present = TARGETS.filter((t) => push[t] !== undefined && push[t] !== null)
  if (present.length !== 1) return `exactly one target (got ${present.join(', ') || 'none'})`
  const list = (v, maxChars) =>
    Array.isArray(v) && v.length >= 1 && v.length <= 10000 && v.every((x) => isNonEmptyString(x) && chars(x) <= maxChars)
  if ('tokens' in push && !list(push.tokens, Infinity)) return 'tokens'
  if ('fids' in push && !list(push.fids, Infinity)) return 'fids'
  if ('userIds' in push && !list(push.userIds, 255)) return 'userIds'
  if ('userId' in push && !(isNonEmptyString(push.userId) && chars(push.userId) <= 255)) return 'userId'
  if ('app' in push && !(typeof push.app === 'string' && /^[A-Za-z0-9_.-]{1,64}$/.test(push.app))) return 'app'
  // The push id a caller chooses: a UUID, hyphenated.
  if ('id' in push && !(typeof push.id === 'string' && /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(push.id))) return 'id'
  if ('idempotencyKey' in push) {
    const k = push.idempotencyKey
    if (!(isNonEmptyString(k) && k.length <= 128 && /^[\x21-\x7e]+$/.test(k))) return 'idempotencyKey'
  }
  if ('expiresAt' in push && !isDateTime(push.expiresAt)) return 'expiresAt'
  if ('delaySeconds' in push) {
    const d = push.delaySeconds
    if (!(Number.isInteger(d) && d >= 0 && d <= 900)) return 'delaySeconds'
  }
  // When a scheduled push is due; the producer also refuses a time past or over 365 days ahead.
  if ('sendAt' in push && !isDateTime(push.sendAt)) return 'sendAt'
  if ('sendAt' in push && 'delaySeconds' in push) return 'sendAt'
  if ('category' in push && !(isNonEmptyString(push.category) && chars(push.category) <= 100)) return 'category'
  return null
}

/**
 * `{ valid: true, body }` (firebase-admin's request body for one device: `deviceFid` for a `fids`
 * push, `deviceToken` for other pushes that fan out) or `{ valid: false, error }`.
 */
function oracle(push, { deviceToken = 'corpus-device-token', deviceFid = 'corpus-device-fid' } = {}) {
  if (push === null || typeof push !== 'object' || Array.isArray(push)) {
    return { valid: false, error: 'push must be an object' }
  }
  const broken = pushqRules(push)
  if (broken) return { valid: false, error: `pushq: ${broken}` }

  const message = {}
  for (const [k, v] of Object.entries(push)) if (!PUSHQ_FIELDS.includes(k)) message[k] = v
  // As sendEachForMulticast builds each per-device message: `{ ...baseMessage, token }` or
  // `{ ...baseMessage, fid }`. User ids resolve to devices; the corpus's are tokens.
  if (push.fids !== undefined) message.fid = deviceFid
  else if (['tokens', 'userId', 'userIds'].some((t) => push[t] !== undefined)) message.token = deviceToken
  const copy = deepCopy(message)
  try {
    validateMessage(copy)
  } catch (e) {
    return { valid: false, error: e.message }
  }
  return { valid: true, body: JSON.parse(JSON.stringify({ message: copy })) }
}

module.exports = { oracle, validateMessage }

// firebase-admin as the oracle: its own validateMessage decides what is valid and what FCM body
// it would POST for one device. pushq's own fields (targets beyond token/topic/condition,
// idempotencyKey, delaySeconds, category) have no firebase-admin counterpart: their rules are
// pushq's (README) and are checked here first.
'use strict'
const path = require('path')

// The exact functions messaging.send() runs (internal modules, so not in the package's exports).
const lib = path.dirname(require.resolve('firebase-admin'))
const { deepCopy } = require(path.join(lib, 'utils', 'deep-copy'))
const { validateMessage } = require(path.join(lib, 'messaging', 'messaging-internal'))

const TARGETS = ['token', 'topic', 'condition', 'tokens', 'userId', 'userIds']
const PUSHQ_FIELDS = ['tokens', 'userId', 'userIds', 'idempotencyKey', 'delaySeconds', 'category']
const MULTICAST_FIELDS = ['android', 'apns', 'data', 'notification', 'webpush', 'fcmOptions']

const isNonEmptyString = (v) => typeof v === 'string' && v !== ''
const chars = (s) => [...s].length

function pushqRules(push) {
  const present = TARGETS.filter((t) => push[t] !== undefined && push[t] !== null)
  if (present.length !== 1) return `exactly one target (got ${present.join(', ') || 'none'})`
  const list = (v, maxChars) =>
    Array.isArray(v) && v.length >= 1 && v.length <= 10000 && v.every((x) => isNonEmptyString(x) && chars(x) <= maxChars)
  if ('tokens' in push && !list(push.tokens, Infinity)) return 'tokens'
  if ('userIds' in push && !list(push.userIds, 255)) return 'userIds'
  if ('userId' in push && !(isNonEmptyString(push.userId) && chars(push.userId) <= 255)) return 'userId'
  if ('idempotencyKey' in push) {
    const k = push.idempotencyKey
    if (!(isNonEmptyString(k) && k.length <= 128 && /^[\x21-\x7e]+$/.test(k))) return 'idempotencyKey'
  }
  if ('delaySeconds' in push) {
    const d = push.delaySeconds
    if (!(Number.isInteger(d) && d >= 0 && d <= 900)) return 'delaySeconds'
  }
  if ('category' in push && !(isNonEmptyString(push.category) && chars(push.category) <= 100)) return 'category'
  return null
}

/** `{ valid: true, body }` (firebase-admin's request body for one device) or `{ valid: false, error }`. */
function oracle(push, deviceToken = 'corpus-device-token') {
  if (push === null || typeof push !== 'object' || Array.isArray(push)) {
    return { valid: false, error: 'push must be an object' }
  }
  const broken = pushqRules(push)
  if (broken) return { valid: false, error: `pushq: ${broken}` }

  let message
  if (['tokens', 'userId', 'userIds'].some((t) => push[t] !== undefined)) {
    // As sendEachForMulticast builds each per-device message.
    message = { token: deviceToken }
    for (const k of MULTICAST_FIELDS) message[k] = push[k]
  } else {
    message = {}
    for (const [k, v] of Object.entries(push)) if (!PUSHQ_FIELDS.includes(k)) message[k] = v
  }
  const copy = deepCopy(message)
  try {
    validateMessage(copy)
  } catch (e) {
    return { valid: false, error: e.message }
  }
  return { valid: true, body: JSON.parse(JSON.stringify({ message: copy })) }
}

module.exports = { oracle }

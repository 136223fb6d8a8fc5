-- Claims. A consumer claims each (push, target) before sending it: the row is written with
-- status `sending`, the claiming batch's id and the time its claim lapses (epoch milliseconds,
-- so that every dialect compares it as a number); the final row replaces it. A push with an
-- idempotency key also claims (key, target) in pushq_key_claims: the first push to claim a pair
-- owns it for good, with a hash of its payload, so that a later push reusing the key with other
-- content is recorded as such. Nullable columns without a default: no table rewrite.
ALTER TABLE pushq_deliveries ADD COLUMN claim_id TEXT NULL, ADD COLUMN claimed_until BIGINT NULL;

CREATE TABLE pushq_key_claims (
    idempotency_key TEXT NOT NULL,
    target TEXT NOT NULL,
    push_id TEXT NOT NULL,
    payload_hash TEXT NULL,
    claimed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (idempotency_key, target)
);

-- Keys already used keep their first push (no hash: it was not recorded).
INSERT INTO pushq_key_claims (idempotency_key, target, push_id)
SELECT idempotency_key, target, MIN(push_id) FROM pushq_deliveries
WHERE idempotency_key IS NOT NULL AND status = 'sent'
GROUP BY idempotency_key, target;

-- Claims. A consumer claims each (push, target) before sending it: the row is written with
-- status `sending`, the claiming batch's id and the time its claim lapses (epoch milliseconds,
-- so that every dialect compares it as a number); the final row replaces it. A push with an
-- idempotency key also claims (key, target) in pushq_key_claims: the first push to claim a pair
-- owns it for good, with a hash of its payload, so that a later push reusing the key with other
-- content is recorded as such.
ALTER TABLE pushq_deliveries ADD COLUMN claim_id VARCHAR(36) NULL, ADD COLUMN claimed_until BIGINT NULL;

CREATE TABLE pushq_key_claims (
    idempotency_key VARCHAR(128) NOT NULL,
    target VARCHAR(600) NOT NULL,
    push_id VARCHAR(64) NOT NULL,
    payload_hash VARCHAR(64) NULL,
    claimed_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (idempotency_key, target)
) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;

-- Keys already used keep their first push (no hash: it was not recorded).
INSERT INTO pushq_key_claims (idempotency_key, target, push_id)
SELECT idempotency_key, target, MIN(push_id) FROM pushq_deliveries
WHERE idempotency_key IS NOT NULL AND status = 'sent'
GROUP BY idempotency_key, target;

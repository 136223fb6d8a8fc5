-- pushq schema, MySQL / MariaDB. Indexed text columns have lengths that fit InnoDB's key limit.
CREATE TABLE pushq_devices (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    user_id VARCHAR(255) NOT NULL,
    token VARCHAR(512) NOT NULL UNIQUE,
    platform VARCHAR(32) NOT NULL,
    created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    invalidated_at DATETIME(3) NULL,
    INDEX pushq_devices_user_id (user_id)
) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;

CREATE TABLE pushq_deliveries (
    push_id VARCHAR(64) NOT NULL,
    target VARCHAR(600) NOT NULL,
    user_id VARCHAR(255) NULL,
    status VARCHAR(16) NOT NULL,
    fcm_message_id VARCHAR(255) NULL,
    error_code VARCHAR(64) NULL,
    attempts INT NOT NULL,
    category VARCHAR(100) NULL,
    idempotency_key VARCHAR(128) NULL,
    enqueued_at DATETIME(3) NOT NULL,
    sent_at DATETIME(3) NULL,
    UNIQUE KEY pushq_deliveries_push_target (push_id, target),
    INDEX pushq_deliveries_idempotency (idempotency_key, target(200))
) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;

CREATE TABLE pushq_rejected (
    queue_message_id VARCHAR(128) PRIMARY KEY,
    body MEDIUMTEXT NOT NULL,
    reason TEXT NOT NULL,
    received_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;

-- Tokens, ids, targets and keys compare byte for byte, as in PostgreSQL and SQLite. utf8mb4_bin is
-- a PAD SPACE collation: it takes 'X' and 'X ' for one value, so a device 'X ' could not be
-- registered beside 'X', an invalid 'X ' invalidated the live 'X', and a claim on 'X ' matched the
-- one on 'X'. Every table moves to the binary NO PAD collation of its server: utf8mb4_nopad_bin on
-- MariaDB (10.2+), utf8mb4_0900_bin on MySQL (8.0+). CONVERT rebuilds each table: on a large
-- delivery log, run it off-peak.
SET @pushq_no_pad = IF(VERSION() LIKE '%MariaDB%', 'utf8mb4_nopad_bin', 'utf8mb4_0900_bin');

SET @pushq_sql = CONCAT('ALTER TABLE pushq_devices CONVERT TO CHARACTER SET utf8mb4 COLLATE ', @pushq_no_pad);
PREPARE pushq_stmt FROM @pushq_sql;
EXECUTE pushq_stmt;
DEALLOCATE PREPARE pushq_stmt;

SET @pushq_sql = CONCAT('ALTER TABLE pushq_deliveries CONVERT TO CHARACTER SET utf8mb4 COLLATE ', @pushq_no_pad);
PREPARE pushq_stmt FROM @pushq_sql;
EXECUTE pushq_stmt;
DEALLOCATE PREPARE pushq_stmt;

SET @pushq_sql = CONCAT('ALTER TABLE pushq_key_claims CONVERT TO CHARACTER SET utf8mb4 COLLATE ', @pushq_no_pad);
PREPARE pushq_stmt FROM @pushq_sql;
EXECUTE pushq_stmt;
DEALLOCATE PREPARE pushq_stmt;

SET @pushq_sql = CONCAT('ALTER TABLE pushq_rejected CONVERT TO CHARACTER SET utf8mb4 COLLATE ', @pushq_no_pad);
PREPARE pushq_stmt FROM @pushq_sql;
EXECUTE pushq_stmt;
DEALLOCATE PREPARE pushq_stmt;

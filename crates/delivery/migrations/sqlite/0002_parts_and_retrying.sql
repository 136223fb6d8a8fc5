-- A push split into several queue messages records which part each row came from, so that the
-- log can tell when every part is recorded. Rows may now be `retrying` (a target handed back for
-- redelivery): the final row replaces it.
ALTER TABLE pushq_deliveries ADD COLUMN part INTEGER NULL;
ALTER TABLE pushq_deliveries ADD COLUMN parts INTEGER NULL;

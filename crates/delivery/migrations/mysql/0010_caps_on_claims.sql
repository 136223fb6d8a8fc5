-- The log's write of a send's outcome (`sending` → `sent`, `failed`, …) now changes no column an
-- index reads, so that InnoDB updates the row in place and no secondary index: the frequency
-- caps' index no longer reads `sent_at` but `claimed_until`, which the claim sets and the
-- outcome's write keeps (a send is recorded before its claim lapses, so a row sent since T was
-- claimed until after T). The caps' query still checks `status` and `sent_at` on the row.
ALTER TABLE pushq_deliveries
    DROP INDEX pushq_deliveries_caps,
    ADD INDEX pushq_deliveries_caps (app, user_id, claimed_until);

-- The log's write of a send's outcome (`sending` → `sent`, `failed`, …) now changes no column an
-- index reads, so that it rewrites the row alone: the frequency caps' index no longer reads
-- `status` or `sent_at` but `claimed_until`, which the claim sets and the outcome's write keeps
-- (a send is recorded before its claim lapses, so a row sent since T was claimed until after T);
-- and only rows a cap can count (a category, or advertising) are in it. The caps' query still
-- checks `status` and `sent_at` on the row.
DROP INDEX pushq_deliveries_caps;
CREATE INDEX pushq_deliveries_caps ON pushq_deliveries (app, user_id, claimed_until)
    WHERE category IS NOT NULL OR advertising;

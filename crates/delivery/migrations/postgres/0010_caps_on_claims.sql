-- The log's write of a send's outcome (`sending` → `sent`, `failed`, …) now changes no column an
-- index reads, so that PostgreSQL makes it a heap-only update (HOT: no index entry written) when
-- the row's page has room: the frequency caps' index no longer reads `status` or `sent_at` but
-- `claimed_until`, which the claim sets and the outcome's write keeps (a send is recorded before
-- its claim lapses, so a row sent since T was claimed until after T); and only rows a cap can
-- count (a category, or advertising) are in it. The caps' query still checks `status` and
-- `sent_at` on the row. New pages of the log are filled to 40 %, leaving each row the room for
-- its outcome, which is longer (FCM's message name, the send's time): a page whose rows are all
-- claimed and recorded in one batch takes every outcome without moving a row to another page.
-- The log takes no more space for it: an update that is not heap-only leaves the row's old
-- version behind as well (1,000,000 rows of the audience benchmark: 434 MiB of rows and 219 of
-- indexes, against 417 and 279 before). Older pages keep their fill: no table rewrite.
DROP INDEX pushq_deliveries_caps;
CREATE INDEX pushq_deliveries_caps ON pushq_deliveries (app, user_id, claimed_until)
    WHERE category IS NOT NULL OR advertising;
ALTER TABLE pushq_deliveries SET (fillfactor = 40);

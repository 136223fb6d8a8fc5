//! The delivery log's indexes, on SQLite, PostgreSQL and MariaDB: the write of a send's outcome
//! over its claim (`sending` → `sent`, `failed`, …) sets no column that an index reads, so that
//! PostgreSQL makes it a heap-only update and MariaDB and SQLite write no index entry for it
//! (migration 0010; docs/benchmarks.md section 6: an audience of 1,000,000 devices, every
//! outcome heap-only, PostgreSQL's CPU down by about 40 %).

use pushq_delivery::store::Store;
use pushq_test_support::*;

/// The columns the outcome's write sets over the claim's row.
const OUTCOME_COLUMNS: [&str; 5] = [
    "status",
    "fcm_message_id",
    "error_code",
    "attempts",
    "sent_at",
];

async fn the_outcome_of_a_send_changes_no_indexed_column(db: Db) {
    let store = Store::connect(&db.url, 1).await.unwrap();
    store.migrate().await.unwrap();
    let indexes = db.index_definitions("pushq_deliveries").await;
    let words = |text: &str| -> Vec<String> {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map(str::to_ascii_lowercase)
            .collect()
    };
    for index in &indexes {
        for column in OUTCOME_COLUMNS {
            assert!(
                !words(index).iter().any(|w| w == column),
                "{index:?} reads {column}, which the outcome's write sets: each outcome would write an index entry"
            );
        }
    }
    // The log is looked up by push, user, idempotency key and (for the caps) claim: its
    // indexes are there, and none reads a column of the outcome.
    for expected in ["push_id", "user_id", "idempotency_key", "claimed_until"] {
        assert!(
            indexes
                .iter()
                .any(|i| words(i).iter().any(|w| w == expected)),
            "an index of pushq_deliveries should read {expected}: {indexes:?}"
        );
    }
    store.close().await;
}
on_every_db!(the_outcome_of_a_send_changes_no_indexed_column);

//! Audience pushes (`audience: { all: true }` or `{ segment }`): expanding one into pages.
//!
//! The message of an audience push carries no page: the consumer that takes it walks the
//! audience's devices in id order, [`PAGES_PER_STEP`] pages per step (one keyset statement,
//! one queue request for the pages, one statement moving the expansion's cursor), and writes
//! each page as its own queue message (the push's envelope plus its page: the id range it
//! covers), which any consumer then delivers through the normal phases (resolved by id range,
//! claimed, the recipient rules, the log). The expansion's cursor is in the database
//! (`pushq_audiences`), moved only from where the step read it: a consumer killed mid-way
//! leaves the message to come back, and the consumer that takes it goes on from the cursor;
//! the pages written between the last cursor move and the kill are written again, and their
//! targets, claimed already, are not sent twice. An expansion that outlasts its share of the
//! batch's time writes the push's message again (to go on at once, from the cursor) and is done
//! with this one.
//!
//! Statements: about 2 per step of [`PAGES_PER_STEP`] pages, plus 2 to begin; a page then costs
//! its share of its batch's statements (one resolve for every page of the batch).

use std::time::Instant;

use pushq_model::{Audience, Envelope, Page, Target};

use std::collections::HashMap;

use super::batch::{row, Expiry};
use super::{Deferrer, Engine, QueueMessage};
use crate::outcome::BatchOutcome;
use crate::store::{
    AudienceRow, AudienceState, Claim, DeliveryStatus, PageDevices, PageQuery, StoreError,
};

pub use crate::config::DEFAULT_AUDIENCE_PAGE_SIZE;
/// Least time left in a batch to begin an expansion in; with less, the push's message goes
/// back on the queue for another consumer.
const MIN_EXPANSION_TIME: std::time::Duration = std::time::Duration::from_secs(1);
/// Pages written per expansion step: one `SendMessageBatch` (at most 10 messages).
pub const PAGES_PER_STEP: u32 = 10;
/// The error code of an audience push whose segment has no view or table (recorded `failed`
/// once, on the target `audience:segment:<name>`).
pub const UNKNOWN_SEGMENT: &str = "UNKNOWN_SEGMENT";

/// What became of one expansion message.
enum Expanded {
    /// Done with: every page written, or the rest left to the message written again, or
    /// nothing to write (cancelled, failed, another consumer's).
    Done,
    /// To come back (no key for its app, no queue to write pages to, the queue refused them).
    HandBack,
}

/// The pages of a batch to resolve: (push id, page number) and what to read.
pub(super) type PageQueries<'b> = Vec<((String, Page), PageQuery<'b>)>;

/// What one expansion step left.
enum Step {
    /// More pages to write, from this cursor.
    More(AudienceRow),
    /// The expansion is over: every page written, the segment unknown, or another consumer
    /// moved the cursor first.
    Over,
    /// The queue refused the pages: the message comes back, and goes on from the cursor.
    Refused,
}

impl Engine {
    /// The batch's audience pushes without a page: each expanded into pages (see the module
    /// docs), one after the other, within the batch's time.
    pub(super) async fn expand_audiences(
        &self,
        messages: &[QueueMessage],
        expansions: Vec<(usize, Envelope)>,
        (deadline, expiry): (Instant, Expiry),
        outcome: &mut BatchOutcome,
    ) {
        for (i, envelope) in expansions {
            // Each expansion may take three quarters of what is left of the batch; with less
            // than MIN_EXPANSION_TIME left, the push goes back on the queue to be expanded by
            // the next consumer (a hand-back would count a receive towards the DLQ).
            let left = deadline.saturating_duration_since(Instant::now());
            let expanded = if left < MIN_EXPANSION_TIME {
                Ok(self.again(&envelope, "later").await)
            } else if expiry.has_passed(&envelope) {
                self.expired(&envelope, outcome).await
            } else {
                let stop_at = Instant::now() + left * 3 / 4;
                self.expand(&envelope, stop_at, outcome).await
            };
            let back = match expanded {
                Ok(Expanded::Done) => false,
                Ok(Expanded::HandBack) => true,
                // The rest of the batch is recorded already: only this message comes back, and
                // its expansion goes on from its cursor.
                Err(error) => {
                    tracing::error!(push_id = %envelope.id, %error, "expanding an audience push failed; its message will be redelivered");
                    true
                }
            };
            if back {
                outcome
                    .failed_message_ids
                    .push(messages[i].message_id.clone());
            }
        }
    }

    /// The push's message written to the queue again, to be expanded (on from its cursor) by
    /// whichever consumer takes it; handed back if the queue refuses it. `key` tells this copy
    /// from others of the same push on a FIFO queue.
    async fn again(&self, e: &Envelope, key: &str) -> Expanded {
        let Some(deferrer) = self.deferrer.clone() else {
            return Expanded::HandBack;
        };
        let key = format!("again:{key}:{}", chrono::Utc::now().timestamp_millis());
        match deferrer.enqueue(&e.id, vec![(e.to_json(), key)]).await {
            Ok(()) => Expanded::Done,
            Err(error) => {
                tracing::error!(push_id = %e.id, %error, "the queue refused an audience push's message; it will be redelivered");
                Expanded::HandBack
            }
        }
    }

    /// An audience push whose time has passed (`expiresAt`, `PUSHQ_MAX_PUSH_AGE_SECONDS`):
    /// not expanded; one row, `audience:<audience>` `expired`, and the expansion over, empty.
    async fn expired(
        &self,
        e: &Envelope,
        outcome: &mut BatchOutcome,
    ) -> Result<Expanded, StoreError> {
        let Target::Audience(audience) = e.push.target() else {
            return Ok(Expanded::Done);
        };
        let target = format!("audience:{}", audience.summary());
        let expired = row(e, target, None, DeliveryStatus::Expired, None, 0);
        let claim = Claim::at(self.now(), self.statement_timeout);
        self.store
            .record_deliveries(&[expired], &claim, self.statement_timeout)
            .await?;
        let at = self.store.begin_audience(&e.id, e.push.app(), audience);
        let at = self.timed("beginning an audience", None, at).await?;
        let end = (at.next_after, at.next_after);
        let over = self
            .store
            .advance_audience(&e.id, end, (0, 0), AudienceState::Expanded);
        self.timed("ending an audience", None, over).await?;
        outcome.counts.expired += 1;
        Ok(Expanded::Done)
    }

    /// Phase 2, for the batch's pages: what each covers now, in one statement. When a
    /// segment's view is gone (since the expansion), the pages are read one by one to tell
    /// those that cannot be read (recorded `UNKNOWN_SEGMENT`) from the rest.
    pub(super) async fn resolve_pages(
        &self,
        pages: &PageQueries<'_>,
        deadline: Instant,
    ) -> Result<HashMap<(String, Page), PageDevices>, StoreError> {
        let queries: Vec<PageQuery<'_>> = pages.iter().map(|(_, q)| q.clone()).collect();
        let stale_before = self.stale_before();
        let resolved = match self.read_pages(&queries, stale_before, deadline).await {
            Err(StoreError::UnknownSegment { .. }) => {
                let mut each = Vec::with_capacity(queries.len());
                for q in &queries {
                    let one = self
                        .read_pages(std::slice::from_ref(q), stale_before, deadline)
                        .await;
                    each.push(match one {
                        Ok(mut one) => one.remove(0),
                        Err(StoreError::UnknownSegment { .. }) => PageDevices {
                            segment_missing: true,
                            ..Default::default()
                        },
                        Err(e) => return Err(e),
                    });
                }
                each
            }
            other => other?,
        };
        Ok(pages.iter().map(|(k, _)| k.clone()).zip(resolved).collect())
    }

    async fn read_pages(
        &self,
        queries: &[PageQuery<'_>],
        stale_before: Option<chrono::DateTime<chrono::Utc>>,
        deadline: Instant,
    ) -> Result<Vec<PageDevices>, StoreError> {
        let call = self.store.resolve_pages(queries, stale_before);
        self.timed("resolving audience pages", Some(deadline), call)
            .await
    }

    /// After the log is written: the batch's pages (`pages`: message id, push id, page number)
    /// whose message is not handed back are done (every target has its final row).
    pub(super) async fn record_pages_done(
        &self,
        pages: Vec<(String, String, u32)>,
        outcome: &BatchOutcome,
        lapses_at: Instant,
    ) -> Result<(), StoreError> {
        let back: std::collections::HashSet<&str> = outcome
            .failed_message_ids
            .iter()
            .map(String::as_str)
            .collect();
        let mut done: Vec<(String, u32)> = pages
            .into_iter()
            .filter(|(message, _, _)| !back.contains(message.as_str()))
            .map(|(_, push_id, n)| (push_id, n))
            .collect();
        if done.is_empty() {
            return Ok(());
        }
        done.sort();
        done.dedup();
        let call = self.store.record_pages_done(&done);
        self.timed("recording audience pages done", Some(lapses_at), call)
            .await
    }

    /// One audience push's expansion, from its cursor, until every page is written or
    /// `stop_at`.
    async fn expand(
        &self,
        e: &Envelope,
        stop_at: Instant,
        outcome: &mut BatchOutcome,
    ) -> Result<Expanded, StoreError> {
        let Target::Audience(audience) = e.push.target() else {
            return Ok(Expanded::Done);
        };
        let app = e.push.app();
        if !self.sink.has_app(app) {
            tracing::error!(push_id = %e.id, app, code = crate::sink::NO_CREDENTIALS,
                "the audience push's app has no FCM credentials; the message will be redelivered, and reach the DLQ if the key does not come");
            outcome.counts.no_credentials += 1;
            return Ok(Expanded::HandBack);
        }
        let Some(deferrer) = self.deferrer.clone() else {
            tracing::error!(push_id = %e.id, code = super::NO_DEFER_QUEUE,
                "an audience push needs a queue to write its pages to (set PUSHQ_QUEUE_URL); the message will be redelivered");
            return Ok(Expanded::HandBack);
        };
        let mut at = self
            .timed(
                "beginning an audience",
                Some(stop_at),
                self.store.begin_audience(&e.id, app, audience),
            )
            .await?;
        if at.state != AudienceState::Expanding {
            return Ok(Expanded::Done);
        }
        loop {
            if self.stopped_by_cancel(&e.id, stop_at).await? {
                return Ok(Expanded::Done);
            }
            let step = self.expansion_step(e, audience, &at, deferrer.as_ref(), stop_at, outcome);
            match step.await? {
                Step::Over => return Ok(Expanded::Done),
                Step::Refused => return Ok(Expanded::HandBack),
                Step::More(next) if Instant::now() < stop_at => at = next,
                Step::More(next) => {
                    // Out of this batch's share: the push's message again, to go on at once.
                    return Ok(self.again(e, &format!("after:{}", next.next_after)).await);
                }
            }
        }
    }

    /// Whether `cancelPush` cancelled the push: then its expansion stops (`cancelled`) at this
    /// step.
    async fn stopped_by_cancel(&self, id: &str, stop_at: Instant) -> Result<bool, StoreError> {
        let ids = [id.to_owned()];
        let cancelled = self.store.cancelled_among(&ids);
        let cancelled = self.timed("finding cancelled pushes", Some(stop_at), cancelled);
        if cancelled.await?.is_empty() {
            return Ok(false);
        }
        let end = self.store.end_audience(id, AudienceState::Cancelled, None);
        self.timed("stopping an audience", None, end).await?;
        Ok(true)
    }

    /// Writes a step's pages to the queue: false (logged) when the queue refused them.
    async fn write_pages(&self, e: &Envelope, pages: &[Page], deferrer: &dyn Deferrer) -> bool {
        if pages.is_empty() {
            return true;
        }
        let bodies = pages
            .iter()
            // The page's range is in its key: a page cut again differently (an expansion resumed
            // after devices changed) is another message, not a duplicate of the first.
            .map(|p| {
                let key = format!("page:{}:{}:{}", p.n, p.after, p.through);
                (e.with_page(*p).to_json(), key)
            })
            .collect();
        match deferrer.enqueue(&e.id, bodies).await {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(push_id = %e.id, %error, "the queue refused an audience push's pages; its message will be redelivered and go on from its last step");
                false
            }
        }
    }

    /// One step: the next pages' device ids, the pages written to the queue, the cursor moved.
    async fn expansion_step(
        &self,
        e: &Envelope,
        audience: &Audience,
        at: &AudienceRow,
        deferrer: &dyn Deferrer,
        stop_at: Instant,
        outcome: &mut BatchOutcome,
    ) -> Result<Step, StoreError> {
        let size = self.audience_page_size;
        let limit = size * PAGES_PER_STEP;
        let ids = self.store.audience_ids(
            e.push.app(),
            audience,
            at.next_after,
            limit,
            self.stale_before(),
        );
        let ids = match self.timed("reading an audience", Some(stop_at), ids).await {
            Err(StoreError::UnknownSegment { table, why }) => {
                self.unknown_segment(e, audience, &table, &why, outcome)
                    .await?;
                return Ok(Step::Over);
            }
            other => other?,
        };
        let pages = pages_of(&ids, at.next_after, at.pages, size);
        if !self.write_pages(e, &pages, deferrer).await {
            return Ok(Step::Refused);
        }
        let more = ids.len() as u32 == limit;
        let last = pages.last().map_or(at.next_after, |p| p.through);
        let state = if more {
            AudienceState::Expanding
        } else {
            AudienceState::Expanded
        };
        let moved = self.store.advance_audience(
            &e.id,
            (at.next_after, last),
            (pages.len() as u32, ids.len() as u64),
            state,
        );
        let moved = self
            .timed("moving an audience's cursor", None, moved)
            .await?;
        outcome.counts.audience_pages += pages.len();
        if !(moved && more) {
            return Ok(Step::Over);
        }
        Ok(Step::More(AudienceRow {
            next_after: last,
            pages: at.pages + pages.len() as u32,
            devices: at.devices + ids.len() as u64,
            ..at.clone()
        }))
    }

    /// An audience push whose segment has no view or table: its expansion `failed`, and one
    /// row, `audience:segment:<name>` `failed` `UNKNOWN_SEGMENT`, says so in the log.
    async fn unknown_segment(
        &self,
        e: &Envelope,
        audience: &Audience,
        table: &str,
        why: &str,
        outcome: &mut BatchOutcome,
    ) -> Result<(), StoreError> {
        tracing::error!(push_id = %e.id, table, error = why, code = UNKNOWN_SEGMENT,
            "an audience push names a segment the database has no view or table for; recorded failed, not retried");
        let target = format!("audience:{}", audience.summary());
        let failed = row(
            e,
            target,
            None,
            DeliveryStatus::Failed,
            Some(UNKNOWN_SEGMENT.to_owned()),
            0,
        );
        let claim = Claim::at(self.now(), self.statement_timeout);
        self.store
            .record_deliveries(&[failed], &claim, self.statement_timeout)
            .await?;
        let why = format!("{UNKNOWN_SEGMENT}: no view or table {table} with a user_id column");
        self.store
            .end_audience(&e.id, AudienceState::Failed, Some(&why))
            .await?;
        outcome.counts.failed += 1;
        Ok(())
    }
}

/// The pages of a step: `ids` (in order, after `after`) cut into pages of `size`, numbered on
/// from `first`. A page covers the ids after the previous page's last through its own last.
fn pages_of(ids: &[i64], after: i64, first: u32, size: u32) -> Vec<Page> {
    let mut from = after;
    ids.chunks(size.max(1) as usize)
        .enumerate()
        .map(|(k, chunk)| {
            let through = *chunk.last().expect("chunks are never empty");
            let page = Page {
                n: first + k as u32,
                after: from,
                through,
            };
            from = through;
            page
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cover_the_ids_in_order_without_gaps() {
        let ids = [3, 4, 9, 10, 11, 20, 21];
        let pages = pages_of(&ids, 2, 5, 3);
        assert_eq!(
            pages,
            vec![
                Page {
                    n: 5,
                    after: 2,
                    through: 9
                },
                Page {
                    n: 6,
                    after: 9,
                    through: 20
                },
                Page {
                    n: 7,
                    after: 20,
                    through: 21
                },
            ]
        );
        assert!(pages_of(&[], 7, 0, 3).is_empty());
    }
}

//! Audiences (mass sends): an audience push's expansion into pages, and what its pages resolve
//! to. The expansion walks the app's live devices in id order (keyset: `id > cursor ORDER BY id
//! LIMIT n`, on the `(app, id)` index), a bounded number of pages per statement; its cursor
//! and counts are one row of `pushq_audiences`, moved forward only from where the mover read
//! it, so two consumers expanding the same push (a redelivery) never both advance it. A page is
//! a range of device ids, read again when a consumer takes it: one statement for every page of
//! a batch.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use pushq_model::Audience;
use sqlx::QueryBuilder;

use super::devices::{DeviceKind, Resolved};
use super::{Pool, Store, StoreError, StoreResult};

/// Most pages one statement resolves (a `UNION ALL` of one range each).
const PAGES_PER_STATEMENT: usize = 100;

/// How far an audience push's expansion has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudienceState {
    /// Pages are being written.
    Expanding,
    /// Every page is written.
    Expanded,
    /// The audience could not be read (an unknown segment): nothing was sent.
    Failed,
    /// `cancelPush` stopped it: no page is written after it.
    Cancelled,
}

impl AudienceState {
    /// The value of the `state` column.
    pub fn as_str(self) -> &'static str {
        match self {
            AudienceState::Expanding => "expanding",
            AudienceState::Expanded => "expanded",
            AudienceState::Failed => "failed",
            AudienceState::Cancelled => "cancelled",
        }
    }

    fn parse(text: &str) -> AudienceState {
        match text {
            "expanded" => AudienceState::Expanded,
            "failed" => AudienceState::Failed,
            "cancelled" => AudienceState::Cancelled,
            _ => AudienceState::Expanding,
        }
    }
}

/// An audience push's expansion, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudienceRow {
    /// Its state.
    pub state: AudienceState,
    /// The last device id its pages cover so far (the keyset cursor; 0 before the first).
    pub next_after: i64,
    /// Pages written so far.
    pub pages: u32,
    /// Devices those pages covered when they were written.
    pub devices: u64,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

#[derive(sqlx::FromRow)]
struct Row {
    state: String,
    next_after: i64,
    pages: i32,
    devices: i64,
    error: Option<String>,
}

impl From<Row> for AudienceRow {
    fn from(r: Row) -> AudienceRow {
        AudienceRow {
            state: AudienceState::parse(&r.state),
            next_after: r.next_after,
            pages: r.pages.max(0) as u32,
            devices: r.devices.max(0) as u64,
            error: r.error,
        }
    }
}

/// One page a batch resolves: its push's app and audience, and its id range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageQuery<'a> {
    /// The push's app.
    pub app: &'a str,
    /// Its audience.
    pub audience: &'a Audience,
    /// The page covers ids after this one…
    pub after: i64,
    /// …through this one.
    pub through: i64,
}

/// What a page resolved to: its live devices seen recently enough (user id, device), in id
/// order, and how many it left out as stale.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageDevices {
    /// (user id, device).
    pub live: Vec<(String, Resolved)>,
    /// Live devices not seen since the stale time.
    pub stale: usize,
    /// The page's devices not sent to (invalidated, or stale): (user id, target), so that a
    /// redelivered page can close the rows its earlier attempt left open for them.
    pub gone: Vec<(String, String)>,
    /// The page's segment has no view or table (any more): nothing to send.
    pub segment_missing: bool,
}

/// What an audience push has become: its expansion, the pages done, and its rows counted by
/// status ([`Store::audience_progress`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudienceProgress {
    /// The expansion.
    pub expansion: AudienceRow,
    /// Pages whose every target has its final row.
    pub pages_done: u32,
    /// The push's delivery rows, counted by status.
    pub counts: BTreeMap<String, u64>,
}

impl PageDevices {
    /// One device the page's statement read: live, or stale (seen before `stale_before`).
    fn add(&mut self, r: PageRow, stale_before: Option<DateTime<Utc>>) {
        let kind = DeviceKind::parse(&r.kind).unwrap_or(DeviceKind::Token);
        let stale = stale_before.is_some_and(|t| r.last_seen_at < t);
        if r.dead != 0 || stale {
            self.stale += usize::from(r.dead == 0);
            self.gone.push((r.user_id, kind.target(&r.token)));
            return;
        }
        let device = Resolved {
            token: r.token,
            kind,
        };
        self.live.push((r.user_id, device));
    }
}

#[derive(sqlx::FromRow)]
struct PageRow {
    page_index: i64,
    user_id: String,
    token: String,
    kind: String,
    last_seen_at: DateTime<Utc>,
    dead: i64,
}

impl Store {
    /// The expansion of audience push `push_id`, begun (`expanding`, cursor 0) if it was not.
    pub async fn begin_audience(
        &self,
        push_id: &str,
        app: &str,
        audience: &Audience,
    ) -> StoreResult<AudienceRow> {
        let d = self.dialect;
        self.count();
        with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new(d.insert_ignoring_duplicates(
                "pushq_audiences (push_id, app, audience, state, created_at, updated_at)",
            ));
            q.push("VALUES (")
                .push_bind(push_id)
                .push(", ")
                .push_bind(app)
                .push(", ")
                .push_bind(audience.summary())
                .push(", ")
                .push_bind(AudienceState::Expanding.as_str())
                .push(", ")
                .push_bind(Utc::now())
                .push(", ")
                .push_bind(Utc::now())
                .push(")")
                .push(d.on_conflict_do_nothing());
            q.build().persistent(false).execute(pool).await?;
        });
        self.audience(push_id)
            .await?
            .ok_or_else(|| StoreError::Database(sqlx::Error::RowNotFound))
    }

    /// The expansion of audience push `push_id`, if it has begun.
    pub async fn audience(&self, push_id: &str) -> StoreResult<Option<AudienceRow>> {
        let d = self.dialect;
        self.count();
        let row: Option<Row> = with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new(format!(
                "SELECT {}, next_after, pages, devices, error FROM pushq_audiences WHERE push_id = ",
                d.column("state")
            ));
            q.push_bind(push_id);
            q.build_query_as()
                .persistent(false)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(AudienceRow::from))
    }

    /// The ids of the next `limit` devices of the audience after `after`, in id order: live, of
    /// `app`, seen since `stale_before`, of a segment's users. A segment without its view or
    /// table (or without a `user_id` column) is [`StoreError::UnknownSegment`].
    pub async fn audience_ids(
        &self,
        app: &str,
        audience: &Audience,
        after: i64,
        limit: u32,
        stale_before: Option<DateTime<Utc>>,
    ) -> StoreResult<Vec<i64>> {
        self.count();
        let result: Result<Vec<(i64,)>, sqlx::Error> = with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new(
                "SELECT id FROM pushq_devices WHERE invalidated_at IS NULL AND app = ",
            );
            q.push_bind(app).push(" AND id > ").push_bind(after);
            if let Some(t) = stale_before {
                q.push(" AND last_seen_at >= ").push_bind(t);
            }
            if let Some(table) = audience.segment_table() {
                q.push(format!(
                    " AND user_id IN (SELECT s.user_id FROM {table} AS s)"
                ));
            }
            q.push(" ORDER BY id LIMIT ").push_bind(i64::from(limit));
            q.build_query_as().persistent(false).fetch_all(pool).await
        });
        match result {
            Ok(ids) => Ok(ids.into_iter().map(|(id,)| id).collect()),
            Err(e) => Err(segment_error(audience, e)),
        }
    }

    /// Moves an expansion forward from `from` to `to` (the last id its new pages cover), adding
    /// their pages and devices, and sets its state; only while it is `expanding` with its cursor
    /// at `from`. False when another consumer moved it first (or it was stopped): the caller
    /// stops.
    pub async fn advance_audience(
        &self,
        push_id: &str,
        (from, to): (i64, i64),
        (pages, devices): (u32, u64),
        state: AudienceState,
    ) -> StoreResult<bool> {
        self.count();
        let affected = with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new("UPDATE pushq_audiences SET next_after = ");
            q.push_bind(to)
                .push(", pages = pages + ")
                .push_bind(i64::from(pages))
                .push(", devices = devices + ")
                .push_bind(devices as i64)
                .push(", state = ")
                .push_bind(state.as_str())
                .push(", updated_at = ")
                .push_bind(Utc::now())
                .push(" WHERE push_id = ")
                .push_bind(push_id)
                .push(" AND next_after = ")
                .push_bind(from)
                .push(" AND state = ")
                .push_bind(AudienceState::Expanding.as_str());
            q.build()
                .persistent(false)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(affected == 1)
    }

    /// Ends an expansion that is still `expanding`: `failed` (with why) or `cancelled`.
    pub async fn end_audience(
        &self,
        push_id: &str,
        state: AudienceState,
        error: Option<&str>,
    ) -> StoreResult<()> {
        self.count();
        with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new("UPDATE pushq_audiences SET state = ");
            q.push_bind(state.as_str())
                .push(", error = ")
                .push_bind(error.map(|e| e.chars().take(300).collect::<String>()))
                .push(", updated_at = ")
                .push_bind(Utc::now())
                .push(" WHERE push_id = ")
                .push_bind(push_id)
                .push(" AND state = ")
                .push_bind(AudienceState::Expanding.as_str());
            q.build().persistent(false).execute(pool).await?;
        });
        Ok(())
    }

    /// What each page resolves to now, in one statement per 100 pages (a `UNION ALL` of one
    /// keyset range each): the live devices seen since `stale_before`; the others counted and
    /// named (`gone`).
    pub async fn resolve_pages(
        &self,
        pages: &[PageQuery<'_>],
        stale_before: Option<DateTime<Utc>>,
    ) -> StoreResult<Vec<PageDevices>> {
        // SQLite takes at most 500 terms in one compound SELECT; a batch is 10 pages, but local
        // mode may deliver every page it has stored in one batch.
        let mut out = Vec::with_capacity(pages.len());
        for chunk in pages.chunks(PAGES_PER_STATEMENT) {
            out.extend(self.resolve_page_chunk(chunk, stale_before).await?);
        }
        Ok(out)
    }

    /// [`Store::resolve_pages`] for at most [`PAGES_PER_STATEMENT`] pages: one statement.
    async fn resolve_page_chunk(
        &self,
        pages: &[PageQuery<'_>],
        stale_before: Option<DateTime<Utc>>,
    ) -> StoreResult<Vec<PageDevices>> {
        let mut out = vec![PageDevices::default(); pages.len()];
        let d = self.dialect;
        self.count();
        let result: Result<Vec<PageRow>, sqlx::Error> = with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new("");
            for (i, page) in pages.iter().enumerate() {
                if i > 0 {
                    q.push(" UNION ALL ");
                }
                q.push(format!(
                    "SELECT {} AS page_index, id, {}, {}, {}, last_seen_at, {} AS dead FROM pushq_devices WHERE app = ",
                    d.integer(&i.to_string()),
                    d.column("user_id"),
                    d.column("token"),
                    d.column("kind"),
                    d.integer("CASE WHEN invalidated_at IS NULL THEN 0 ELSE 1 END"),
                ));
                q.push_bind(page.app)
                    .push(" AND id > ")
                    .push_bind(page.after)
                    .push(" AND id <= ")
                    .push_bind(page.through);
                if let Some(table) = page.audience.segment_table() {
                    q.push(format!(
                        " AND user_id IN (SELECT s.user_id FROM {table} AS s)"
                    ));
                }
            }
            q.push(" ORDER BY page_index, id");
            q.build_query_as().persistent(false).fetch_all(pool).await
        });
        let rows = result.map_err(|e| {
            match pages.iter().find(|p| p.audience.segment_table().is_some()) {
                Some(p) => segment_error(p.audience, e),
                None => StoreError::Database(e),
            }
        })?;
        for r in rows {
            if let Some(page) = out.get_mut(r.page_index.max(0) as usize) {
                page.add(r, stale_before);
            }
        }
        Ok(out)
    }

    /// Records pages whose every target reached its final row (a page done twice, by a
    /// redelivery, once).
    pub async fn record_pages_done(&self, pages: &[(String, u32)]) -> StoreResult<()> {
        let d = self.dialect;
        for chunk in pages.chunks(d.max_binds() / 3) {
            self.count();
            with_pool!(self, pool, {
                let mut q = QueryBuilder::<DB>::new(
                    d.insert_ignoring_duplicates("pushq_audience_pages (push_id, page, done_at)"),
                );
                let now = Utc::now();
                q.push_values(chunk, |mut b, (push_id, page)| {
                    b.push_bind(push_id.as_str())
                        .push_bind(i64::from(*page))
                        .push_bind(now);
                });
                q.push(d.on_conflict_do_nothing());
                q.build().persistent(false).execute(pool).await?;
            });
        }
        Ok(())
    }

    /// What an audience push has become, when it is one whose expansion began: the expansion,
    /// the pages done and its rows counted by status (never the rows themselves).
    pub async fn audience_progress(&self, push_id: &str) -> StoreResult<Option<AudienceProgress>> {
        let Some(expansion) = self.audience(push_id).await? else {
            return Ok(None);
        };
        let d = self.dialect;
        self.count();
        let (done,): (i64,) = with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new(format!(
                "SELECT {} FROM pushq_audience_pages WHERE push_id = ",
                d.integer("COUNT(*)")
            ));
            q.push_bind(push_id);
            q.build_query_as().persistent(false).fetch_one(pool).await?
        });
        self.count();
        let counts: Vec<(String, i64)> = with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new(format!(
                "SELECT {}, {} FROM pushq_deliveries WHERE push_id = ",
                d.text("status"),
                d.integer("COUNT(*)")
            ));
            q.push_bind(push_id).push(" GROUP BY status");
            q.build_query_as().persistent(false).fetch_all(pool).await?
        });
        Ok(Some(AudienceProgress {
            expansion,
            pages_done: done.max(0) as u32,
            counts: counts
                .into_iter()
                .map(|(status, n)| (status, n.max(0) as u64))
                .collect(),
        }))
    }
}

/// A statement over a segment failed: a missing view or table (or `user_id` column) is the
/// push's own error, [`StoreError::UnknownSegment`]; anything else the database's.
fn segment_error(audience: &Audience, e: sqlx::Error) -> StoreError {
    let Some(table) = audience.segment_table() else {
        return StoreError::Database(e);
    };
    let missing = match &e {
        sqlx::Error::Database(db) => {
            let code = db.code();
            let message = db.message();
            // PostgreSQL 42P01/42703, MySQL 42S02/42S22 (its SQLSTATEs), SQLite's messages.
            matches!(code.as_deref(), Some("42P01" | "42703" | "42S02" | "42S22"))
                || message.contains("no such table")
                || message.contains("no such column")
        }
        _ => false,
    };
    if missing {
        StoreError::UnknownSegment {
            table,
            why: e.to_string(),
        }
    } else {
        StoreError::Database(e)
    }
}

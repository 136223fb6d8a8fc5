//! `DeliveryLog`: what the delivery log says of a push or a user, from Node. Thin: the SQL
//! lives in pushq-delivery.

use std::time::Duration;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use pushq_delivery::store::{DeliveryStatus, PushLogState, Store};

use crate::database::{app_value, db, iso, options_json, string_arg, LazyStore};
use crate::error::{self, BindingError};
use crate::options::read;

/// Options of {@link DeliveryLog.forUser}.
#[napi(object, object_from_js = false, object_to_js = false)]
#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ForUserOptions {
    /// Only pushes enqueued at or after this time (a `Date` or an ISO-8601 string).
    #[napi(ts_type = "Date | string")]
    pub since: Option<String>,
    /// Only this app's pushes (every app's when not given).
    pub app: Option<String>,
    /// Most rows returned, oldest first (1 to 10000).
    /// @default 1000
    pub limit: Option<u32>,
}

/// One row of a user's delivery log.
#[napi(object)]
pub struct UserDeliveryRecord {
    /// The push.
    pub push_id: String,
    /// The push's app.
    pub app: String,
    /// The device (its token, or `fid:<id>`), or `user:<id>` for `no_devices`.
    pub target: String,
    /// As in {@link DeliveryRecord.status}.
    #[napi(
        ts_type = "'sent' | 'failed' | 'invalid_token' | 'no_devices' | 'expired' | 'dry_run' | 'duplicate' | 'cancelled' | 'suppressed' | 'retrying' | 'sending' | 'deferred'"
    )]
    pub status: String,
    /// FCM's error code, when not sent.
    pub error_code: Option<String>,
    /// The push's category.
    pub category: Option<String>,
    /// When the push was enqueued (ISO-8601).
    pub enqueued_at: String,
    /// When FCM accepted it (ISO-8601).
    pub sent_at: Option<String>,
    /// FCM's name for the message it accepted (`projects/<id>/messages/<n>`), when `sent`: what
    /// firebase-admin's `send()` resolved with.
    pub fcm_message_id: Option<String>,
}

/// One row of the delivery log.
#[napi(object)]
pub struct DeliveryRecord {
    /// The push's app.
    pub app: String,
    /// The device token, `fid:<id>`, `topic:<name>`, `condition:<expr>`, or `user:<id>` for
    /// `no_devices`.
    pub target: String,
    /// The user, when the push named users.
    pub user_id: Option<String>,
    /// Final: `sent`, `failed`, `invalid_token`, `no_devices`, `expired` (the push's
    /// `expiresAt`, or the deployment's `PUSHQ_MAX_PUSH_AGE_SECONDS`, had passed: not sent),
    /// `dry_run` (FCM validated a dry run and delivered nothing), `duplicate` (another push
    /// with the same idempotency key owns this target; `errorCode` is `IDEMPOTENCY_KEY_REUSED`
    /// when its payload differed), `cancelled` (`cancelPush` came first: not sent) or
    /// `suppressed` (a recipient rule refused it; `errorCode` `NO_CONSENT`, `OPTED_OUT` or
    /// `FREQUENCY_CAPPED`). Not final: `retrying` (the send failed transiently and the message
    /// was handed back for redelivery), `sending` (a consumer has claimed it and is sending it)
    /// or `deferred` (a recipient rule deferred it to the end of the user's night or quiet
    /// hours, `errorCode` `NIGHT_TIME` or `QUIET_HOURS`; it is sent then).
    #[napi(
        ts_type = "'sent' | 'failed' | 'invalid_token' | 'no_devices' | 'expired' | 'dry_run' | 'duplicate' | 'cancelled' | 'suppressed' | 'retrying' | 'sending' | 'deferred'"
    )]
    pub status: String,
    /// FCM's error code, when not sent.
    pub error_code: Option<String>,
    /// FCM requests made for this target.
    pub attempts: u32,
    /// FCM's name for the message it accepted (`projects/<id>/messages/<n>`), when `sent`: what
    /// firebase-admin's `send()` resolved with, and `sendEach()`'s `responses[i].messageId`.
    pub fcm_message_id: Option<String>,
}

/// What the delivery log knows of one push.
#[napi(object)]
pub struct PushDeliveries {
    /// The push id asked about.
    pub id: String,
    /// `delivered`: every target of the push has its final row (`deliveries`).
    /// `rejected`: its queue message was not a valid envelope (`rejectedReason` says why); it
    /// will not be delivered. `pending`: not every target is final: some are `retrying`, or a
    /// part of a split push is not recorded yet, or nothing is (the push is still on the queue,
    /// being retried, or in the dead-letter queue; the log cannot tell those apart, nor from a
    /// push that was never enqueued). `unknown`: no push can have this id (empty, over 64
    /// characters, or a pushq UUIDv7 from the future).
    /// `scheduled`: a push with `sendAt` that has not fired yet (`sendAt` says when it is due).
    /// `cancelled`: `cancelPush` cancelled it; the targets it had reached keep their rows, the
    /// others are `cancelled` once a consumer takes its copy (or have none, when none did).
    #[napi(
        ts_type = "'delivered' | 'rejected' | 'pending' | 'scheduled' | 'cancelled' | 'unknown'"
    )]
    pub state: String,
    /// The rows recorded so far, by target: one answer per target, as firebase-admin's
    /// `sendEach()` gives one response per message.
    pub deliveries: Vec<DeliveryRecord>,
    /// Targets FCM accepted (`sent`), as `sendEach()`'s `successCount`.
    pub success_count: u32,
    /// Targets that failed for good (`failed`, `invalid_token`), as `sendEach()`'s
    /// `failureCount`; targets still `retrying` are neither.
    pub failure_count: u32,
    /// Why the push's queue message was rejected, when `rejected`.
    pub rejected_reason: Option<String>,
    /// When the push is due (ISO-8601), when `scheduled`.
    pub send_at: Option<String>,
    /// For an audience push (`audience: { all: true }` or `{ segment }`): how its expansion into
    /// pages has got on and its targets counted by status; `deliveries` is then empty (an
    /// audience may be millions of devices), and `successCount` / `failureCount` come from
    /// these counts.
    pub audience: Option<AudienceDeliveries>,
}

/// What an audience push has become ({@link PushDeliveries.audience}).
#[napi(object)]
pub struct AudienceDeliveries {
    /// `expanding`: pages are still being written; `expanded`: every page is written (`pages`);
    /// `failed`: the audience could not be read (`error`; an unknown segment), nothing was
    /// sent; `cancelled`: `cancelPush` stopped it, no page was written after.
    #[napi(ts_type = "'expanding' | 'expanded' | 'failed' | 'cancelled'")]
    pub expansion: String,
    /// Pages written so far.
    pub pages: u32,
    /// Pages whose every target has its final row.
    pub pages_done: u32,
    /// Devices the written pages covered when they were written (a device invalidated since is
    /// not sent to).
    pub devices: f64,
    /// The push's targets by status (`sent`, `failed`, `invalid_token`, `cancelled`,
    /// `suppressed`, `retrying`, …): what its delivery rows say, counted.
    pub counts: std::collections::HashMap<String, u32>,
    /// Why the expansion failed, when it did.
    pub error: Option<String>,
}

/// Options of {@link DeliveryLog.waitFor}. An unknown option is `PUSHQ_INVALID_ARGUMENT`.
#[napi(object, object_from_js = false, object_to_js = false)]
#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WaitForOptions {
    /// Longest wait, in milliseconds (1 to 3,600,000); then the promise rejects with
    /// `PUSHQ_TIMEOUT`.
    /// @default 30000
    pub timeout_ms: Option<u32>,
}

impl LazyStore {
    /// What the log knows of one push.
    async fn push_deliveries(
        &self,
        store: &Store,
        id: &str,
    ) -> std::result::Result<PushDeliveries, BindingError> {
        let log = store.push_log(id).await.map_err(|e| self.database(e))?;
        let mut send_at = None;
        let (state, rejected_reason) = match log.state {
            PushLogState::Final => ("delivered", None),
            PushLogState::InProgress => ("pending", None),
            PushLogState::Rejected(reason) => ("rejected", Some(reason)),
            PushLogState::NothingRecorded if could_be_push_id(id) => ("pending", None),
            PushLogState::NothingRecorded => ("unknown", None),
            PushLogState::Scheduled(at) => {
                send_at = Some(iso(at));
                ("scheduled", None)
            }
            PushLogState::Cancelled => ("cancelled", None),
        };
        let count = |statuses: &[&str]| {
            log.deliveries
                .iter()
                .filter(|d| statuses.contains(&d.status.as_str()))
                .count() as u32
        };
        let (success, failure) = (
            [DeliveryStatus::Sent.as_str()],
            [
                DeliveryStatus::Failed.as_str(),
                DeliveryStatus::InvalidToken.as_str(),
            ],
        );
        let (mut success_count, mut failure_count) = (count(&success), count(&failure));
        let audience = log.audience.map(|a| {
            let counted = |statuses: &[&str]| {
                statuses
                    .iter()
                    .map(|s| a.counts.get(*s).copied().unwrap_or(0) as u32)
                    .sum::<u32>()
            };
            success_count = counted(&success);
            failure_count = counted(&failure);
            audience_deliveries(a)
        });
        Ok(PushDeliveries {
            id: id.to_owned(),
            state: state.to_owned(),
            deliveries: log.deliveries.into_iter().map(record).collect(),
            success_count,
            failure_count,
            rejected_reason,
            send_at,
            audience,
        })
    }
}

fn audience_deliveries(a: pushq_delivery::store::AudienceProgress) -> AudienceDeliveries {
    AudienceDeliveries {
        expansion: a.expansion.state.as_str().to_owned(),
        pages: a.expansion.pages,
        pages_done: a.pages_done,
        devices: a.expansion.devices as f64,
        counts: a
            .counts
            .into_iter()
            .map(|(status, n)| (status, n.min(u64::from(u32::MAX)) as u32))
            .collect(),
        error: a.expansion.error,
    }
}

/// An id some push could have: what an envelope may carry (1 to 64 characters, no NUL; other
/// producers may use any such id, or SQS's message id), except a UUIDv7 from the future, which
/// pushq never gives out.
pub(crate) fn could_be_push_id(id: &str) -> bool {
    if !pushq_model::envelope::is_valid_id(id) {
        return false;
    }
    let Ok(uuid) = uuid::Uuid::parse_str(id) else {
        return true;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match uuid.get_timestamp().map(|t| t.to_unix().0) {
        Some(seconds) if uuid.get_version_num() == 7 => seconds <= now + 60,
        _ => true,
    }
}

fn record(r: pushq_delivery::store::DeliveryRecord) -> DeliveryRecord {
    DeliveryRecord {
        app: r.app,
        target: r.target,
        user_id: r.user_id,
        status: r.status,
        error_code: r.error_code,
        attempts: r.attempts,
        fcm_message_id: r.fcm_message_id,
    }
}

/// Most rows {@link DeliveryLog.forUser} returns by default, and at most.
const FOR_USER_LIMIT: (u32, u32) = (1000, 10_000);

/// The options of {@link DeliveryLog.forUser}: (since, app, limit); `PUSHQ_INVALID_ARGUMENT`
/// naming a wrong one.
type UserQuery = (Option<chrono::DateTime<chrono::Utc>>, Option<String>, u32);

fn for_user_options(json: Option<&str>) -> std::result::Result<UserQuery, BindingError> {
    let bad = |why: String| BindingError::InvalidArgument(why);
    let o: ForUserOptions = read(json, "option").map_err(|e| bad(e.message("options")))?;
    let since = o
        .since
        .map(|text| {
            chrono::DateTime::parse_from_rfc3339(&text)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|_| {
                    bad(format!(
                        "options.since: must be a Date or an ISO-8601 date-time with a time zone (got {text:?})"
                    ))
                })
        })
        .transpose()?;
    let app = o.app.map(app_value).transpose()?;
    let limit = match o.limit {
        None => FOR_USER_LIMIT.0,
        Some(n) if (1..=FOR_USER_LIMIT.1).contains(&n) => n,
        Some(n) => {
            return Err(bad(format!(
                "options.limit: must be 1 to {} (got {n})",
                FOR_USER_LIMIT.1
            )))
        }
    };
    Ok((since, app, limit))
}

/// The `timeoutMs` of {@link WaitForOptions}; an unknown option or a wrong value is
/// `PUSHQ_INVALID_ARGUMENT` naming it.
fn wait_timeout(json: Option<&str>) -> std::result::Result<Duration, BindingError> {
    let bad = |why: String| BindingError::InvalidArgument(why);
    let o: WaitForOptions = read(json, "option").map_err(|e| bad(e.message("options")))?;
    match o.timeout_ms.unwrap_or(30_000) {
        ms @ 1..=3_600_000 => Ok(Duration::from_millis(u64::from(ms))),
        ms => Err(bad(format!(
            "options.timeoutMs: must be 1 to 3600000 (got {ms})"
        ))),
    }
}

/// Reads the delivery log: what happened to a push, per device.
#[napi]
pub struct DeliveryLog {
    store: LazyStore,
}

#[napi]
impl DeliveryLog {
    /// Opens the log; the database is connected on first use (see {@link DatabaseOptions}).
    /// A failed connection is tried again on the next call.
    #[napi(constructor, ts_args_type = "options?: DatabaseOptions")]
    pub fn new(env: Env, options: Option<Unknown>) -> napi::Result<Self> {
        let json = options_json(&env, options)?;
        let store = LazyStore::new(json.as_deref(), false).map_err(|e| error::to_js(&env, &e))?;
        Ok(DeliveryLog { store })
    }

    /// What happened to a user's pushes: their rows, oldest first, enqueued since `since` (all
    /// when not given), in `app` (every app when not given), at most `limit` (default 1000).
    /// What support staff ask: "did U get the message we sent on Monday?"
    #[napi(
        ts_args_type = "userId: string, options?: ForUserOptions",
        ts_return_type = "Promise<Array<UserDeliveryRecord>>"
    )]
    pub fn for_user<'env>(
        &self,
        env: &'env Env,
        user_id: Unknown,
        options: Option<Unknown>,
    ) -> napi::Result<PromiseRaw<'env, Vec<UserDeliveryRecord>>> {
        let user_id = string_arg(user_id, "userId")?;
        let json = options_json(env, options)?;
        let query = for_user_options(json.as_deref());
        self.store.call(
            env,
            move |s| async move {
                let user_id = user_id?;
                let (since, app, limit) = query?;
                s.deliveries_for_user(&user_id, since, app.as_deref(), limit)
                    .await
                    .map_err(db)
            },
            |rows| {
                rows.into_iter()
                    .map(|r| UserDeliveryRecord {
                        push_id: r.push_id,
                        app: r.app,
                        target: r.target,
                        status: r.status,
                        error_code: r.error_code,
                        category: r.category,
                        enqueued_at: iso(r.enqueued_at),
                        sent_at: r.sent_at.map(iso),
                        fcm_message_id: r.fcm_message_id,
                    })
                    .collect()
            },
        )
    }

    /// What the log knows of one push (see {@link PushDeliveries}): its rows once delivered,
    /// and otherwise whether it is pending, rejected or not a pushq push id.
    #[napi(
        ts_args_type = "pushId: string",
        ts_return_type = "Promise<PushDeliveries>"
    )]
    pub fn for_push<'env>(
        &self,
        env: &'env Env,
        push_id: Unknown,
    ) -> napi::Result<PromiseRaw<'env, PushDeliveries>> {
        let push_id = string_arg(push_id, "pushId")?;
        let lazy = self.store.clone();
        self.store.call(
            env,
            move |s| async move { lazy.push_deliveries(&s, &push_id?).await },
            |answer| answer,
        )
    }

    /// Waits until every target of the push has its final row, and resolves with them
    /// (`delivered`), or with `rejected` when its message was not a valid envelope.
    /// Rejects with `PUSHQ_TIMEOUT` after `timeoutMs` (default 30,000), and at once with
    /// `PUSHQ_INVALID_ARGUMENT` for an id no push can have (state `unknown`). The log is
    /// read every 20 ms at first, then less often, up to every second.
    #[napi(
        ts_args_type = "pushId: string, options?: WaitForOptions",
        ts_return_type = "Promise<PushDeliveries>"
    )]
    pub fn wait_for<'env>(
        &self,
        env: &'env Env,
        push_id: Unknown,
        options: Option<Unknown>,
    ) -> napi::Result<PromiseRaw<'env, PushDeliveries>> {
        let push_id = string_arg(push_id, "pushId")?;
        let json = options_json(env, options)?;
        // A bad option rejects the promise, as every other failure here does.
        let timeout = wait_timeout(json.as_deref());
        let lazy = self.store.clone();
        self.store.call(
            env,
            move |s| async move {
                let push_id = push_id?;
                let timeout = timeout?;
                let deadline = tokio::time::Instant::now() + timeout;
                let mut pause = Duration::from_millis(20);
                loop {
                    let answer = lazy.push_deliveries(&s, &push_id).await?;
                    match answer.state.as_str() {
                        "delivered" | "rejected" | "cancelled" => return Ok(answer),
                        "unknown" => {
                            return Err(BindingError::InvalidArgument(format!(
                                "pushId: {push_id:?} cannot be a push id (enqueuePush resolves with {{ id }}, a UUIDv7; ids are 1 to 64 characters)"
                            )))
                        }
                        _ => {}
                    }
                    if tokio::time::Instant::now() + pause > deadline {
                        return Err(BindingError::Timeout(format!(
                            "push {push_id} has no final delivery after {} ms: it is still on the queue, being retried, or in the dead-letter queue",
                            timeout.as_millis()
                        )));
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            },
            |answer| answer,
        )
    }
}

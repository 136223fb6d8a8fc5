//! What the engine made of a batch: the messages to hand back and the counts, and the one log
//! line per batch that the Lambda and `pushq worker` share. Metrics read it; the engine fills it.

/// Counts for one batch, for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchCounts {
    /// Messages in the batch.
    pub messages: usize,
    /// Targets FCM accepted.
    pub sent: usize,
    /// Targets that failed for good.
    pub failed: usize,
    /// Targets whose token was dead (now invalidated).
    pub invalid_tokens: usize,
    /// Users without a live device.
    pub no_devices: usize,
    /// Targets not sent by this batch for one of three reasons, each counted below:
    /// `repeated + already_final + duplicates`.
    pub skipped: usize,
    /// Targets the batch named again (the same message delivered twice, a token listed twice):
    /// planned once.
    pub repeated: usize,
    /// Targets the log already had final (a redelivery): left as they are.
    pub already_final: usize,
    /// Targets whose idempotency key another push owns (`duplicate` rows).
    pub duplicates: usize,
    /// Extra FCM attempts made by retries.
    pub retried: usize,
    /// Targets that still failed transiently (their messages are reported as failures).
    pub transient: usize,
    /// Messages that were not valid envelopes.
    pub rejected: usize,
    /// Messages from a newer producer (an envelope version or push field this build does not
    /// know), handed back for redelivery.
    pub newer: usize,
    /// Targets of dry runs that FCM validated (nothing delivered).
    pub dry_runs: usize,
    /// Targets not sent because the FCM project's quota throttle outlasted the batch (their
    /// messages are handed back).
    pub throttled: usize,
    /// Targets not sent because another consumer's claim held them (their messages are handed
    /// back).
    pub busy: usize,
    /// Targets whose previous claim had lapsed (its consumer died or overran) and were taken
    /// over: each may have been sent already, so each may be a duplicate.
    pub taken_over: usize,
    /// `duplicate` rows whose push reused an idempotency key with a different payload.
    pub key_reused: usize,
    /// Targets not sent because their push's time had passed (`expired` rows).
    pub expired: usize,
    /// Live devices of the batch's users not resolved because they were not seen for the stale
    /// age (`PUSHQ_STALE_DEVICE_DAYS`).
    pub stale_devices: usize,
    /// Messages whose push names an app the deployment has no FCM key for, handed back whole
    /// (each target it names recorded `retrying`, `NO_CREDENTIALS_FOR_APP`).
    pub no_credentials: usize,
    /// Rows an earlier attempt left open that can no longer become final (the device was
    /// unregistered, went stale or changed user before the retry), closed `failed` with
    /// `DEVICE_GONE`.
    pub closed: usize,
    /// Scheduled pushes (`sendAt`) that fired: their messages taken at or after their time.
    pub scheduled_fired: usize,
    /// Scheduled pushes whose copy came before their time and was handed back, too early to
    /// wait for within the batch.
    pub scheduled_early: usize,
    /// Targets not sent because their push was cancelled (`cancelled` rows).
    pub cancelled: usize,
    /// Targets a recipient rule suppressed (`suppressed`).
    pub suppressed: usize,
    /// Targets a recipient rule deferred (`deferred`), enqueued again for later.
    pub deferred: usize,
    /// Messages that were topic changes (`DeviceRegistry.subscribe` and the like).
    pub topic_changes: usize,
    /// Topic calls FCM accepted (a token subscribed or unsubscribed).
    pub topic_calls: usize,
    /// Audience pages written to the queue by the batch's expansions of audience pushes.
    pub audience_pages: usize,
    /// Topic calls that failed for good (a dead token, now invalidated, or FCM refusing the
    /// token, e.g. `TOO_MANY_TOPICS`).
    pub topic_failed: usize,
}

/// The counts of one app (Firebase project) in a batch: what the metrics' `App` dimension
/// carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppCounts {
    /// Targets FCM accepted.
    pub sent: usize,
    /// Targets that failed for good.
    pub failed: usize,
    /// Targets whose token was dead.
    pub invalid_tokens: usize,
    /// Targets not sent because their push's time had passed.
    pub expired: usize,
    /// Targets not sent because the project's quota throttle outlasted the batch.
    pub throttled: usize,
    /// Targets handed back for redelivery (transient trouble, the deployment's), and messages
    /// handed back whole because the app has no key.
    pub handed_back: usize,
    /// Devices skipped as stale.
    pub stale_devices: usize,
    /// Enqueue-to-send latency of each target sent, in milliseconds.
    pub send_latency_ms: Vec<u64>,
    /// Targets the recipient rules held back, by metric (`Suppressed`, `Deferred`) and reason
    /// (`NO_CONSENT`, `OPTED_OUT`, `FREQUENCY_CAPPED`, `NIGHT_TIME`, `QUIET_HOURS`).
    pub held_back: std::collections::BTreeMap<(&'static str, String), usize>,
}

impl AppCounts {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: AppCounts) {
        self.sent += other.sent;
        self.failed += other.failed;
        self.invalid_tokens += other.invalid_tokens;
        self.expired += other.expired;
        self.throttled += other.throttled;
        self.handed_back += other.handed_back;
        self.stale_devices += other.stale_devices;
        self.send_latency_ms.extend(other.send_latency_ms);
        for (k, n) in other.held_back {
            *self.held_back.entry(k).or_default() += n;
        }
    }
}

/// What the engine made of a batch.
#[derive(Debug, Clone, Default)]
pub struct BatchOutcome {
    /// Message ids to report as batch item failures (SQS redelivers them).
    pub failed_message_ids: Vec<String>,
    /// Counts for logs and metrics.
    pub counts: BatchCounts,
    /// The counts per app (the metrics' `App` dimension).
    pub apps: std::collections::BTreeMap<String, AppCounts>,
    /// Enqueue-to-send latency of each target FCM accepted in this batch, in milliseconds.
    pub send_latency_ms: Vec<u64>,
    /// The ids of the pushes in the batch (valid envelopes only).
    pub push_ids: Vec<String>,
}

impl BatchOutcome {
    /// The one log line per batch (JSON through the caller's subscriber), the same for the
    /// Lambda and the worker.
    pub fn log(&self, duration: std::time::Duration) {
        let c = &self.counts;
        tracing::info!(
            batch_size = c.messages,
            sent = c.sent,
            failed = c.failed,
            invalid_tokens = c.invalid_tokens,
            no_devices = c.no_devices,
            skipped = c.skipped,
            repeated = c.repeated,
            already_final = c.already_final,
            duplicates = c.duplicates,
            retried = c.retried,
            rejected = c.rejected,
            newer = c.newer,
            dry_runs = c.dry_runs,
            throttled = c.throttled,
            claimed_elsewhere = c.busy,
            claims_taken_over = c.taken_over,
            key_reused = c.key_reused,
            expired = c.expired,
            stale_devices = c.stale_devices,
            no_credentials = c.no_credentials,
            closed = c.closed,
            scheduled_fired = c.scheduled_fired,
            scheduled_early = c.scheduled_early,
            cancelled = c.cancelled,
            suppressed = c.suppressed,
            deferred = c.deferred,
            topic_changes = c.topic_changes,
            topic_calls = c.topic_calls,
            topic_failed = c.topic_failed,
            audience_pages = c.audience_pages,
            redelivered = self.failed_message_ids.len(),
            duration_ms = duration.as_millis() as u64,
            push_ids = %self.push_ids.join(","),
            "batch done"
        );
    }
}

impl BatchCounts {
    /// Adds `other`'s counts to these. Every field is named, so that a new counter cannot be
    /// forgotten here.
    pub fn add(&mut self, other: &BatchCounts) {
        /// Destructures `other` naming every field (no `..`), then adds each.
        macro_rules! add_all {
            ($($field:ident),* $(,)?) => {{
                let BatchCounts { $($field),* } = other;
                $(self.$field += $field;)*
            }};
        }
        add_all!(
            messages,
            sent,
            failed,
            invalid_tokens,
            no_devices,
            skipped,
            repeated,
            already_final,
            duplicates,
            retried,
            transient,
            rejected,
            newer,
            dry_runs,
            throttled,
            busy,
            taken_over,
            key_reused,
            expired,
            stale_devices,
            no_credentials,
            closed,
            scheduled_fired,
            scheduled_early,
            cancelled,
            suppressed,
            deferred,
            topic_changes,
            topic_calls,
            topic_failed,
            audience_pages,
        );
    }
}

impl BatchOutcome {
    /// Adds the outcome of another part of the same batch (a round of a FIFO batch) to this one.
    pub fn absorb(&mut self, part: BatchOutcome) {
        let BatchOutcome {
            failed_message_ids,
            counts,
            apps,
            send_latency_ms,
            push_ids,
        } = part;
        self.failed_message_ids.extend(failed_message_ids);
        self.counts.add(&counts);
        for (app, counts) in apps {
            self.apps.entry(app).or_default().add(counts);
        }
        self.send_latency_ms.extend(send_latency_ms);
        self.push_ids.extend(push_ids);
    }
}

//! Pushes scheduled beyond SQS's delay (`sendAt` more than 900 s ahead, or any `sendAt` on a
//! FIFO queue): one Amazon EventBridge Scheduler one-time schedule per queue message, in its
//! own group, named after the push id, whose target is the queue and whose input is the
//! envelope; deleted by the scheduler once it has fired (`ActionAfterCompletion: DELETE`).
//!
//! Each scheduled push is also written down ([`ScheduleBook`]: the deployment's database) before
//! its schedule is created, so that `cancelPush` and `DeliveryLog.forPush` find it.
//! API: <https://docs.aws.amazon.com/scheduler/latest/APIReference/API_CreateSchedule.html>

use std::sync::Arc;
use std::time::Instant;

use aws_sdk_scheduler::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_scheduler::types::{
    ActionAfterCompletion, FlexibleTimeWindow, FlexibleTimeWindowMode, SqsParameters, Target,
};
use futures::StreamExt;
use tokio::sync::OnceCell;

use crate::aws::{root_cause, shared_config, SqsSettings};
use crate::config::ProducerConfig;
use crate::error::{Error, Result};
use crate::transport::BoxFuture;

/// A scheduled push as it is written down: what `cancelPush` and `DeliveryLog` read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Booking {
    /// The push id (also the schedule's name).
    pub push_id: String,
    /// The push's app.
    pub app: String,
    /// The push's target as the delivery log names it (`user:<id>`, a token, `topic:<name>`…;
    /// `userIds[3]` for a list).
    pub target: String,
    /// When it is due, in epoch milliseconds.
    pub send_at_ms: i64,
}

/// Where scheduled pushes are written down (the binding keeps them in the deployment's
/// database, `pushq_scheduled`).
pub trait ScheduleBook: Send + Sync + 'static {
    /// Writes a scheduled push down (again, harmlessly, for the same push id).
    fn book<'a>(&'a self, booking: &'a Booking) -> BoxFuture<'a, Result<()>>;
    /// Forgets a push whose schedule could not be created.
    fn unbook<'a>(&'a self, push_id: &'a str) -> BoxFuture<'a, Result<()>>;
}

/// One scheduled push on its way to the scheduler: its booking and its queue messages (body,
/// FIFO message group).
pub(crate) struct Scheduled {
    pub booking: Booking,
    /// What its schedules are named after: the push id, or a deferral's own name
    /// ([`deferral_name`]).
    pub name: String,
    pub parts: Vec<(String, Option<String>)>,
}

/// Creates and deletes the schedules of one queue.
pub struct Scheduler {
    config: ProducerConfig,
    book: Option<Arc<dyn ScheduleBook>>,
    /// Whether a push is scheduled only once written down in `book` (a client's pushes, which
    /// `cancelPush` and `DeliveryLog` look up); the consumer's deferrals are not: their
    /// `deferred` rows say where they are.
    needs_book: bool,
    /// The client, and the queue's ARN (the schedules' target).
    client: OnceCell<(aws_sdk_scheduler::Client, String)>,
}

impl Scheduler {
    /// A scheduler for the queue of `config`, writing scheduled pushes down in `book`.
    pub fn new(config: ProducerConfig, book: Option<Arc<dyn ScheduleBook>>) -> Arc<Scheduler> {
        Arc::new(Scheduler {
            config,
            book,
            needs_book: true,
            client: OnceCell::new(),
        })
    }

    /// The consumer's scheduler: what the recipient rules defer beyond 900 s, written down
    /// nowhere but in the schedule (the delivery log's `deferred` rows say where it is).
    pub fn for_deferrals(config: ProducerConfig) -> Arc<Scheduler> {
        Arc::new(Scheduler {
            config,
            book: None,
            needs_book: false,
            client: OnceCell::new(),
        })
    }

    /// What a push scheduled beyond SQS's delay needs and this deployment lacks, as the error
    /// its `enqueuePush` rejects with at once.
    pub(crate) fn missing(&self) -> Option<Error> {
        if self.config.scheduler_role_arn.is_none() {
            return Some(Error::Config(
                "schedulerRoleArn: not set (option schedulerRoleArn or PUSHQ_SCHEDULER_ROLE_ARN): a push with sendAt more than 900 s ahead is an EventBridge Scheduler schedule, which sends to the queue with that role (the SAM template's SchedulerRoleArn output)".into(),
            ));
        }
        if self.book.is_none() && self.needs_book {
            return Some(Error::Config(
                "databaseUrl: not set (option databaseUrl or DATABASE_URL): a push with sendAt more than 900 s ahead is written down in the deployment's database, where cancelPush and DeliveryLog find it".into(),
            ));
        }
        None
    }

    async fn client(&self) -> Result<&(aws_sdk_scheduler::Client, String)> {
        self.client
            .get_or_try_init(|| async {
                let settings = SqsSettings {
                    region: self.config.region.clone(),
                    endpoint_url: self.config.scheduler_endpoint_url.clone(),
                    queue_url: self.config.queue_url.clone(),
                    ..SqsSettings::default()
                };
                let shared = shared_config(&settings, "EventBridge Scheduler").await?;
                let queue_url = self.config.queue_url.as_deref().unwrap_or_default();
                let region = shared.region().map(|r| r.to_string()).unwrap_or_default();
                let arn = queue_arn(queue_url, &region).ok_or_else(|| {
                    Error::Config(format!(
                        "queueUrl: {queue_url:?} is not an SQS queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>): the schedule's target needs the queue's ARN"
                    ))
                })?;
                Ok((aws_sdk_scheduler::Client::new(&shared), arn))
            })
            .await
    }

    /// Writes the push down, then creates one schedule per queue message, all by `deadline`.
    /// A schedule that exists already under the name (the same push enqueued again with its
    /// `id`) counts as created. When creation fails for sure, the booking is taken back and the
    /// push is not scheduled; when the scheduler's answer never came, the push may be scheduled
    /// (`Error::QueueUnknown`: enqueue it again with the same id).
    pub(crate) async fn schedule(&self, push: Scheduled, deadline: Instant) -> Result<()> {
        let left = || deadline.saturating_duration_since(Instant::now());
        if let Some(e) = self.missing() {
            return Err(e);
        }
        if let Some(book) = &self.book {
            tokio::time::timeout(left(), book.book(&push.booking))
                .await
                .map_err(|_| {
                    Error::database("writing the scheduled push down timed out", None)
                })??;
        }
        let created = tokio::time::timeout(left(), self.create_all(&push))
            .await
            .unwrap_or_else(|_| {
                Err(Error::QueueUnknown {
                    message: format!(
                        "EventBridge Scheduler did not answer before the push's deadline: push {} may be scheduled",
                        push.booking.push_id
                    ),
                    push_id: Some(push.booking.push_id.clone()),
                })
            });
        if let Err(e @ (Error::Config(_) | Error::Queue { .. })) = &created {
            // Scheduled for sure not (or only in part, which a retry with the id completes).
            if let Some(book) = &self.book {
                let _ = book.unbook(&push.booking.push_id).await;
            }
            return Err(e.clone());
        }
        if created.is_ok() {
            self.count("ScheduledCreated", push.parts.len());
        }
        created
    }

    /// With `PUSHQ_PRODUCER_METRICS=emf`, one CloudWatch Embedded Metric Format line on stdout
    /// (dimension `Service` = `pushq-producer`): the servers' side of the scheduled-push
    /// metrics, beside the consumer's `ScheduledFired` and `Cancelled`.
    fn count(&self, metric: &str, n: usize) {
        let Some(namespace) = &self.config.metrics_namespace else {
            return;
        };
        let line = serde_json::json!({
            "_aws": {
                "Timestamp": chrono::Utc::now().timestamp_millis(),
                "CloudWatchMetrics": [{
                    "Namespace": namespace,
                    "Dimensions": [["Service"]],
                    "Metrics": [{"Name": metric, "Unit": "Count"}],
                }],
            },
            "Service": "pushq-producer",
            metric: n,
        });
        println!("{line}");
    }

    async fn create_all(&self, push: &Scheduled) -> Result<()> {
        let (client, queue_arn) = self.client().await?;
        let role = self.config.scheduler_role_arn.clone().unwrap_or_default();
        let at = chrono::DateTime::from_timestamp_millis(push.booking.send_at_ms)
            .unwrap_or_default()
            .format("at(%Y-%m-%dT%H:%M:%S)")
            .to_string();
        for (i, (body, group_id)) in push.parts.iter().enumerate() {
            let name = schedule_name(&push.name, i);
            let target = Target::builder()
                .arn(queue_arn)
                .role_arn(&role)
                .input(body)
                .set_sqs_parameters(
                    group_id
                        .as_ref()
                        .map(|g| SqsParameters::builder().message_group_id(g).build()),
                )
                .build()
                .map_err(|e| Error::Config(format!("schedule target: {e}")))?;
            let sent = client
                .create_schedule()
                .name(&name)
                .group_name(&self.config.schedule_group)
                .schedule_expression(&at)
                .schedule_expression_timezone("UTC")
                .flexible_time_window(
                    FlexibleTimeWindow::builder()
                        .mode(FlexibleTimeWindowMode::Off)
                        .build()
                        .map_err(|e| Error::Config(format!("schedule window: {e}")))?,
                )
                .action_after_completion(ActionAfterCompletion::Delete)
                .client_token(&name)
                .target(target)
                .send()
                .await;
            match sent {
                Ok(_) => {}
                // The same push enqueued again with its id: its schedule is there.
                Err(e) if e.code() == Some("ConflictException") => {}
                Err(e) => return Err(self.error(e, &push.booking.push_id, "creating")),
            }
        }
        Ok(())
    }

    /// Deletes a push's schedules that have not fired; true when there was one.
    pub async fn cancel(&self, push_id: &str, deadline: Instant) -> Result<bool> {
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::timeout(left, self.delete_all(push_id))
            .await
            .unwrap_or_else(|_| {
                Err(Error::QueueUnknown {
                    message: format!(
                        "EventBridge Scheduler did not answer in time: push {push_id}'s schedule may not be deleted"
                    ),
                    push_id: Some(push_id.to_owned()),
                })
            })
    }

    async fn delete_all(&self, push_id: &str) -> Result<bool> {
        let deleted = self.delete_each(push_id).await?;
        if deleted > 0 {
            self.count("ScheduledDeleted", deleted);
        }
        Ok(deleted > 0)
    }

    /// Deletes a push's schedules; how many there were.
    async fn delete_each(&self, push_id: &str) -> Result<usize> {
        let (client, _) = self.client().await?;
        let group = &self.config.schedule_group;
        // Every page first (a push deferred for many users to many minutes has a schedule for
        // each), then the deletes, so that none shifts a page not yet read.
        let mut pages = client
            .list_schedules()
            .group_name(group)
            .name_prefix(push_id)
            .max_results(100)
            .into_paginator()
            .send();
        let mut names = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error(e, push_id, "listing"))?;
            let of_push = page.schedules().iter().filter_map(|s| s.name());
            names.extend(
                of_push
                    .filter(|n| is_schedule_of(n, push_id))
                    .map(str::to_owned),
            );
        }
        // A few at a time (hundreds deleted one by one could outlast the call's deadline), each
        // owning its name and a clone of the client: futures over borrowed names are not `Send`
        // for every lifetime, as the Node addon's runtime needs.
        let deletes = names.into_iter().map(|name| {
            let client = client.clone();
            async move {
                let deleted = client
                    .delete_schedule()
                    .name(&name)
                    .group_name(group)
                    .send()
                    .await;
                match deleted {
                    Ok(_) => Ok(1),
                    // Fired (and deleted by the scheduler) meanwhile.
                    Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(0),
                    Err(e) => Err(self.error(e, push_id, "deleting")),
                }
            }
        });
        let mut deletes = futures::stream::iter(deletes).buffer_unordered(DELETES_AT_ONCE);
        let mut deleted = 0;
        while let Some(one) = deletes.next().await {
            deleted += one?;
        }
        Ok(deleted)
    }

    fn error<E, R>(&self, e: SdkError<E, R>, push_id: &str, doing: &str) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let group = &self.config.schedule_group;
        match &e {
            SdkError::ServiceError(service) => {
                let code = service.err().code().map(str::to_owned);
                let said = service.err().message().unwrap_or_default().to_owned();
                match code.as_deref() {
                    Some("ResourceNotFoundException") if doing != "deleting" => Error::Config(format!(
                        "EventBridge Scheduler: schedule group {group:?} does not exist (the SAM template creates it; or set scheduleGroup / PUSHQ_SCHEDULE_GROUP): {said}"
                    )),
                    Some("InternalServerException" | "ThrottlingException") => Error::QueueUnknown {
                        message: format!("EventBridge Scheduler failed while {doing} the schedule of push {push_id}: {said}"),
                        push_id: Some(push_id.to_owned()),
                    },
                    _ => Error::Queue {
                        message: format!(
                            "EventBridge Scheduler refused {doing} the schedule of push {push_id} in group {group:?}: {}: {said}",
                            code.as_deref().unwrap_or("error")
                        ),
                        aws_code: code,
                        cause: None,
                    },
                }
            }
            SdkError::ConstructionFailure(_) => Error::Config(format!(
                "EventBridge Scheduler: the request could not be built: {}",
                root_cause(&e)
            )),
            // A timeout, a dropped connection, an unreadable answer: it may have happened.
            _ => Error::QueueUnknown {
                message: format!(
                    "EventBridge Scheduler's answer to {doing} the schedule of push {push_id} never came: {}",
                    root_cause(&e)
                ),
                push_id: Some(push_id.to_owned()),
            },
        }
    }
}

/// The schedule of a push's `part` (0-based): the push id, then `<id>.2`, `<id>.3`… for the
/// further parts of a split push.
pub fn schedule_name(push_id: &str, part: usize) -> String {
    match part {
        0 => push_id.to_owned(),
        n => format!("{push_id}.{}", n + 1),
    }
}

/// The schedule name of a push's part deferred by the consumer until `until_ms` for `users` (a
/// recipient's night-time or quiet-hours window): the same users of the same push deferred again
/// to the same time (a batch delivered twice) name the schedule that exists, and make no second
/// one; other users of it, deferred to the same minute by a later delivery, get a schedule of
/// their own. At most 64 characters for a pushq push id (a UUID):
/// `<id>.p<part>.<minutes since the epoch>.<hash of the users>`.
pub fn deferral_name(push_id: &str, part: u32, until_ms: i64, users: &[String]) -> String {
    let mut sorted: Vec<&str> = users.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    // FNV-1a: stable across builds and platforms (std's hasher is not).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in sorted.join("\n").bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    format!(
        "{push_id}.p{part}.{}.{:08x}",
        until_ms / 60_000,
        hash as u32
    )
}

/// Whether `name` is one of the push's schedules: its own (`<id>`, `<id>.2`, …) or a
/// deferral's (`<id>.p…`), which `cancelPush` deletes too.
fn is_schedule_of(name: &str, push_id: &str) -> bool {
    name == push_id
        || name
            .strip_prefix(push_id)
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|n| n.parse::<u32>().is_ok() || is_deferral(n))
}

/// `p<part>.<minute>.<hash>`: the tail of a [`deferral_name`].
fn is_deferral(tail: &str) -> bool {
    let mut parts = tail.split('.');
    let (Some(part), Some(minute), Some(hash), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    part.strip_prefix('p')
        .is_some_and(|p| p.parse::<u32>().is_ok())
        && minute.parse::<i64>().is_ok()
        && hash.len() == 8
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The ARN of the queue at `queue_url` (`…/<account>/<name>`) in `region`.
pub fn queue_arn(queue_url: &str, region: &str) -> Option<String> {
    let url = url::Url::parse(queue_url).ok()?;
    let mut path = url.path_segments()?.filter(|s| !s.is_empty());
    let (account, name) = (path.next()?, path.next()?);
    if path.next().is_some() || region.is_empty() {
        return None;
    }
    let partition = if url.host_str()?.ends_with(".amazonaws.com.cn") {
        "aws-cn"
    } else {
        "aws"
    };
    Some(format!("arn:{partition}:sqs:{region}:{account}:{name}"))
}

/// A push's schedules deleted at once by `cancelPush`: well under the scheduler's DeleteSchedule
/// rate (1,000 a second by default in the main regions, 250 in the others).
const DELETES_AT_ONCE: usize = 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_url_becomes_its_arn() {
        assert_eq!(
            queue_arn(
                "https://sqs.ap-northeast-2.amazonaws.com/123456789012/pushq",
                "ap-northeast-2"
            )
            .as_deref(),
            Some("arn:aws:sqs:ap-northeast-2:123456789012:pushq")
        );
        assert_eq!(
            queue_arn("http://127.0.0.1:5000/123456789012/q.fifo", "us-east-1").as_deref(),
            Some("arn:aws:sqs:us-east-1:123456789012:q.fifo")
        );
        assert_eq!(queue_arn("http://127.0.0.1:5000/q", "us-east-1"), None);
        assert_eq!(queue_arn("http://h/1/q", ""), None);
    }

    #[test]
    fn the_parts_of_a_push_are_named_after_it() {
        let id = "0193a0c4-7b7e-7c3e-9d4e-1f2a3b4c5d6e";
        assert_eq!(schedule_name(id, 0), id);
        assert_eq!(schedule_name(id, 1), format!("{id}.2"));
        assert!(is_schedule_of(&schedule_name(id, 2), id));
        let users = ["b".to_owned(), "a".to_owned()];
        let deferral = deferral_name(id, 3, 1_796_000_000_000, &users);
        assert!(deferral.len() <= 64, "{deferral}");
        assert!(is_schedule_of(&deferral, id));
        // The same users in another order: the same schedule; other users: another one.
        assert_eq!(
            deferral,
            deferral_name(id, 3, 1_796_000_000_000, &["a".into(), "b".into()])
        );
        assert_ne!(
            deferral,
            deferral_name(id, 3, 1_796_000_000_000, &["a".into()])
        );
        assert!(!is_schedule_of(&format!("{id}.p3.x.00000000"), id));
        assert!(is_schedule_of(id, id));
        assert!(!is_schedule_of(&format!("{id}0"), id));
        assert!(!is_schedule_of(&format!("{id}.x"), id));
    }
}

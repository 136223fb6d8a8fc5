//! CloudWatch Embedded Metric Format (EMF) lines for a delivered batch.
//!
//! The Lambda and `pushq worker` print these on stdout after each batch; CloudWatch Logs turns
//! them into metrics without any API call. The counters are the ones of the batch log line,
//! with the dimension `Service`; then, for each app (Firebase project) of the batch, a line with
//! the dimensions `Service` and `App` ([`APP_METRICS`]), which the SAM template's dashboard
//! shows.
//! Spec: <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>

use std::time::Duration;

use crate::outcome::{AppCounts, BatchOutcome};

pub use crate::config::DEFAULT_NAMESPACE;

/// EMF takes at most 100 values per metric per line; more latencies go on further lines.
const MAX_VALUES: usize = 100;

/// The counters, in the order they are declared: (metric name, value).
fn counters(outcome: &BatchOutcome, duration: Duration) -> Vec<(&'static str, &'static str, u64)> {
    let c = &outcome.counts;
    vec![
        ("Messages", "Count", c.messages as u64),
        ("Sent", "Count", c.sent as u64),
        ("Failed", "Count", c.failed as u64),
        ("InvalidTokens", "Count", c.invalid_tokens as u64),
        ("Retried", "Count", c.retried as u64),
        (
            "Redelivered",
            "Count",
            outcome.failed_message_ids.len() as u64,
        ),
        ("Rejected", "Count", c.rejected as u64),
        ("Throttled", "Count", c.throttled as u64),
        ("ClaimedElsewhere", "Count", c.busy as u64),
        ("ClaimsTakenOver", "Count", c.taken_over as u64),
        ("KeyReused", "Count", c.key_reused as u64),
        ("Expired", "Count", c.expired as u64),
        ("StaleDevices", "Count", c.stale_devices as u64),
        ("ScheduledFired", "Count", c.scheduled_fired as u64),
        ("ScheduledEarly", "Count", c.scheduled_early as u64),
        ("Cancelled", "Count", c.cancelled as u64),
        ("Suppressed", "Count", c.suppressed as u64),
        ("Deferred", "Count", c.deferred as u64),
        ("TopicCalls", "Count", c.topic_calls as u64),
        ("TopicCallsFailed", "Count", c.topic_failed as u64),
        ("AudiencePages", "Count", c.audience_pages as u64),
        ("BatchDuration", "Milliseconds", duration.as_millis() as u64),
    ]
}

/// The metrics of each app's line (dimensions `Service`, `App`), besides its
/// `EnqueueToSendLatency` values.
pub const APP_METRICS: [&str; 7] = [
    "Sent",
    "Failed",
    "InvalidTokens",
    "Expired",
    "Throttled",
    "HandedBack",
    "StaleDevices",
];

fn app_counters(c: &AppCounts) -> [u64; 7] {
    [
        c.sent as u64,
        c.failed as u64,
        c.invalid_tokens as u64,
        c.expired as u64,
        c.throttled as u64,
        c.handed_back as u64,
        c.stale_devices as u64,
    ]
}

/// The EMF lines for one batch: the first carries every counter, the batch duration and up
/// to 100 enqueue-to-send latencies; further lines carry the remaining latencies.
/// `service` is the one dimension (`pushq-lambda`, `pushq-worker`).
pub fn emf_lines(
    outcome: &BatchOutcome,
    duration: Duration,
    namespace: &str,
    service: &str,
    timestamp_ms: i64,
) -> Vec<String> {
    emf_lines_with(outcome, duration, namespace, service, timestamp_ms, &[])
}

/// [`emf_lines`] with the caller's own counters (`pushq worker`'s deletes) on the first line.
pub fn emf_lines_with(
    outcome: &BatchOutcome,
    duration: Duration,
    namespace: &str,
    service: &str,
    timestamp_ms: i64,
    extra: &[(&'static str, u64)],
) -> Vec<String> {
    let extra = extra.iter().map(|&(name, value)| (name, "Count", value));
    let counters: Vec<_> = counters(outcome, duration)
        .into_iter()
        .chain(extra)
        .collect();
    let mut lines = lines_of(
        &[("Service", service)],
        &counters,
        &outcome.send_latency_ms,
        namespace,
        timestamp_ms,
    );
    for (app, counts) in &outcome.apps {
        let counters: Vec<_> = APP_METRICS
            .iter()
            .zip(app_counters(counts))
            .map(|(name, value)| (*name, "Count", value))
            .collect();
        lines.extend(lines_of(
            &[("Service", service), ("App", app)],
            &counters,
            &counts.send_latency_ms,
            namespace,
            timestamp_ms,
        ));
        // The recipient rules' counts, per reason (dimensions `Service`, `App`, `Reason`).
        for ((metric, reason), n) in &counts.held_back {
            lines.extend(lines_of(
                &[("Service", service), ("App", app), ("Reason", reason)],
                &[(metric, "Count", *n as u64)],
                &[],
                namespace,
                timestamp_ms,
            ));
        }
    }
    lines
}

/// The lines of one dimension set: the counters and up to 100 latencies on the first, further
/// latencies after. Each line is serialised from the borrowed values as it is written (no JSON
/// tree is built: this runs once per batch and app, on the Lambda's hot path).
fn lines_of(
    dimensions: &[(&str, &str)],
    counters: &[(&'static str, &'static str, u64)],
    latency: &[u64],
    namespace: &str,
    timestamp_ms: i64,
) -> Vec<String> {
    let mut chunks: Vec<&[u64]> = latency.chunks(MAX_VALUES).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    let names: Vec<&str> = dimensions.iter().map(|(name, _)| *name).collect();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, values)| {
            let line = Line {
                dimensions,
                counters: if i == 0 { counters } else { &[] },
                latency: values,
                names: &names,
                namespace,
                timestamp_ms,
            };
            serde_json::to_string(&line).expect("an EMF line always serializes")
        })
        .collect()
}

/// One EMF line: the dimensions' values, the counters' values, the latencies, then `_aws`
/// declaring them.
struct Line<'a> {
    dimensions: &'a [(&'a str, &'a str)],
    counters: &'a [(&'static str, &'static str, u64)],
    latency: &'a [u64],
    names: &'a [&'a str],
    namespace: &'a str,
    timestamp_ms: i64,
}

/// A declared metric: `{"Name": …, "Unit": …}`.
#[derive(serde::Serialize)]
struct Declared<'a> {
    #[serde(rename = "Name")]
    name: &'a str,
    #[serde(rename = "Unit")]
    unit: &'a str,
}

/// `_aws`: when, and which values are which metrics under which dimensions.
#[derive(serde::Serialize)]
struct Aws<'a> {
    #[serde(rename = "Timestamp")]
    timestamp: i64,
    #[serde(rename = "CloudWatchMetrics")]
    cloud_watch_metrics: [Directive<'a>; 1],
}

#[derive(serde::Serialize)]
struct Directive<'a> {
    #[serde(rename = "Namespace")]
    namespace: &'a str,
    #[serde(rename = "Dimensions")]
    dimensions: [&'a [&'a str]; 1],
    #[serde(rename = "Metrics")]
    metrics: Vec<Declared<'a>>,
}

impl serde::Serialize for Line<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut line = serializer.serialize_map(None)?;
        for (name, value) in self.dimensions {
            line.serialize_entry(name, value)?;
        }
        let mut declared = Vec::with_capacity(self.counters.len() + 1);
        for &(name, unit, value) in self.counters {
            line.serialize_entry(name, &value)?;
            declared.push(Declared { name, unit });
        }
        if !self.latency.is_empty() {
            line.serialize_entry("EnqueueToSendLatency", self.latency)?;
            declared.push(Declared {
                name: "EnqueueToSendLatency",
                unit: "Milliseconds",
            });
        }
        let aws = Aws {
            timestamp: self.timestamp_ms,
            cloud_watch_metrics: [Directive {
                namespace: self.namespace,
                dimensions: [self.names],
                metrics: declared,
            }],
        };
        line.serialize_entry("_aws", &aws)?;
        line.end()
    }
}

/// Prints the batch's EMF lines on stdout, in CloudWatch namespace `namespace`
/// ([`crate::DeliveryConfig::metrics_namespace`]) with dimension `Service` = `service`.
pub fn print_emf(outcome: &BatchOutcome, duration: Duration, namespace: &str, service: &str) {
    print_emf_with(outcome, duration, namespace, service, &[]);
}

/// What the Lambda and `pushq worker` report when a batch is done: its one log line
/// ([`BatchOutcome::log`]), then its EMF lines, with the caller's own counters on the first.
pub fn report(
    outcome: &BatchOutcome,
    duration: Duration,
    namespace: &str,
    service: &str,
    extra: &[(&'static str, u64)],
) {
    outcome.log(duration);
    print_emf_with(outcome, duration, namespace, service, extra);
}

/// [`print_emf`] with the caller's own counters on the first line.
pub fn print_emf_with(
    outcome: &BatchOutcome,
    duration: Duration,
    namespace: &str,
    service: &str,
    extra: &[(&'static str, u64)],
) {
    let now = chrono::Utc::now().timestamp_millis();
    for line in emf_lines_with(outcome, duration, namespace, service, now, extra) {
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::BatchCounts;
    use serde_json::{json, Value};

    fn outcome(latencies: usize) -> BatchOutcome {
        BatchOutcome {
            failed_message_ids: vec!["m-1".into()],
            counts: BatchCounts {
                messages: 10,
                sent: 7,
                failed: 1,
                invalid_tokens: 2,
                retried: 3,
                rejected: 1,
                ..Default::default()
            },
            send_latency_ms: (0..latencies as u64).collect(),
            push_ids: vec![],
            apps: Default::default(),
        }
    }

    fn parse(line: &str) -> Value {
        serde_json::from_str(line).expect("an EMF line is one JSON object")
    }

    /// Every declared metric has a top-level value, and the counters are the batch's.
    #[test]
    fn first_line_declares_and_carries_every_counter() {
        let lines = emf_lines(
            &outcome(7),
            Duration::from_millis(42),
            "pushq",
            "pushq-worker",
            1,
        );
        assert_eq!(lines.len(), 1);
        let v = parse(&lines[0]);
        let meta = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(meta["Namespace"], "pushq");
        assert_eq!(meta["Dimensions"], json!([["Service"]]));
        assert_eq!(v["Service"], "pushq-worker");
        for m in meta["Metrics"].as_array().unwrap() {
            let name = m["Name"].as_str().unwrap();
            assert!(!v[name].is_null(), "{name} is declared but has no value");
        }
        assert_eq!(v["Sent"], 7);
        assert_eq!(v["Failed"], 1);
        assert_eq!(v["InvalidTokens"], 2);
        assert_eq!(v["Retried"], 3);
        assert_eq!(v["Redelivered"], 1);
        assert_eq!(v["BatchDuration"], 42);
        assert_eq!(v["EnqueueToSendLatency"], json!([0, 1, 2, 3, 4, 5, 6]));
    }

    /// EMF allows 100 values per metric per line: 250 latencies take three lines, none lost,
    /// and the counters are not repeated (they would be counted twice).
    #[test]
    fn latencies_beyond_100_go_on_further_lines() {
        let lines = emf_lines(&outcome(250), Duration::ZERO, "ns", "pushq-lambda", 1);
        assert_eq!(lines.len(), 3);
        let values: Vec<u64> = lines
            .iter()
            .flat_map(|l| {
                let v = parse(l);
                assert!(v["EnqueueToSendLatency"].as_array().unwrap().len() <= 100);
                serde_json::from_value::<Vec<u64>>(v["EnqueueToSendLatency"].clone()).unwrap()
            })
            .collect();
        assert_eq!(values, (0..250).collect::<Vec<u64>>());
        assert!(parse(&lines[1])["Sent"].is_null());
    }

    /// Each app of the batch gets its own line with the `App` dimension and its own counts;
    /// the batch's line stays as it was.
    #[test]
    fn each_app_has_a_line_with_the_app_dimension() {
        let mut o = outcome(2);
        o.apps.insert(
            "member".into(),
            AppCounts {
                sent: 2,
                expired: 1,
                send_latency_ms: vec![5, 6],
                ..Default::default()
            },
        );
        o.apps.insert(
            "trainer".into(),
            AppCounts {
                handed_back: 3,
                ..Default::default()
            },
        );
        let lines = emf_lines(&o, Duration::ZERO, "pushq", "pushq-lambda", 1);
        assert_eq!(lines.len(), 3);
        let member = parse(&lines[1]);
        assert_eq!(member["App"], "member");
        assert_eq!(
            member["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Service", "App"]])
        );
        assert_eq!(
            (member["Sent"].clone(), member["Expired"].clone()),
            (json!(2), json!(1))
        );
        assert_eq!(member["EnqueueToSendLatency"], json!([5, 6]));
        let trainer = parse(&lines[2]);
        assert_eq!(
            (trainer["App"].clone(), trainer["HandedBack"].clone()),
            (json!("trainer"), json!(3))
        );
        assert!(trainer["EnqueueToSendLatency"].is_null());
        for v in [&member, &trainer] {
            for m in v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap()
            {
                let name = m["Name"].as_str().unwrap();
                assert!(!v[name].is_null(), "{name} is declared but has no value");
            }
        }
    }
}

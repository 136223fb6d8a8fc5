//! The SAM template's dashboard shows what the function emits: every metric it names in the
//! function's namespace (`MetricName="…"` in a SEARCH expression, or an explicit metric array)
//! is one that `pushq_delivery::metrics::emf_lines` declares, with the same dimension set, and
//! every per-app metric the function emits is on it. Reads `deploy/template.yaml` as text; no
//! AWS, no database.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use pushq_delivery::metrics::{emf_lines, DEFAULT_NAMESPACE};
use pushq_delivery::outcome::{AppCounts, BatchCounts, BatchOutcome};
use serde_json::Value;

/// The `Service` dimension the Lambda gives its metrics (`src/main.rs`).
const SERVICE: &str = "pushq-lambda";

/// One metric as CloudWatch tells it apart: namespace, dimension names (sorted), name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Metric {
    namespace: String,
    dimensions: Vec<String>,
    name: String,
}

fn read(relative: &str) -> String {
    let path = format!("{}/{relative}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every metric the EMF lines of a batch with two apps declare.
fn emitted(namespace: &str) -> BTreeSet<Metric> {
    let mut apps = BTreeMap::new();
    apps.insert(
        "member".to_owned(),
        AppCounts {
            sent: 3,
            failed: 1,
            invalid_tokens: 1,
            expired: 1,
            handed_back: 1,
            send_latency_ms: vec![12, 40, 95],
            ..Default::default()
        },
    );
    apps.insert(
        "trainer".to_owned(),
        AppCounts {
            throttled: 2,
            handed_back: 2,
            stale_devices: 1,
            send_latency_ms: vec![7],
            ..Default::default()
        },
    );
    let outcome = BatchOutcome {
        failed_message_ids: vec!["m-2".to_owned()],
        counts: BatchCounts {
            messages: 2,
            sent: 4,
            failed: 1,
            ..Default::default()
        },
        apps,
        send_latency_ms: vec![12, 40, 95, 7],
        ..Default::default()
    };
    let mut metrics = BTreeSet::new();
    let lines = emf_lines(
        &outcome,
        Duration::from_millis(30),
        namespace,
        SERVICE,
        1_700_000_000_000,
    );
    for line in &lines {
        let v: Value = serde_json::from_str(line).expect("an EMF line is one JSON object");
        assert_eq!(v["Service"], SERVICE, "{line}");
        let directives = v["_aws"]["CloudWatchMetrics"]
            .as_array()
            .expect("_aws.CloudWatchMetrics");
        for directive in directives {
            let namespace = directive["Namespace"].as_str().expect("Namespace");
            for set in directive["Dimensions"].as_array().expect("Dimensions") {
                let mut dimensions: Vec<String> = set
                    .as_array()
                    .expect("a dimension set")
                    .iter()
                    .map(|d| d.as_str().expect("a dimension name").to_owned())
                    .collect();
                dimensions.sort();
                for m in directive["Metrics"].as_array().expect("Metrics") {
                    metrics.insert(Metric {
                        namespace: namespace.to_owned(),
                        dimensions: dimensions.clone(),
                        name: m["Name"].as_str().expect("a metric's Name").to_owned(),
                    });
                }
            }
        }
    }
    metrics
}

/// The dashboard's body: the literal block after `DashboardBody: !Sub |`.
fn dashboard_body(template: &str) -> String {
    let mut lines = template.lines();
    let key = lines
        .by_ref()
        .find(|l| l.trim_start().starts_with("DashboardBody: !Sub |"))
        .expect("the template has a DashboardBody written as `!Sub |`");
    let indent = key.len() - key.trim_start().len();
    let mut body = String::new();
    for line in lines {
        if !line.trim().is_empty() && line.len() - line.trim_start().len() <= indent {
            break;
        }
        body.push_str(line.trim_start());
        body.push('\n');
    }
    body
}

/// What `Fn::Sub` makes of `body`: `${Name}` replaced from `vars`, `${!Literal}` kept as
/// `${Literal}`.
fn render(body: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .expect("every ${ in the dashboard body is closed");
        let name = &after[..end];
        match name.strip_prefix('!') {
            Some(literal) => {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            }
            None => {
                let (_, value) = vars.iter().find(|(n, _)| *n == name).unwrap_or_else(|| {
                    panic!("the dashboard body names ${{{name}}}, unknown here")
                });
                out.push_str(value);
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// `key="value"` among a search expression's terms.
fn term(terms: &str, key: &str) -> Option<String> {
    let pattern = format!("{key}=\"");
    let start = terms.find(&pattern)? + pattern.len();
    let len = terms[start..].find('"')?;
    Some(terms[start..start + len].to_owned())
}

/// A metric SEARCH expression: the metric its schema and `MetricName` name, and its `Service`.
fn parse_search(expression: &str) -> (Metric, Option<String>) {
    let query = expression
        .strip_prefix("SEARCH('")
        .unwrap_or_else(|| panic!("not a SEARCH expression: {expression}"));
    let query = &query[..query.find('\'').expect("the query's closing quote")];
    let open = query
        .find('{')
        .expect("a metric schema {namespace,dimensions}");
    let close = query.find('}').expect("the schema's closing brace");
    let mut parts = query[open + 1..close]
        .split(',')
        .map(|p| p.trim().trim_matches('"').to_owned());
    let namespace = parts.next().expect("the schema's namespace");
    let mut dimensions: Vec<String> = parts.collect();
    dimensions.sort();
    let terms = &query[close + 1..];
    let name =
        term(terms, "MetricName").unwrap_or_else(|| panic!("no MetricName=\"…\" in {expression}"));
    let metric = Metric {
        namespace,
        dimensions,
        name,
    };
    (metric, term(terms, "Service"))
}

/// Every metric the dashboard graphs, with the `Service` its search asks for (if any).
fn dashboard_metrics(body: &Value) -> Vec<(Metric, Option<String>)> {
    let mut found = Vec::new();
    for widget in body["widgets"].as_array().expect("widgets") {
        let Some(entries) = widget["properties"]["metrics"].as_array() else {
            continue;
        };
        for entry in entries {
            let entry = entry.as_array().expect("a metrics entry is an array");
            match &entry[0] {
                Value::Object(o) => {
                    let expression = o["expression"].as_str().expect("an expression");
                    found.push(parse_search(expression));
                }
                Value::String(namespace) => {
                    let strings: Vec<&str> = entry[1..].iter().filter_map(Value::as_str).collect();
                    let mut dimensions: Vec<String> = strings[1..]
                        .iter()
                        .step_by(2)
                        .map(|d| (*d).to_owned())
                        .collect();
                    dimensions.sort();
                    let metric = Metric {
                        namespace: namespace.clone(),
                        dimensions,
                        name: strings[0].to_owned(),
                    };
                    found.push((metric, None));
                }
                other => panic!("unexpected metrics entry {other}"),
            }
        }
    }
    found
}

/// The template's default for a parameter (`Default:` in its block).
fn parameter_default(template: &str, parameter: &str) -> String {
    let header = format!("  {parameter}:");
    template
        .lines()
        .skip_while(|l| *l != header)
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .find_map(|l| {
            l.trim()
                .strip_prefix("Default:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("parameter {parameter} has no Default"))
}

#[test]
fn the_dashboard_shows_only_metrics_the_function_emits() {
    let template = read("../../deploy/template.yaml");
    // The dashboard reads the namespace the function writes: one parameter, pushq's default.
    assert!(template.contains("PUSHQ_METRICS_NAMESPACE: !Ref MetricsNamespace"));
    assert_eq!(
        parameter_default(&template, "MetricsNamespace"),
        DEFAULT_NAMESPACE
    );
    assert!(
        read("src/main.rs").contains(&format!("\"{SERVICE}\"")),
        "the Lambda's metrics carry Service = {SERVICE}"
    );

    let raw = dashboard_body(&template);
    let rendered = render(
        &raw,
        &[
            ("MetricsNamespace", DEFAULT_NAMESPACE),
            ("AWS::Region", "eu-west-1"),
            ("DeadLetterQueue.QueueName", "the-dlq"),
        ],
    );
    let body: Value = serde_json::from_str(&rendered)
        .unwrap_or_else(|e| panic!("the dashboard body is not JSON ({e}):\n{rendered}"));
    let shown = dashboard_metrics(&body);
    let searches = shown.iter().filter(|(_, s)| s.is_some()).count();
    assert_eq!(
        searches,
        raw.matches("MetricName=\\\"").count(),
        "every MetricName in the body is in a graphed SEARCH"
    );

    let emitted = emitted(DEFAULT_NAMESPACE);
    let ours: Vec<&(Metric, Option<String>)> = shown
        .iter()
        .filter(|(m, _)| m.namespace == DEFAULT_NAMESPACE)
        .collect();
    assert!(!ours.is_empty(), "the dashboard shows pushq's metrics");
    for (metric, service) in &ours {
        assert!(
            emitted.contains(metric),
            "the dashboard shows {metric:?}, which the function does not emit; it emits {emitted:#?}"
        );
        assert_eq!(service.as_deref(), Some(SERVICE), "{metric:?}");
    }
    // Every per-app metric the function emits is on the dashboard.
    let per_app = ["App", "Service"];
    for metric in emitted.iter().filter(|m| m.dimensions == per_app) {
        assert!(
            ours.iter().any(|(m, _)| m == metric),
            "{metric:?} is emitted per app but not on the dashboard"
        );
    }
    // And the dead-letter queue's depth.
    assert!(shown.iter().any(|(m, _)| *m
        == Metric {
            namespace: "AWS/SQS".to_owned(),
            dimensions: vec!["QueueName".to_owned()],
            name: "ApproximateNumberOfMessagesVisible".to_owned(),
        }));
    assert!(raw.contains("\"${DeadLetterQueue.QueueName}\""));
}

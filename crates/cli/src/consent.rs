//! `pushq consent reminders`: the users whose advertising consent is two years old (Korea's
//! Network Act asks that each be reminded of it every two years), as CSV or JSON.

use clap::{Subcommand, ValueEnum};
use pushq_delivery::DeliveryConfig;

use crate::{fail, store_from_env};

/// The actions of `pushq consent`.
#[derive(Subcommand)]
pub enum ConsentAction {
    /// Lists the users whose advertising consent was granted --older-than-days ago or more and
    /// still holds, oldest first: app, user id, when consent was granted, night-time consent.
    Reminders {
        /// Only this app's users (every app's when not given).
        #[arg(long)]
        app: Option<String>,
        /// Consent granted at least this many days ago.
        #[arg(long, default_value_t = 730)]
        older_than_days: u32,
        /// CSV (with a header line) or JSON (one array).
        #[arg(long, value_enum, default_value_t = Format::Csv)]
        format: Format,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Csv,
    Json,
}

pub async fn run(action: ConsentAction) {
    let ConsentAction::Reminders {
        app,
        older_than_days,
        format,
    } = action;
    if let Some(app) = &app {
        pushq_model::check_app(app).unwrap_or_else(|e| fail(format!("--app: {}", e.problem)));
    }
    let config = DeliveryConfig::from_env().unwrap_or_else(|e| fail(e));
    let store = store_from_env(&config).await;
    let before = chrono::Utc::now() - chrono::Duration::days(i64::from(older_than_days));
    let rows = store
        .consent_reminders(app.as_deref(), before)
        .await
        .unwrap_or_else(|e| fail(e));
    let at =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    match format {
        Format::Json => {
            let list: Vec<_> = rows
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "app": r.app,
                        "userId": r.user_id,
                        "grantedAt": at(r.advertising_granted_at),
                        "night": r.night,
                    })
                })
                .collect();
            println!("{}", serde_json::Value::Array(list));
        }
        Format::Csv => {
            println!("app,user_id,granted_at,night");
            for r in rows {
                println!(
                    "{},{},{},{}",
                    csv(&r.app),
                    csv(&r.user_id),
                    at(r.advertising_granted_at),
                    r.night
                );
            }
        }
    }
}

/// A CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break.
fn csv(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

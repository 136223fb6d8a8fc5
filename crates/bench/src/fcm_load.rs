//! fcm-load: the FCM emulator's own ceiling, measured alone: `--concurrency` tasks send valid
//! requests through pushq's FCM client for `--seconds`; prints one JSON line with sends/s.
//!
//!     fcm-load --credentials sa.json --endpoint http://127.0.0.1:PORT [--concurrency 64] [--seconds 5]
//!              [--ca-file ca.pem]   # an emulator served over TLS (HTTP/2) with a test CA

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use pushq_delivery::config::CredentialsSetting;
use pushq_delivery::fcm::{FcmClient, FcmConfig, ServiceAccount};
use serde_json::json;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    credentials: String,
    #[arg(long)]
    endpoint: String,
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// HTTP/2 connections to spread the sends over (as pushq opens ⌈in flight ÷ 100⌉).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// A PEM file of CA certificates to trust (an emulator with `--tls-cert`).
    #[arg(long)]
    ca_file: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let account = ServiceAccount::load(&CredentialsSetting {
        variable: "--credentials",
        value: args.credentials.clone(),
    })
    .expect("credentials");
    let config = FcmConfig {
        endpoint: args.endpoint.clone(),
        ca_file: args.ca_file.clone(),
        connections: args.connections.max(1),
        ..FcmConfig::default()
    };
    let client = Arc::new(FcmClient::new(account, &config).expect("client"));
    let body = json!({"message": {"token": "tok-load", "notification": {"title": "Spin 45", "body": "Studio 2"}}});
    client.send_once(&body).await.expect("a first send works");
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(args.seconds);
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (client, body, ok, failed) =
                (client.clone(), body.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                while Instant::now() < until {
                    match client.send_once(&body).await {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let secs = started.elapsed().as_secs_f64();
    let ok = ok.load(Ordering::Relaxed);
    println!(
        "{}",
        json!({"sends": ok, "failed": failed.load(Ordering::Relaxed), "seconds": secs, "sendsPerSecond": ok as f64 / secs, "concurrency": args.concurrency})
    );
}

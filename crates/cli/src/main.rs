//! `pushq`: the operator tool. `migrate`, `worker`, `fcm-emulator`, `dlq`, `devices` and `topics`.
//! Configuration comes from the environment (see the README); flags override it.

mod consent;
mod dlq;
mod topics;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use pushq_delivery::store::{DeviceKind, NewDevice, Store};
use pushq_delivery::{DeliveryConfig, Engine, WithoutCredentials};
use pushq_fcm_emulator as emulator;

#[derive(Parser)]
#[command(name = "pushq", version, about = "pushq operator tool")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Applies the schema to DATABASE_URL.
    Migrate,
    /// Long-polls SQS and delivers batches (Lambda event-source semantics).
    Worker(WorkerArgs),
    /// A local FCM HTTP v1 stand-in with an OAuth token endpoint, for tests.
    FcmEmulator(EmulatorArgs),
    /// Dead-letter queue tools.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Registers, lists and removes devices.
    Devices {
        #[command(subcommand)]
        action: DevicesAction,
    },
    /// Lists a user's or a token's topics; subscribes and unsubscribes them (stored, then
    /// enqueued for the consumer to make FCM's calls).
    Topics {
        #[command(subcommand)]
        action: topics::TopicsAction,
    },
    /// Advertising consent: lists the users due the biennial reminder.
    Consent {
        #[command(subcommand)]
        action: consent::ConsentAction,
    },
}

/// The flags of `pushq worker`.
#[derive(Args)]
struct WorkerArgs {
    /// The queue to poll.
    #[arg(long, env = "PUSHQ_QUEUE_URL")]
    queue_url: String,
    /// Messages per batch; above 10 needs --batching-window >= 1.
    #[arg(long, default_value_t = 10)]
    batch_size: usize,
    /// Seconds to keep gathering a batch until it is full (0: each receive is a batch).
    #[arg(long, default_value_t = 0.0)]
    batching_window: f64,
    /// Batches processed at once.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Visibility timeout (seconds) for received messages; also the batch's time budget.
    #[arg(long, default_value_t = 30)]
    visibility_timeout: u64,
}

/// The flags of `pushq fcm-emulator`.
#[derive(Args)]
struct EmulatorArgs {
    /// Port on 127.0.0.1 (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8790)]
    port: u16,
    /// Serve this Firebase project, with a service-account key of its own (repeat for several:
    /// a token is only good for its own project's sends, others get 403 PERMISSION_DENIED).
    /// 1-64 characters of [A-Za-z0-9_.-].
    #[arg(long = "project", value_name = "NAME", default_value = emulator::PROJECT_ID)]
    projects: Vec<String>,
    /// Write a matching service-account key here; with several --project, a JSON object mapping
    /// each project to its key (pushq's PUSHQ_FCM_CREDENTIALS map, app name = project).
    #[arg(long)]
    write_credentials: Option<std::path::PathBuf>,
    /// Serve HTTPS with this PEM certificate (chain): HTTP/2 or HTTP/1.1 by ALPN, as FCM does.
    /// It must name 127.0.0.1; pushq trusts its CA through PUSHQ_FCM_CA_FILE. Needs --tls-key.
    #[arg(long, requires = "tls_key", value_name = "PATH")]
    tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "PATH")]
    tls_key: Option<std::path::PathBuf>,
    /// HTTP/2 streams one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    #[arg(long, default_value_t = emulator::FCM_MAX_STREAMS, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    max_streams: u32,
    /// Answer the token and send endpoints after this many milliseconds, like a round trip.
    #[arg(long, default_value_t = 0, value_name = "N")]
    latency_ms: u64,
}

#[derive(Subcommand)]
enum DlqAction {
    /// Moves every message from one queue (the DLQ) to another (the push queue).
    Redrive {
        /// The dead-letter queue.
        #[arg(long)]
        from: String,
        /// The queue to move messages to.
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand)]
enum DevicesAction {
    /// Registers a device (a registration token or a FID) for a user, or refreshes a known one
    /// (it is seen now, and moves to this user).
    Register {
        /// The user.
        #[arg(long)]
        user_id: String,
        /// The FCM registration token.
        #[arg(long, conflicts_with = "fid", required_unless_present = "fid")]
        token: Option<String>,
        /// The Firebase Installation ID (instead of a token).
        #[arg(long)]
        fid: Option<String>,
        /// android, ios, web, …
        #[arg(long, default_value = "android")]
        platform: String,
        /// The app (Firebase project) the device belongs to.
        #[arg(long, env = "PUSHQ_APP", default_value = pushq_model::DEFAULT_APP)]
        app: String,
    },
    /// Removes a device.
    Unregister {
        /// The FCM registration token or FID.
        #[arg(long)]
        token: String,
        /// The app (Firebase project) the device belongs to.
        #[arg(long, env = "PUSHQ_APP", default_value = pushq_model::DEFAULT_APP)]
        app: String,
    },
    /// Lists a user's devices (in every app unless --app names one).
    List {
        /// The user.
        #[arg(long)]
        user_id: String,
        /// Only this app's devices.
        #[arg(long)]
        app: Option<String>,
    },
    /// Deletes invalidated devices and devices not seen for --stale-days, in chunks, with a
    /// progress bar; prints how many it deleted.
    Prune {
        /// Devices not seen (registered) for this many days are deleted.
        #[arg(long, env = "PUSHQ_STALE_DEVICE_DAYS", default_value_t = 270,
              value_parser = clap::value_parser!(u32).range(1..))]
        stale_days: u32,
        /// Count what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Devices deleted per statement.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
        chunk: u32,
    },
}

/// The SQS client of the worker and `dlq redrive` for `queue_url`: attempts long enough for a
/// 20 s long poll; SQS found as the Node client finds it ([`default_endpoint`]).
///
/// [`default_endpoint`]: pushq_producer::config::default_endpoint
async fn sqs_client(queue_url: &str) -> Result<aws_sdk_sqs::Client, String> {
    pushq_producer::sqs::client(&pushq_producer::sqs::SqsSettings {
        attempt_timeout: Duration::from_secs(30),
        operation_timeout: Duration::from_secs(90),
        endpoint_url: pushq_producer::config::default_endpoint(Some(queue_url), |name| {
            std::env::var(name).ok()
        }),
        queue_url: Some(queue_url.to_owned()),
        ..Default::default()
    })
    .await
    .map_err(|e| e.to_string())
}

fn fail(message: impl std::fmt::Display) -> ! {
    eprintln!("pushq: {message}");
    std::process::exit(2)
}

async fn store_from_env(config: &DeliveryConfig) -> Store {
    let url = config
        .database_url
        .as_deref()
        .unwrap_or_else(|| fail("DATABASE_URL: not set"));
    Store::connect(url, config.pool_size)
        .await
        .unwrap_or_else(|e| fail(e))
}

/// mimalloc instead of glibc's malloc: the engine allocates and frees per target (rows, bodies,
/// answers) and glibc's allocator was a quarter of the worker's CPU in the audience benchmark.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    pushq_delivery::logging::init(pushq_delivery::logging::Target::Stderr);
    match cli.command {
        Command::FcmEmulator(args) => {
            let options = emulator::Options {
                port: args.port,
                tls: args
                    .tls_cert
                    .zip(args.tls_key)
                    .map(|(cert, key)| emulator::TlsFiles { cert, key }),
                max_streams: args.max_streams,
                latency: Duration::from_millis(args.latency_ms),
                projects: args.projects,
            };
            if let Err(e) = emulator::run(&options, args.write_credentials).await {
                fail(e)
            }
        }
        Command::Dlq {
            action: DlqAction::Redrive { from, to },
        } => match dlq::redrive(&from, &to).await {
            Ok(moved) => println!("moved {moved} message(s)"),
            Err(e) => fail(e),
        },
        Command::Migrate => migrate().await,
        Command::Devices { action } => devices(action).await,
        Command::Topics { action } => topics::run(action).await,
        Command::Consent { action } => consent::run(action).await,
        Command::Worker(args) => worker(args).await,
    }
}

/// `pushq migrate`.
async fn migrate() {
    let config = DeliveryConfig::from_env().unwrap_or_else(|e| fail(e));
    let store = store_from_env(&config).await;
    store.migrate().await.unwrap_or_else(|e| fail(e));
    println!("schema applied ({:?})", store.dialect());
}

/// `pushq devices register|unregister|list`.
async fn devices(action: DevicesAction) {
    let config = DeliveryConfig::from_env().unwrap_or_else(|e| fail(e));
    let store = store_from_env(&config).await;
    match action {
        DevicesAction::Register {
            user_id,
            token,
            fid,
            platform,
            app,
        } => {
            let (kind, id) = match (token, fid) {
                (Some(token), _) => (DeviceKind::Token, token),
                (None, Some(fid)) => (DeviceKind::Fid, fid),
                (None, None) => fail("--token or --fid is required"),
            };
            let device = NewDevice {
                app: &app,
                user_id: &user_id,
                token: &id,
                kind,
                platform: &platform,
            };
            Store::check_new_device(&device).unwrap_or_else(|e| fail(e));
            store.register(&device).await.unwrap_or_else(|e| fail(e))
        }
        DevicesAction::Unregister { token, app } => unregister(&store, &app, &token).await,
        DevicesAction::List { user_id, app } => list(&store, &user_id, app.as_deref()).await,
        DevicesAction::Prune {
            stale_days,
            dry_run,
            chunk,
        } => prune(&store, stale_days, dry_run, chunk).await,
    }
}

/// `pushq devices unregister`: removes the device from `app`, or fails naming the apps the
/// token is registered in instead.
async fn unregister(store: &Store, app: &str, token: &str) {
    if !store
        .unregister_device_of(app, token)
        .await
        .unwrap_or_else(|e| fail(e))
    {
        let elsewhere = store.apps_of_token(token).await.unwrap_or_default();
        match elsewhere.as_slice() {
            [] => fail(format!(
                "no such device: the token is not registered in app {app:?}, nor in any other"
            )),
            apps => {
                let names: Vec<String> = apps.iter().map(|a| format!("{a:?}")).collect();
                fail(format!(
                    "no such device in app {app:?}: the token is registered in app {}; pass --app {}",
                    names.join(", "),
                    apps[0]
                ))
            }
        }
    }
}

/// `pushq devices list`: one line per device of the user (in `app`, else in every app).
async fn list(store: &Store, user_id: &str, app: Option<&str>) {
    let devices = store
        .devices_of(user_id, app)
        .await
        .unwrap_or_else(|e| fail(e));
    for d in devices {
        println!(
            "{}\t{}\t{}\t{}\t{}\tlast seen {}",
            d.app,
            d.kind.as_str(),
            d.token,
            d.platform,
            if d.live { "live" } else { "invalidated" },
            d.last_seen_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
}

/// `pushq devices prune`: counts the invalidated and stale devices, then deletes them `chunk`
/// at a time (no long lock on a large table), showing progress; prints the count.
async fn prune(store: &Store, stale_days: u32, dry_run: bool, chunk: u32) {
    let stale_before = chrono::Utc::now() - chrono::Duration::days(i64::from(stale_days));
    let total = store
        .count_prunable(stale_before)
        .await
        .unwrap_or_else(|e| fail(e));
    if dry_run {
        println!("{total} devices would be deleted (invalidated, or not seen for {stale_days} days); nothing was deleted");
        return;
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} deleted ({elapsed})")
            .expect("template"),
    );
    let mut deleted = 0u64;
    loop {
        let n = store
            .prune_devices(stale_before, chunk)
            .await
            .unwrap_or_else(|e| {
                bar.abandon();
                eprintln!("{deleted} devices deleted before the error");
                fail(e)
            });
        deleted += n;
        bar.set_length(bar.length().unwrap_or(0).max(deleted));
        bar.set_position(deleted);
        if n < u64::from(chunk) {
            break;
        }
    }
    bar.finish_and_clear();
    println!("{deleted} devices deleted (invalidated, or not seen for {stale_days} days)");
}

/// `pushq worker`: checks the flags, connects the engine, and polls until SIGTERM or Ctrl-C.
async fn worker(args: WorkerArgs) {
    let WorkerArgs {
        queue_url,
        batch_size,
        batching_window,
        concurrency,
        visibility_timeout,
    } = args;
    if batch_size == 0 || batch_size > 10_000 {
        fail("--batch-size: must be 1 to 10000");
    }
    if batch_size > 10 && batching_window < 1.0 {
        fail("--batch-size above 10 needs --batching-window of at least 1 second (as on AWS)");
    }
    let worker_config = worker::WorkerConfig {
        queue_url,
        batch_size,
        batching_window: Duration::from_secs_f64(batching_window.max(0.0)),
        concurrency,
        visibility_timeout: Duration::from_secs(visibility_timeout.max(1)),
        metrics_namespace: String::new(),
    };
    worker_config.check().unwrap_or_else(|e| fail(e));
    let mut config = DeliveryConfig::from_env().unwrap_or_else(|e| fail(e));
    pushq_delivery::store::warn_if_unverified(config.database_url.as_deref());
    // The worker extends visibility while a batch runs: an FCM attempt in flight at the
    // batch's deadline may finish.
    config.cut_sends_at_deadline = false;
    // Its batches share the FCM connections: enough of them for all their sends.
    config.batches_at_once = worker_config.concurrency.max(1);
    // The worker runs no DDL, whatever PUSHQ_MIGRATE says: `pushq migrate` applies the schema.
    config.migrate = false;
    // What the recipient rules defer, and audience pages, go back on the queue the worker
    // polls, unless PUSHQ_QUEUE_URL names another.
    if config.defer.is_none() {
        config
            .defer_through(worker_config.queue_url.clone())
            .unwrap_or_else(|e| fail(e));
    }
    let engine = Engine::connect(&config, WithoutCredentials::Refuse)
        .await
        .unwrap_or_else(|e| fail(e));
    let shutdown = shutdown_signal();
    let config = worker::WorkerConfig {
        metrics_namespace: config.metrics_namespace.clone(),
        ..worker_config
    };
    if let Err(e) = worker::run(config, Arc::new(engine), shutdown).await {
        fail(e)
    }
}

/// Turns true on SIGTERM or Ctrl-C, so that the worker finishes the batches in flight and stops.
fn shutdown_signal() -> tokio::sync::watch::Receiver<bool> {
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutting down: finishing the batches in flight");
        let _ = stop.send(true);
    });
    shutdown
}

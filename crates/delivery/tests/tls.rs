//! TLS to PostgreSQL as the store makes it: a private server that this test starts with a
//! certificate it made (a test CA, `localhost` and 127.0.0.1), which accepts TLS connections only.
//! `sslmode=verify-full` (and `verify-ca`) with that CA connects; a certificate from another CA,
//! or an address the certificate does not name, is refused.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pushq_delivery::store::{Store, StoreError};
use pushq_test_support::certs;

/// `program` (a path or a name on PATH) to run as the `postgres` user when this test runs as
/// root, as PostgreSQL refuses to run as root; as the current user otherwise.
fn postgres_user(program: impl AsRef<Path>) -> Command {
    if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program.as_ref());
        command
    } else {
        Command::new(program.as_ref())
    }
}

fn running_as_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
    })
}

/// Runs `program` with `args` as [`postgres_user`] says; it must succeed.
fn as_postgres(program: impl AsRef<Path>, args: &[&str]) -> Output {
    let out = postgres_user(&program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        program.as_ref().display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The newest PostgreSQL server binaries installed (as `bench/lib.js` finds them).
fn pg_bin(program: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries under /usr/lib/postgresql")
        .map(|e| e.unwrap().path())
        .collect();
    versions.sort_by_key(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
    });
    versions.pop().unwrap().join("bin").join(program)
}

/// The test CAs and a server certificate for `localhost` and 127.0.0.1 ([`certs::make`]) in
/// `dir`, the key handed to whoever runs PostgreSQL (it refuses a key file it cannot own).
fn make_certificates(dir: &Path) {
    let key = certs::make(dir).server_key.display().to_string();
    if running_as_root() {
        let out = Command::new("chown")
            .args(["postgres", &key])
            .output()
            .unwrap();
        assert!(out.status.success(), "chown postgres {key}");
    }
}

/// A private PostgreSQL cluster with `ssl=on` that takes TLS connections only, listening on
/// 127.0.0.1 and 127.0.0.2 (which the certificate does not name); stopped and removed on drop.
struct TlsPostgres {
    dir: PathBuf,
    port: u16,
}

impl TlsPostgres {
    fn start() -> TlsPostgres {
        let dir = std::env::temp_dir().join(format!("pushq-tls-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        // The server (another user, when this test runs as root) writes here.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let server = TlsPostgres {
            port: std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port(),
            dir,
        };
        make_certificates(&server.dir);
        let data = server.path("data");
        as_postgres(
            pg_bin("initdb"),
            &["-D", &data, "--auth=trust", "-U", "postgres", "--no-sync"],
        );
        std::fs::write(
            server.dir.join("data/pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n\
             hostssl all all 127.0.0.2/32 trust\n",
        )
        .unwrap();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1,127.0.0.2 -c ssl=on \
             -c ssl_cert_file={} -c ssl_key_file={}",
            server.port,
            server.dir.display(),
            server.path("server.pem"),
            server.path("server.key"),
        );
        // -W: do not wait here; readiness is polled below, with a deadline.
        as_postgres(
            pg_bin("pg_ctl"),
            &[
                "-D",
                &data,
                "-l",
                &server.path("log"),
                "-o",
                &options,
                "-W",
                "start",
            ],
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = server.port.to_string();
        while !Command::new(pg_bin("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &port, "-t", "1"])
            .output()
            .unwrap()
            .status
            .success()
        {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not accept connections within 30 s:\n{}",
                std::fs::read_to_string(server.dir.join("log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// A URL to this server's `postgres` database through `host` with `query`.
    fn url(&self, host: &str, query: &str) -> String {
        format!("postgres://postgres@{host}:{}/postgres?{query}", self.port)
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let _ = postgres_user(pg_bin("pg_ctl"))
            .args(["-D", &self.path("data"), "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether the store's connections to `url` are encrypted, by the server's own account.
async fn server_says_ssl(url: &str) -> bool {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap();
    sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

/// Why rustls refused the server's certificate (the handshake fails as an I/O error).
fn certificate_refusal(result: Result<Store, StoreError>) -> String {
    match result {
        Err(StoreError::Database(e @ (sqlx::Error::Tls(_) | sqlx::Error::Io(_)))) => {
            let e = e.to_string();
            assert!(e.contains("invalid peer certificate"), "{e}");
            e
        }
        Err(other) => panic!("refused, but not for its certificate: {other}"),
        Ok(_) => panic!("connected"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_full_connects_with_the_servers_ca_and_refuses_another_ca_or_name() {
    let pg = tokio::task::block_in_place(TlsPostgres::start);
    let ca = pg.path("ca.pem");
    let other_ca = pg.path("other-ca.pem");

    // The CA that signed the server's certificate, by name and by address; verify-ca too.
    for (host, mode) in [
        ("localhost", "verify-full"),
        ("127.0.0.1", "verify-full"),
        ("localhost", "verify-ca"),
    ] {
        let url = pg.url(host, &format!("sslmode={mode}&sslrootcert={ca}"));
        let store = Store::connect(&url, 1).await.unwrap();
        store.migrate().await.unwrap();
        assert!(server_says_ssl(&url).await, "{host} {mode}: not encrypted");
        assert_eq!(pushq_delivery::store::tls_warning(&url), None);
        store.close().await;
    }

    // Another CA: the certificate does not chain to it.
    for mode in ["verify-full", "verify-ca"] {
        let url = pg.url(
            "localhost",
            &format!("sslmode={mode}&sslrootcert={other_ca}"),
        );
        let refusal = certificate_refusal(Store::connect(&url, 1).await);
        assert!(refusal.contains("UnknownIssuer"), "{mode}: {refusal}");
    }

    // The right CA, but an address the certificate does not name. (sqlx 0.8.6 refuses this
    // with verify-ca too, which should check the chain only: launchbadge/sqlx#3793.)
    let url = pg.url(
        "127.0.0.2",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let refusal = certificate_refusal(Store::connect(&url, 1).await);
    assert!(refusal.contains("not valid for name"), "{refusal}");

    // What the default mode does with the other CA: connects, certificate unchecked.
    let url = pg.url(
        "localhost",
        &format!("sslmode=prefer&sslrootcert={other_ca}"),
    );
    Store::connect(&url, 1).await.unwrap().close().await;
    assert!(server_says_ssl(&url).await);
}

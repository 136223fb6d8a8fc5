//! Whether a database URL verifies the server's certificate. sqlx's default modes (PostgreSQL
//! `prefer`, MySQL `PREFERRED`) and `require` encrypt but accept any certificate.

use std::net::IpAddr;

use sqlx::mysql::MySqlSslMode;
use sqlx::postgres::PgSslMode;

use super::ConnectOptions;

/// A warning, naming the host and never the URL, when a connection to `url` would not verify the
/// server's certificate (PostgreSQL without `sslmode=verify-full`/`verify-ca`, MySQL without
/// `ssl-mode=VERIFY_IDENTITY`/`VERIFY_CA`) and the server is not on this machine (loopback or a
/// Unix socket). `None` for SQLite, for a verified or local connection, and for a URL that does
/// not parse (connecting reports that). The modes are read as sqlx reads them, so `PGSSLMODE`
/// counts where the URL says nothing.
pub fn tls_warning(url: &str) -> Option<String> {
    let (host, mode, fix) = match ConnectOptions::parse(url).ok()? {
        ConnectOptions::Sqlite(_) => return None,
        ConnectOptions::Postgres(options) => {
            let mode = match options.get_ssl_mode() {
                PgSslMode::VerifyFull | PgSslMode::VerifyCa => return None,
                PgSslMode::Disable => "sslmode=disable",
                PgSslMode::Allow => "sslmode=allow",
                PgSslMode::Prefer => "sslmode=prefer",
                PgSslMode::Require => "sslmode=require",
            };
            if options.get_socket().is_some() {
                return None;
            }
            let fix = "sslmode=verify-full&sslrootcert=<CA bundle>";
            (options.get_host().to_owned(), mode, fix)
        }
        ConnectOptions::MySql(options) => {
            let mode = match options.get_ssl_mode() {
                MySqlSslMode::VerifyIdentity | MySqlSslMode::VerifyCa => return None,
                MySqlSslMode::Disabled => "ssl-mode=DISABLED",
                MySqlSslMode::Preferred => "ssl-mode=PREFERRED",
                MySqlSslMode::Required => "ssl-mode=REQUIRED",
            };
            if options.get_socket().is_some() {
                return None;
            }
            let fix = "ssl-mode=VERIFY_IDENTITY&ssl-ca=<CA bundle>";
            (options.get_host().to_owned(), mode, fix)
        }
    };
    if is_loopback(&host) {
        return None;
    }
    Some(format!(
        "the database connection to {host} does not verify the server's certificate ({mode}): \
         anything on the network path can pose as the database; add {fix} to the database URL \
         (docs/operations.md, \"TLS to the database\")"
    ))
}

/// Logs [`tls_warning`]'s warning for `url`, if any, as one line: for start-up, where the
/// database URL is final (the Lambda after reading its secrets, `pushq worker`).
pub fn warn_if_unverified(url: Option<&str>) {
    if let Some(warning) = url.and_then(tls_warning) {
        tracing::warn!("{warning}");
    }
}

/// Makes aws-lc-rs (sqlx's own) the process's default rustls crypto provider, once. sqlx's
/// `verify-ca`/`VERIFY_CA` path asks rustls for that default, and rustls cannot pick one when
/// both aws-lc-rs and ring are compiled in (they are: sqlx and reqwest bring one each), so
/// without this those modes panic at connect.
pub(super) fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // An error means the program installed a default of its own, which is as good.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unverified_remote_connections_are_warned_about_naming_the_host_only() {
        for (url, mode) in [
            (
                "postgres://u:s3cret-pw@db.example.com/pushq",
                "sslmode=prefer",
            ),
            (
                "postgresql://u:s3cret-pw@db.example.com:5433/pushq?sslmode=require",
                "sslmode=require",
            ),
            (
                "postgres://u:s3cret-pw@10.0.0.7/pushq?sslmode=disable",
                "sslmode=disable",
            ),
            (
                "postgres://u:s3cret-pw@db.example.com/pushq?sslmode=require&sslrootcert=/ca.pem",
                "sslmode=require",
            ),
            (
                "mysql://u:s3cret-pw@db.example.com/pushq",
                "ssl-mode=PREFERRED",
            ),
            (
                "mariadb://u:s3cret-pw@db.example.com/pushq?ssl-mode=REQUIRED",
                "ssl-mode=REQUIRED",
            ),
            (
                "'mysql://u:s3cret-pw@db.example.com/pushq?ssl-mode=disabled'",
                "ssl-mode=DISABLED",
            ),
        ] {
            let warning = tls_warning(url).unwrap_or_else(|| panic!("no warning for {url}"));
            let host = url::Url::parse(url.trim_matches('\'')).unwrap();
            let host = host.host_str().unwrap();
            assert!(
                warning.contains(&format!("connection to {host} does not verify")),
                "{warning}"
            );
            assert!(warning.contains(mode), "{warning}");
            assert!(
                !warning.contains("s3cret-pw") && !warning.contains("u:"),
                "{warning}"
            );
            assert!(!warning.contains("/pushq"), "{warning}");
        }
        let pg = tls_warning("postgres://db.example.com/pushq").unwrap();
        assert!(pg.contains("sslmode=verify-full&sslrootcert="), "{pg}");
        let my = tls_warning("mysql://db.example.com/pushq").unwrap();
        assert!(my.contains("ssl-mode=VERIFY_IDENTITY&ssl-ca="), "{my}");
    }

    #[test]
    fn verified_local_and_sqlite_connections_are_not() {
        for url in [
            "postgres://u:p@db.example.com/pushq?sslmode=verify-full&sslrootcert=/ca.pem",
            "postgres://u:p@db.example.com/pushq?sslmode=verify-ca",
            "postgres://u:p@db.example.com/pushq?ssl-mode=verify-full",
            "mysql://u:p@db.example.com/pushq?ssl-mode=VERIFY_IDENTITY&ssl-ca=/ca.pem",
            "mysql://u:p@db.example.com/pushq?ssl-mode=verify_ca",
            "postgres://u:p@localhost/pushq",
            "postgres://u:p@127.0.0.1:5432/pushq?sslmode=disable",
            "postgres://u:p@127.8.9.10/pushq",
            "postgres://u:p@[::1]:5432/pushq",
            "postgres://u:p@LOCALHOST/pushq",
            "postgres:///pushq?host=/var/run/postgresql",
            "postgres://%2Fvar%2Frun%2Fpostgresql/pushq",
            "mysql://u:p@127.0.0.1/pushq",
            "mysql://u:p@localhost/pushq?socket=/run/mysqld/mysqld.sock",
            "sqlite://pushq.db",
            "sqlite::memory:",
            "not a url",
            "postgres://u:p@db.example.com/pushq?sslmode=bogus",
        ] {
            assert_eq!(tls_warning(url), None, "{url}");
        }
    }
}

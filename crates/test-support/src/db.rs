//! Databases of the tests' own: a fresh one of each dialect, and a PostgreSQL cluster that
//! counts the statements it executes.

use super::*;

/// Runs `$body` with `$c` a new connection to the test database `$db`, whatever its dialect.
macro_rules! with_connection {
    ($db:expr, $c:ident, $body:expr) => {
        match $db.dialect {
            "postgres" => {
                let mut $c = <sqlx::PgConnection as sqlx::Connection>::connect(&$db.url)
                    .await
                    .unwrap();
                $body
            }
            "mysql" => {
                let mut $c = <sqlx::MySqlConnection as sqlx::Connection>::connect(&$db.url)
                    .await
                    .unwrap();
                $body
            }
            _ => {
                let mut $c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&$db.url)
                    .await
                    .unwrap();
                $body
            }
        }
    };
}

/// A fresh, empty database of one dialect; dropped with the value (server databases).
pub struct Db {
    pub url: String,
    pub dialect: &'static str,
    admin: Option<(String, String)>, // (admin url, database name)
}

impl Db {
    pub async fn sqlite() -> Db {
        let path = temp_dir().join("pushq.db");
        Db {
            url: format!("sqlite://{}", path.display()),
            dialect: "sqlite",
            admin: None,
        }
    }

    pub async fn postgres() -> Db {
        let admin = std::env::var("PUSHQ_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        Db::postgres_at(admin).await
    }

    /// A fresh database on the PostgreSQL server this admin URL reaches.
    pub async fn postgres_at(admin: String) -> Db {
        let name = format!("pushq_{}", uuid::Uuid::now_v7().simple());
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
            .await
            .expect("PostgreSQL on 127.0.0.1:5432");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
        Db {
            url,
            dialect: "postgres",
            admin: Some((admin, name)),
        }
    }

    pub async fn mariadb() -> Db {
        let admin = std::env::var("PUSHQ_TEST_MYSQL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
        let name = format!("pushq_{}", uuid::Uuid::now_v7().simple());
        let mut conn = <sqlx::MySqlConnection as sqlx::Connection>::connect(&admin)
            .await
            .expect("MariaDB on 127.0.0.1:3306");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
        Db {
            url,
            dialect: "mysql",
            admin: Some((admin, name)),
        }
    }

    /// The admin URL the database was created with (server databases).
    pub fn admin_url(&self) -> Option<&str> {
        self.admin.as_ref().map(|(url, _)| url.as_str())
    }

    pub async fn drop_it(self) {
        let Some((admin, name)) = &self.admin else {
            return;
        };
        if self.dialect == "postgres" {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(admin)
                .await
                .unwrap();
            let _ = sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await;
        } else {
            let mut conn = <sqlx::MySqlConnection as sqlx::Connection>::connect(admin)
                .await
                .unwrap();
            let _ = sqlx::query(&format!("DROP DATABASE {name}"))
                .execute(&mut conn)
                .await;
        }
    }

    /// How many rows of the delivery log are final (not `sending` under a claim, not `retrying`).
    pub async fn final_deliveries(&self) -> usize {
        self.deliveries()
            .await
            .iter()
            .filter(|r| r.2 != "sending" && r.2 != "retrying")
            .count()
    }

    /// Rows of the delivery log as (push_id, target, status, error_code, user_id).
    pub async fn deliveries(
        &self,
    ) -> Vec<(String, String, String, Option<String>, Option<String>)> {
        let q = if self.dialect == "mysql" {
            "SELECT CONVERT(push_id USING utf8mb4), CONVERT(target USING utf8mb4), CONVERT(status USING utf8mb4), CONVERT(error_code USING utf8mb4), CONVERT(user_id USING utf8mb4) FROM pushq_deliveries ORDER BY push_id, target"
        } else {
            "SELECT push_id, target, status, error_code, user_id FROM pushq_deliveries ORDER BY push_id, target"
        };
        with_connection!(self, c, sqlx::query_as(q).fetch_all(&mut c).await.unwrap())
    }

    /// Runs SQL as the test's own hand on the database (e.g. to age a device), unprepared: one
    /// or several statements, DDL such as a trigger included.
    pub async fn execute(&self, sql: &str) {
        with_connection!(self, c, {
            sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
        })
    }

    /// What each index of `table` reads, one text per index: its definition (PostgreSQL,
    /// SQLite: columns and any predicate) or its columns (MariaDB, one row per column).
    pub async fn index_definitions(&self, table: &str) -> Vec<String> {
        let q = match self.dialect {
            "postgres" => format!("SELECT indexdef FROM pg_indexes WHERE tablename = '{table}'"),
            "mysql" => format!(
                "SELECT CONVERT(CONCAT(INDEX_NAME, ' ', COLUMN_NAME) USING utf8mb4) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{table}'"
            ),
            _ => format!(
                "SELECT il.name || ' ' || group_concat(ii.name, ',') || ' ' || coalesce(m.sql, '') FROM pragma_index_list('{table}') il JOIN pragma_index_info(il.name) ii LEFT JOIN sqlite_master m ON m.name = il.name GROUP BY il.name"
            ),
        };
        let rows: Vec<(String,)> =
            with_connection!(self, c, sqlx::query_as(&q).fetch_all(&mut c).await.unwrap());
        rows.into_iter().map(|(d,)| d).collect()
    }

    /// SQL that sets a device's last-seen time `days` ago, in the dialect's own date arithmetic.
    pub fn age_device(&self, token: &str, days: u32) -> String {
        let ago = match self.dialect {
            "postgres" => format!("now() - interval '{days} days'"),
            "mysql" => format!("NOW(3) - INTERVAL {days} DAY"),
            _ => format!("strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-{days} days')"),
        };
        format!("UPDATE pushq_devices SET last_seen_at = {ago} WHERE token = '{token}'")
    }

    /// Rows of pushq_rejected as (queue_message_id, reason).
    pub async fn rejected(&self) -> Vec<(String, String)> {
        let q = if self.dialect == "mysql" {
            "SELECT CONVERT(queue_message_id USING utf8mb4), CONVERT(reason USING utf8mb4) FROM pushq_rejected ORDER BY queue_message_id"
        } else {
            "SELECT queue_message_id, reason FROM pushq_rejected ORDER BY queue_message_id"
        };
        with_connection!(self, c, sqlx::query_as(q).fetch_all(&mut c).await.unwrap())
    }
}

/// A PostgreSQL cluster of the test's own with `pg_stat_statements` preloaded, for counting the
/// statements the server executes: the shared server on 127.0.0.1:5432 does not preload it, and
/// preloading needs a restart. initdb in a temp dir, started on a free loopback port (as
/// `bench/lib.js` does), stopped and removed on drop. Needs the PostgreSQL server binaries
/// (`/usr/lib/postgresql/<version>/bin`, else `pg_config --bindir`); as root it runs them as the
/// `postgres` user, since initdb refuses to run as root.
pub struct PgCluster {
    /// `postgres://postgres@127.0.0.1:PORT/postgres`, trust authentication.
    pub admin: String,
    dir: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
}

impl PgCluster {
    pub fn start() -> PgCluster {
        let bin = server_bin_dir();
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        let dir = temp_dir();
        let mut cluster = PgCluster {
            admin: String::new(),
            dir,
            bin,
            as_postgres: root,
        };
        if root {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&cluster.dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let data = cluster.dir.join("data");
        cluster.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "--auth=trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        let port = free_port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=top",
            cluster.dir.display()
        );
        // `pg_ctl -w` returns once the server accepts connections.
        cluster.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                cluster.dir.join("log").to_str().unwrap(),
                "-w",
                "-o",
                &options,
                "start",
            ],
        );
        cluster.admin = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        cluster
    }

    /// A command running one of the server binaries (as `postgres` when we are root).
    fn command(&self, tool: &str) -> Command {
        let tool = self.bin.join(tool);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(tool);
            command
        } else {
            Command::new(tool)
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self.command(tool).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Where the PostgreSQL server binaries are: the newest `/usr/lib/postgresql/<version>/bin`
/// holding `initdb`, else `pg_config --bindir`.
fn server_bin_dir() -> PathBuf {
    std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .and_then(|versions| {
            let mut bins: Vec<PathBuf> = versions
                .filter_map(|v| Some(v.ok()?.path().join("bin")))
                .filter(|b| b.join("initdb").exists())
                .collect();
            bins.sort_by_key(|b| {
                let version = b.parent().and_then(|v| v.file_name());
                version.and_then(|v| v.to_str()?.parse::<u32>().ok())
            });
            bins.pop()
        })
        .or_else(|| {
            let out = Command::new("pg_config").arg("--bindir").output().ok()?;
            Some(PathBuf::from(String::from_utf8(out.stdout).ok()?.trim()))
        })
        .expect("the PostgreSQL server binaries (initdb, pg_ctl) for a private cluster")
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if !self.admin.is_empty() {
            let data = self.dir.join("data");
            let _ = self
                .command("pg_ctl")
                .args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

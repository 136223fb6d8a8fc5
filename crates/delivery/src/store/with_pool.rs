//! `with_pool!`: one statement's code, run against whichever pool the store has.

/// Runs `$body` with `$pool` bound to the store's concrete pool and `DB` to its database type.
/// With `postgres => $pg` first, PostgreSQL runs `$pg` instead (its statements take arrays), and
/// `$body` serves SQLite and MySQL.
macro_rules! with_pool {
    ($store:expr, $pool:ident, postgres => $pg:block, $body:block) => {
        match &$store.pool {
            Pool::Postgres($pool) => $pg,
            Pool::Sqlite($pool) => {
                #[allow(dead_code)]
                type DB = sqlx::Sqlite;
                $body
            }
            Pool::MySql($pool) => {
                #[allow(dead_code)]
                type DB = sqlx::MySql;
                $body
            }
        }
    };
    ($store:expr, $pool:ident, $body:block) => {
        match &$store.pool {
            Pool::Sqlite($pool) => {
                #[allow(dead_code)]
                type DB = sqlx::Sqlite;
                $body
            }
            Pool::Postgres($pool) => {
                #[allow(dead_code)]
                type DB = sqlx::Postgres;
                $body
            }
            Pool::MySql($pool) => {
                #[allow(dead_code)]
                type DB = sqlx::MySql;
                $body
            }
        }
    };
}

//! Recipient rules' data: each user's preferences (advertising and night-time consent, quiet
//! hours), category opt-outs and consent history, written by `Preferences` (Node) and read by
//! the consumer in one statement per batch ([`Store::recipient_rules`]), with the counts that
//! frequency caps need.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

use super::{Dialect, Pool, Store, StoreResult, UserKeys};

/// One user's stored preferences.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct UserPreferences {
    /// Advertising consent (Korea's Network Act art. 50).
    pub advertising: bool,
    /// When advertising consent was last granted.
    pub advertising_granted_at: Option<DateTime<Utc>>,
    /// When advertising consent was last withdrawn.
    pub advertising_withdrawn_at: Option<DateTime<Utc>>,
    /// Consent to advertising between 21:00 and 08:00.
    pub night: bool,
    /// When night-time consent was last granted.
    pub night_granted_at: Option<DateTime<Utc>>,
    /// When night-time consent was last withdrawn.
    pub night_withdrawn_at: Option<DateTime<Utc>>,
    /// Quiet hours, `HH:MM`, in `time_zone`.
    pub quiet_start: Option<String>,
    /// The end of the quiet hours, `HH:MM`.
    pub quiet_end: Option<String>,
    /// The user's IANA time zone (set with quiet hours).
    pub time_zone: Option<String>,
}

/// Which of a user's consents a change is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consent {
    /// Advertising consent.
    Advertising,
    /// Consent to advertising between 21:00 and 08:00.
    Night,
}

impl Consent {
    fn column(self) -> &'static str {
        match self {
            Consent::Advertising => "advertising",
            Consent::Night => "night",
        }
    }
}

/// A frequency cap's count: `sent` pushes since `since` of a category (or advertising pushes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapCount {
    /// The category, or `None` for advertising pushes.
    pub category: Option<String>,
    /// The start of the window counted.
    pub since: DateTime<Utc>,
}

/// What the rules need to know of the batch's users, from one statement: per (app, user),
/// their preferences (when stored), the categories they opted out of, and per cap (by index)
/// how many pushes it counts.
#[derive(Debug, Clone, Default)]
pub struct RulesData {
    /// Per (app, user): their stored preferences.
    pub preferences: HashMap<(String, String), UserPreferences>,
    /// Per (app, user): the categories they opted out of.
    pub opted_out: HashMap<(String, String), Vec<String>>,
    /// Per (app, user, cap index): the pushes the cap counts.
    pub counts: HashMap<(String, String, usize), u64>,
}

#[derive(sqlx::FromRow)]
struct RuleRow {
    kind: i64,
    app: String,
    user_id: String,
    a: Option<String>,
    b: Option<String>,
    c: Option<String>,
    n: i64,
}

/// A user with consent old enough for the biennial reminder.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ConsentReminder {
    /// The app.
    pub app: String,
    /// The user.
    pub user_id: String,
    /// When advertising consent was last granted.
    pub advertising_granted_at: DateTime<Utc>,
    /// Whether night-time consent is also given.
    pub night: bool,
}

impl Store {
    /// One statement: the batch's (app, user)s' preferences, opt-outs and the pushes each of
    /// `caps` counts. Users are bound once per part of the statement; a batch naming more users
    /// than one statement can bind is read in as many statements as it needs.
    pub async fn recipient_rules(
        &self,
        users: &[(String, String)],
        caps: &[CapCount],
        batch_pushes: &[String],
    ) -> StoreResult<RulesData> {
        let mut out = RulesData::default();
        let UserKeys { wanted, apps, ids } = UserKeys::of(users);
        let parts = 2 + caps.len();
        // Each part binds the apps and a chunk of ids; each cap also its time, category and the
        // batch's own pushes (which a cap does not count: a push redelivered in part is not
        // over its cap by its own earlier sends).
        let fixed = parts * apps.len() + caps.len() * (2 + batch_pushes.len());
        let per_chunk = (self.dialect.max_binds().saturating_sub(fixed) / parts).max(1);
        for chunk in ids.chunks(per_chunk) {
            self.count();
            let rows: Vec<RuleRow> = with_pool!(self, pool, {
                let mut q = QueryBuilder::<DB>::new("");
                rules_statement(&mut q, self.dialect, &apps, chunk, caps, batch_pushes);
                q.build_query_as().persistent(false).fetch_all(pool).await?
            });
            for r in rows {
                if !wanted.contains(&(r.app.as_str(), r.user_id.as_str())) {
                    continue;
                }
                let key = (r.app, r.user_id);
                match r.kind {
                    0 => {
                        out.preferences.insert(
                            key,
                            UserPreferences {
                                advertising: r.n & 1 != 0,
                                night: r.n & 2 != 0,
                                quiet_start: r.a,
                                quiet_end: r.b,
                                time_zone: r.c,
                                ..UserPreferences::default()
                            },
                        );
                    }
                    1 => out.opted_out.entry(key).or_default().extend(r.a),
                    k => {
                        let cap = (k - 2) as usize;
                        out.counts.insert((key.0, key.1, cap), r.n.max(0) as u64);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Grants or withdraws a consent at `at`: the preferences row keeps the latest grant and
    /// withdrawal, `pushq_consent_events` every change, both written in one transaction.
    pub async fn set_consent(
        &self,
        app: &str,
        user_id: &str,
        consent: Consent,
        granted: bool,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let column = consent.column();
        let when = if granted {
            "granted_at"
        } else {
            "withdrawn_at"
        };
        self.ensure_preferences(app, user_id, at).await?;
        // The change and its event row in one transaction: no consent changes unrecorded.
        self.count();
        self.count();
        with_pool!(self, pool, {
            let mut tx = pool.begin().await?;
            let mut q =
                QueryBuilder::<DB>::new(format!("UPDATE pushq_preferences SET {column} = "));
            q.push_bind(granted);
            q.push(format!(", {column}_{when} = ")).push_bind(at);
            q.push(", updated_at = ").push_bind(at);
            q.push(" WHERE app = ").push_bind(app);
            q.push(" AND user_id = ").push_bind(user_id);
            q.build().persistent(false).execute(&mut *tx).await?;
            let mut q = QueryBuilder::<DB>::new(
                "INSERT INTO pushq_consent_events (app, user_id, consent, granted, at) ",
            );
            q.push_values([()], |mut b, ()| {
                b.push_bind(app)
                    .push_bind(user_id)
                    .push_bind(column)
                    .push_bind(granted)
                    .push_bind(at);
            });
            q.build().persistent(false).execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Sets (or, with `None`, clears) a user's quiet hours (`HH:MM`, `HH:MM`) and, when set,
    /// their time zone (cleared quiet hours leave the time zone as it is).
    pub async fn set_quiet_hours(
        &self,
        app: &str,
        user_id: &str,
        hours: Option<(&str, &str, &str)>,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.ensure_preferences(app, user_id, at).await?;
        self.count();
        with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new("UPDATE pushq_preferences SET quiet_start = ");
            q.push_bind(hours.map(|h| h.0));
            q.push(", quiet_end = ").push_bind(hours.map(|h| h.1));
            if let Some((_, _, zone)) = hours {
                q.push(", time_zone = ").push_bind(zone);
            }
            q.push(", updated_at = ").push_bind(at);
            q.push(" WHERE app = ").push_bind(app);
            q.push(" AND user_id = ").push_bind(user_id);
            q.build().persistent(false).execute(pool).await?;
        });
        Ok(())
    }

    /// Sets (or, with `None`, clears) a user's IANA time zone: where their night and quiet
    /// hours are counted (else `PUSHQ_TIME_ZONE`).
    pub async fn set_time_zone(
        &self,
        app: &str,
        user_id: &str,
        zone: Option<&str>,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.ensure_preferences(app, user_id, at).await?;
        self.count();
        with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new("UPDATE pushq_preferences SET time_zone = ");
            q.push_bind(zone);
            q.push(", updated_at = ").push_bind(at);
            q.push(" WHERE app = ").push_bind(app);
            q.push(" AND user_id = ").push_bind(user_id);
            q.build().persistent(false).execute(pool).await?;
        });
        Ok(())
    }

    /// Inserts the user's preferences row, unless there is one.
    async fn ensure_preferences(
        &self,
        app: &str,
        user_id: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.count();
        let d = self.dialect;
        with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new(
                d.insert_ignoring_duplicates("pushq_preferences (app, user_id, updated_at)"),
            );
            q.push_values([()], |mut b, ()| {
                b.push_bind(app).push_bind(user_id).push_bind(at);
            });
            q.push(d.on_conflict_do_nothing());
            q.build().persistent(false).execute(pool).await?;
        });
        Ok(())
    }

    /// Opts a user out of a category (`out`), or back in.
    pub async fn set_opt_out(
        &self,
        app: &str,
        user_id: &str,
        category: &str,
        out: bool,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.count();
        let d = self.dialect;
        with_pool!(self, pool, {
            let mut q;
            if out {
                q = QueryBuilder::<DB>::new(d.insert_ignoring_duplicates(
                    "pushq_opt_outs (app, user_id, category, created_at)",
                ));
                q.push_values([()], |mut b, ()| {
                    b.push_bind(app)
                        .push_bind(user_id)
                        .push_bind(category)
                        .push_bind(at);
                });
                q.push(d.on_conflict_do_nothing());
            } else {
                q = QueryBuilder::<DB>::new("DELETE FROM pushq_opt_outs WHERE app = ");
                q.push_bind(app)
                    .push(" AND user_id = ")
                    .push_bind(user_id)
                    .push(" AND category = ")
                    .push_bind(category);
            }
            q.build().persistent(false).execute(pool).await?;
        });
        Ok(())
    }

    /// A user's preferences (the default ones when none are stored) and opt-outs.
    pub async fn preferences(
        &self,
        app: &str,
        user_id: &str,
    ) -> StoreResult<(UserPreferences, Vec<String>)> {
        let d = self.dialect;
        self.count();
        let prefs: Option<UserPreferences> = with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new(format!(
                "SELECT advertising, advertising_granted_at, advertising_withdrawn_at, night, night_granted_at, night_withdrawn_at, {}, {}, {} FROM pushq_preferences WHERE app = ",
                d.column("quiet_start"),
                d.column("quiet_end"),
                d.column("time_zone")
            ));
            q.push_bind(app).push(" AND user_id = ").push_bind(user_id);
            q.build_query_as()
                .persistent(false)
                .fetch_optional(pool)
                .await?
        });
        self.count();
        let categories: Vec<(String,)> = with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new(format!(
                "SELECT {} FROM pushq_opt_outs WHERE app = ",
                d.column("category")
            ));
            q.push_bind(app).push(" AND user_id = ").push_bind(user_id);
            q.push(" ORDER BY category");
            q.build_query_as().persistent(false).fetch_all(pool).await?
        });
        Ok((
            prefs.unwrap_or_default(),
            categories.into_iter().map(|(c,)| c).collect(),
        ))
    }

    /// The users of `app` (every app when `None`) whose advertising consent was granted before
    /// `granted_before` and still holds: due the biennial reminder. Oldest first.
    pub async fn consent_reminders(
        &self,
        app: Option<&str>,
        granted_before: DateTime<Utc>,
    ) -> StoreResult<Vec<ConsentReminder>> {
        let d = self.dialect;
        self.count();
        let rows = with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new(format!(
                "SELECT {}, {}, advertising_granted_at, night FROM pushq_preferences WHERE advertising = {} AND advertising_granted_at < ",
                d.column("app"),
                d.column("user_id"),
                d.boolean(true)
            ));
            q.push_bind(granted_before);
            if let Some(app) = app {
                q.push(" AND app = ").push_bind(app);
            }
            q.push(" ORDER BY advertising_granted_at, app, user_id");
            q.build_query_as().persistent(false).fetch_all(pool).await?
        });
        Ok(rows)
    }
}

/// The rules statement: preferences (kind 0), opt-outs (kind 1) and one count per cap (kind
/// 2 + its index), as rows of one shape: `kind, app, user_id, a, b, c, n`.
fn rules_statement<'a, DB: sqlx::Database>(
    q: &mut QueryBuilder<'a, DB>,
    d: Dialect,
    apps: &[&'a str],
    ids: &[&'a str],
    caps: &'a [CapCount],
    batch_pushes: &'a [String],
) where
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    DateTime<Utc>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let users = |q: &mut QueryBuilder<'a, DB>, table: &str| {
        q.push(format!(" WHERE {table}.app IN ("));
        let mut list = q.separated(", ");
        for app in apps {
            list.push_bind(*app);
        }
        q.push(format!(") AND {table}.user_id IN ("));
        let mut list = q.separated(", ");
        for id in ids {
            list.push_bind(*id);
        }
        q.push(")");
    };
    let int = |e: &str| d.integer(e);
    let none = d.null_text();
    q.push(format!(
        "SELECT {} AS kind, {} AS app, {} AS user_id, {} AS a, {} AS b, {} AS c, {} AS n FROM pushq_preferences p",
        int("0"),
        d.text("p.app"),
        d.text("p.user_id"),
        d.text("p.quiet_start"),
        d.text("p.quiet_end"),
        d.text("p.time_zone"),
        int(&format!(
            "(CASE WHEN p.advertising = {t} THEN 1 ELSE 0 END + CASE WHEN p.night = {t} THEN 2 ELSE 0 END)",
            t = d.boolean(true)
        )),
    ));
    users(q, "p");
    q.push(format!(
        " UNION ALL SELECT {}, {}, {}, {}, {none}, {none}, {} FROM pushq_opt_outs o",
        int("1"),
        d.text("o.app"),
        d.text("o.user_id"),
        d.text("o.category"),
        int("0"),
    ));
    users(q, "o");
    for (i, cap) in caps.iter().enumerate() {
        cap_branch(q, d, i, cap, &users, batch_pushes);
    }
}

/// How far the clocks of two consumers may be apart, for the caps' index: what a cap counts
/// from `since` is looked up from `since` less this in `claimed_until`.
const CLOCK_MARGIN_MS: i64 = 60 * 60 * 1000;

/// One cap's branch of the rules statement: the user's `sent` pushes of its category (or
/// advertising pushes) since its window began; `users` writes the batch's users' condition.
fn cap_branch<'a, DB: sqlx::Database>(
    q: &mut QueryBuilder<'a, DB>,
    d: Dialect,
    i: usize,
    cap: &'a CapCount,
    users: &dyn Fn(&mut QueryBuilder<'a, DB>, &str),
    batch_pushes: &'a [String],
) where
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    DateTime<Utc>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let none = d.null_text();
    q.push(format!(
        " UNION ALL SELECT {}, {}, {}, {none}, {none}, {none}, {} FROM pushq_deliveries x",
        d.integer(&(i + 2).to_string()),
        d.text("x.app"),
        d.text("x.user_id"),
        d.integer("COUNT(DISTINCT x.push_id)"),
    ));
    users(q, "x");
    // The caps' index (migration 0010): a row sent since `since` was claimed until after it,
    // as its outcome is written before its claim lapses; the margin covers the clocks of two
    // consumers. Only rows of a category or advertising are in it.
    q.push(" AND (x.category IS NOT NULL OR x.advertising = TRUE) AND x.claimed_until >= ");
    q.push_bind(cap.since.timestamp_millis() - CLOCK_MARGIN_MS);
    q.push(" AND x.status = 'sent' AND x.sent_at >= ");
    q.push_bind(cap.since);
    match &cap.category {
        Some(category) => {
            q.push(" AND x.category = ").push_bind(category.as_str());
        }
        None => {
            q.push(format!(" AND x.advertising = {}", d.boolean(true)));
        }
    }
    if !batch_pushes.is_empty() {
        q.push(" AND x.push_id NOT IN (");
        let mut list = q.separated(", ");
        for id in batch_pushes {
            list.push_bind(id.as_str());
        }
        q.push(")");
    }
    q.push(" GROUP BY x.app, x.user_id");
}

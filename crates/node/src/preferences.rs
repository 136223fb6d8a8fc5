//! `Preferences`: what each user allows, on the deployment's database, for the consumer's
//! recipient rules (advertising and night-time consent under Korea's Network Act art. 50,
//! category opt-outs, quiet hours). Thin: the SQL lives in pushq-delivery.

use napi::bindgen_prelude::*;
use napi_derive::napi;
use pushq_delivery::rules::{parse_hhmm, parse_time_zone};
use pushq_delivery::store::{Consent, UserPreferences as Stored};

use crate::database::{app_value, db, iso, options_json, string_arg, LazyStore};
use crate::error::{self, BindingError};
use crate::options::read;

/// What {@link Preferences.setAdvertisingConsent} sets.
#[napi(object, object_from_js = false, object_to_js = false)]
#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdvertisingConsent {
    /// Consent to advertising pushes (granted or withdrawn now).
    pub granted: bool,
    /// Consent to advertising between 21:00 and 08:00 in the user's time zone. Left out: kept
    /// as it is, but withdrawn with `granted: false`.
    pub night: Option<bool>,
    /// The app; the object's `app` option when not given.
    pub app: Option<String>,
}

/// Quiet hours: no push (but critical categories) from `start` to `end` in `timeZone`.
#[napi(object)]
#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuietHours {
    /// `HH:MM`, 24-hour.
    pub start: String,
    /// `HH:MM`, 24-hour; before `start` for hours across midnight (`22:00`–`07:00`).
    pub end: String,
    /// IANA time zone (`Asia/Seoul`); also the user's zone for the night-time rule.
    pub time_zone: String,
}

/// A consent as stored: whether it holds, and when it was last granted and withdrawn.
#[napi(object)]
pub struct ConsentState {
    /// Whether the consent holds now.
    pub granted: bool,
    /// ISO-8601, when last granted.
    pub granted_at: Option<String>,
    /// ISO-8601, when last withdrawn.
    pub withdrawn_at: Option<String>,
}

/// A user's preferences.
#[napi(object)]
pub struct UserPreferences {
    /// The app.
    pub app: String,
    /// The user.
    pub user_id: String,
    /// Consent to advertising pushes.
    pub advertising: ConsentState,
    /// Consent to advertising pushes between 21:00 and 08:00.
    pub night: ConsentState,
    /// Categories the user opted out of.
    pub opted_out: Vec<String>,
    /// The user's IANA time zone, when set (with quiet hours, or `setTimeZone`); else the
    /// deployment's `PUSHQ_TIME_ZONE` applies.
    pub time_zone: Option<String>,
    /// The user's quiet hours, when set.
    pub quiet_hours: Option<QuietHours>,
}

/// A user due the biennial reminder of advertising consent.
#[napi(object)]
pub struct ConsentReminder {
    /// The app.
    pub app: String,
    /// The user.
    pub user_id: String,
    /// ISO-8601: when advertising consent was last granted.
    pub granted_at: String,
    /// Whether night-time consent is given too.
    pub night: bool,
}

/// Options of {@link Preferences.consentReminders}.
#[napi(object, object_from_js = false, object_to_js = false)]
#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReminderOptions {
    /// Only this app's users; every app's when not given.
    pub app: Option<String>,
    /// Consent granted at least this many days ago (default 730: two years).
    pub older_than_days: Option<u32>,
}

/// Options naming an app.
#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AppOnly {
    app: Option<String>,
}

/// The app of options `{ app? }` (checked as a push's), else `default_app`.
fn app_of(json: Option<&str>, default_app: String) -> std::result::Result<String, BindingError> {
    let app = read_options::<AppOnly>(json)?
        .app
        .map(app_value)
        .transpose()?;
    Ok(app.unwrap_or(default_app))
}

/// A user id as stored (1–255 characters, no U+0000), else `PUSHQ_INVALID_ARGUMENT` naming it.
fn user_id(
    id: std::result::Result<String, BindingError>,
) -> std::result::Result<String, BindingError> {
    let id = id?;
    if id.is_empty() || id.chars().count() > 255 || id.contains('\0') {
        return Err(invalid(
            "userId",
            "must be 1 to 255 characters, without U+0000",
        ));
    }
    Ok(id)
}

fn invalid(field: &str, problem: &str) -> BindingError {
    BindingError::InvalidField {
        field: field.to_owned(),
        message: format!("{field}: {problem}"),
    }
}

fn read_options<T: Default + serde::de::DeserializeOwned>(
    json: Option<&str>,
) -> std::result::Result<T, BindingError> {
    read(json, "option").map_err(|e| BindingError::InvalidField {
        message: e.message("options"),
        field: Some(e.field)
            .filter(|f| !f.is_empty())
            .unwrap_or_else(|| "options".to_owned()),
    })
}

fn consent(
    granted: bool,
    at: Option<chrono::DateTime<chrono::Utc>>,
    off: Option<chrono::DateTime<chrono::Utc>>,
) -> ConsentState {
    ConsentState {
        granted,
        granted_at: at.map(iso),
        withdrawn_at: off.map(iso),
    }
}

/// Each user's advertising and night-time consent, category opt-outs and quiet hours, which the
/// consumer checks before it sends (see the README's *Advertising pushes*). Errors:
/// `PUSHQ_INVALID_ARGUMENT` (with `field`), `PUSHQ_DATABASE`.
#[napi]
pub struct Preferences {
    store: LazyStore,
}

#[napi]
impl Preferences {
    /// Opens the preferences; the database is connected on first use (and its schema applied,
    /// with `migrate: true`).
    #[napi(constructor, ts_args_type = "options?: DatabaseOptions")]
    pub fn new(env: Env, options: Option<Unknown>) -> napi::Result<Self> {
        let json = options_json(&env, options)?;
        let store = LazyStore::new(json.as_deref(), true).map_err(|e| error::to_js(&env, &e))?;
        Ok(Preferences { store })
    }

    /// Grants or withdraws advertising consent (and, with `night`, night-time consent), now;
    /// every change is also kept in `pushq_consent_events`.
    #[napi(
        ts_args_type = "userId: string, consent: AdvertisingConsent",
        ts_return_type = "Promise<void>"
    )]
    pub fn set_advertising_consent<'env>(
        &self,
        env: &'env Env,
        user: Unknown,
        consent: Unknown,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        let user = user_id(string_arg(user, "userId")?);
        let json = crate::stringify(env, consent)?;
        let default_app = self.store.app.clone();
        self.store.call(
            env,
            move |s| async move {
                let user = user?;
                let c: AdvertisingConsent = match json.as_deref() {
                    Some(j) if j.trim_start().starts_with('{') => read_options(Some(j))?,
                    _ => {
                        return Err(invalid(
                            "consent",
                            "must be an object { granted, night?, app? }",
                        ))
                    }
                };
                if !c.granted && c.night == Some(true) {
                    return Err(invalid(
                        "night",
                        "cannot be granted without advertising consent (granted: false)",
                    ));
                }
                let app = c.app.map(app_value).transpose()?.unwrap_or(default_app);
                let now = chrono::Utc::now();
                s.set_consent(&app, &user, Consent::Advertising, c.granted, now)
                    .await
                    .map_err(db)?;
                // Night-time consent goes with advertising consent: withdrawn with it.
                let night = c.night.or((!c.granted).then_some(false));
                if let Some(night) = night {
                    s.set_consent(&app, &user, Consent::Night, night, now)
                        .await
                        .map_err(db)?;
                }
                Ok(())
            },
            |()| (),
        )
    }

    /// Opts the user out of a category: its pushes are recorded `suppressed` `OPTED_OUT`
    /// (unless the category is critical, `PUSHQ_CRITICAL_CATEGORIES`).
    #[napi(
        ts_args_type = "userId: string, category: string, options?: AppOptions",
        ts_return_type = "Promise<void>"
    )]
    pub fn opt_out<'env>(
        &self,
        env: &'env Env,
        user: Unknown,
        category: Unknown,
        options: Option<Unknown>,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        self.set_opt_out(env, user, category, options, true)
    }

    /// Opts the user back in to a category.
    #[napi(
        ts_args_type = "userId: string, category: string, options?: AppOptions",
        ts_return_type = "Promise<void>"
    )]
    pub fn opt_in<'env>(
        &self,
        env: &'env Env,
        user: Unknown,
        category: Unknown,
        options: Option<Unknown>,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        self.set_opt_out(env, user, category, options, false)
    }

    /// Sets the user's quiet hours (pushes inside them wait until their end), or clears them
    /// with `null`.
    #[napi(
        ts_args_type = "userId: string, hours: QuietHours | null, options?: AppOptions",
        ts_return_type = "Promise<void>"
    )]
    pub fn set_quiet_hours<'env>(
        &self,
        env: &'env Env,
        user: Unknown,
        hours: Unknown,
        options: Option<Unknown>,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        let user = user_id(string_arg(user, "userId")?);
        let hours = crate::stringify(env, hours)?;
        let json = options_json(env, options)?;
        let default_app = self.store.app.clone();
        self.store.call(
            env,
            move |s| async move {
                let user = user?;
                let app = app_of(json.as_deref(), default_app)?;
                let hours: Option<QuietHours> = match hours.as_deref() {
                    None | Some("null") => None,
                    Some(j) if j.trim_start().starts_with('{') => Some(
                        read(Some(j), "field").map_err(|e| BindingError::InvalidField {
                            message: e.message("hours"),
                            field: e.field,
                        })?,
                    ),
                    Some(_) => {
                        return Err(invalid("hours", "must be { start, end, timeZone } or null"))
                    }
                };
                if let Some(h) = &hours {
                    for (field, value) in [("start", &h.start), ("end", &h.end)] {
                        if parse_hhmm(value).is_none() {
                            return Err(invalid(field, "must be HH:MM (00:00 to 23:59)"));
                        }
                    }
                    parse_time_zone(&h.time_zone).map_err(|e| invalid("timeZone", &e))?;
                }
                let set = hours
                    .as_ref()
                    .map(|h| (h.start.as_str(), h.end.as_str(), h.time_zone.as_str()));
                s.set_quiet_hours(&app, &user, set, chrono::Utc::now())
                    .await
                    .map_err(db)
            },
            |()| (),
        )
    }

    /// Sets the user's IANA time zone (`Asia/Seoul`), where their night (21:00–08:00) and
    /// quiet hours are counted, or clears it with `null` (then `PUSHQ_TIME_ZONE` applies).
    #[napi(
        ts_args_type = "userId: string, timeZone: string | null, options?: AppOptions",
        ts_return_type = "Promise<void>"
    )]
    pub fn set_time_zone<'env>(
        &self,
        env: &'env Env,
        user: Unknown,
        zone: Unknown,
        options: Option<Unknown>,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        let user = user_id(string_arg(user, "userId")?);
        let zone = match zone.get_type()? {
            ValueType::Null => Ok(None),
            _ => string_arg(zone, "timeZone")?.map(Some),
        };
        let json = options_json(env, options)?;
        let default_app = self.store.app.clone();
        self.store.call(
            env,
            move |s| async move {
                let user = user?;
                let zone = zone?;
                if let Some(z) = &zone {
                    parse_time_zone(z).map_err(|e| invalid("timeZone", &e))?;
                }
                let app = app_of(json.as_deref(), default_app)?;
                s.set_time_zone(&app, &user, zone.as_deref(), chrono::Utc::now())
                    .await
                    .map_err(db)
            },
            |()| (),
        )
    }

    /// The user's preferences (defaults when nothing is stored: no consent, no quiet hours).
    #[napi(
        ts_args_type = "userId: string, options?: AppOptions",
        ts_return_type = "Promise<UserPreferences>"
    )]
    pub fn get<'env>(
        &self,
        env: &'env Env,
        user: Unknown,
        options: Option<Unknown>,
    ) -> napi::Result<PromiseRaw<'env, UserPreferences>> {
        let user = user_id(string_arg(user, "userId")?);
        let json = options_json(env, options)?;
        let default_app = self.store.app.clone();
        self.store.call(
            env,
            move |s| async move {
                let user = user?;
                let app = app_of(json.as_deref(), default_app)?;
                let (prefs, opted_out) = s.preferences(&app, &user).await.map_err(db)?;
                Ok((app, user, prefs, opted_out))
            },
            |(app, user_id, p, opted_out): (String, String, Stored, Vec<String>)| UserPreferences {
                app,
                user_id,
                advertising: consent(
                    p.advertising,
                    p.advertising_granted_at,
                    p.advertising_withdrawn_at,
                ),
                night: consent(p.night, p.night_granted_at, p.night_withdrawn_at),
                opted_out,
                time_zone: p.time_zone.clone(),
                quiet_hours: match (p.quiet_start, p.quiet_end, p.time_zone) {
                    (Some(start), Some(end), Some(time_zone)) => Some(QuietHours {
                        start,
                        end,
                        time_zone,
                    }),
                    _ => None,
                },
            },
        )
    }

    /// The users whose advertising consent was granted `olderThanDays` (default 730) or more
    /// days ago and still holds: Korea's Network Act asks that each be reminded of it every two
    /// years. Oldest first.
    #[napi(
        ts_args_type = "options?: ReminderOptions",
        ts_return_type = "Promise<Array<ConsentReminder>>"
    )]
    pub fn consent_reminders<'env>(
        &self,
        env: &'env Env,
        options: Option<Unknown>,
    ) -> napi::Result<PromiseRaw<'env, Vec<ConsentReminder>>> {
        let json = options_json(env, options)?;
        self.store.call(
            env,
            move |s| async move {
                let o: ReminderOptions = read_options(json.as_deref())?;
                let app = o.app.map(app_value).transpose()?;
                let days = i64::from(o.older_than_days.unwrap_or(730));
                let before = chrono::Utc::now() - chrono::Duration::days(days);
                s.consent_reminders(app.as_deref(), before)
                    .await
                    .map_err(db)
            },
            |rows| {
                rows.into_iter()
                    .map(|r| ConsentReminder {
                        app: r.app,
                        user_id: r.user_id,
                        granted_at: iso(r.advertising_granted_at),
                        night: r.night,
                    })
                    .collect()
            },
        )
    }
}

impl Preferences {
    fn set_opt_out<'env>(
        &self,
        env: &'env Env,
        user: Unknown,
        category: Unknown,
        options: Option<Unknown>,
        out: bool,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        let user = user_id(string_arg(user, "userId")?);
        let category = string_arg(category, "category")?;
        let json = options_json(env, options)?;
        let default_app = self.store.app.clone();
        self.store.call(
            env,
            move |s| async move {
                let user = user?;
                let category = category?;
                if category.is_empty()
                    || category.chars().count() > pushq_model::push::MAX_CATEGORY_CHARS
                    || category.contains('\0')
                {
                    return Err(invalid(
                        "category",
                        "must be 1 to 100 characters, without U+0000",
                    ));
                }
                let app = app_of(json.as_deref(), default_app)?;
                s.set_opt_out(&app, &user, &category, out, chrono::Utc::now())
                    .await
                    .map_err(db)
            },
            |()| (),
        )
    }
}

//! Recipient rules: whether a user may receive a push now. Advertising consent and night-time
//! consent (Korea's Network Act art. 50), category opt-outs, quiet hours in the user's time
//! zone and frequency caps, decided per (push, user) from what one statement per batch read
//! ([`crate::store::RulesData`]). Critical categories bypass opt-outs, quiet hours and caps,
//! never advertising consent.

use chrono::{DateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

pub use crate::config::{
    parse_caps, parse_time_zone, FrequencyCap, RecipientRules, ADVERTISING, DEFAULT_TIME_ZONE,
};

use crate::store::{CapCount, UserPreferences};

/// `error_code` of a user without advertising consent (`suppressed`).
pub const NO_CONSENT: &str = "NO_CONSENT";
/// `error_code` of a user who opted out of the push's category (`suppressed`).
pub const OPTED_OUT: &str = "OPTED_OUT";
/// `error_code` of a user over a frequency cap (`suppressed`).
pub const FREQUENCY_CAPPED: &str = "FREQUENCY_CAPPED";
/// `error_code` of an advertising push deferred to 08:00 (`deferred`).
pub const NIGHT_TIME: &str = "NIGHT_TIME";
/// `error_code` of a push deferred to the end of the user's quiet hours (`deferred`).
pub const QUIET_HOURS: &str = "QUIET_HOURS";

/// Night-time for advertising: from 21:00 to 08:00 in the user's time zone.
const NIGHT_STARTS: (u32, u32) = (21, 0);
const NIGHT_ENDS: (u32, u32) = (8, 0);

/// What the rules say of one (push, user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Sent now.
    Send,
    /// Recorded `suppressed` with this code.
    Suppress(&'static str),
    /// Recorded `deferred` with `reason`; enqueued again for `until_ms` (epoch milliseconds).
    #[allow(missing_docs)]
    Defer { until_ms: i64, reason: &'static str },
}

/// What the rules are asked about one push.
#[derive(Debug, Clone, Copy)]
pub struct PushFacts<'a> {
    /// `advertising: true`.
    pub advertising: bool,
    /// The push's `category`.
    pub category: Option<&'a str>,
}

impl RecipientRules {
    /// What each cap counts, from `now` back over its window.
    pub fn cap_counts(&self, now: DateTime<Utc>) -> Vec<CapCount> {
        self.caps
            .iter()
            .map(|cap| CapCount {
                category: cap.category.clone(),
                since: now - chrono::Duration::from_std(cap.window).unwrap_or_default(),
            })
            .collect()
    }

    /// The caps (by index) a push counts against.
    pub fn caps_of(&self, push: PushFacts<'_>) -> Vec<usize> {
        (0..self.caps.len())
            .filter(|&i| match &self.caps[i].category {
                None => push.advertising,
                Some(c) => push.category == Some(c.as_str()),
            })
            .collect()
    }

    /// The verdict for one user: `prefs` (`None`: nothing stored), the categories the user
    /// opted out of, and `count(cap)`: the pushes cap `cap` counts for the user so far. In
    /// order: advertising consent, opt-out, the night and quiet-hours windows (the later end,
    /// when both hold), then caps (counted when the push would be sent).
    pub fn judge(
        &self,
        push: PushFacts<'_>,
        prefs: Option<&UserPreferences>,
        opted_out: &[String],
        count: impl Fn(usize) -> u64,
        now: DateTime<Utc>,
    ) -> Verdict {
        let critical = push
            .category
            .is_some_and(|c| self.critical.iter().any(|k| k == c));
        let prefs_or_none = prefs.cloned().unwrap_or_default();
        if push.advertising && !prefs_or_none.advertising {
            return Verdict::Suppress(NO_CONSENT);
        }
        if !critical
            && push
                .category
                .is_some_and(|c| opted_out.iter().any(|o| o == c))
        {
            return Verdict::Suppress(OPTED_OUT);
        }
        if let Some((until_ms, reason)) = self.window(push, &prefs_or_none, critical, now) {
            return Verdict::Defer { until_ms, reason };
        }
        if !critical
            && self
                .caps_of(push)
                .into_iter()
                .any(|i| count(i) >= self.caps[i].limit)
        {
            return Verdict::Suppress(FREQUENCY_CAPPED);
        }
        Verdict::Send
    }
}

impl RecipientRules {
    /// The end of the window the user is in now, if one holds (the later end when both the
    /// night and quiet hours do), with the reason to record.
    fn window(
        &self,
        push: PushFacts<'_>,
        prefs: &UserPreferences,
        critical: bool,
        now: DateTime<Utc>,
    ) -> Option<(i64, &'static str)> {
        let zone = prefs
            .time_zone
            .as_deref()
            .and_then(|z| parse_time_zone(z).ok())
            .unwrap_or(self.time_zone);
        let mut defer: Option<(i64, &'static str)> = None;
        let mut later = |end: Option<i64>, reason| {
            if let Some(end) = end {
                if defer.is_none_or(|(t, _)| end > t) {
                    defer = Some((end, reason));
                }
            }
        };
        if push.advertising && !prefs.night {
            let (start, end) = (hm(NIGHT_STARTS), hm(NIGHT_ENDS));
            later(window_end(now, zone, start, end), NIGHT_TIME);
        }
        if !critical {
            let start = prefs.quiet_start.as_deref().and_then(parse_hhmm);
            let end = prefs.quiet_end.as_deref().and_then(parse_hhmm);
            if let Some((start, end)) = start.zip(end) {
                later(window_end(now, zone, start, end), QUIET_HOURS);
            }
        }
        defer
    }
}

fn hm((h, m): (u32, u32)) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).expect("a valid time")
}

/// When the window `[start, end)` (in `zone`, across midnight when `end` ≤ `start`) that holds
/// `now` ends, in epoch milliseconds; `None` when `now` is outside it (or `start == end`).
pub fn window_end(now: DateTime<Utc>, zone: Tz, start: NaiveTime, end: NaiveTime) -> Option<i64> {
    let local = now.with_timezone(&zone);
    let t = local.time();
    let inside = match start.cmp(&end) {
        std::cmp::Ordering::Equal => false,
        std::cmp::Ordering::Less => start <= t && t < end,
        std::cmp::Ordering::Greater => t >= start || t < end,
    };
    if !inside {
        return None;
    }
    // The first `end` after now: today's, else tomorrow's. A wall-clock time a DST change
    // repeats maps to the first of its instants after now; one it skips, to an hour later.
    let today = local.date_naive();
    for date in [today, today.succ_opt()?] {
        let naive = date.and_time(end);
        let at = match zone.from_local_datetime(&naive) {
            chrono::LocalResult::None => zone
                .from_local_datetime(&(naive + chrono::Duration::hours(1)))
                .earliest(),
            mapped => [mapped.earliest(), mapped.latest()]
                .into_iter()
                .flatten()
                .find(|t| *t > local),
        };
        if let Some(at) = at.filter(|t| *t > local) {
            return Some(at.with_timezone(&Utc).timestamp_millis());
        }
    }
    None
}

/// `HH:MM` (00:00–23:59).
pub fn parse_hhmm(text: &str) -> Option<NaiveTime> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    NaiveTime::from_hms_opt(h.parse().ok()?, m.parse().ok()?, 0)
}

#[cfg(test)]
mod tests;

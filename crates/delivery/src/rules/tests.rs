use super::*;
use chrono::NaiveTime;

fn kst(h: u32, m: u32) -> DateTime<Utc> {
    DEFAULT_TIME_ZONE
        .with_ymd_and_hms(2026, 12, 7, h, m, 0)
        .unwrap()
        .with_timezone(&Utc)
}

fn ad() -> PushFacts<'static> {
    PushFacts {
        advertising: true,
        category: None,
    }
}

fn consenting(night: bool) -> UserPreferences {
    UserPreferences {
        advertising: true,
        night,
        ..Default::default()
    }
}

#[test]
fn advertising_at_night_waits_for_eight_in_the_users_zone() {
    let rules = RecipientRules::default();
    let prefs = consenting(false);
    let judge = |now| rules.judge(ad(), Some(&prefs), &[], |_| 0, now);
    assert_eq!(judge(kst(20, 59)), Verdict::Send);
    let eight_next_day = DEFAULT_TIME_ZONE
        .with_ymd_and_hms(2026, 12, 8, 8, 0, 0)
        .unwrap()
        .timestamp_millis();
    let night = |until_ms| Verdict::Defer {
        until_ms,
        reason: NIGHT_TIME,
    };
    assert_eq!(judge(kst(21, 0)), night(eight_next_day));
    assert_eq!(judge(kst(7, 59)), night(kst(8, 0).timestamp_millis()));
    assert_eq!(judge(kst(8, 0)), Verdict::Send);
    // Night-time consent lets it through; no consent at all suppresses it, night or day.
    let night_ok = consenting(true);
    assert_eq!(
        rules.judge(ad(), Some(&night_ok), &[], |_| 0, kst(23, 0)),
        Verdict::Send
    );
    assert_eq!(
        rules.judge(ad(), None, &[], |_| 0, kst(12, 0)),
        Verdict::Suppress(NO_CONSENT)
    );
    // A user in New York: 21:00 KST is 07:00 there, still night until 08:00 New York time.
    let ny = UserPreferences {
        time_zone: Some("America/New_York".into()),
        ..consenting(false)
    };
    let until = chrono_tz::America::New_York
        .with_ymd_and_hms(2026, 12, 7, 8, 0, 0)
        .unwrap()
        .timestamp_millis();
    assert_eq!(
        rules.judge(ad(), Some(&ny), &[], |_| 0, kst(21, 0)),
        night(until)
    );
    assert_eq!(
        rules.judge(ad(), Some(&ny), &[], |_| 0, kst(22, 0)),
        Verdict::Send
    );
}

#[test]
fn quiet_hours_opt_outs_and_caps_yield_to_critical_categories_but_consent_does_not() {
    let rules = RecipientRules {
        caps: parse_caps("marketing=1/day, advertising=2/week").unwrap(),
        critical: vec!["security".into()],
        ..Default::default()
    };
    let quiet = UserPreferences {
        quiet_start: Some("22:30".into()),
        quiet_end: Some("07:00".into()),
        ..Default::default()
    };
    let push = |category| PushFacts {
        advertising: false,
        category,
    };
    assert_eq!(
        rules.judge(
            push(Some("marketing")),
            Some(&quiet),
            &[],
            |_| 0,
            kst(23, 0)
        ),
        Verdict::Defer {
            until_ms: DEFAULT_TIME_ZONE
                .with_ymd_and_hms(2026, 12, 8, 7, 0, 0)
                .unwrap()
                .timestamp_millis(),
            reason: QUIET_HOURS
        }
    );
    assert_eq!(
        rules.judge(
            push(Some("marketing")),
            Some(&quiet),
            &[],
            |_| 0,
            kst(22, 29)
        ),
        Verdict::Send
    );
    assert_eq!(
        rules.judge(push(Some("security")), Some(&quiet), &[], |_| 5, kst(23, 0)),
        Verdict::Send
    );
    let out = vec!["marketing".to_owned(), "security".to_owned()];
    assert_eq!(
        rules.judge(push(Some("marketing")), None, &out, |_| 0, kst(12, 0)),
        Verdict::Suppress(OPTED_OUT)
    );
    assert_eq!(
        rules.judge(push(Some("security")), None, &out, |_| 0, kst(12, 0)),
        Verdict::Send
    );
    assert_eq!(
        rules.judge(push(Some("marketing")), None, &[], |_| 1, kst(12, 0)),
        Verdict::Suppress(FREQUENCY_CAPPED)
    );
    assert_eq!(
        rules.judge(push(Some("marketing")), None, &[], |_| 0, kst(12, 0)),
        Verdict::Send
    );
    // Advertising counts as its own category, whatever the push's category.
    assert_eq!(
        rules.caps_of(PushFacts {
            advertising: true,
            category: Some("marketing")
        }),
        vec![0, 1]
    );
    let critical_ad = PushFacts {
        advertising: true,
        category: Some("security"),
    };
    assert_eq!(
        rules.judge(critical_ad, None, &[], |_| 0, kst(12, 0)),
        Verdict::Suppress(NO_CONSENT)
    );
}

#[test]
fn settings_that_cannot_be_read_name_their_variable() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    };
    let e = RecipientRules::from_env(env(&[("PUSHQ_FREQUENCY_CAPS", "marketing=3/month")]))
        .unwrap_err();
    assert!(e.starts_with("PUSHQ_FREQUENCY_CAPS:"), "{e}");
    let e = RecipientRules::from_env(env(&[("PUSHQ_TIME_ZONE", "Mars/Olympus")])).unwrap_err();
    assert!(e.starts_with("PUSHQ_TIME_ZONE:"), "{e}");
    let rules = RecipientRules::from_env(env(&[
        ("PUSHQ_TIME_ZONE", "Europe/Berlin"),
        ("PUSHQ_CRITICAL_CATEGORIES", "security, billing"),
    ]))
    .unwrap();
    assert_eq!(rules.time_zone, chrono_tz::Europe::Berlin);
    assert_eq!(rules.critical, vec!["security", "billing"]);
    assert_eq!(parse_hhmm("7:00"), None);
    assert_eq!(parse_hhmm("24:00"), None);
}

#[test]
fn a_window_ends_at_the_first_end_after_now_across_dst_changes() {
    let berlin = chrono_tz::Europe::Berlin;
    let at = |y, mo, d, h, mi| {
        berlin
            .with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .unwrap()
            .with_timezone(&Utc)
    };
    let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap();
    // Autumn: 02:00-03:00 happens twice on 2026-10-25. Inside 01:00-02:30, at the second 02:10:
    // the window ends at the second 02:30, never at the first one, which is past.
    let second_0210 = berlin
        .from_local_datetime(
            &chrono::NaiveDate::from_ymd_opt(2026, 10, 25)
                .unwrap()
                .and_hms_opt(2, 10, 0)
                .unwrap(),
        )
        .latest()
        .unwrap()
        .with_timezone(&Utc);
    let end = window_end(second_0210, berlin, t(1, 0), t(2, 30)).unwrap();
    assert_eq!(end - second_0210.timestamp_millis(), 20 * 60_000);
    // Spring: 02:00-03:00 does not exist on 2026-03-29: a window ending at 02:30 ends an hour later.
    let end = window_end(at(2026, 3, 29, 1, 0), berlin, t(0, 0), t(2, 30)).unwrap();
    assert_eq!(end, at(2026, 3, 29, 3, 30).timestamp_millis());
    // Across midnight, after its end has passed today: tomorrow's.
    let end = window_end(at(2026, 12, 7, 23, 0), berlin, t(22, 0), t(7, 0)).unwrap();
    assert_eq!(end, at(2026, 12, 8, 7, 0).timestamp_millis());
}

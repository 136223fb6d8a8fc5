//! `pushq devices`: registering tokens and FIDs per app, listing them, and `prune` deleting
//! invalidated and stale devices in chunks, with a count (the store's own prune is tested on
//! every dialect in pushq-delivery's `apps` tests).

use std::process::{Command, Output};

use pushq_test_support::Db;

const PUSHQ: &str = env!("CARGO_BIN_EXE_pushq");

fn pushq(db: &Db, args: &[&str]) -> Output {
    Command::new(PUSHQ)
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env_remove("PUSHQ_APP")
        .env_remove("PUSHQ_STALE_DEVICE_DAYS")
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn devices_are_registered_per_app_and_pruned_when_stale_or_dead() {
    let db = Db::sqlite().await;
    ok(pushq(&db, &["migrate"]));
    for args in [
        &["--token", "tok-1"][..],
        &["--token", "tok-2"],
        &["--token", "tok-3"],
        &["--fid", "fid-1", "--app", "trainer"],
    ] {
        ok(pushq(
            &db,
            &[&["devices", "register", "--user-id", "u"][..], args].concat(),
        ));
    }
    let listed = ok(pushq(&db, &["devices", "list", "--user-id", "u"]));
    let rows: Vec<Vec<&str>> = listed.lines().map(|l| l.split('\t').collect()).collect();
    let kinds: Vec<(&str, &str, &str)> = rows.iter().map(|r| (r[0], r[1], r[2])).collect();
    assert_eq!(
        kinds,
        [
            ("default", "token", "tok-1"),
            ("default", "token", "tok-2"),
            ("default", "token", "tok-3"),
            ("trainer", "fid", "fid-1"),
        ],
        "{listed}"
    );
    let trainer = ok(pushq(
        &db,
        &["devices", "list", "--user-id", "u", "--app", "trainer"],
    ));
    assert_eq!(trainer.lines().count(), 1, "{trainer}");
    let both = pushq(
        &db,
        &[
            "devices",
            "register",
            "--user-id",
            "u",
            "--token",
            "t",
            "--fid",
            "f",
        ],
    );
    assert!(!both.status.success());

    // tok-2 and the FID unseen for 100 days, tok-3 dead.
    db.execute("UPDATE pushq_devices SET last_seen_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-100 days') WHERE token IN ('tok-2', 'fid-1')")
        .await;
    db.execute("UPDATE pushq_devices SET invalidated_at = updated_at WHERE token = 'tok-3'")
        .await;
    let dry = ok(pushq(
        &db,
        &["devices", "prune", "--stale-days", "90", "--dry-run"],
    ));
    assert!(dry.starts_with("3 devices would be deleted"), "{dry}");
    let none = ok(pushq(&db, &["devices", "prune", "--stale-days", "200"]));
    assert!(none.starts_with("1 devices deleted"), "{none}");
    let pruned = ok(pushq(
        &db,
        &["devices", "prune", "--stale-days", "90", "--chunk", "1"],
    ));
    assert!(pruned.starts_with("2 devices deleted"), "{pruned}");
    let left = ok(pushq(&db, &["devices", "list", "--user-id", "u"]));
    assert_eq!(left.lines().count(), 1, "{left}");
    assert!(left.contains("\ttok-1\t"), "{left}");
}

/// `pushq devices unregister` of a token registered in another app says which app holds it and
/// what to pass, instead of "no such device"; with `--app` it is removed.
#[tokio::test(flavor = "multi_thread")]
async fn unregistering_another_apps_token_names_the_app() {
    let db = Db::sqlite().await;
    ok(pushq(&db, &["migrate"]));
    ok(pushq(
        &db,
        &[
            "devices",
            "register",
            "--user-id",
            "u",
            "--token",
            "tok-t",
            "--app",
            "trainer",
        ],
    ));
    let out = pushq(&db, &["devices", "unregister", "--token", "tok-t"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no such device in app \"default\": the token is registered in app \"trainer\"; pass --app trainer"),
        "{stderr}"
    );
    let out = pushq(&db, &["devices", "unregister", "--token", "nobody's"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not registered in app \"default\", nor in any other"),
        "{stderr}"
    );
    ok(pushq(
        &db,
        &[
            "devices",
            "unregister",
            "--token",
            "tok-t",
            "--app",
            "trainer",
        ],
    ));
    let listed = ok(pushq(&db, &["devices", "list", "--user-id", "u"]));
    assert!(!listed.contains("tok-t"), "{listed}");
}

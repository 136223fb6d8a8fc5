//! pushq's validation and FCM bodies against firebase-admin's, on the corpus in
//! `tests/fixtures/fcm_corpus.json` (written by `node __test__/corpus/generate.js` from
//! firebase-admin 14's own `validateMessage`; the jest suite fails if the file is stale).

use pushq_model::{Push, Recipient, Target};
use serde_json::Value;

/// The device the oracle sends a push that fans out to: a token, or for `fids` an installation ID.
const DEVICE: &str = "corpus-device-token";
const DEVICE_FID: &str = "corpus-device-fid";

fn corpus() -> Vec<Value> {
    let text = include_str!("fixtures/fcm_corpus.json");
    serde_json::from_str(text).expect("fixture is JSON")
}

#[test]
fn corpus_is_big_enough_to_mean_something() {
    let cases = corpus();
    let valid = cases.iter().filter(|c| c["valid"] == true).count();
    assert!(
        valid >= 30 && cases.len() - valid >= 30,
        "{valid} valid of {}",
        cases.len()
    );
}

#[test]
fn corpus_covers_fids() {
    let cases = corpus();
    let valid_with = |field: &str| {
        cases
            .iter()
            .filter(|c| c["valid"] == true && c["push"].get(field).is_some())
            .count()
    };
    assert!(valid_with("fid") >= 4 && valid_with("fids") >= 2);
    let body = |name: &str| {
        let case = cases.iter().find(|c| c["name"] == name).expect(name);
        case["body"]["message"].clone()
    };
    // firebase-admin 14 puts the FID where a token goes; pushq's fields stay behind.
    assert_eq!(body("fid-only")["fid"], "cX1dQ7Fk2a0b9Zp-Wq_3rT");
    assert_eq!(body("fids")["fid"], DEVICE_FID);
    assert!(body("fids-android-apns").get("category").is_none());
    assert!(body("expires-at-offset").get("expiresAt").is_none());
    assert!(body("app").get("app").is_none());
}

#[test]
fn verdicts_and_bodies_match_firebase_admin() {
    let mut failures = Vec::new();
    for case in corpus() {
        let name = case["name"].as_str().unwrap_or("?");
        let result = Push::from_value(case["push"].clone());
        match (case["valid"].as_bool(), result) {
            (Some(true), Ok(push)) => {
                let body = match push.target() {
                    Target::Fids(_) => push.fcm_request_for(Recipient::Fid(DEVICE_FID), false),
                    target if target.fans_out() => {
                        push.fcm_request_for(Recipient::Token(DEVICE), false)
                    }
                    _ => push.fcm_request(false).unwrap(),
                };
                if body != case["body"] {
                    failures.push(format!(
                        "{name}: body differs\n  pushq:          {body}\n  firebase-admin: {}",
                        case["body"]
                    ));
                }
            }
            (Some(false), Err(err)) => {
                let field = case["field"].as_str().unwrap_or_default();
                if err.field != field {
                    failures.push(format!(
                        "{name}: error names {:?}, expected {field:?} ({err})",
                        err.field
                    ));
                }
            }
            (Some(true), Err(err)) => failures.push(format!(
                "{name}: firebase-admin accepts, pushq rejects: {err}"
            )),
            (Some(false), Ok(_)) => {
                failures.push(format!("{name}: firebase-admin rejects, pushq accepts"))
            }
            (None, _) => failures.push(format!("{name}: fixture has no verdict")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

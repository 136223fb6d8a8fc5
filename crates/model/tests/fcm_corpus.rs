//! pushq's validation and FCM bodies against firebase-admin's, on the corpus in
//! `tests/fixtures/fcm_corpus.json` (written by `node __test__/corpus/generate.js` from
//! firebase-admin's own `validateMessage`; the jest suite fails if the file is stale).

use pushq_model::{Push, Target};
use serde_json::Value;

const DEVICE: &str = "corpus-device-token";

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
fn verdicts_and_bodies_match_firebase_admin() {
    let mut failures = Vec::new();
    for case in corpus() {
        let name = case["name"].as_str().unwrap_or("?");
        let result = Push::from_value(case["push"].clone());
        match (case["valid"].as_bool(), result) {
            (Some(true), Ok(push)) => {
                let body = match push.target() {
                    Target::Token(_) | Target::Topic(_) | Target::Condition(_) => {
                        push.fcm_request(false).unwrap()
                    }
                    _ => push.fcm_request_for_token(DEVICE, false),
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

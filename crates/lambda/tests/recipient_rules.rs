//! The recipient rules through the real `pushq-lambda` binary: the same engine as `pushq worker`
//! and local mode, so the same case (crates/test-support/src/rules.rs) gives the same rows, no
//! send, and the same deferral, made by the function itself on EventBridge Scheduler (moto).

use pushq_delivery::store::Store;
use pushq_test_support::lambda::{failed_items, sqs_event, Lambda};
use pushq_test_support::rules::{check_rules_case, rules_bodies, rules_case};
use pushq_test_support::{Db, Fcm, Sqs};

const BOOTSTRAP: &str = env!("CARGO_BIN_EXE_pushq-lambda");

#[tokio::test(flavor = "multi_thread")]
async fn the_lambda_suppresses_and_defers_as_the_engine_does() {
    let (fcm, sqs, db) = (Fcm::start(), Sqs::start(), Db::sqlite().await);
    let store = Store::connect(&db.url, 1).await.unwrap();
    store.migrate().await.unwrap();
    store.close().await;
    let queue = sqs.fresh_queue().await;
    let case = rules_case(&sqs, &db, &queue).await;
    let mut env = fcm.env();
    env.push(("DATABASE_URL".into(), db.url.clone()));
    env.extend(case.env.iter().cloned());
    let mut lambda = Lambda::start(BOOTSTRAP, &env).await;
    let [marketing, ad] = rules_bodies();
    let event = sqs_event(&[("m-marketing", marketing), ("m-ad", ad)]);
    let answer = lambda
        .invoke("req-1", event, 30, std::time::Duration::from_secs(90))
        .await;
    assert_eq!(
        failed_items(&answer),
        Vec::<String>::new(),
        "{}",
        lambda.output()
    );
    check_rules_case(&db, &fcm, &sqs, &case).await;
}

//! Any JSON text a producer may hand over: validation never panics, an error names a field, and
//! an accepted push always makes an FCM request with exactly one target.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pushq_model::push::Push;

fuzz_target!(|text: &str| {
    match Push::from_json(text) {
        Ok(push) => {
            let body = if push.target().fans_out() {
                push.fcm_request_for_token("device-token", false)
            } else {
                push.fcm_request(false).expect("a direct target has a request")
            };
            let message = body["message"].as_object().expect("a message object");
            let targets = ["token", "topic", "condition"]
                .iter()
                .filter(|t| message.contains_key(**t))
                .count();
            assert_eq!(targets, 1, "{body}");
            let _ = push.payload_size();
        }
        Err(e) => assert!(!e.field.is_empty()),
    }
});

//! Any FCM (or proxy) answer: classification never panics, and a 429 or 5xx is final only when
//! its body names a dead token (UNREGISTERED, SENDER_ID_MISMATCH).
#![no_main]
use libfuzzer_sys::fuzz_target;
use pushq_delivery::fcm::{classify, FcmError};

fuzz_target!(|input: (u16, &str)| {
    let (status, body) = input;
    let status = 100 + status % 500;
    if (200..300).contains(&status) {
        return; // success is decided before classify is called
    }
    let error = classify(status, body, None);
    if matches!(status, 429 | 500 | 502 | 503 | 504) {
        match &error {
            FcmError::Transient { .. } => {}
            FcmError::InvalidToken { code, .. } => assert!(body.contains(code.as_str())),
            other => panic!("{status} {body:?} -> {other:?}"),
        }
    }
});

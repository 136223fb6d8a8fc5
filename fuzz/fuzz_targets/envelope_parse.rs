//! Any queue message body: parsing never panics, and an envelope that parses writes back to a
//! body that parses to the same envelope.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pushq_model::envelope::Envelope;

fuzz_target!(|body: &str| {
    if let Ok(envelope) = Envelope::parse(body, "fuzz-message-id", 1_795_000_000_000) {
        let again = Envelope::parse(&envelope.to_json(), "other-id", 0)
            .expect("a written envelope parses");
        assert_eq!(again, envelope);
    }
});

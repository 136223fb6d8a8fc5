//! Helpers for setting values, shared by the configuration and whatever reads a value the
//! configuration hands over (the store's URL, the FCM key): a leaf module.

/// A value as it reached the process, without what env files, consoles and editors wrap around
/// it: surrounding whitespace, a UTF-8 byte-order mark, and one pair of surrounding quotes
/// (single, or double; a double-quoted JSON string literal is unescaped). Nothing else changes.
pub fn unwrap_value(raw: &str) -> std::borrow::Cow<'_, str> {
    fn bare(v: &str) -> &str {
        v.trim().trim_start_matches('\u{feff}').trim()
    }
    let value = bare(raw);
    let unquoted = |quote: char| {
        (value.len() >= 2 && value.starts_with(quote) && value.ends_with(quote))
            .then(|| bare(&value[1..value.len() - 1]))
    };
    if let Some(inner) = unquoted('"') {
        // `"{\"type\": …}"` is a JSON string holding the key; `"{"type": …}"` is the key in
        // the quotes an env file kept.
        return match serde_json::from_str::<String>(value) {
            Ok(unescaped) => std::borrow::Cow::Owned(bare(&unescaped).to_owned()),
            Err(_) => std::borrow::Cow::Borrowed(inner),
        };
    }
    std::borrow::Cow::Borrowed(unquoted('\'').unwrap_or(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwrap_value_removes_what_env_files_leave_around_a_value() {
        for (raw, value) in [
            ("{\"a\":1}", "{\"a\":1}"),
            ("\u{feff}{\"a\":1}", "{\"a\":1}"),
            ("  \u{feff} {\"a\":1}\n", "{\"a\":1}"),
            ("'{\"a\":1}'", "{\"a\":1}"),
            ("\"{\"a\":1}\"", "{\"a\":1}"),
            ("\"{\\\"a\\\":1}\"", "{\"a\":1}"),
            ("\"/etc/pushq/sa.json\"", "/etc/pushq/sa.json"),
            ("'postgres://u:p@h/db'", "postgres://u:p@h/db"),
            ("'", "'"),
            ("\"", "\""),
            ("'x\"", "'x\""),
            ("it's", "it's"),
        ] {
            assert_eq!(unwrap_value(raw), value, "{raw:?}");
        }
    }
}

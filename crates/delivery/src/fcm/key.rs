//! The service-account key: read from a setting (its JSON, or a file), checked field by field,
//! with errors that name the setting's variable and never quote the value.

use serde::Deserialize;
use serde_json::Value;

use super::FcmSetupError;
use crate::config::CredentialsSetting;
use crate::setting::unwrap_value;

/// The fields of a Google service-account key file that pushq uses.
#[derive(Clone, Deserialize)]
pub struct ServiceAccount {
    /// The Firebase project.
    pub project_id: String,
    /// The signing key's id (`kid`).
    #[serde(default)]
    pub private_key_id: String,
    /// PEM-encoded RSA private key. Never logged.
    pub private_key: String,
    /// The service account's email (`iss`).
    pub client_email: String,
    /// Where tokens come from (`aud`).
    #[serde(default = "default_token_uri")]
    pub token_uri: String,
}

fn default_token_uri() -> String {
    "https://oauth2.googleapis.com/token".to_owned()
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

impl ServiceAccount {
    /// Reads the key a setting gives: its JSON, or the path of a file holding it. What env files
    /// and editors wrap around a value (a byte-order mark, quotes) is removed first
    /// ([`unwrap_value`]). Errors name the setting's variable and say what was expected; they
    /// never quote the value or any part of it, which may be the key itself or a mangled copy.
    pub fn load(setting: &CredentialsSetting) -> Result<ServiceAccount, FcmSetupError> {
        let fail = |problem: String| {
            FcmSetupError::Credentials(format!("{}: {problem}", setting.variable))
        };
        let (text, from_file) = read_setting(setting)?;
        parse_key(&text).map_err(|problem| fail(in_file(from_file, problem)))
    }

    /// Reads the keys of every app a setting gives: one service-account key (the app
    /// `default`), or a JSON object mapping app names to keys (`{"member": {…}, "trainer":
    /// {…}}`), as JSON or in a file. Errors name the variable and the app, never a value.
    pub fn load_apps(
        setting: &CredentialsSetting,
    ) -> Result<std::collections::BTreeMap<String, ServiceAccount>, FcmSetupError> {
        let fail = |problem: String| {
            FcmSetupError::Credentials(format!("{}: {problem}", setting.variable))
        };
        let (text, from_file) = read_setting(setting)?;
        parse_keys(&text).map_err(|problem| fail(in_file(from_file, problem)))
    }
}

/// The setting's JSON text: the value itself when it is JSON, else the file it names; and
/// whether it came from a file.
fn read_setting(setting: &CredentialsSetting) -> Result<(String, bool), FcmSetupError> {
    let fail =
        |problem: String| FcmSetupError::Credentials(format!("{}: {problem}", setting.variable));
    let value = unwrap_value(&setting.value);
    if value.starts_with(['{', '[']) {
        return Ok((value.into_owned(), false));
    }
    let path = std::path::Path::new(value.as_ref());
    if path.is_file() {
        let text = std::fs::read_to_string(path)
            .map_err(|e| fail(format!("cannot read the file it names ({})", e.kind())))?;
        return Ok((unwrap_value(&text).into_owned(), true));
    }
    let hint = if path.is_dir() {
        " (it names a directory)"
    } else if looks_like_base64_json(&value) {
        " (it looks like base64: decode it first)"
    } else {
        ""
    };
    Err(fail(format!(
        "expected a service-account key as JSON, or the path of a file holding one; the \
         value is neither{hint}. It is not printed: it may be the key"
    )))
}

fn in_file(from_file: bool, problem: String) -> String {
    if from_file {
        format!("the file it names: {problem}")
    } else {
        problem
    }
}

/// One key (the app `default`) or a map of app names to keys.
fn parse_keys(text: &str) -> Result<std::collections::BTreeMap<String, ServiceAccount>, String> {
    let json = parse_json(text)?;
    let Value::Object(fields) = &json else {
        return Err(
            "not a service-account key nor a map of apps to keys (JSON, but not an object)".into(),
        );
    };
    let is_one_key = ["type", "project_id", "private_key", "client_email"]
        .iter()
        .any(|f| fields.contains_key(*f));
    if is_one_key || fields.is_empty() {
        let key = key_from(json)?;
        return Ok([(pushq_model::DEFAULT_APP.to_owned(), key)].into());
    }
    let mut apps = std::collections::BTreeMap::new();
    for (app, value) in fields {
        // A name that is not an app's is not printed: it may be a key's field gone astray.
        pushq_model::check_app(app).map_err(|_| {
            "a map of apps to keys, but one of its names is not an app name (1 to 64 characters of A-Z a-z 0-9 _ . -)".to_owned()
        })?;
        let key = key_from(value.clone()).map_err(|problem| format!("app \"{app}\": {problem}"))?;
        apps.insert(app.clone(), key);
    }
    Ok(apps)
}

fn parse_json(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| {
        let ends_early = matches!(e.classify(), serde_json::error::Category::Eof);
        format!(
            "not valid JSON ({}at line {} column {})",
            if ends_early { "it ends early, " } else { "" },
            e.line(),
            e.column()
        )
    })
}

/// A service-account key from JSON text; the problem, in words that quote none of the text.
fn parse_key(text: &str) -> Result<ServiceAccount, String> {
    key_from(parse_json(text)?)
}

fn key_from(json: Value) -> Result<ServiceAccount, String> {
    let Value::Object(fields) = &json else {
        return Err("not a service-account key (JSON, but not an object)".into());
    };
    if fields
        .get("type")
        .is_some_and(|t| t.as_str() != Some("service_account"))
    {
        return Err("not a service-account key (its `type` is not `service_account`)".into());
    }
    for (field, required) in [
        ("project_id", true),
        ("private_key", true),
        ("client_email", true),
        ("private_key_id", false),
        ("token_uri", false),
    ] {
        match fields.get(field) {
            Some(Value::String(_)) => {}
            None if !required => {}
            None => return Err(format!("not a service-account key (no `{field}`)")),
            Some(_) => {
                return Err(format!(
                    "not a service-account key (`{field}` is not a string)"
                ))
            }
        }
    }
    // The fields were checked above; serde's own messages could quote a value, so none is kept.
    serde_json::from_value(json).map_err(|_| "not a service-account key".to_owned())
}

/// Whether a value is base64 text that decodes to a JSON object (`{` encodes as `ey…`/`ew…`).
fn looks_like_base64_json(value: &str) -> bool {
    (value.starts_with("ey") || value.starts_with("ew"))
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=-_\r\n".contains(&b))
}

#[cfg(test)]
mod tests {
    use pushq_test_support::leaks::{base64, Secrets};

    use super::*;

    const SECRET: &str = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7";

    fn key_json() -> String {
        serde_json::json!({
            "type": "service_account",
            "project_id": "gym-app",
            "private_key_id": "8f14e45fceea167a5a36dedd4bea2543bb1c2e7d",
            "private_key": format!("-----BEGIN PRIVATE KEY-----\n{SECRET}\n-----END PRIVATE KEY-----\n"),
            "client_email": "pushq@gym-app.iam.gserviceaccount.com",
        })
        .to_string()
    }

    fn load(variable: &'static str, value: &str) -> Result<ServiceAccount, String> {
        ServiceAccount::load(&CredentialsSetting {
            variable,
            value: value.to_owned(),
        })
        .map_err(|e| e.to_string())
    }

    /// The error, checked to name the variable and to hold no 16-character piece of `value`.
    fn refused(variable: &'static str, value: &str) -> String {
        let e = load(variable, value).expect_err("refused");
        assert!(e.contains(variable), "{e}");
        if let Some(found) = Secrets::new().add("the value", value).find_in(&e) {
            panic!("the error quotes {found}");
        }
        e
    }

    #[test]
    fn what_env_files_wrap_around_a_key_is_removed() {
        let json = key_json();
        let literal = serde_json::to_string(&json).unwrap();
        for value in [
            json.clone(),
            format!("\u{feff}{json}"),
            format!("'{json}'"),
            format!("\"{json}\""),
            format!("  {json}\n"),
            literal,
        ] {
            let account = load("PUSHQ_FCM_CREDENTIALS", &value).unwrap();
            assert_eq!(account.project_id, "gym-app");
            assert!(account.private_key.contains(SECRET));
        }
    }

    #[test]
    fn a_key_file_may_start_with_a_bom_and_its_path_may_be_quoted() {
        let dir = std::env::temp_dir().join(format!("pushq-auth-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sa.json");
        std::fs::write(&path, format!("\u{feff}{}\n", key_json())).unwrap();
        let account = load(
            "GOOGLE_APPLICATION_CREDENTIALS",
            &format!("'{}'", path.display()),
        );
        assert_eq!(account.unwrap().project_id, "gym-app");

        std::fs::write(&path, &key_json()[..100]).unwrap();
        let e = refused(
            "GOOGLE_APPLICATION_CREDENTIALS",
            &path.display().to_string(),
        );
        assert!(e.contains("the file it names: not valid JSON"), "{e}");
        let e = refused("GOOGLE_APPLICATION_CREDENTIALS", &dir.display().to_string());
        assert!(e.contains("directory"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn truncated_json_says_where_it_ends_without_quoting_it() {
        let json = key_json();
        let e = refused("PUSHQ_FCM_CREDENTIALS", &json[..json.len() / 2]);
        assert!(
            e.contains("not valid JSON (it ends early, at line 1 column"),
            "{e}"
        );
        let e = refused("PUSHQ_FCM_CREDENTIALS", &json.replacen(':', "", 1));
        assert!(e.contains("not valid JSON (at line 1 column"), "{e}");
    }

    #[test]
    fn base64_a_missing_path_and_other_json_are_named_not_echoed() {
        let json = key_json();
        let b64 = base64(json.as_bytes());
        let e = refused("PUSHQ_FCM_CREDENTIALS", &b64);
        assert!(e.contains("base64"), "{e}");
        let e = refused(
            "GOOGLE_APPLICATION_CREDENTIALS",
            "/etc/pushq/missing-sa.json",
        );
        assert!(e.contains("neither"), "{e}");
        let e = refused(
            "PUSHQ_FCM_CREDENTIALS",
            &json.replace("client_email", "email"),
        );
        assert!(e.contains("no `client_email`"), "{e}");
        let user = r#"{"type": "authorized_user", "client_secret": "d-FL95Q19q7MQmFpd7hHD0Ty"}"#;
        let e = refused("PUSHQ_FCM_CREDENTIALS", user);
        assert!(e.contains("`type`"), "{e}");
        let e = refused("PUSHQ_FCM_CREDENTIALS", &format!("[{json}]"));
        assert!(e.contains("not an object"), "{e}");
        let wrong = json.replace("\"gym-app\"", "[\"a-project-id-as-list\"]");
        let e = refused("PUSHQ_FCM_CREDENTIALS", &wrong);
        assert!(e.contains("`project_id` is not a string"), "{e}");
    }
}

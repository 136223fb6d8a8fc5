//! The service accounts the emulator serves, one RSA key per project, and its OAuth token
//! endpoint, which trades an assertion signed by one of them for an access token of its project.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use jsonwebtoken::DecodingKey;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{Emulator, EmulatorError};

/// One project's service account, as the token endpoint knows it.
pub(crate) struct Account {
    /// The project its access tokens may send to.
    project: String,
    /// The public half of its key, which verifies its assertions.
    key: DecodingKey,
}

/// The service accounts of the projects served, by `client_email` (the assertions' `iss`).
pub(crate) type Accounts = HashMap<String, Account>;

/// A fresh RSA key for each of `projects`: the accounts the token endpoint verifies against, and
/// each project's service-account key (whose `token_uri` is `token_uri`), by project.
pub(crate) fn make_accounts(
    projects: &[String],
    token_uri: &str,
) -> Result<(Accounts, BTreeMap<String, Value>), EmulatorError> {
    let key_error = |e: &dyn std::fmt::Display| EmulatorError::Key(e.to_string());
    let mut accounts = Accounts::new();
    let mut keys = BTreeMap::new();
    for project in projects {
        let key =
            rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).map_err(|e| key_error(&e))?;
        let private_pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| key_error(&e))?;
        let public_pem = key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| key_error(&e))?;
        let public = DecodingKey::from_rsa_pem(public_pem.as_bytes()).map_err(|e| key_error(&e))?;
        let client_email = format!("pushq@{project}.iam.gserviceaccount.com");
        keys.insert(
            project.clone(),
            json!({
                "type": "service_account",
                "project_id": project,
                "private_key_id": format!("emulator-{}", uuid::Uuid::now_v7().simple()),
                "private_key": private_pem.as_str(),
                "client_email": client_email,
                "token_uri": token_uri,
            }),
        );
        accounts.insert(
            client_email,
            Account {
                project: project.clone(),
                key: public,
            },
        );
    }
    Ok((accounts, keys))
}

/// Why `projects` cannot be served (none, one named twice, or a name that does not fit in a
/// URL path and an account's email), if they cannot.
pub(crate) fn check_projects(projects: &[String]) -> Result<(), EmulatorError> {
    let refuse = |why: String| Err(EmulatorError::Projects(why));
    if projects.is_empty() {
        return refuse("none given".to_owned());
    }
    for (i, project) in projects.iter().enumerate() {
        let fits = (1..=64).contains(&project.len())
            && project
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !fits {
            return refuse(format!(
                "{project:?}: must be 1-64 characters of [A-Za-z0-9_.-]"
            ));
        }
        if projects[..i].contains(project) {
            return refuse(format!("{project:?} is given twice"));
        }
    }
    Ok(())
}

#[derive(Deserialize)]
pub(crate) struct TokenRequest {
    grant_type: String,
    assertion: String,
}

/// The assertion's issuer, read before its signature is checked, to know which key checks it.
#[derive(Deserialize)]
struct Issuer {
    iss: String,
}

#[derive(Deserialize)]
struct Claims {
    scope: String,
    aud: String,
    exp: u64,
    iat: u64,
}

/// Google's token endpoint for a JWT-bearer grant: the assertion must be signed by the key of the
/// account its `iss` names; the access token it answers may send to that account's project.
pub(crate) async fn token(
    State(emu): State<Arc<Emulator>>,
    Form(req): Form<TokenRequest>,
) -> Response {
    let refuse = |why: &str| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant", "error_description": why})),
        )
            .into_response()
    };
    if req.grant_type != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
        return refuse("unsupported grant_type");
    }
    let issuer = match jsonwebtoken::dangerous::insecure_decode::<Issuer>(&req.assertion) {
        Ok(data) => data.claims.iss,
        Err(e) => return refuse(&format!("invalid JWT: {e}")),
    };
    let Some(account) = emu.accounts.get(&issuer) else {
        return refuse("wrong iss, scope or aud");
    };
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[&emu.token_uri]);
    validation.set_required_spec_claims(&["exp", "aud", "iss"]);
    let claims = match jsonwebtoken::decode::<Claims>(&req.assertion, &account.key, &validation) {
        Ok(data) => data.claims,
        Err(e) => return refuse(&format!("invalid JWT: {e}")),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if !claims.scope.contains("firebase.messaging") || claims.aud != emu.token_uri {
        return refuse("wrong iss, scope or aud");
    }
    if claims.exp <= now || claims.iat > now + 60 || claims.exp - claims.iat > 3600 {
        return refuse("bad iat/exp");
    }
    let access = format!("ya29.emulator-{}", uuid::Uuid::now_v7().simple());
    let mut inner = emu.inner.lock().expect("emulator state");
    inner.tokens.insert(access.clone(), account.project.clone());
    inner.issued.push(access.clone());
    inner.token_requests += 1;
    Json(json!({"access_token": access, "expires_in": 3600, "token_type": "Bearer"}))
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::{SystemTime, UNIX_EPOCH};

    use axum::extract::State;
    use axum::Form;
    use serde_json::json;

    use super::{check_projects, make_accounts, token, TokenRequest};
    use crate::Emulator;

    #[tokio::test]
    async fn an_assertion_is_checked_against_the_key_of_the_account_it_names() {
        let projects = vec!["member".to_owned(), "trainer".to_owned()];
        let token_uri = "http://127.0.0.1:9/token";
        let (accounts, keys) = make_accounts(&projects, token_uri).unwrap();
        let emu = Arc::new(Emulator {
            projects,
            accounts,
            token_uri: token_uri.to_owned(),
            inner: Mutex::default(),
            connections: Arc::default(),
        });
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        // An assertion naming `iss`, signed with the key of `signer`; the status it is answered.
        let grant = |signer: &str, iss: &str| {
            let key = keys[signer]["private_key"].as_str().unwrap();
            let claims = json!({"iss": iss, "aud": token_uri, "iat": now, "exp": now + 3600,
                "scope": "https://www.googleapis.com/auth/firebase.messaging"});
            let assertion = jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
                &claims,
                &jsonwebtoken::EncodingKey::from_rsa_pem(key.as_bytes()).unwrap(),
            )
            .unwrap();
            let request = TokenRequest {
                grant_type: "urn:ietf:params:oauth:grant-type:jwt-bearer".to_owned(),
                assertion,
            };
            token(State(emu.clone()), Form(request))
        };
        let trainer = keys["trainer"]["client_email"].as_str().unwrap();
        assert_eq!(grant("trainer", trainer).await.status(), 200);
        assert_eq!(grant("member", trainer).await.status(), 400, "another key");
        let stranger = "pushq@other.iam.gserviceaccount.com";
        assert_eq!(grant("member", stranger).await.status(), 400, "unknown iss");
        let inner = emu.inner.lock().unwrap();
        let granted: Vec<&String> = inner.tokens.values().collect();
        assert_eq!(
            granted,
            ["trainer"],
            "the token sends to its account's project"
        );
    }

    #[test]
    fn projects_are_one_or_more_distinct_usable_names() {
        let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(check_projects(&names(&["member", "trainer.v2", "pushq-emulator"])).is_ok());
        for refused in [&[][..], &["a", "a"], &["a/b"], &[""], &["x y"]] {
            let err = check_projects(&names(refused)).expect_err("refused");
            assert!(err.to_string().starts_with("emulator projects: "), "{err}");
        }
    }
}

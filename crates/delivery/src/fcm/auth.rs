//! OAuth2 for FCM from a service-account key: a JWT-bearer grant signed RS256, posted to the
//! key's own `token_uri`; the access token is cached and refreshed before it expires.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use tokio::sync::Mutex;

use super::key::ServiceAccount;
use super::{FcmSetupError, SendError};

/// The OAuth scope FCM sends need.
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// A token is refreshed this long before it expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default = "default_expiry")]
    expires_in: u64,
}

fn default_expiry() -> u64 {
    3600
}

/// Access tokens for one service account: cached, refreshed before expiry, one refresh at a time.
pub struct TokenSource {
    account: ServiceAccount,
    key: jsonwebtoken::EncodingKey,
    http: reqwest::Client,
    cached: Mutex<Option<(Arc<AccessToken>, Instant)>>,
}

/// An access token, with the `authorization` header that carries it: made once per token, not
/// once per request.
pub struct AccessToken {
    /// The token itself.
    pub token: String,
    /// `Bearer <token>`, marked sensitive (never printed by the HTTP client's debug output).
    pub header: reqwest::header::HeaderValue,
}

impl AccessToken {
    fn new(token: String) -> Result<AccessToken, SendError> {
        let mut header = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| {
                SendError::Credentials(
                    "the token endpoint answered an access token that is not header text".into(),
                )
            })?;
        header.set_sensitive(true);
        Ok(AccessToken { token, header })
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(…)")
    }
}

impl TokenSource {
    /// A token source for `account`; fails if its private key is not an RSA PEM key.
    pub fn new(
        account: ServiceAccount,
        http: reqwest::Client,
    ) -> Result<TokenSource, FcmSetupError> {
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(account.private_key.as_bytes()).map_err(
            |_| {
                FcmSetupError::Credentials("private_key: not an RSA private key in PEM form".into())
            },
        )?;
        Ok(TokenSource {
            account,
            key,
            http,
            cached: Mutex::new(None),
        })
    }

    /// The project the account belongs to.
    pub fn project_id(&self) -> &str {
        &self.account.project_id
    }

    /// A valid access token; fetched when there is none or it is about to expire.
    pub async fn token(&self) -> Result<Arc<AccessToken>, SendError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, expires)) = cached.as_ref() {
            if Instant::now() + REFRESH_MARGIN < *expires {
                return Ok(token.clone());
            }
        }
        let (token, lifetime) = self.fetch().await?;
        let token = Arc::new(AccessToken::new(token)?);
        *cached = Some((token.clone(), Instant::now() + lifetime));
        Ok(token)
    }

    /// Forgets `token` if it is the cached one (FCM said it is no longer valid).
    pub async fn invalidate(&self, token: &str) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|(t, _)| t.token == token) {
            *cached = None;
        }
    }

    /// A signed JWT asserting the service account, valid for an hour: what the token
    /// endpoint exchanges for an access token.
    fn assertion(&self) -> Result<String, SendError> {
        #[derive(serde::Serialize)]
        struct Claims<'a> {
            iss: &'a str,
            scope: &'a str,
            aud: &'a str,
            iat: u64,
            exp: u64,
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = Claims {
            iss: &self.account.client_email,
            scope: SCOPE,
            aud: &self.account.token_uri,
            iat: now,
            exp: now + 3600,
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(self.account.private_key_id.clone()).filter(|k| !k.is_empty());
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| SendError::Credentials(format!("cannot sign the token request ({e})")))
    }

    /// A new access token from the token endpoint, and how long it lasts.
    async fn fetch(&self) -> Result<(String, Duration), SendError> {
        let assertion = self.assertion()?;
        let response = self
            .http
            .post(&self.account.token_uri)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(|e| SendError::Transient {
                code: "TOKEN_UNREACHABLE".into(),
                detail: without_url(&e),
                retry_after: None,
            })?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let detail = format!(
                "token endpoint answered {status}: {}",
                body.chars().take(200).collect::<String>()
            );
            return Err(if status.is_server_error() || status.as_u16() == 429 {
                SendError::Transient {
                    code: "TOKEN_UNAVAILABLE".into(),
                    detail,
                    retry_after: None,
                }
            } else {
                SendError::Credentials(detail)
            });
        }
        let token: TokenResponse = response.json().await.map_err(|e| SendError::Transient {
            code: "TOKEN_RESPONSE".into(),
            detail: without_url(&e),
            retry_after: None,
        })?;
        Ok((token.access_token, Duration::from_secs(token.expires_in)))
    }
}

/// A reqwest error's text without the URL (which may carry a query string).
pub(super) fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<fcm>");
    }
    text
}

//! Access tokens for the Logs Ingestion API: the OAuth 2.0 client-credentials grant
//! (RFC 6749 §4.4) against Microsoft Entra ID, cached until shortly before they expire.
//!
//! The client secret comes from a file (read again at every token request, so a rotated
//! Kubernetes secret is picked up) or from the environment. It is never logged: [`Secret`]
//! prints as `<hidden>` and error texts from the token service are the service's own.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{IngestionConfig, IngestionError};

/// A value that must not reach a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<hidden>")
    }
}

/// Where the client secret is read.
#[derive(Debug, Clone)]
pub enum SecretSource {
    File(PathBuf),
    Environment(Secret),
}

impl std::fmt::Display for SecretSource {
    /// Where the secret is read, never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "from {}", path.display()),
            Self::Environment(_) => write!(f, "from {SECRET_VARIABLE}"),
        }
    }
}

/// The app registration sinkhole signs in as.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub tenant_id: String,
    pub client_id: String,
    pub secret: SecretSource,
}

pub const TENANT_VARIABLE: &str = "AZURE_TENANT_ID";
pub const CLIENT_VARIABLE: &str = "AZURE_CLIENT_ID";
pub const SECRET_VARIABLE: &str = "AZURE_CLIENT_SECRET";

impl Credentials {
    /// Takes tenant and client id from the config or else the environment, and the secret
    /// from `client_secret_file` or else the environment; checks that the file can be read.
    pub fn resolve(
        config: &IngestionConfig,
        environment: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, IngestionError> {
        let pick = |value: &Option<String>, variable: &'static str, key: &'static str| {
            value
                .clone()
                .or_else(|| environment(variable))
                .filter(|value| !value.trim().is_empty())
                .ok_or(IngestionError::Missing { key, variable })
        };
        let tenant_id = pick(&config.tenant_id, TENANT_VARIABLE, "tenant_id")?;
        let client_id = pick(&config.client_id, CLIENT_VARIABLE, "client_id")?;
        let secret = match &config.client_secret_file {
            Some(path) => {
                read_secret(path)?;
                SecretSource::File(path.clone())
            }
            None => environment(SECRET_VARIABLE)
                .filter(|value| !value.is_empty())
                .map(|value| SecretSource::Environment(Secret::new(value)))
                .ok_or(IngestionError::Missing {
                    key: "client_secret_file",
                    variable: SECRET_VARIABLE,
                })?,
        };
        Ok(Self {
            tenant_id,
            client_id,
            secret,
        })
    }

    fn secret(&self) -> Result<Secret, IngestionError> {
        match &self.secret {
            SecretSource::File(path) => read_secret(path),
            SecretSource::Environment(secret) => Ok(secret.clone()),
        }
    }
}

/// The secret is the file's first line, without surrounding white space.
fn read_secret(path: &std::path::Path) -> Result<Secret, IngestionError> {
    let error = |reason: String| IngestionError::SecretFile {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    let first = text.lines().next().unwrap_or("").trim();
    if first.is_empty() {
        return Err(error("is empty".to_owned()));
    }
    Ok(Secret::new(first))
}

/// A token and when to stop using it.
struct Cached {
    value: Secret,
    renew_at: Instant,
}

/// Fetches tokens and keeps the current one.
pub struct TokenSource {
    credentials: Credentials,
    url: String,
    scope: String,
    cached: Option<Cached>,
}

impl TokenSource {
    pub fn new(credentials: Credentials, config: &IngestionConfig) -> Self {
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            config.authority.trim_end_matches('/'),
            credentials.tenant_id
        );
        Self {
            credentials,
            url,
            scope: config.scope.clone(),
            cached: None,
        }
    }

    /// The current token, fetching a new one when there is none or it is about to expire.
    pub fn get(&mut self, agent: &ureq::Agent) -> Result<Secret, String> {
        if let Some(cached) = &self.cached
            && Instant::now() < cached.renew_at
        {
            return Ok(cached.value.clone());
        }
        let (value, lifetime) = self.fetch(agent)?;
        tracing::debug!(lifetime_s = lifetime.as_secs(), "access token fetched");
        self.cached = Some(Cached {
            value: value.clone(),
            renew_at: Instant::now() + renew_after(lifetime),
        });
        Ok(value)
    }

    /// Forgets the current token, after the service refused it.
    pub fn invalidate(&mut self) {
        self.cached = None;
    }

    fn fetch(&self, agent: &ureq::Agent) -> Result<(Secret, Duration), String> {
        let secret = self.credentials.secret().map_err(|e| e.to_string())?;
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.credentials.client_id.as_str()),
            ("client_secret", secret.expose()),
            ("scope", self.scope.as_str()),
        ];
        let response = match agent.post(&self.url).send_form(&form) {
            Ok(response) => response,
            Err(ureq::Error::Status(status, response)) => {
                let body = response.into_string().unwrap_or_default();
                return Err(format!("token: HTTP {status}{}", service_error(&body)));
            }
            Err(ureq::Error::Transport(transport)) => {
                return Err(format!("token: {transport}"));
            }
        };
        let body = response
            .into_string()
            .map_err(|error| format!("token: {error}"))?;
        parse_token(&body).map_err(|reason| format!("token: {reason}"))
    }
}

/// Renews at 5 minutes before expiry, or half-way for a token shorter than 10 minutes.
fn renew_after(lifetime: Duration) -> Duration {
    let margin = Duration::from_secs(300).min(lifetime / 2);
    lifetime - margin
}

/// `access_token` and `expires_in` (a number, or a string as older endpoints send).
fn parse_token(body: &str) -> Result<(Secret, Duration), String> {
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|_| "answer is not JSON".to_owned())?;
    let token = value["access_token"]
        .as_str()
        .filter(|token| !token.is_empty())
        .ok_or("answer has no access_token")?;
    let expires = &value["expires_in"];
    let seconds = expires
        .as_u64()
        .or_else(|| expires.as_str().and_then(|text| text.parse().ok()))
        .ok_or("answer has no expires_in")?;
    Ok((Secret::new(token), Duration::from_secs(seconds)))
}

/// `: CODE: DESCRIPTION` from an Entra ID error answer, first line only.
fn service_error(body: &str) -> String {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(body) else {
        return String::new();
    };
    let code = value["error"].as_str().unwrap_or("");
    let description = value["error_description"]
        .as_str()
        .and_then(|text| text.lines().next())
        .unwrap_or("");
    format!(": {code}: {description}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_text: &str) -> IngestionConfig {
        toml::from_str(&format!(
            "endpoint = \"https://dce.example\"\ndcr_immutable_id = \"dcr-1\"\n{toml_text}"
        ))
        .unwrap()
    }

    fn environment(name: &str) -> Option<String> {
        match name {
            TENANT_VARIABLE => Some("tenant-from-env".into()),
            CLIENT_VARIABLE => Some("client-from-env".into()),
            SECRET_VARIABLE => Some("s3cret-from-env".into()),
            _ => None,
        }
    }

    #[test]
    fn ids_come_from_the_config_before_the_environment() {
        let credentials =
            Credentials::resolve(&config("tenant_id = \"t1\"\n"), environment).unwrap();
        assert_eq!(credentials.tenant_id, "t1");
        assert_eq!(credentials.client_id, "client-from-env");
        let printed = format!("{credentials:?}");
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(printed.contains("<hidden>"));
    }

    #[test]
    fn missing_credentials_name_the_key_and_the_variable() {
        let error = Credentials::resolve(&config(""), |_| None).unwrap_err();
        assert_eq!(
            error.to_string(),
            "events.logs_ingestion.tenant_id: not set, nor is AZURE_TENANT_ID"
        );
        let error =
            Credentials::resolve(&config("tenant_id = \"t\"\nclient_id = \"c\"\n"), |_| None)
                .unwrap_err();
        assert!(error.to_string().contains("AZURE_CLIENT_SECRET"), "{error}");
    }

    #[test]
    fn the_secret_file_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "  file-s3cret \nsecond line\n").unwrap();
        let text = format!("client_secret_file = {:?}\n", path.display().to_string());
        let credentials = Credentials::resolve(&config(&text), environment).unwrap();
        assert_eq!(credentials.secret().unwrap().expose(), "file-s3cret");

        std::fs::write(&path, "\n").unwrap();
        let error = Credentials::resolve(&config(&text), environment).unwrap_err();
        assert!(error.to_string().ends_with("is empty"), "{error}");
        std::fs::remove_file(&path).unwrap();
        let error = Credentials::resolve(&config(&text), environment).unwrap_err();
        assert!(error.to_string().contains(&path.display().to_string()));
    }

    #[test]
    fn token_answers_are_read_in_both_forms() {
        let (token, lifetime) =
            parse_token(r#"{"token_type":"Bearer","expires_in":3599,"access_token":"abc"}"#)
                .unwrap();
        assert_eq!((token.expose(), lifetime.as_secs()), ("abc", 3599));
        let (_, lifetime) = parse_token(r#"{"expires_in":"600","access_token":"x"}"#).unwrap();
        assert_eq!(lifetime.as_secs(), 600);
        assert!(parse_token(r#"{"expires_in":60}"#).is_err());
        assert!(parse_token("<html>").is_err());
    }

    #[test]
    fn tokens_are_renewed_before_they_expire() {
        assert_eq!(renew_after(Duration::from_secs(3599)).as_secs(), 3299);
        assert_eq!(renew_after(Duration::from_secs(120)).as_secs(), 60);
    }

    #[test]
    fn service_errors_keep_code_and_first_line() {
        let body = r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1"}"#;
        assert_eq!(
            service_error(body),
            ": invalid_client: AADSTS7000215: Invalid client secret provided."
        );
        assert_eq!(service_error("nope"), "");
    }
}

//! OpenID Connect discovery (OpenID Connect Discovery 1.0 §4) and OAuth 2.0 authorization server metadata
//! (RFC 8414): from an issuer URL to its `jwks_uri`.
//!
//! The document's `issuer` must equal the configured issuer exactly — the check that stops one tenant's metadata
//! from standing in for another's, and that catches the missing trailing slash before any token is refused.

use crate::error::quoted;
use crate::fetch::{FetchError, Fetcher, check_url};
use serde_json::Value;
use std::fmt;

/// The parts of a discovery document portcullis uses.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProviderMetadata {
    /// The issuer, equal to the configured one.
    pub issuer: String,
    /// Where the issuer publishes its JWK Set.
    pub jwks_uri: String,
    /// Which well-known document answered.
    pub source: String,
}

/// Why discovery failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// Neither well-known document could be fetched.
    Fetch(Vec<FetchError>),
    /// A document was fetched but is unusable.
    #[non_exhaustive]
    Invalid {
        /// The document's URL.
        url: String,
        /// What is wrong with it.
        why: String,
    },
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fetch(errors) => {
                let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
                write!(f, "discovery failed: {}", all.join("; "))
            }
            Self::Invalid { url, why } => write!(f, "discovery document {url} is unusable: {why}"),
        }
    }
}

impl std::error::Error for DiscoveryError {}

/// The well-known URLs to try for `issuer`, in order: OpenID Connect (appended to the issuer) and RFC 8414
/// (inserted before the issuer's path).
pub(crate) fn well_known_urls(issuer: &str) -> Vec<String> {
    let trimmed = issuer.trim_end_matches('/');
    let mut urls = vec![format!("{trimmed}/.well-known/openid-configuration")];
    if let Ok(url) = reqwest::Url::parse(trimmed) {
        let path = url.path().trim_end_matches('/');
        let origin = url.origin().ascii_serialization();
        urls.push(format!("{origin}/.well-known/oauth-authorization-server{path}"));
    }
    urls
}

/// Fetches the issuer's metadata and checks it.
pub async fn discover(issuer: &str, fetcher: &Fetcher) -> Result<ProviderMetadata, DiscoveryError> {
    let mut failures = Vec::new();
    for url in well_known_urls(issuer) {
        match fetcher.get(&url).await {
            Ok(fetched) => return parse_metadata(issuer, &url, &fetched.body, fetcher),
            Err(err) => failures.push(err),
        }
    }
    Err(DiscoveryError::Fetch(failures))
}

fn parse_metadata(issuer: &str, url: &str, body: &[u8], fetcher: &Fetcher) -> Result<ProviderMetadata, DiscoveryError> {
    let invalid = |why: String| DiscoveryError::Invalid { url: url.to_owned(), why };
    let doc = crate::json::parse_object(body).map_err(|e| invalid(format!("not a JSON object: {e}")))?;
    let found = match doc.get("issuer") {
        Some(Value::String(found)) => found,
        _ => return Err(invalid("it has no issuer".into())),
    };
    if found != issuer {
        let hint = if found.trim_end_matches('/') == issuer.trim_end_matches('/') {
            " (they differ only in the trailing slash: configure the issuer exactly as the provider spells it)"
        } else {
            ""
        };
        return Err(invalid(format!(
            "its issuer is {}, but the configured issuer is {}{hint}",
            quoted(found),
            quoted(issuer)
        )));
    }
    let jwks_uri = match doc.get("jwks_uri") {
        Some(Value::String(uri)) => uri.clone(),
        _ => return Err(invalid("it has no jwks_uri".into())),
    };
    check_url(&jwks_uri, fetcher.policy()).map_err(|e| invalid(format!("its jwks_uri is not acceptable: {e}")))?;
    Ok(ProviderMetadata { issuer: found.clone(), jwks_uri, source: url.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_locations() {
        assert_eq!(
            well_known_urls("https://tenant.auth0.com/"),
            vec![
                "https://tenant.auth0.com/.well-known/openid-configuration".to_owned(),
                "https://tenant.auth0.com/.well-known/oauth-authorization-server".to_owned(),
            ]
        );
        assert_eq!(
            well_known_urls("https://idp.example.com/realms/main")[1],
            "https://idp.example.com/.well-known/oauth-authorization-server/realms/main"
        );
    }
}

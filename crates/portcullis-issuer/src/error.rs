//! The issuer's errors: minting a token ([`SignError`]) and loading a tenant ([`TenantError`]).

use crate::config::MAX_LIFETIME;
use crate::keys::KeyChoice;
use portcullis::signing::SigningError;

/// Why a token cannot be minted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The chosen key is not held (not current, next, previous or revoked).
    #[error("no such key: {0:?}")]
    NoSuchKey(KeyChoice),
    /// The client is not in the tenant.
    #[error("unknown client")]
    UnknownClient,
    /// The client has no grant for the audience.
    #[error("audience not granted")]
    AudienceNotGranted,
    /// The user is not in the tenant.
    #[error("unknown user")]
    UnknownUser,
    /// The key failed to sign, or a fresh key cannot be generated; shows the signer's message.
    #[error(transparent)]
    Signing(#[from] SigningError),
}

/// Why an API cannot be added at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddApiError {
    /// The tenant has an API with this audience, or one was added.
    #[error("an API with this audience exists")]
    Exists,
    /// [`MAX_ADDED_APIS`](crate::issuer::MAX_ADDED_APIS) APIs were added already.
    #[error("at most {} APIs can be added at run time", crate::issuer::MAX_ADDED_APIS)]
    TooMany,
}

/// Why a tenant file is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TenantError {
    /// Not TOML, or not a tenant's shape (unknown key, wrong type); shows the parser's message and location.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A lifetime (tokens, ID tokens, sessions, refresh tokens) outside 1 to [`MAX_LIFETIME`] seconds.
    #[error("{key} must be between 1 and {MAX_LIFETIME} seconds, not {value}")]
    #[non_exhaustive]
    LifetimeOutOfRange {
        /// The key, such as `token_lifetime` or `refresh_token_idle_lifetime`.
        key: &'static str,
        /// The value given.
        value: u64,
    },
    /// The idle lifetime of refresh tokens exceeds their absolute lifetime.
    #[error("refresh_token_idle_lifetime ({idle}) must not exceed refresh_token_lifetime ({absolute})")]
    #[non_exhaustive]
    IdleExceedsLifetime {
        /// `refresh_token_idle_lifetime`.
        idle: u64,
        /// `refresh_token_lifetime`.
        absolute: u64,
    },
    /// A client lists a grant the issuer does not know.
    #[error("client {client}: unknown grant {grant}")]
    #[non_exhaustive]
    UnknownGrant {
        /// The client ID.
        client: String,
        /// The grant.
        grant: String,
    },
    /// A public client (no secret) lists `client_credentials`.
    #[error("client {client}: a public client cannot use client_credentials")]
    #[non_exhaustive]
    PublicClientCredentials {
        /// The client ID.
        client: String,
    },
    /// `default_audience` names no API of the tenant.
    #[error("default_audience {audience} is not an API of the tenant")]
    #[non_exhaustive]
    UnknownDefaultAudience {
        /// The audience.
        audience: String,
    },
    /// A user's claim holds a value with no JSON form: a TOML datetime, `nan` or `inf`.
    #[error(
        "user {user}: claim {claim} holds {kind}, which has no JSON form for a token; write it as a string or a \
         finite number"
    )]
    #[non_exhaustive]
    ClaimNotJson {
        /// The user's ID.
        user: String,
        /// The claim's name.
        claim: String,
        /// What it holds: `a datetime`, or `nan or inf`.
        kind: &'static str,
    },
    /// A client's `web_origins` lists something that is not exactly a bare origin `scheme://host[:port]` (such as
    /// `"null"`, `"*"` or a URL with a path or a trailing slash, which no browser's `Origin` ever equals).
    #[error(
        "client {client}: web origin {origin:?} is not a bare origin; write it as scheme://host[:port], without a \
         path or trailing slash, such as http://127.0.0.1:3000"
    )]
    #[non_exhaustive]
    BadWebOrigin {
        /// The client ID.
        client: String,
        /// The value given.
        origin: String,
    },
    /// A client is granted scopes on an audience no API of the tenant has.
    #[error("client {client}: unknown audience {audience}")]
    #[non_exhaustive]
    UnknownAudience {
        /// The client ID.
        client: String,
        /// The audience.
        audience: String,
    },
}

/// A tenant file the TOML parser refuses; shows the parser's message.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ParseError(pub(crate) toml::de::Error);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DEMO_AUDIENCE, DevIssuer, Tenant};

    #[test]
    fn tenant_errors_name_what_is_wrong() {
        let error = Tenant::from_toml("[[clients]]\nclient_id = \"x\"\ngrants = [\"password\"]").unwrap_err();
        assert!(matches!(&error, TenantError::UnknownGrant { client, grant } if client == "x" && grant == "password"));
        assert_eq!(error.to_string(), "client x: unknown grant password");
        let error = Tenant::from_toml("bogus = 1").unwrap_err();
        assert!(matches!(error, TenantError::Parse(_)));
        assert!(error.to_string().contains("bogus"), "{error}");
        let error = Tenant::from_toml("refresh_token_idle_lifetime = 0").unwrap_err();
        assert!(matches!(error, TenantError::LifetimeOutOfRange { key: "refresh_token_idle_lifetime", value: 0 }));
    }

    #[test]
    fn sign_errors_name_what_is_missing() {
        let issuer = DevIssuer::new(Tenant::demo("http://127.0.0.1:3000/callback"), "http://127.0.0.1:4000/").unwrap();
        let missing = KeyChoice::Kid("nope".into());
        let error = issuer.sign(&serde_json::Map::new(), &missing, None).unwrap_err();
        assert_eq!(error.to_string(), "no such key: Kid(\"nope\")");
        assert!(matches!(issuer.client_credentials_token("nobody", DEMO_AUDIENCE), Err(SignError::UnknownClient)));
        assert!(matches!(
            issuer.client_credentials_token("demo-spa", DEMO_AUDIENCE),
            Err(SignError::AudienceNotGranted)
        ));
        assert!(matches!(issuer.user_token("demo-spa", "carol", DEMO_AUDIENCE, &[]), Err(SignError::UnknownUser)));
    }
}

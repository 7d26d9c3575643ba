//! OpenID Connect ID tokens as Auth0 issues them, and the profile claims they and `/userinfo` share.

use crate::config::User;
use crate::error::SignError;
use crate::issuer::{DevIssuer, Grant};
use crate::keys::KeyChoice;
use aws_lc_rs::digest;
use serde_json::{Map, Value, json};
use std::time::{Duration, UNIX_EPOCH};

/// The login an ID token speaks of: when the user authenticated, the issuer session it belongs to, and the nonce
/// the client sent with the authorization request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Login {
    /// `auth_time`: when the user logged in (picked a user on the login page), on the issuer's clock.
    pub auth_time: i64,
    /// `sid`: the issuer session (its cookie) the login belongs to.
    pub sid: String,
    /// `nonce`, echoed as the client sent it.
    pub nonce: Option<String>,
}

/// Values an ID token is bound to by their hashes (OpenID Connect Core §3.3.2.11): `at_hash` for an access token
/// and `c_hash` for a code issued with it in the same answer.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Bound<'a> {
    /// The access token answered with the ID token, if any.
    pub access_token: Option<&'a str>,
    /// The authorization code answered with the ID token, if any.
    pub code: Option<&'a str>,
}

/// The left half of the SHA-256 of `value`, base64url: `at_hash` and `c_hash` for RS256.
pub(crate) fn half_hash(value: &str) -> String {
    let hash = digest::digest(&digest::SHA256, value.as_bytes());
    crate::base64url::encode(&hash.as_ref()[..16])
}

/// Whether `scopes` holds `scope`.
fn has(scopes: &[String], scope: &str) -> bool {
    scopes.iter().any(|s| s == scope)
}

/// The profile claims of `user` that `scopes` allow, as Auth0 gives them: `profile` brings `name`, `nickname`,
/// `picture`, `given_name`, `family_name` and `updated_at`; `email` brings `email` and `email_verified`. Claims the
/// user does not have are left out; `updated_at` defaults to `started_at` (seconds since the epoch).
pub(crate) fn profile_claims(user: &User, scopes: &[String], started_at: i64) -> Map<String, Value> {
    let mut claims = Map::new();
    if has(scopes, "profile") {
        let nickname = user.nickname.clone().unwrap_or_else(|| match &user.email {
            Some(email) => email.split('@').next().unwrap_or(email).to_owned(),
            None => user.id.clone(),
        });
        claims.insert("nickname".into(), json!(nickname));
        claims.insert("name".into(), json!(user.name.clone().or_else(|| user.email.clone()).unwrap_or(nickname)));
        for (name, value) in
            [("picture", &user.picture), ("given_name", &user.given_name), ("family_name", &user.family_name)]
        {
            if let Some(value) = value {
                claims.insert(name.into(), json!(value));
            }
        }
        let updated_at = user.updated_at.clone().unwrap_or_else(|| rfc3339(started_at));
        claims.insert("updated_at".into(), json!(updated_at));
    }
    if has(scopes, "email")
        && let Some(email) = &user.email
    {
        claims.insert("email".into(), json!(email));
        claims.insert("email_verified".into(), json!(user.email_verified));
    }
    claims
}

/// `seconds` since the epoch as Auth0 writes times: RFC 3339 in UTC with milliseconds.
fn rfc3339(seconds: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
    humantime::format_rfc3339_millis(time).to_string()
}

impl DevIssuer {
    /// The claims of the ID token for `grant` (which must be a user's, with `openid` among its scopes) from
    /// `login`: `iss`, `sub`, `aud` (the client ID), `iat`, `exp`, `auth_time`, `sid`, `nonce` when sent, the
    /// profile claims the scopes allow, and `at_hash` / `c_hash` for what `bound` names. `None` without a user
    /// or without `openid`.
    pub(crate) fn id_token_claims(&self, grant: &Grant, login: &Login, bound: Bound<'_>) -> Option<Map<String, Value>> {
        if !has(&grant.scopes, "openid") {
            return None;
        }
        let user = self.user(grant.user.as_deref()?)?;
        let now = self.now();
        let lifetime = i64::try_from(self.tenant().id_token_lifetime).unwrap_or(i64::MAX);
        let mut claims = profile_claims(user, &grant.scopes, self.started_at());
        claims.insert("iss".into(), json!(self.issuer()));
        claims.insert("sub".into(), json!(user.subject()));
        claims.insert("aud".into(), json!(grant.client_id));
        claims.insert("iat".into(), json!(now));
        claims.insert("exp".into(), json!(now.saturating_add(lifetime)));
        claims.insert("auth_time".into(), json!(login.auth_time));
        claims.insert("sid".into(), json!(login.sid));
        if let Some(nonce) = &login.nonce {
            claims.insert("nonce".into(), json!(nonce));
        }
        if let Some(token) = bound.access_token {
            claims.insert("at_hash".into(), json!(half_hash(token)));
        }
        if let Some(code) = bound.code {
            claims.insert("c_hash".into(), json!(half_hash(code)));
        }
        Some(claims)
    }

    /// The ID token for `grant` from `login`, signed by the current key (RS256, `typ: JWT`, whatever the access
    /// tokens' profile), or `None` when [`id_token_claims`](Self::id_token_claims) gives none.
    pub(crate) fn id_token(&self, grant: &Grant, login: &Login, bound: Bound<'_>) -> Result<Option<String>, SignError> {
        let Some(claims) = self.id_token_claims(grant, login, bound) else { return Ok(None) };
        let signer =
            self.inner.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner).choose(&KeyChoice::Current);
        let signer = signer.ok_or(SignError::NoSuchKey(KeyChoice::Current))?;
        Ok(Some(signer.sign_token(&Value::Object(claims), None)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tenant;
    use portcullis::clock::ManualClock;
    use std::sync::Arc;

    fn issuer() -> DevIssuer {
        let tenant = Tenant::demo("http://127.0.0.1:3000/callback");
        DevIssuer::with_clock(tenant, "http://127.0.0.1:4000/", Arc::new(ManualClock::at_unix(1_700_000_000)))
            .expect("an issuer")
    }

    #[test]
    fn half_hash_matches_the_openid_connect_example() {
        // OpenID Connect Core 1.0, Appendix A.4: the code and its c_hash.
        let code = "Qcb0Orv1zh30vL1MPRsbm-diHiMwcLyZvn1arpZv-Jxf_11jnpEX3Tgfvk";
        assert_eq!(half_hash(code), "LDktKdoQak3Pk0cnXxCltA");
    }

    #[test]
    fn id_tokens_carry_the_login_and_the_scoped_profile() {
        let issuer = issuer();
        let login = Login { auth_time: 1_699_999_990, sid: "s1".into(), nonce: Some("n-0S6_WzA2Mj".into()) };
        let grant = Grant::new("demo-spa", crate::DEMO_AUDIENCE).with_user("alice").with_scopes(["openid", "profile"]);
        let code = "Qcb0Orv1zh30vL1MPRsbm-diHiMwcLyZvn1arpZv-Jxf_11jnpEX3Tgfvk";
        let bound = Bound { access_token: Some(code), code: Some(code) };
        let claims = issuer.id_token_claims(&grant, &login, bound).expect("claims");
        assert_eq!(claims["iss"], "http://127.0.0.1:4000/");
        assert_eq!((claims["sub"].as_str(), claims["aud"].as_str()), (Some("auth0|alice"), Some("demo-spa")));
        assert_eq!((claims["iat"].as_i64(), claims["exp"].as_i64()), (Some(1_700_000_000), Some(1_700_036_000)));
        assert_eq!((claims["auth_time"].as_i64(), claims["sid"].as_str()), (Some(1_699_999_990), Some("s1")));
        assert_eq!(
            (claims["nonce"].as_str(), claims["at_hash"].as_str()),
            (Some("n-0S6_WzA2Mj"), Some("LDktKdoQak3Pk0cnXxCltA"))
        );
        assert_eq!((claims["name"].as_str(), claims["nickname"].as_str()), (Some("Alice"), Some("alice")));
        assert_eq!(claims["updated_at"], "2023-11-14T22:13:20.000Z");
        assert_eq!(claims["c_hash"], claims["at_hash"]);
        assert!(!claims.contains_key("email"), "{claims:?}");
        let with_email = grant.clone().with_scopes(["openid", "email"]);
        let claims = issuer.id_token_claims(&with_email, &login, Bound::default()).expect("claims");
        assert_eq!(
            (claims["email"].as_str(), claims["email_verified"].as_bool()),
            (Some("alice@example.com"), Some(true))
        );
        assert!(!claims.contains_key("name") && !claims.contains_key("at_hash"), "{claims:?}");
        let no_nonce = Login { nonce: None, ..login.clone() };
        assert!(
            !issuer.id_token_claims(&with_email, &no_nonce, Bound::default()).expect("claims").contains_key("nonce")
        );
        assert!(issuer.id_token_claims(&grant.clone().with_scopes(["profile"]), &login, Bound::default()).is_none());
        let machine = Grant::new("demo-client", crate::DEMO_AUDIENCE).with_scopes(["openid"]);
        assert!(issuer.id_token_claims(&machine, &login, Bound::default()).is_none());
    }

    #[test]
    fn id_tokens_verify_against_the_published_keys_with_the_client_as_audience() {
        let issuer = issuer();
        let login = Login { auth_time: 1_700_000_000, sid: "s".into(), nonce: None };
        let grant = Grant::new("demo-spa", crate::DEMO_AUDIENCE).with_user("bob").with_scopes(["openid"]);
        let token = issuer.id_token(&grant, &login, Bound::default()).expect("signed").expect("a token");
        let keys = portcullis::KeySet::from_jwks_json(issuer.jwks().to_string().as_bytes()).expect("keys");
        let verifier = portcullis::Verifier::builder()
            .issuer(issuer.issuer())
            .audience("demo-spa")
            .keys(keys)
            .clock(Arc::new(ManualClock::at_unix(1_700_000_000)))
            .without_cache()
            .build()
            .expect("a verifier");
        let verified = verifier.verify(&token).expect("the ID token verifies");
        assert_eq!(verified.subject(), Some("auth0|bob"));
    }
}

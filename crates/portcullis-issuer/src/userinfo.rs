//! `GET /userinfo` as Auth0 answers it: `sub` and the profile claims the access token's scopes allow (`profile`,
//! `email`), for a token whose audience includes `<issuer>userinfo`. A DPoP-bound token is taken only with the
//! DPoP scheme and a proof of its key.

use crate::id_token::profile_claims;
use crate::issuer::DevIssuer;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis::dpop::Scheme;
use serde_json::{Map, Value, json};

/// Why `/userinfo` refuses a request.
enum Refusal {
    /// No token, or one that does not verify.
    Token(String),
    /// The token's binding or its proof.
    Dpop(portcullis::Error),
}

/// The scheme and token of an `Authorization: Bearer …` or `Authorization: DPoP …` header.
fn credentials(headers: &HeaderMap) -> Option<(Scheme, &str)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (name, token) = value.split_once(' ')?;
    if name.eq_ignore_ascii_case("bearer") {
        Some((Scheme::Bearer, token))
    } else if name.eq_ignore_ascii_case("dpop") {
        Some((Scheme::Dpop, token))
    } else {
        None
    }
}

/// The verified access token of the request, checked against the issuer's own keys, `iss` and the userinfo
/// audience, and against its DPoP binding.
fn verified(issuer: &DevIssuer, headers: &HeaderMap) -> Result<portcullis::VerifiedToken, Refusal> {
    let credentials = credentials(headers);
    let scheme = credentials.map_or(Scheme::Bearer, |(scheme, _)| scheme);
    let Some((_, token)) = credentials else { return Err(Refusal::Token("no bearer token".into())) };
    let keys = portcullis::KeySet::from_jwks_json(issuer.jwks().to_string().as_bytes())
        .map_err(|e| Refusal::Token(e.to_string()))?;
    let verifier = portcullis::Verifier::builder()
        .issuer(issuer.issuer())
        .audience(issuer.userinfo_audience())
        .keys(keys)
        .clock(std::sync::Arc::new(IssuerClock(issuer.clone())))
        .without_cache()
        .build()
        .map_err(|e| Refusal::Token(e.to_string()))?;
    let token = verifier.verify(token).map_err(|e| Refusal::Token(e.to_string()))?;
    // A DPoP-bound token is the profile's only with a proof of its key (and a Bearer one never with a proof).
    issuer.dpop().check_userinfo(scheme, headers, &token).map_err(Refusal::Dpop)?;
    Ok(token)
}

/// The issuer's own (shiftable) clock, so that `/userinfo` agrees with the tokens the issuer hands out.
#[derive(Debug)]
struct IssuerClock(DevIssuer);

impl portcullis::clock::Clock for IssuerClock {
    fn now(&self) -> portcullis::clock::UnixTime {
        portcullis::clock::Clock::now(self.0.clock())
    }
}

/// The answer for a verified token: `sub`, and the user's profile claims that the token's scopes allow.
fn profile(issuer: &DevIssuer, token: &portcullis::VerifiedToken) -> Map<String, Value> {
    let mut info = Map::new();
    info.insert("sub".into(), json!(token.subject()));
    let user = issuer.tenant().users.iter().find(|u| Some(u.subject().as_str()) == token.subject());
    if let Some(user) = user {
        info.extend(profile_claims(user, token.scopes(), issuer.started_at()));
    }
    info
}

/// The userinfo endpoint.
pub(crate) async fn userinfo(State(issuer): State<DevIssuer>, headers: HeaderMap) -> Response {
    let scheme = credentials(&headers).map_or(Scheme::Bearer, |(scheme, _)| scheme);
    match verified(&issuer, &headers) {
        Ok(token) => {
            let mut response = axum::Json(profile(&issuer, &token)).into_response();
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(Refusal::Token(why)) => {
            let challenge = format!("Bearer error=\"invalid_token\", error_description=\"{}\"", why.replace('"', "'"));
            (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, challenge)], "Unauthorized").into_response()
        }
        Err(Refusal::Dpop(refused)) => {
            let error = match refused.reason() {
                portcullis::Reason::DpopProofInvalid => "invalid_dpop_proof",
                portcullis::Reason::DpopNonceRequired => "use_dpop_nonce",
                portcullis::Reason::RequestInvalid => "invalid_request",
                _ => "invalid_token",
            };
            let dpop_error = matches!(error, "invalid_dpop_proof" | "use_dpop_nonce");
            let name = if scheme == Scheme::Dpop || dpop_error { "DPoP" } else { "Bearer" };
            let description = refused.description().replace('"', "'");
            let challenge = format!("{name} error=\"{error}\", error_description=\"{description}\"");
            let mut response =
                (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, challenge)], "Unauthorized").into_response();
            if let Some(nonce) = issuer.dpop().nonce().and_then(|nonce| HeaderValue::from_str(&nonce).ok()) {
                response.headers_mut().insert(crate::dpop::DPOP_NONCE, nonce);
            }
            response
        }
    }
}

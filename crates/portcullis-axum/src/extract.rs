//! Extractors for handlers: [`Token`] (the whole verified token) and [`Claims`] (typed claims).

use crate::rejection::{Answer, AuthRejection};
use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;
use portcullis::{Error, Reason, VerifiedToken};
use serde::de::DeserializeOwned;
use std::ops::Deref;

/// The request's verified token. `Option<Token>` for routes with optional credentials.
#[derive(Debug, Clone)]
pub struct Token(pub VerifiedToken);

impl Deref for Token {
    type Target = VerifiedToken;

    fn deref(&self) -> &VerifiedToken {
        &self.0
    }
}

/// The verified token's claims deserialized into `T` — for example a struct with Auth0's namespaced claims:
///
/// ```
/// use portcullis_axum::Claims;
/// #[derive(serde::Deserialize)]
/// struct User {
///     sub: String,
///     #[serde(rename = "https://example.com/roles", default)]
///     roles: Vec<String>,
/// }
/// async fn handler(Claims(user): Claims<User>) -> String {
///     format!("{} has roles {:?}", user.sub, user.roles)
/// }
/// ```
///
/// Claims that do not fit `T` are refused as `claim_invalid` (401): the token does not carry what this API needs.
#[derive(Debug, Clone)]
pub struct Claims<T>(pub T);

fn answer(parts: &Parts) -> Option<Answer> {
    parts.extensions.get::<Answer>().cloned()
}

fn missing(parts: &Parts) -> AuthRejection {
    match answer(parts) {
        Some(answer) => AuthRejection {
            error: Error::new(Reason::TokenMissing, "the request has no bearer token"),
            answer,
            misconfigured: false,
        },
        None => {
            tracing::error!(target: "portcullis::rejection", "a token extractor ran without JwtLayer in front of it");
            AuthRejection {
                error: Error::new(Reason::TokenMissing, "authentication is not configured for this route"),
                answer: Answer::default(),
                misconfigured: true,
            }
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Token {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<VerifiedToken>().cloned().map(Token).ok_or_else(|| missing(parts))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Token {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<VerifiedToken>().cloned().map(Token))
    }
}

fn typed<T: DeserializeOwned>(parts: &Parts, token: &VerifiedToken) -> Result<Claims<T>, AuthRejection> {
    token.deserialize_claims::<T>().map(Claims).map_err(|e| {
        let mut why = e.to_string();
        why.truncate(160);
        AuthRejection {
            error: Error::new(Reason::ClaimInvalid, format!("the token's claims do not fit this API: {why}")),
            answer: answer(parts).unwrap_or_default(),
            misconfigured: false,
        }
    })
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Claims<T> {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<VerifiedToken>() {
            Some(token) => typed(parts, token),
            None => Err(missing(parts)),
        }
    }
}

impl<S: Send + Sync, T: DeserializeOwned> OptionalFromRequestParts<S> for Claims<T> {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        match parts.extensions.get::<VerifiedToken>() {
            Some(token) => typed(parts, token).map(Some),
            None => Ok(None),
        }
    }
}

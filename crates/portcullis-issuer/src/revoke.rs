//! `POST /oauth/revoke` (RFC 7009, as Auth0 answers it): a client revokes one of its refresh tokens, and with it
//! the token's whole family (every token rotated from the same login). A family bound to a DPoP key is revoked
//! only by a request with a proof of that key for `POST <issuer>oauth/revoke`, as it is refreshed only with one:
//! a thief holding the token without the key cannot end the owner's login either.

use crate::dpop::{DPOP_NONCE, Refusal};
use crate::issuer::DevIssuer;
use crate::refresh::Revoked;
use crate::token::{authenticate, foreign_origin, oauth_error, parameters, unauthorized};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The revocation endpoint. The client authenticates as at the token endpoint (a browser page only from one of its
/// web origins); `token` is a refresh token. An
/// unknown token is answered 200 as a revoked one is (RFC 7009 §2.2), so the answer tells nothing about which
/// tokens exist; a token of another client is refused and stays valid.
pub(crate) async fn revoke(State(issuer): State<DevIssuer>, headers: HeaderMap, body: Bytes) -> Response {
    let params = match parameters(&headers, &body) {
        Ok(params) => params,
        Err(why) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", why),
    };
    let Some(client) = authenticate(&issuer, &headers, &params) else { return unauthorized() };
    if let Some(refused) = foreign_origin(&headers, &client) {
        return refused;
    }
    let Some(token) = params.get("token").filter(|token| !token.is_empty()) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Missing required parameter: token");
    };
    let jkt = match issuer.dpop().check_revocation(&headers) {
        Ok(jkt) => jkt,
        Err(Refusal::Invalid(why)) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_dpop_proof", &why),
        Err(Refusal::NonceRequired(why)) => {
            return with_nonce(&issuer, oauth_error(StatusCode::BAD_REQUEST, "use_dpop_nonce", &why));
        }
    };
    match issuer.revoke_refresh_token(token, &client.client_id, jkt.as_deref()) {
        Revoked::Family | Revoked::Unknown => {
            let mut response = StatusCode::OK.into_response();
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Revoked::OtherClient => oauth_error(
            StatusCode::FORBIDDEN,
            "invalid_grant",
            "the refresh token was issued to another client; a client revokes only its own tokens",
        ),
        Revoked::KeyMismatch => oauth_error(
            StatusCode::FORBIDDEN,
            "invalid_grant",
            "the refresh token is bound to a DPoP key: the request must carry a proof of that key",
        ),
    }
}

/// `response` with the current DPoP nonce, when nonces are on.
fn with_nonce(issuer: &DevIssuer, mut response: Response) -> Response {
    if let Some(nonce) = issuer.dpop().nonce().and_then(|nonce| HeaderValue::from_str(&nonce).ok()) {
        response.headers_mut().insert(DPOP_NONCE, nonce);
    }
    response
}

//! `POST /oauth/token`: client credentials, authorization code with PKCE, refresh token; DPoP-bound tokens
//! (RFC 9449 §5) and RFC 8707 `resource`; ID tokens for a user's `openid` grant, at the code exchange and at every
//! refresh; Auth0's answer and error shapes.

use crate::config::Client;
use crate::dpop::{DPOP_NONCE, Refusal};
use crate::id_token::{Bound, Login};
use crate::issuer::{DevIssuer, Grant};
use crate::params::Params;
use crate::refresh::{Presented, Refused};
use crate::target::requested_audience;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An OAuth error answer, Auth0-shaped.
pub(crate) fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut response =
        (status, axum::Json(json!({ "error": error, "error_description": description }))).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Parameters from a JSON or form body.
pub(crate) fn parameters(headers: &HeaderMap, body: &[u8]) -> Result<Params, &'static str> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json { Params::from_json(body) } else { Ok(Params::from_form(body)) }
}

/// Credentials a request presents: the ID and secret of HTTP Basic, or `client_id` / `client_secret` of the body.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Credentials {
    client_id: Option<String>,
    secret: Option<String>,
}

/// The credentials of the request, in the readings to try. RFC 6749 §2.3.1 has HTTP Basic carry the ID and the
/// secret form-urlencoded (oauth4webapi and so openid-client and express-openid-connect encode even `-` as `%2D`),
/// so the decoded reading comes first; tools that send them as they are (`curl -u`) are read as sent.
fn client_credentials(headers: &HeaderMap, params: &Params) -> Vec<Credentials> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")))
        .and_then(|b64| standard_base64_decode(b64.trim()))
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| pair.split_once(':').map(|(id, secret)| (id.to_owned(), secret.to_owned())));
    let Some((id, secret)) = basic else {
        return vec![Credentials {
            client_id: params.get("client_id").cloned(),
            secret: params.get("client_secret").cloned(),
        }];
    };
    let mut readings = Vec::new();
    if let (Some(id), Some(secret)) = (form_decoded(&id), form_decoded(&secret)) {
        readings.push(Credentials { client_id: Some(id), secret: Some(secret) });
    }
    let as_sent = Credentials { client_id: Some(id), secret: Some(secret) };
    if !readings.contains(&as_sent) {
        readings.push(as_sent);
    }
    readings
}

/// `value` form-urlencoded decoded (`%XX` and `+`), or `None` when it cannot be an encoded value (it holds `&` or
/// `=`, which encoding never leaves).
fn form_decoded(value: &str) -> Option<String> {
    if value.contains(['&', '=']) {
        return None;
    }
    let decoded = url::form_urlencoded::parse(value.as_bytes()).next().map(|(name, _)| name.into_owned());
    Some(decoded.unwrap_or_default())
}

/// The client a token or revocation request authenticates as: a known client ID, with its secret (in the body or
/// HTTP Basic) for a confidential client and none for a public one. `None` is answered with [`unauthorized`].
pub(crate) fn authenticate(issuer: &DevIssuer, headers: &HeaderMap, params: &Params) -> Option<Client> {
    client_credentials(headers, params).into_iter().find_map(|presented| {
        let client = issuer.client(presented.client_id.as_deref()?)?;
        match (&client.client_secret, &presented.secret) {
            (Some(expected), Some(given)) if same_secret(expected, given) => Some(client),
            (None, None) => Some(client),
            _ => None,
        }
    })
}

/// The refusal of a browser request whose page is not from one of `client`'s web origins: a page of another client
/// (or any other site) must not redeem this client's codes or use its tokens, even though CORS lets pages of every
/// client's origins read the endpoint. Requests without `Origin` (servers, native apps) pass.
pub(crate) fn foreign_origin(headers: &HeaderMap, client: &Client) -> Option<Response> {
    let foreign = headers
        .get_all(header::ORIGIN)
        .iter()
        .find(|origin| !client.web_origins.iter().any(|allowed| allowed.as_bytes() == origin.as_bytes()))?;
    let origin = String::from_utf8_lossy(foreign.as_bytes());
    let description = format!(
        "the request comes from a page of {origin}, which is not one of the web origins of client {}: add it to \
         the client's web_origins (Auth0: Allowed Web Origins)",
        client.client_id
    );
    Some(oauth_error(StatusCode::FORBIDDEN, "access_denied", &description))
}

/// Auth0's answer to a request whose client does not authenticate: `401 access_denied`.
pub(crate) fn unauthorized() -> Response {
    oauth_error(StatusCode::UNAUTHORIZED, "access_denied", "Unauthorized")
}

fn standard_base64_decode(text: &str) -> Option<Vec<u8>> {
    let url_safe = text.trim_end_matches('=').replace('+', "-").replace('/', "_");
    crate::base64url::decode(&url_safe)
}

/// Compares secrets without leaking where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

/// The token answer: a Bearer token, or with `jkt` a DPoP-bound one (`token_type: DPoP`), and an ID token for a
/// user's `openid` grant from `login`.
fn token_response(
    issuer: &DevIssuer,
    grant: &Grant,
    refresh_token: Option<String>,
    jkt: Option<&str>,
    login: Option<&Login>,
) -> Response {
    let minted = match jkt {
        Some(jkt) => issuer.dpop_bound_token(grant, jkt),
        None => issuer.access_token(grant),
    };
    match minted {
        Ok(access_token) => {
            let mut body = json!({
                "access_token": access_token,
                "token_type": if jkt.is_some() { "DPoP" } else { "Bearer" },
                "expires_in": issuer.tenant().token_lifetime,
                "scope": grant.scopes.join(" "),
            });
            if let Some(refresh_token) = refresh_token {
                body["refresh_token"] = json!(refresh_token);
            }
            if let Some(login) = login {
                let bound = Bound { access_token: Some(&access_token), code: None };
                match issuer.id_token(grant, login, bound) {
                    Ok(Some(id_token)) => body["id_token"] = json!(id_token),
                    Ok(None) => {}
                    Err(why) => {
                        return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", &why.to_string());
                    }
                }
            }
            let mut response = axum::Json(body).into_response();
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(why) => oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", &why.to_string()),
    }
}

/// The token endpoint. When DPoP nonces are on, every answer carries the current one in `DPoP-Nonce`.
pub(crate) async fn token(State(issuer): State<DevIssuer>, headers: HeaderMap, body: Bytes) -> Response {
    let mut response = answer(&issuer, &headers, &body);
    if let Some(nonce) = issuer.dpop().nonce().and_then(|nonce| HeaderValue::from_str(&nonce).ok()) {
        response.headers_mut().insert(DPOP_NONCE, nonce);
    }
    response
}

fn answer(issuer: &DevIssuer, headers: &HeaderMap, body: &[u8]) -> Response {
    let params = match parameters(headers, body) {
        Ok(params) => params,
        Err(why) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", why),
    };
    let Some(client) = authenticate(issuer, headers, &params) else { return unauthorized() };
    if let Some(refused) = foreign_origin(headers, &client) {
        return refused;
    }
    let grant_type = params.get("grant_type").map(String::as_str).unwrap_or_default();
    if !matches!(grant_type, "client_credentials" | "authorization_code" | "refresh_token") {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "Unsupported grant type");
    }
    if !client.allows(grant_type) {
        return oauth_error(
            StatusCode::FORBIDDEN,
            "unauthorized_client",
            &format!("Grant type '{grant_type}' not allowed for the client."),
        );
    }
    // The proof and the target are checked before a code or refresh token is used, so that a client told to
    // retry (a nonce, a typo in `resource`) can.
    let jkt = match issuer.dpop().check(headers) {
        Ok(jkt) => jkt,
        Err(Refusal::Invalid(why)) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_dpop_proof", &why),
        Err(Refusal::NonceRequired(why)) => return oauth_error(StatusCode::BAD_REQUEST, "use_dpop_nonce", &why),
    };
    let target = match requested_audience(issuer, &params) {
        Ok(target) => target,
        Err(refused) => return oauth_error(StatusCode::BAD_REQUEST, refused.code(), refused.description()),
    };
    let resource = params.get("resource").is_some().then_some(target.as_deref()).flatten();
    match grant_type {
        "client_credentials" => {
            let Some(audience) = target else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "audience is required");
            };
            let Some(granted) = client.audiences.get(&audience) else {
                return oauth_error(
                    StatusCode::FORBIDDEN,
                    "access_denied",
                    &format!(
                        "Client is not authorized to access \"{audience}\". You need to create a \"client-grant\" associated to this API."
                    ),
                );
            };
            let scopes = match params.get("scope") {
                None => granted.clone(),
                Some(asked) => {
                    let asked: Vec<String> = asked.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect();
                    if let Some(missing) = asked.iter().find(|s| !granted.contains(s)) {
                        return oauth_error(
                            StatusCode::FORBIDDEN,
                            "access_denied",
                            &format!("Client has not been granted scopes: {missing}"),
                        );
                    }
                    asked
                }
            };
            let grant = Grant { client_id: client.client_id.clone(), user: None, audience, scopes };
            token_response(issuer, &grant, None, jkt.as_deref(), None)
        }
        "authorization_code" => {
            let code_id = params.get("code").map(String::as_str).unwrap_or_default();
            // Every check before the code is used up: a presentation that fails one changes nothing.
            let check = |bound: &crate::codes::Binding| {
                if bound.client_id != client.client_id {
                    return Err((StatusCode::FORBIDDEN, "invalid_grant", "Invalid authorization code"));
                }
                if params.get("redirect_uri") != Some(&bound.redirect_uri) {
                    return Err((
                        StatusCode::FORBIDDEN,
                        "invalid_grant",
                        "redirect_uri does not match the authorization request",
                    ));
                }
                if let Some(challenge) = &bound.code_challenge {
                    let verified = params.get("code_verifier").is_some_and(|v| crate::pkce::verify_s256(v, challenge));
                    if !verified {
                        return Err((StatusCode::FORBIDDEN, "invalid_grant", "Failed to verify code verifier"));
                    }
                }
                if bound.dpop_jkt.as_deref().is_some_and(|bound| Some(bound) != jkt.as_deref()) {
                    return Err((
                        StatusCode::FORBIDDEN,
                        "invalid_grant",
                        "the authorization request named a DPoP key (dpop_jkt) that this request does not prove",
                    ));
                }
                if resource.is_some_and(|resource| resource != bound.audience) {
                    return Err((
                        StatusCode::BAD_REQUEST,
                        "invalid_target",
                        "resource is not the one the authorization request named",
                    ));
                }
                Ok(())
            };
            let code = match issuer.take_code(code_id, check) {
                Ok(Some(code)) => code,
                Ok(None) => return oauth_error(StatusCode::FORBIDDEN, "invalid_grant", "Invalid authorization code"),
                Err((status, error, why)) => return oauth_error(status, error, why),
            };
            let refresh = (code.grant.scopes.iter().any(|s| s == "offline_access") && client.allows("refresh_token"))
                .then(|| issuer.start_refresh_family(code.grant.clone(), code.login.clone(), jkt.clone()));
            if let Some(first) = &refresh {
                issuer.code_started_family(code_id, first);
            }
            token_response(issuer, &code.grant, refresh, jkt.as_deref(), Some(&code.login))
        }
        _ => {
            let Some(presented) = params.get("refresh_token").filter(|t| !t.is_empty()) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Missing required parameter: refresh_token",
                );
            };
            let presented = Presented { token: presented, client_id: &client.client_id, jkt: jkt.as_deref(), resource };
            match issuer.rotate_refresh_token(presented) {
                // An `openid` family answers a new ID token about the same login at every refresh.
                Ok(rotated) => {
                    let login = Some(&rotated.login);
                    token_response(issuer, &rotated.grant, Some(rotated.next), jkt.as_deref(), login)
                }
                Err(Refused::KeyMismatch) => oauth_error(
                    StatusCode::FORBIDDEN,
                    "invalid_grant",
                    "the refresh token is bound to a DPoP key: the request must carry a proof of that key",
                ),
                Err(Refused::OtherTarget) => oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_target",
                    "resource is not the API the refresh token was issued for",
                ),
                Err(refused) => {
                    if refused == Refused::Reused {
                        tracing::warn!(
                            client_id = %client.client_id,
                            "a used refresh token was presented again; its whole family is revoked"
                        );
                    }
                    oauth_error(StatusCode::FORBIDDEN, "invalid_grant", "Unknown or invalid refresh token.")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(pair: &str) -> HeaderMap {
        let encoded = crate::base64url::encode(pair).replace('-', "+").replace('_', "/");
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Basic {encoded}")).unwrap());
        headers
    }

    fn reading(id: &str, secret: &str) -> Credentials {
        Credentials { client_id: Some(id.into()), secret: Some(secret.into()) }
    }

    #[test]
    fn basic_credentials_are_read_form_decoded_first_then_as_sent() {
        let none = Params::default();
        // As oauth4webapi sends them: every `-` encoded.
        let encoded = client_credentials(&basic("my%2Dapp:s%2De%2Bc%25r%20et"), &none);
        assert_eq!(encoded, [reading("my-app", "s-e+c%r et"), reading("my%2Dapp", "s%2De%2Bc%25r%20et")]);
        // As curl -u sends them: nothing encoded; a `+` in the secret is tried as a space, then as sent.
        assert_eq!(
            client_credentials(&basic("my-app:a+b"), &none),
            [reading("my-app", "a b"), reading("my-app", "a+b")]
        );
        assert_eq!(client_credentials(&basic("my-app:plain"), &none), [reading("my-app", "plain")]);
        // A secret holding `=` or `&` was not encoded: read as sent only.
        assert_eq!(client_credentials(&basic("id:x=y&z"), &none), [reading("id", "x=y&z")]);
        // No Basic: the body's.
        let body = Params::from_form(b"client_id=c&client_secret=s%2D");
        assert_eq!(client_credentials(&HeaderMap::new(), &body), [reading("c", "s-")]);
    }
}

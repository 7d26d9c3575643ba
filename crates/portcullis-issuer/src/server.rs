//! The HTTP surface: discovery, JWKS, `/oauth/token`, `/authorize`, `/userinfo`, and the admin endpoints.

use crate::issuer::{AuthorizationCode, Broken, DevIssuer, Grant, lock, random_string};
use crate::journal::Fault;
use crate::keys::KeyChoice;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::connect_info::MockConnectInfo;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

/// The prefix of the admin endpoints (loopback clients only).
pub const ADMIN_PREFIX: &str = "/__admin";

const DEV_ONLY: &str = "portcullis development issuer: for development and tests only, never for production";

/// The issuer's routes. Serve with connection info (see [`serve`]) so admin endpoints can check the client.
pub fn router(issuer: DevIssuer) -> Router {
    let admin = Router::new()
        .route("/keys/rotate", post(admin_rotate))
        .route("/keys/revoke", post(admin_revoke))
        .route("/tokens", post(admin_mint))
        .route("/faults", post(admin_fault).delete(admin_clear_faults))
        .route("/clock", post(admin_clock))
        .route("/journal", get(admin_journal))
        .layer(middleware::from_fn(loopback_only));
    Router::new()
        .route("/", get(home))
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/oauth/token", post(token).layer(token_cors(&issuer)))
        .route("/authorize", get(authorize_page).post(authorize_submit))
        .route("/userinfo", get(userinfo))
        .nest(ADMIN_PREFIX, admin)
        // Token, login and admin requests are a few hundred bytes; anything near this is not one of them.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(issuer.clone(), journal))
        .with_state(issuer)
}

/// Browser scripts may call the token endpoint from the origins a client lists in `web_origins` (Auth0's
/// "Allowed Web Origins"); other origins get no CORS headers, so their scripts cannot read the answer.
fn token_cors(issuer: &DevIssuer) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let issuer = issuer.clone();
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, _| {
            origin.to_str().is_ok_and(|origin| issuer.tenant().allows_web_origin(origin))
        }))
        .allow_methods([http::Method::POST])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
        .max_age(Duration::from_secs(600))
}

/// The largest request body the issuer reads (token, login and admin requests); larger ones are answered 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Serves the issuer on `listener` until the future is dropped.
pub async fn serve(listener: tokio::net::TcpListener, issuer: DevIssuer) -> std::io::Result<()> {
    axum::serve(listener, router(issuer).into_make_service_with_connect_info::<SocketAddr>()).await
}

async fn journal(State(issuer): State<DevIssuer>, request: Request, next: Next) -> Response {
    let (method, path) = (request.method().to_string(), request.uri().path().to_owned());
    let mut response = next.run(request).await;
    response.headers_mut().insert("x-development-only", HeaderValue::from_static("true"));
    lock(&issuer.inner.journal).record(&method, &path, response.status().as_u16());
    response
}

async fn loopback_only(request: Request, next: Next) -> Response {
    let extensions = request.extensions();
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
        .or_else(|| extensions.get::<MockConnectInfo<SocketAddr>>().map(|info| info.0.ip()));
    if peer.is_some_and(|ip| ip.is_loopback()) {
        next.run(request).await
    } else {
        (StatusCode::FORBIDDEN, "admin endpoints answer loopback clients only").into_response()
    }
}

async fn home(State(issuer): State<DevIssuer>) -> Html<String> {
    Html(format!(
        "<!doctype html><title>portcullis dev issuer</title><h1>portcullis dev issuer</h1><p><strong>{DEV_ONLY}.</strong></p>\
         <p>Issuer: <code>{}</code> — discovery at <a href=\"/.well-known/openid-configuration\">/.well-known/openid-configuration</a>.</p>",
        escape(issuer.issuer())
    ))
}

async fn discovery(State(issuer): State<DevIssuer>) -> impl IntoResponse {
    let base = issuer.issuer();
    axum::Json(json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}authorize"),
        "token_endpoint": format!("{base}oauth/token"),
        "userinfo_endpoint": format!("{base}userinfo"),
        "jwks_uri": format!("{base}.well-known/jwks.json"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
    }))
}

async fn jwks(State(issuer): State<DevIssuer>) -> Response {
    let fault = lock(&issuer.inner.faults).take();
    let body = issuer.jwks().to_string();
    let ok = |body: String| {
        ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "public, max-age=15000")], body)
            .into_response()
    };
    match fault {
        None => ok(body),
        Some(Fault::Delay { ms, .. }) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            ok(body)
        }
        Some(Fault::Status { status, .. }) => {
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR).into_response()
        }
        Some(Fault::Garbage { .. }) => ok("<html>not a key set</html>".into()),
        Some(Fault::Drop { .. }) => {
            let broken = futures_stream_error();
            (StatusCode::OK, [(header::CONTENT_LENGTH, "1000")], Body::from_stream(broken)).into_response()
        }
    }
}

/// A body that fails at once: the server closes the connection mid-answer.
fn futures_stream_error() -> impl futures_core::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    tokio_stream_once(Err(std::io::Error::other("connection dropped on purpose")))
}

fn tokio_stream_once(
    item: Result<Bytes, std::io::Error>,
) -> impl futures_core::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    struct Once(Option<Result<Bytes, std::io::Error>>);
    impl futures_core::Stream for Once {
        type Item = Result<Bytes, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.take())
        }
    }
    Once(Some(item))
}

/// An OAuth error answer, Auth0-shaped.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut response =
        (status, axum::Json(json!({ "error": error, "error_description": description }))).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Parameters from a JSON or form body.
fn parameters(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, &'static str> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json {
        let map: Map<String, Value> = serde_json::from_slice(body).map_err(|_| "the body is not a JSON object")?;
        Ok(map.into_iter().filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_owned()))).collect())
    } else {
        Ok(url::form_urlencoded::parse(body).into_owned().collect())
    }
}

/// `client_id`/`client_secret` from HTTP Basic or the body.
fn client_credentials(headers: &HeaderMap, params: &HashMap<String, String>) -> (Option<String>, Option<String>) {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")))
        .and_then(|b64| standard_base64_decode(b64.trim()))
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| pair.split_once(':').map(|(id, secret)| (id.to_owned(), secret.to_owned())));
    match basic {
        Some((id, secret)) => (Some(id), Some(secret)),
        None => (params.get("client_id").cloned(), params.get("client_secret").cloned()),
    }
}

fn standard_base64_decode(text: &str) -> Option<Vec<u8>> {
    let url_safe = text.trim_end_matches('=').replace('+', "-").replace('/', "_");
    portcullis::base64url::decode(&url_safe)
}

/// Compares secrets without leaking where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

fn token_response(issuer: &DevIssuer, grant: &Grant, refresh_token: Option<String>) -> Response {
    match issuer.access_token(grant) {
        Ok(access_token) => {
            let mut body = json!({
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": issuer.tenant().token_lifetime,
                "scope": grant.scopes.join(" "),
            });
            if let Some(refresh_token) = refresh_token {
                body["refresh_token"] = json!(refresh_token);
            }
            let mut response = axum::Json(body).into_response();
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(why) => oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", &why),
    }
}

async fn token(State(issuer): State<DevIssuer>, headers: HeaderMap, body: Bytes) -> Response {
    let params = match parameters(&headers, &body) {
        Ok(params) => params,
        Err(why) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", why),
    };
    let (client_id, secret) = client_credentials(&headers, &params);
    let Some(client) = client_id.as_deref().and_then(|id| issuer.client(id)) else {
        return oauth_error(StatusCode::UNAUTHORIZED, "access_denied", "Unauthorized");
    };
    match (&client.client_secret, &secret) {
        (Some(expected), Some(given)) if same_secret(expected, given) => {}
        (None, None) => {}
        _ => return oauth_error(StatusCode::UNAUTHORIZED, "access_denied", "Unauthorized"),
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
    match grant_type {
        "client_credentials" => {
            let Some(audience) = params.get("audience") else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "audience is required");
            };
            let Some(granted) = client.audiences.get(audience) else {
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
            let grant = Grant { client_id: client.client_id.clone(), user: None, audience: audience.clone(), scopes };
            token_response(&issuer, &grant, None)
        }
        "authorization_code" => {
            let code = params.get("code").and_then(|code| lock(&issuer.inner.codes).remove(code));
            let Some(code) = code.filter(|c| c.expires_at > issuer.now() && c.grant.client_id == client.client_id)
            else {
                return oauth_error(StatusCode::FORBIDDEN, "invalid_grant", "Invalid authorization code");
            };
            if params.get("redirect_uri") != Some(&code.redirect_uri) {
                return oauth_error(
                    StatusCode::FORBIDDEN,
                    "invalid_grant",
                    "redirect_uri does not match the authorization request",
                );
            }
            if let Some(challenge) = &code.code_challenge {
                let verified = params.get("code_verifier").is_some_and(|v| crate::pkce::verify_s256(v, challenge));
                if !verified {
                    return oauth_error(StatusCode::FORBIDDEN, "invalid_grant", "Failed to verify code verifier");
                }
            }
            let refresh = (code.grant.scopes.iter().any(|s| s == "offline_access") && client.allows("refresh_token"))
                .then(|| {
                    let token = random_string(32);
                    lock(&issuer.inner.refresh_tokens).insert(token.clone(), code.grant.clone());
                    token
                });
            token_response(&issuer, &code.grant, refresh)
        }
        _ => {
            let grant = params.get("refresh_token").and_then(|t| lock(&issuer.inner.refresh_tokens).get(t).cloned());
            match grant.filter(|g| g.client_id == client.client_id) {
                Some(grant) => token_response(&issuer, &grant, None),
                None => oauth_error(StatusCode::FORBIDDEN, "invalid_grant", "Unknown or invalid refresh token."),
            }
        }
    }
}

/// A validated authorization request.
struct AuthorizationRequest {
    client_id: String,
    redirect_uri: String,
    state: Option<String>,
    scopes: Vec<String>,
    audience: String,
    code_challenge: Option<String>,
}

/// The page a browser lands on when an authorization request cannot go back to the app.
fn error_page(status: StatusCode, message: &str) -> Response {
    (
        status,
        Html(format!(
            "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>Authorization error — portcullis dev issuer</title>\
             <body style=\"font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 1rem auto; padding: 0 1rem\">\
             <main><h1>Authorization error</h1><p id=\"error\" role=\"alert\">{}</p>\
             <p><em>{DEV_ONLY}.</em></p></main></body></html>",
            escape(message)
        )),
    )
        .into_response()
}

fn validate(issuer: &DevIssuer, params: &HashMap<String, String>) -> Result<AuthorizationRequest, String> {
    let get = |name: &str| params.get(name).filter(|v| !v.is_empty()).cloned();
    let client_id = get("client_id").ok_or_else(|| "client_id is required".to_owned())?;
    let client = issuer.client(&client_id).ok_or_else(|| "unknown client_id".to_owned())?;
    let redirect_uri = get("redirect_uri").ok_or_else(|| "redirect_uri is required".to_owned())?;
    if !client.callbacks.contains(&redirect_uri) {
        // Never redirect to an unregistered URL (open redirect): answer here instead, saying what to fix.
        let allowed = if client.callbacks.is_empty() { "none".to_owned() } else { client.callbacks.join(", ") };
        return Err(format!(
            "Callback URL mismatch: {redirect_uri} is not an allowed callback URL of client {client_id} (allowed: \
             {allowed}). Add it to the client's callbacks (Auth0: Application Settings → Allowed Callback URLs). \
             It must match exactly — scheme, host, port and path: localhost and 127.0.0.1 are different hosts."
        ));
    }
    if get("response_type").as_deref() != Some("code") {
        return Err("response_type must be code".to_owned());
    }
    if !client.allows("authorization_code") {
        return Err("this client may not use the authorization code grant".to_owned());
    }
    let code_challenge = get("code_challenge");
    match (&code_challenge, get("code_challenge_method").as_deref()) {
        (Some(_), Some("S256")) => {}
        (Some(_), _) => return Err("code_challenge_method must be S256".to_owned()),
        (None, _) if client.is_public() => {
            return Err("PKCE (code_challenge with S256) is required for public clients".to_owned());
        }
        (None, _) => {}
    }
    let audience = get("audience").unwrap_or_else(|| crate::config::DEMO_AUDIENCE.into());
    if issuer.tenant().api(&audience).is_none() {
        return Err("unknown audience".to_owned());
    }
    let scopes = get("scope")
        .unwrap_or_else(|| "openid".into())
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    Ok(AuthorizationRequest { client_id, redirect_uri, state: get("state"), scopes, audience, code_challenge })
}

const BUTTON_STYLE: &str = "min-height: 44px; padding: 0.5rem 1rem; font: inherit; font-weight: 600";

/// Issues a code for `user` and redirects to the callback.
fn log_in(issuer: &DevIssuer, request: AuthorizationRequest, user: &str) -> Response {
    let Some(account) = issuer.user(user) else {
        return error_page(StatusCode::BAD_REQUEST, "unknown user");
    };
    let scopes = issuer.user_scopes(account, &request.audience, &request.scopes);
    let grant = Grant { client_id: request.client_id, user: Some(user.to_owned()), audience: request.audience, scopes };
    let code = random_string(24);
    lock(&issuer.inner.codes).insert(
        code.clone(),
        AuthorizationCode {
            grant,
            redirect_uri: request.redirect_uri.clone(),
            code_challenge: request.code_challenge,
            expires_at: issuer.now() + 300,
        },
    );
    let mut location = reqwest_free_url(&request.redirect_uri, &[("code", code.as_str())]);
    if let Some(state) = &request.state {
        location = reqwest_free_url(&location, &[("state", state)]);
    }
    Redirect::to(&location).into_response()
}

fn reqwest_free_url(base: &str, pairs: &[(&str, &str)]) -> String {
    match url::Url::parse(base) {
        Ok(mut url) => {
            url.query_pairs_mut().extend_pairs(pairs);
            url.to_string()
        }
        Err(_) => base.to_owned(),
    }
}

async fn authorize_page(State(issuer): State<DevIssuer>, Query(params): Query<HashMap<String, String>>) -> Response {
    let request = match validate(&issuer, &params) {
        Ok(request) => request,
        Err(why) => return error_page(StatusCode::BAD_REQUEST, &why),
    };
    if let Some(user) = params.get("login_hint").filter(|u| !u.is_empty()) {
        return log_in(&issuer, request, user);
    }
    let hidden: String = params
        .iter()
        .filter(|(k, _)| k.as_str() != "user")
        .map(|(k, v)| format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", escape(k), escape(v)))
        .collect();
    let buttons: String = issuer
        .tenant()
        .users
        .iter()
        .map(|u| {
            let name = u.name.as_deref().unwrap_or(&u.id);
            format!(
                "<li><button type=\"submit\" name=\"user\" value=\"{}\" style=\"{BUTTON_STYLE}\">Log in as {}</button></li>",
                escape(&u.id),
                escape(name)
            )
        })
        .collect();
    Html(format!(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Log in — portcullis dev issuer</title>\
         <body style=\"font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 1rem auto; padding: 0 1rem\">\
         <main><p><strong>{DEV_ONLY}.</strong></p><h1>Log in to {}</h1>\
         <p>Pick a user; there are no passwords. The app asked for scopes <code>{}</code> on <code>{}</code>.</p>\
         <form method=\"post\" action=\"/authorize\">{hidden}\
         <ul style=\"list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 0.5rem\">{buttons}</ul></form>\
         </main></body></html>",
        escape(&request.client_id),
        escape(&request.scopes.join(" ")),
        escape(&request.audience),
    ))
    .into_response()
}

async fn authorize_submit(State(issuer): State<DevIssuer>, body: Bytes) -> Response {
    let params: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let request = match validate(&issuer, &params) {
        Ok(request) => request,
        Err(why) => return error_page(StatusCode::BAD_REQUEST, &why),
    };
    match params.get("user") {
        Some(user) => log_in(&issuer, request, user),
        None => error_page(StatusCode::BAD_REQUEST, "pick a user"),
    }
}

async fn userinfo(State(issuer): State<DevIssuer>, headers: HeaderMap) -> Response {
    let token =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let keys = portcullis::KeySet::from_jwks_json(issuer.jwks().to_string().as_bytes());
    let verified = match (token, keys) {
        (Some(token), Ok(keys)) => portcullis::Verifier::builder()
            .issuer(issuer.issuer())
            .audience(format!("{}userinfo", issuer.issuer()))
            .keys(keys)
            .without_cache()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|v| v.verify(token).map_err(|e| e.to_string())),
        _ => Err("no bearer token".into()),
    };
    match verified {
        Ok(token) => {
            let user = issuer.tenant().users.iter().find(|u| Some(u.subject().as_str()) == token.subject());
            let mut info = json!({ "sub": token.subject() });
            if let Some(user) = user {
                info["name"] = json!(user.name);
                info["email"] = json!(user.email);
                info["email_verified"] = json!(true);
            }
            axum::Json(info).into_response()
        }
        Err(why) => {
            let challenge = format!("Bearer error=\"invalid_token\", error_description=\"{}\"", why.replace('"', "'"));
            (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, challenge)], "Unauthorized").into_response()
        }
    }
}

async fn admin_rotate(State(issuer): State<DevIssuer>) -> Response {
    match issuer.rotate_keys() {
        Ok(()) => axum::Json(json!({ "current": issuer.current_kid(), "jwks": issuer.jwks() })).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[derive(Deserialize)]
struct Revoke {
    kid: String,
}

async fn admin_revoke(State(issuer): State<DevIssuer>, axum::Json(revoke): axum::Json<Revoke>) -> Response {
    match issuer.revoke_key(&revoke.kid) {
        Ok(true) => axum::Json(json!({ "jwks": issuer.jwks() })).into_response(),
        Ok(false) => (StatusCode::NOT_FOUND, "no such key").into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// A mint request: a normal grant's claims, then overrides.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Mint {
    #[serde(default = "demo_client")]
    client_id: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default = "demo_audience")]
    audience: String,
    #[serde(default)]
    scopes: Vec<String>,
    /// Claims to set (a null removes the claim).
    #[serde(default)]
    claims: Map<String, Value>,
    /// Lifetime in seconds (may be negative for an expired token).
    #[serde(default)]
    lifetime: Option<i64>,
    /// `current`, `next`, `previous`, or a kid.
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    broken: Option<Broken>,
}

fn demo_client() -> String {
    "demo-client".into()
}

fn demo_audience() -> String {
    crate::config::DEMO_AUDIENCE.into()
}

async fn admin_mint(State(issuer): State<DevIssuer>, axum::Json(mint): axum::Json<Mint>) -> Response {
    // A user gets what the real login would give them; use `claims` to override anything.
    let scopes = match mint.user.as_deref().map(|id| issuer.user(id)) {
        Some(Some(user)) => issuer.user_scopes(user, &mint.audience, &mint.scopes),
        Some(None) => return (StatusCode::BAD_REQUEST, "unknown user").into_response(),
        None => mint.scopes,
    };
    let grant = Grant { client_id: mint.client_id, user: mint.user, audience: mint.audience, scopes };
    let mut claims = issuer.claims_for(&grant);
    if let Some(lifetime) = mint.lifetime {
        claims.insert("exp".into(), json!(issuer.now() + lifetime));
    }
    for (name, value) in mint.claims {
        if value.is_null() {
            claims.remove(&name);
        } else {
            claims.insert(name, value);
        }
    }
    let key = match mint.key.as_deref() {
        None | Some("current") => KeyChoice::Current,
        Some("next") => KeyChoice::Next,
        Some("previous") => KeyChoice::Previous,
        Some(kid) => KeyChoice::Kid(kid.to_owned()),
    };
    match issuer.sign(&claims, &key, mint.broken) {
        Ok(token) => axum::Json(json!({ "access_token": token, "claims": claims })).into_response(),
        Err(why) => (StatusCode::BAD_REQUEST, why).into_response(),
    }
}

async fn admin_fault(State(issuer): State<DevIssuer>, axum::Json(fault): axum::Json<Fault>) -> StatusCode {
    issuer.inject_fault(fault);
    StatusCode::NO_CONTENT
}

async fn admin_clear_faults(State(issuer): State<DevIssuer>) -> StatusCode {
    issuer.clear_faults();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct Shift {
    shift: i64,
}

async fn admin_clock(State(issuer): State<DevIssuer>, axum::Json(shift): axum::Json<Shift>) -> impl IntoResponse {
    issuer.shift_clock(shift.shift);
    axum::Json(json!({ "now": issuer.now() }))
}

async fn admin_journal(State(issuer): State<DevIssuer>) -> impl IntoResponse {
    axum::Json(issuer.journal())
}

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

//! The HTTP surface: the routes, and the handlers of discovery, JWKS and the admin endpoints (`/authorize` is in
//! [`crate::authorize`], logout in [`crate::logout`], `/oauth/token` in [`crate::token`], `/oauth/revoke` in
//! [`crate::revoke`], `/userinfo` in [`crate::userinfo`], CORS in [`crate::cors`]).

use crate::authorize::page::{DEV_ONLY, DOCTYPE};
use crate::config::Api;
use crate::cors;
use crate::error::AddApiError;
use crate::issuer::{Broken, DevIssuer, Grant, lock, random_string};
use crate::journal::{Fault, HUGE_BODY_BYTES};
use crate::keys::KeyChoice;
use crate::token::oauth_error;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::connect_info::MockConnectInfo;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use maud::html;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::net::SocketAddr;
use std::time::Duration;

/// The prefix of the admin endpoints: loopback clients only, addressed to the issuer's own host and port, never
/// from another site's page, JSON bodies only (see the crate documentation).
pub const ADMIN_PREFIX: &str = "/__admin";

/// The issuer's routes. Serve with connection info (see [`serve`]) so admin endpoints can check the client.
pub fn router(issuer: DevIssuer) -> Router {
    let admin = Router::new()
        .route("/keys/rotate", post(admin_rotate))
        .route("/keys/revoke", post(admin_revoke))
        .route("/tokens", post(admin_mint))
        .route("/faults", post(admin_fault).delete(admin_clear_faults))
        .route("/clock", post(admin_clock))
        .route("/journal", get(admin_journal))
        .route("/apis", post(admin_add_api))
        .layer(middleware::from_fn_with_state(OwnOrigin::of(issuer.issuer()), same_origin_only))
        .layer(middleware::from_fn(loopback_only));
    Router::new()
        .route("/", get(home))
        .route("/.well-known/openid-configuration", get(discovery).layer(cors::public()))
        .route("/.well-known/oauth-authorization-server", get(authorization_server_metadata).layer(cors::public()))
        .route("/.well-known/jwks.json", get(jwks).layer(cors::public()))
        .route("/oauth/token", cors::for_web_origins(post(crate::token::token), &issuer, Method::POST))
        .route("/oauth/revoke", cors::for_web_origins(post(crate::revoke::revoke), &issuer, Method::POST))
        .route("/oidc/register", post(register))
        .route("/authorize", get(crate::authorize::show).post(crate::authorize::submit))
        .route("/v2/logout", get(crate::logout::v2))
        .route("/oidc/logout", get(crate::logout::oidc_get).post(crate::logout::oidc_post))
        .route("/userinfo", cors::for_web_origins(get(crate::userinfo::userinfo), &issuer, Method::GET))
        .nest(ADMIN_PREFIX, admin)
        // Token, login and admin requests are a few hundred bytes; anything near this is not one of them.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(issuer.clone(), journal))
        .with_state(issuer)
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

/// The issuer's own origin and authority, which admin requests must come from and be addressed to.
#[derive(Debug, Clone)]
struct OwnOrigin {
    /// `scheme://host[:port]` as a browser sends it in `Origin`; `None` (every admin request refused) when the
    /// issuer URL has no such origin.
    origin: Option<String>,
    /// The `Host` values accepted, as lowercase host and port: the issuer URL's, and `localhost` with the same
    /// port when the issuer URL's host is a loopback IP address.
    authorities: Vec<(String, u16)>,
}

impl OwnOrigin {
    fn of(issuer_url: &str) -> Self {
        let Ok(url) = url::Url::parse(issuer_url) else { return Self { origin: None, authorities: Vec::new() } };
        let (Some(host), Some(port)) = (url.host(), url.port_or_known_default()) else {
            return Self { origin: None, authorities: Vec::new() };
        };
        let mut authorities = vec![(host.to_string().to_ascii_lowercase(), port)];
        let loopback = match host {
            url::Host::Ipv4(ip) => ip.is_loopback(),
            url::Host::Ipv6(ip) => ip.is_loopback(),
            url::Host::Domain(_) => false,
        };
        if loopback {
            // `localhost` cannot be rebound by a hostile DNS server (browsers resolve it to loopback themselves),
            // and it is what people type for an issuer on 127.0.0.1.
            authorities.push(("localhost".to_owned(), port));
        }
        let origin = url.origin();
        Self { origin: origin.is_tuple().then(|| origin.ascii_serialization()), authorities }
    }

    /// Whether a `Host` header or request-target authority names this issuer.
    fn is_own_authority(&self, value: &str, default_port: u16) -> bool {
        let Ok(authority) = value.parse::<http::uri::Authority>() else { return false };
        if authority.as_str().contains('@') {
            return false;
        }
        let host = authority.host().to_ascii_lowercase();
        let port = authority.port_u16().unwrap_or(default_port);
        self.authorities.iter().any(|(own_host, own_port)| *own_host == host && *own_port == port)
    }

    /// Why an admin request is refused, if it is: a foreign `Host` (DNS rebinding), another site's page (`Origin`,
    /// `Sec-Fetch-Site`), or a body a cross-site HTML form could send.
    fn refusal(&self, request: &Request) -> Option<(StatusCode, &'static str)> {
        let default_port = self.authorities.first().map_or(80, |(_, port)| *port);
        let headers = request.headers();
        let hosts: Vec<&HeaderValue> = headers.get_all(header::HOST).iter().collect();
        let target = request.uri().authority().map(|a| a.as_str());
        let host_ok = hosts.len() <= 1
            && (hosts.len() == 1 || target.is_some())
            && hosts.iter().all(|v| v.to_str().is_ok_and(|v| self.is_own_authority(v, default_port)))
            && target.is_none_or(|t| self.is_own_authority(t, default_port));
        if !host_ok {
            return Some((
                StatusCode::MISDIRECTED_REQUEST,
                "admin endpoints answer requests addressed to the issuer's own host and port only (Host header)",
            ));
        }
        let origin_ok = headers
            .get_all(header::ORIGIN)
            .iter()
            .all(|v| self.origin.as_deref().is_some_and(|own| v.as_bytes() == own.as_bytes()));
        if !origin_ok {
            return Some((StatusCode::FORBIDDEN, "admin endpoints refuse requests from other origins (Origin header)"));
        }
        let site_ok = headers
            .get_all("sec-fetch-site")
            .iter()
            .all(|v| v.as_bytes().eq_ignore_ascii_case(b"same-origin") || v.as_bytes().eq_ignore_ascii_case(b"none"));
        if !site_ok {
            return Some((
                StatusCode::FORBIDDEN,
                "admin endpoints refuse requests from other sites (Sec-Fetch-Site header)",
            ));
        }
        let needs_json = ![http::Method::GET, http::Method::HEAD, http::Method::DELETE].contains(request.method());
        if needs_json && !is_json(headers) {
            return Some((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "admin requests must have a JSON body (Content-Type: application/json)",
            ));
        }
        None
    }
}

/// Whether the request says its body is JSON: exactly one `Content-Type`, whose media type is `application/json`.
fn is_json(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else { return false };
    let essence = value.to_str().ok().and_then(|v| v.split(';').next()).unwrap_or_default();
    essence.trim().eq_ignore_ascii_case("application/json")
}

/// Refuses admin requests that a browser page of another site could have sent, or that reach the issuer under a
/// foreign name (DNS rebinding): see [`OwnOrigin::refusal`].
async fn same_origin_only(State(own): State<OwnOrigin>, request: Request, next: Next) -> Response {
    match own.refusal(&request) {
        None => next.run(request).await,
        Some((status, why)) => (status, why).into_response(),
    }
}

async fn home(State(issuer): State<DevIssuer>) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        title { "portcullis dev issuer" }
        h1 { "portcullis dev issuer" }
        p { strong { (DEV_ONLY) "." } }
        p {
            "Issuer: " code { (issuer.issuer()) } " — discovery at "
            a href="/.well-known/openid-configuration" { "/.well-known/openid-configuration" } "."
        }
    };
    Html(markup.into_string())
}

async fn discovery(State(issuer): State<DevIssuer>) -> impl IntoResponse {
    axum::Json(crate::discovery::openid_configuration(&issuer))
}

async fn authorization_server_metadata(State(issuer): State<DevIssuer>) -> impl IntoResponse {
    axum::Json(crate::discovery::authorization_server(&issuer))
}

/// `POST /oidc/register` (RFC 7591): a JSON body of client metadata; 201 with the client, or 400 saying why not.
async fn register(State(issuer): State<DevIssuer>, headers: HeaderMap, body: Bytes) -> Response {
    if !is_json(&headers) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client_metadata",
            "the body must be JSON (application/json)",
        );
    }
    let accepted = match crate::register::accept(&body) {
        Ok(accepted) => accepted,
        Err(refused) => return oauth_error(StatusCode::BAD_REQUEST, refused.code(), refused.description()),
    };
    let client_id = format!("dyn-{}", random_string(16));
    issuer.register(accepted.client(client_id.clone()));
    let mut response = (StatusCode::CREATED, axum::Json(accepted.answer(&client_id, issuer.now()))).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
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
        Some(Fault::EmptySet { .. }) => ok(r#"{"keys":[]}"#.into()),
        Some(Fault::Huge { .. }) => ok(format!(r#"{{"keys":[],"pad":"{}"}}"#, "x".repeat(HUGE_BODY_BYTES))),
        Some(Fault::RedirectToOtherHost { .. }) => {
            let target = on_other_host(issuer.issuer());
            (StatusCode::FOUND, [(header::LOCATION, format!("{target}.well-known/jwks.json"))]).into_response()
        }
    }
}

/// `issuer` (a URL ending in `/`) on another name of the same machine: `localhost` for a loopback address, and
/// `127.0.0.1` for any other host.
fn on_other_host(issuer: &str) -> String {
    let Ok(mut url) = url::Url::parse(issuer) else { return issuer.to_owned() };
    let other = match url.host_str() {
        Some("127.0.0.1" | "[::1]") => "localhost",
        _ => "127.0.0.1",
    };
    if url.set_host(Some(other)).is_err() {
        return issuer.to_owned();
    }
    url.to_string()
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
        Err(why) => (StatusCode::BAD_REQUEST, why.to_string()).into_response(),
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

/// An API to add at run time.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewApi {
    audience: String,
    #[serde(default)]
    permissions: Vec<String>,
}

/// The longest audience an added API may have.
const MAX_AUDIENCE_BYTES: usize = 2048;

async fn admin_add_api(State(issuer): State<DevIssuer>, axum::Json(new): axum::Json<NewApi>) -> Response {
    if new.audience.is_empty() || new.audience.len() > MAX_AUDIENCE_BYTES || new.audience.chars().any(char::is_control)
    {
        return (StatusCode::BAD_REQUEST, "audience must be 1 to 2048 bytes without control characters")
            .into_response();
    }
    let api = Api::new(new.audience, new.permissions);
    let answer = json!({ "audience": api.audience, "permissions": api.permissions });
    match issuer.add_api(api) {
        Ok(()) => (StatusCode::CREATED, axum::Json(answer)).into_response(),
        Err(refused @ AddApiError::Exists) => (StatusCode::CONFLICT, refused.to_string()).into_response(),
        Err(refused) => (StatusCode::INSUFFICIENT_STORAGE, refused.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_authorities_and_origins() {
        let loopback = OwnOrigin::of("http://127.0.0.1:4000/");
        assert_eq!(loopback.origin.as_deref(), Some("http://127.0.0.1:4000"));
        for host in ["127.0.0.1:4000", "localhost:4000", "LocalHost:4000"] {
            assert!(loopback.is_own_authority(host, 4000), "{host}");
        }
        for host in ["evil.example:4000", "evil.example", "127.0.0.1:4001", "localhost:80", "user@127.0.0.1:4000", ""] {
            assert!(!loopback.is_own_authority(host, 80), "{host}");
        }
        let v6 = OwnOrigin::of("http://[::1]:4000/");
        assert!(v6.is_own_authority("[::1]:4000", 80) && v6.is_own_authority("localhost:4000", 80));
        assert!(!v6.is_own_authority("127.0.0.1:4000", 80));
        let named = OwnOrigin::of("https://Auth.Example/");
        assert_eq!(named.origin.as_deref(), Some("https://auth.example"));
        assert!(named.is_own_authority("auth.example", 443) && named.is_own_authority("AUTH.example:443", 443));
        assert!(!named.is_own_authority("localhost:443", 443), "localhost only stands in for a loopback IP");
        let broken = OwnOrigin::of("not a url");
        assert!(broken.origin.is_none() && !broken.is_own_authority("localhost:80", 80));
    }

    #[test]
    fn json_content_types() {
        let with = |values: &[&'static str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(header::CONTENT_TYPE, HeaderValue::from_static(value));
            }
            is_json(&headers)
        };
        assert!(with(&["application/json"]) && with(&["Application/JSON; charset=utf-8"]));
        for refused in [
            &[][..],
            &["application/x-www-form-urlencoded"],
            &["multipart/form-data; boundary=x"],
            &["text/plain"],
            &["text/plain; application/json"],
            &["application/jsonx"],
            &["application/json", "text/plain"],
        ] {
            assert!(!with(refused), "{refused:?}");
        }
    }

    #[tokio::test]
    async fn hostile_request_values_are_shown_as_text() {
        use tower::ServiceExt;
        const HOSTILE: &str = "\"><script>alert(1)</script>'&";
        const ESCAPED: &str = "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;'&amp;";
        let issuer = DevIssuer::new(crate::Tenant::demo("http://127.0.0.1:3000/callback"), "http://127.0.0.1:4000/")
            .expect("the demo tenant");
        let page = |query: String| {
            let issuer = issuer.clone();
            async move {
                let request = Request::get(format!("/authorize?{query}")).body(Body::empty()).expect("a request");
                let response = router(issuer).oneshot(request).await.expect("an answer");
                let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("a body");
                String::from_utf8(body.to_vec()).expect("UTF-8")
            }
        };
        let query =
            |pairs: &[(&str, &str)]| url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
        let request = [
            ("response_type", "code"),
            ("client_id", "demo-spa"),
            ("redirect_uri", "http://127.0.0.1:3000/callback"),
            ("code_challenge", "x"),
            ("code_challenge_method", "S256"),
            ("scope", HOSTILE),
            ("state", HOSTILE),
        ];
        // The login page: the scopes shown, every parameter carried in hidden inputs.
        let login = page(query(&request)).await;
        assert!(login.contains(&format!("asked for scopes <code>{ESCAPED}</code>")), "{login}");
        assert!(login.contains(&format!("<input type=\"hidden\" name=\"state\" value=\"{ESCAPED}\">")), "{login}");
        let extra = page(query(&[&request[..], &[(HOSTILE, HOSTILE)]].concat())).await;
        assert!(extra.contains(&format!("<input type=\"hidden\" name=\"{ESCAPED}\" value=\"{ESCAPED}\">")), "{extra}");
        // The error page: an unregistered callback and an unknown client are named in the message.
        let mut mismatch = request;
        mismatch[2].1 = HOSTILE;
        let error = page(query(&mismatch)).await;
        assert!(
            error.contains(&format!("<p id=\"error\" role=\"alert\">Callback URL mismatch: {ESCAPED} is")),
            "{error}"
        );
        for html in [&login, &extra, &error] {
            assert!(!html.contains("<script>") && !html.contains("\"'&"), "{html}");
        }
    }
}

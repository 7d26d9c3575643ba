//! `GET /authorize` and `POST /authorize`: the login page, silent authentication from the session, and the answer
//! by response type and response mode.
//!
//! - [`request`] parses and checks the request and decides where a refusal is shown;
//! - [`page`] renders the login and error pages;
//! - [`response`] renders the answer: query, fragment, `form_post` or `web_message`.

pub(crate) mod page;
pub(crate) mod request;
pub(crate) mod response;

use crate::id_token::{Bound, Login};
use crate::issuer::{AuthorizationCode, CODE_LIFETIME, DevIssuer, Grant};
use crate::params::Params;
use crate::session::Session;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use page::error_page;
use request::{AuthorizationRequest, Refusal, validate};
use serde_json::json;

/// `GET /authorize`: with `prompt=none` the answer at once from the session (or `login_required`, also when
/// `login_hint` names another user); with
/// `login_hint` a login without the page, unless a page of another site sent the browser here; otherwise the login
/// page.
pub(crate) async fn show(State(issuer): State<DevIssuer>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let params = Params::from_form(query.unwrap_or_default().as_bytes());
    let request = match validate(&issuer, &params) {
        Ok(request) => request,
        Err(refusal) => return refused(refusal),
    };
    let cookie = issuer.session_cookie_in(&headers);
    if request.silent {
        // Never a page and never a login: the session answers, or the client hears login_required. A
        // `login_hint` naming another user than the session's asks for someone else: login_required too.
        let session = cookie.as_deref().and_then(|id| issuer.resume_session(id));
        let hinted = |session: &Session| request.login_hint.as_ref().is_none_or(|hint| *hint == session.user);
        return match session.filter(|session| recent_enough(&issuer, session, request.max_age) && hinted(session)) {
            Some(session) => {
                let login = Login { auth_time: session.auth_time, sid: session.sid, nonce: request.nonce.clone() };
                answer(&issuer, &request, &session.user, login)
            }
            None => response::error(&request.destination, "login_required", "the user is not logged in"),
        };
    }
    if let Some(user) = request.login_hint.clone() {
        if !from_another_site(&issuer, &headers) {
            return log_in(&issuer, cookie.as_deref(), &request, &user);
        }
        // A link or frame on another site would log the browser in as whoever it names: the page instead, with
        // the hinted user offered first, and the session left as it is.
        return page::login_page(&issuer, &request, &params, Some(&user));
    }
    let remembered = cookie.as_deref().and_then(|id| issuer.resume_session(id)).map(|session| session.user);
    page::login_page(&issuer, &request, &params, remembered.as_deref())
}

/// `POST /authorize`: the login page's form, `user` picked. Only the issuer's own page may post it.
pub(crate) async fn submit(State(issuer): State<DevIssuer>, headers: HeaderMap, body: Bytes) -> Response {
    let fetch_site = headers.get_all("sec-fetch-site").iter().collect::<Vec<_>>();
    let own = own_origin(&issuer);
    // Browsers send `Sec-Fetch-Site` only to https and loopback URLs, but `Origin` on every cross-origin form
    // post (`null` from sandboxed or opaque pages): either one naming another page refuses the post.
    let foreign_origin = headers.get_all(header::ORIGIN).iter().any(|origin| own.as_deref() != origin.to_str().ok());
    if foreign_origin || fetch_site.iter().any(|site| !site.as_bytes().eq_ignore_ascii_case(b"same-origin")) {
        // A page of another site (or a sibling one) posting a login for the user: refused.
        return error_page(StatusCode::FORBIDDEN, "the login form is posted from the issuer's own login page only");
    }
    let params = Params::from_form(&body);
    let request = match validate(&issuer, &params) {
        Ok(request) => request,
        Err(refusal) => return refused(refusal),
    };
    if request.silent {
        return error_page(StatusCode::BAD_REQUEST, "prompt=none never logs anybody in");
    }
    match params.get("user") {
        Some(user) => log_in(&issuer, issuer.session_cookie_in(&headers).as_deref(), &request, user),
        None => error_page(StatusCode::BAD_REQUEST, "pick a user"),
    }
}

/// Whether the request may come from a page of another site (or a sibling one). With `Sec-Fetch-Site`: a value
/// other than `none` (typed or bookmarked) and `same-origin`. Without it (browsers send it only to https and
/// loopback URLs, so not to `http://issuer.test:4000/`): anything that looks like a browser's navigation — an
/// `Upgrade-Insecure-Requests` header, an `Accept` naming `text/html`, or an `Origin` or `Referer` of another
/// origin. Programs (reqwest, Node's fetch, curl) send none of these and log in at once.
fn from_another_site(issuer: &DevIssuer, headers: &HeaderMap) -> bool {
    let mut fetch_site = headers.get_all("sec-fetch-site").iter().peekable();
    if fetch_site.peek().is_some() {
        return fetch_site.any(|site| {
            !site.as_bytes().eq_ignore_ascii_case(b"same-origin") && !site.as_bytes().eq_ignore_ascii_case(b"none")
        });
    }
    let own = own_origin(issuer);
    let foreign_origin = |origin: &header::HeaderValue| origin.to_str().ok() != own.as_deref();
    let foreign_referer = |referer: &header::HeaderValue| {
        let origin = referer.to_str().ok().and_then(|referer| url::Url::parse(referer).ok()).map(|url| url.origin());
        origin.filter(url::Origin::is_tuple).map(|origin| origin.ascii_serialization()) != own
    };
    let accepts_html = headers
        .get_all(header::ACCEPT)
        .iter()
        .any(|accept| accept.to_str().map_or(true, |accept| accept.to_ascii_lowercase().contains("text/html")));
    headers.contains_key("upgrade-insecure-requests")
        || accepts_html
        || headers.get_all(header::ORIGIN).iter().any(foreign_origin)
        || headers.get_all(header::REFERER).iter().any(foreign_referer)
}

/// The issuer URL's origin (`scheme://host[:port]`), as browsers send it in `Origin`.
fn own_origin(issuer: &DevIssuer) -> Option<String> {
    let origin = url::Url::parse(issuer.issuer()).ok()?.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

/// A refusal where [`Refusal`] says it goes.
fn refused(refusal: Refusal) -> Response {
    match refusal {
        Refusal::Page(why) => error_page(StatusCode::BAD_REQUEST, &why),
        Refusal::Client { destination, error, description } => response::error(&destination, error, &description),
    }
}

/// Whether `session` may answer a request with `max_age`: a login at most that many seconds old (`max_age=0`
/// always asks for a new login).
fn recent_enough(issuer: &DevIssuer, session: &Session, max_age: Option<i64>) -> bool {
    match max_age {
        None => true,
        Some(0) => false,
        Some(max_age) => issuer.now().saturating_sub(session.auth_time) <= max_age,
    }
}

/// An interactive login of `user`: a new session replaces the one `cookie` names, and the answer sets its cookie.
fn log_in(issuer: &DevIssuer, cookie: Option<&str>, request: &AuthorizationRequest, user: &str) -> Response {
    if issuer.user(user).is_none() {
        return error_page(StatusCode::BAD_REQUEST, "unknown user");
    }
    let (id, session) = issuer.start_session(cookie, user);
    let login = Login { auth_time: session.auth_time, sid: session.sid, nonce: request.nonce.clone() };
    let mut response = answer(issuer, request, user, login);
    response.headers_mut().append(header::SET_COOKIE, issuer.session_cookie(&id));
    response
}

/// The answer for `user` from `login`: a code, an access token and an ID token as the response type asks.
fn answer(issuer: &DevIssuer, request: &AuthorizationRequest, user: &str, login: Login) -> Response {
    let Some(account) = issuer.user(user) else {
        return response::error(&request.destination, "access_denied", "the session's user is gone");
    };
    let scopes = issuer.user_scopes(account, &request.audience, &request.scopes);
    let grant = Grant {
        client_id: request.client.client_id.clone(),
        user: Some(user.to_owned()),
        audience: request.audience.clone(),
        scopes,
    };
    let mut answer: response::Answer = Vec::new();
    let code = request.response_type.has_code().then(|| {
        issuer.store_code(AuthorizationCode {
            grant: grant.clone(),
            redirect_uri: request.destination.redirect_uri.clone(),
            code_challenge: request.code_challenge.clone(),
            dpop_jkt: request.dpop_jkt.clone(),
            login: login.clone(),
            expires_at: issuer.now() + CODE_LIFETIME,
        })
    });
    if let Some(code) = &code {
        answer.push(("code", code.clone()));
    }
    let access_token = if request.response_type.has_access_token() {
        match issuer.access_token(&grant) {
            Ok(token) => Some(token),
            Err(_) => return server_error(request),
        }
    } else {
        None
    };
    if let Some(token) = &access_token {
        answer.push(("access_token", token.clone()));
        answer.push(("token_type", "Bearer".into()));
        answer.push(("expires_in", json!(issuer.tenant().token_lifetime).to_string()));
        answer.push(("scope", grant.scopes.join(" ")));
    }
    if request.response_type.has_id_token() {
        let bound = Bound { access_token: access_token.as_deref(), code: code.as_deref() };
        match issuer.id_token(&grant, &login, bound) {
            Ok(Some(token)) => answer.push(("id_token", token)),
            // The request was checked to ask for openid; a user always has a profile.
            Ok(None) | Err(_) => return server_error(request),
        }
    }
    response::render(&request.destination, answer)
}

fn server_error(request: &AuthorizationRequest) -> Response {
    response::error(&request.destination, "server_error", "the issuer could not sign the answer")
}

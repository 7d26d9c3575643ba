//! The issuer's login sessions: what its `portcullis_session_<port>` cookie names, so that `prompt=none` can
//! answer without showing a page.
//!
//! Browsers keep cookies per host, not per port: the name carries the issuer URL's port, so that issuers on two
//! ports of one host do not overwrite each other's session. The cookie holds 256 random bits and nothing else; the session itself (user, `auth_time`, `sid`) stays on the
//! server, in a bounded store, and expires after the tenant's `session_lifetime` unused, on the issuer's clock.

use crate::issuer::{DevIssuer, lock, random_string};
use axum::http::{HeaderMap, HeaderValue, header};
use std::collections::HashMap;

/// The session cookie's name before the port.
const COOKIE_PREFIX: &str = "portcullis_session_";

/// The session cookie's name for the issuer at `issuer_url`: `portcullis_session_<port>`, the URL's port or its
/// scheme's default (80 for http, 443 for https).
pub(crate) fn cookie_name(issuer_url: &str) -> String {
    let port = url::Url::parse(issuer_url).ok().and_then(|url| url.port_or_known_default()).unwrap_or(80);
    format!("{COOKIE_PREFIX}{port}")
}

/// How many sessions the issuer keeps; beyond that the least recently used one is forgotten.
pub(crate) const MAX_SESSIONS: usize = 10_000;

/// Random bytes in a cookie value (256 bits).
const COOKIE_BYTES: usize = 32;

/// A remembered login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    /// The user's ID in the tenant.
    pub user: String,
    /// When the user logged in, on the issuer's clock (`auth_time`).
    pub auth_time: i64,
    /// The session ID that ID tokens carry as `sid`.
    pub sid: String,
    /// When the session was last used (started or resumed).
    last_used: i64,
}

/// The sessions, by cookie value.
#[derive(Debug, Default)]
pub(crate) struct Sessions(HashMap<String, Session>);

impl Sessions {
    /// Starts a session for `user` at `now` and returns its cookie value. Expired sessions are swept first; when
    /// the store is still full, the least recently used session is forgotten.
    pub fn start(&mut self, user: &str, now: i64, idle: i64) -> (String, Session) {
        self.0.retain(|_, session| is_live(session, now, idle));
        while self.0.len() >= MAX_SESSIONS {
            let Some(oldest) = self.0.iter().min_by_key(|(_, s)| s.last_used).map(|(id, _)| id.clone()) else { break };
            self.0.remove(&oldest);
        }
        let session = Session { user: user.to_owned(), auth_time: now, sid: random_string(16), last_used: now };
        let id = random_string(COOKIE_BYTES);
        self.0.insert(id.clone(), session.clone());
        (id, session)
    }

    /// The live session `id` names, marked as used at `now`; an expired one is removed.
    pub fn resume(&mut self, id: &str, now: i64, idle: i64) -> Option<Session> {
        match self.0.get_mut(id) {
            Some(session) if is_live(session, now, idle) => {
                session.last_used = now;
                Some(session.clone())
            }
            Some(_) => {
                self.0.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends the session `id` names, if any.
    pub fn end(&mut self, id: &str) -> Option<Session> {
        self.0.remove(id)
    }

    /// How many sessions are held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// Whether `session` was used less than `idle` seconds before `now`.
fn is_live(session: &Session, now: i64, idle: i64) -> bool {
    now.saturating_sub(session.last_used) < idle
}

/// The session cookie's value in the request: the one cookie called `name` in the `Cookie` headers, if it has the
/// shape the issuer gives (43 base64url characters). Several such cookies (one planted by a sibling site, say)
/// name no session.
pub(crate) fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut values = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(found, _)| *found == name)
        .map(|(_, value)| value);
    let (Some(value), None) = (values.next(), values.next()) else { return None };
    let well_formed = crate::base64url::decode(value).is_some_and(|bytes| bytes.len() == COOKIE_BYTES);
    well_formed.then(|| value.to_owned())
}

impl DevIssuer {
    /// The name of this issuer's session cookie (see [`cookie_name`]).
    pub(crate) fn session_cookie_name(&self) -> String {
        cookie_name(self.issuer())
    }

    /// The value of this issuer's session cookie in the request, if it carries one (see [`cookie_value`]).
    pub(crate) fn session_cookie_in(&self, headers: &HeaderMap) -> Option<String> {
        cookie_value(headers, &self.session_cookie_name())
    }

    fn session_idle(&self) -> i64 {
        i64::try_from(self.tenant().session_lifetime).unwrap_or(i64::MAX)
    }

    /// Logs `user` in: ends the session `replaced` names (a login replaces the session, and its cookie value is
    /// never reused) and starts a new one. Returns the new cookie value and session.
    pub(crate) fn start_session(&self, replaced: Option<&str>, user: &str) -> (String, Session) {
        let (now, idle) = (self.now(), self.session_idle());
        let mut sessions = lock(&self.inner.sessions);
        if let Some(id) = replaced {
            sessions.end(id);
        }
        sessions.start(user, now, idle)
    }

    /// The live session the cookie value `id` names, if any.
    pub(crate) fn resume_session(&self, id: &str) -> Option<Session> {
        let (now, idle) = (self.now(), self.session_idle());
        lock(&self.inner.sessions).resume(id, now, idle)
    }

    /// Ends the session the cookie value `id` names.
    pub(crate) fn end_session(&self, id: &str) -> Option<Session> {
        lock(&self.inner.sessions).end(id)
    }

    /// The `Set-Cookie` value that gives the browser the session cookie `id`, never readable by scripts. Over http
    /// it is `SameSite=Lax` (sent on top-level navigations and same-site requests only); when the issuer URL is
    /// https it is `SameSite=None; Secure`, as Auth0's is, so that an app on another site can renew silently in an
    /// iframe.
    pub(crate) fn session_cookie(&self, id: &str) -> HeaderValue {
        let name = self.session_cookie_name();
        let value = format!("{name}={id}; Path={}; HttpOnly; {}", self.cookie_path(), self.same_site_attributes());
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("portcullis_session_0=; Max-Age=0"))
    }

    /// The `Set-Cookie` value that removes the session cookie.
    pub(crate) fn expired_session_cookie(&self) -> HeaderValue {
        let name = self.session_cookie_name();
        let (path, same_site) = (self.cookie_path(), self.same_site_attributes());
        let value = format!("{name}=; Path={path}; Max-Age=0; HttpOnly; {same_site}");
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("portcullis_session_0=; Max-Age=0"))
    }

    /// The cookie's `Path`: the issuer URL's path, so that issuers under different paths of one host and port
    /// (`https://dev.example/a/` and `/b/`) keep their own sessions. Characters that would end the attribute or
    /// the header (`;`, `,`, spaces, controls) are percent-encoded: such a path then names no request, and the
    /// session fails closed rather than reaching other paths.
    fn cookie_path(&self) -> String {
        let path = url::Url::parse(self.issuer()).map_or_else(|_| "/".to_owned(), |url| url.path().to_owned());
        let mut encoded = String::with_capacity(path.len());
        for c in path.chars() {
            if c == ';' || c == ',' || c.is_whitespace() || c.is_control() {
                let mut bytes = [0; 4];
                for byte in c.encode_utf8(&mut bytes).bytes() {
                    encoded.push_str(&format!("%{byte:02X}"));
                }
            } else {
                encoded.push(c);
            }
        }
        encoded
    }

    /// A browser keeps a `SameSite=None` cookie only when it is `Secure`, which only an https issuer can send.
    fn same_site_attributes(&self) -> &'static str {
        if self.issuer().starts_with("https:") { "SameSite=None; Secure" } else { "SameSite=Lax" }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_unused_and_are_replaced_by_a_login() {
        let mut sessions = Sessions::default();
        let (id, alice) = sessions.start("alice", 1_000, 60);
        assert_eq!((alice.user.as_str(), alice.auth_time), ("alice", 1_000));
        assert_eq!(crate::base64url::decode(&id).map(|b| b.len()), Some(32));
        // Used within the lifetime: kept, and the idle time starts again.
        assert_eq!(sessions.resume(&id, 1_059, 60).map(|s| s.sid), Some(alice.sid.clone()));
        assert!(sessions.resume(&id, 1_118, 60).is_some());
        // Unused for the whole lifetime: gone, and stays gone.
        assert!(sessions.resume(&id, 1_178, 60).is_none());
        assert_eq!(sessions.len(), 0);
        let (first, _) = sessions.start("alice", 2_000, 60);
        let (second, bob) = sessions.start("bob", 2_000, 60);
        assert_ne!(first, second);
        assert_ne!(alice.sid, bob.sid);
        assert_eq!(sessions.end(&first).map(|s| s.user), Some("alice".to_owned()));
        assert!(sessions.resume(&first, 2_001, 60).is_none());
        assert!(sessions.resume("not a session", 2_001, 60).is_none());
    }

    #[test]
    fn the_store_is_bounded_and_forgets_the_least_recently_used() {
        let mut sessions = Sessions::default();
        let (oldest, _) = sessions.start("u", 0, 1_000_000);
        let (kept, _) = sessions.start("u", 1, 1_000_000);
        for now in 2..i64::try_from(MAX_SESSIONS).unwrap() {
            sessions.start("u", now, 1_000_000);
        }
        assert_eq!(sessions.len(), MAX_SESSIONS);
        // `oldest` was used least recently once `kept` is resumed; the next login pushes it out.
        assert!(sessions.resume(&kept, 20_000, 1_000_000).is_some());
        sessions.start("u", 20_001, 1_000_000);
        assert_eq!(sessions.len(), MAX_SESSIONS);
        assert!(sessions.resume(&oldest, 20_002, 1_000_000).is_none());
        assert!(sessions.resume(&kept, 20_002, 1_000_000).is_some());
    }

    #[test]
    fn the_cookie_is_named_by_the_issuers_port() {
        assert_eq!(cookie_name("http://127.0.0.1:4000/"), "portcullis_session_4000");
        assert_eq!(cookie_name("http://issuer.example/"), "portcullis_session_80");
        assert_eq!(cookie_name("https://issuer.example/"), "portcullis_session_443");
        assert_eq!(cookie_name("https://issuer.example:8443/tenant/"), "portcullis_session_8443");
    }

    #[test]
    fn the_cookie_is_read_only_when_it_is_one_and_well_formed() {
        const COOKIE: &str = "portcullis_session_4000";
        let value = crate::base64url::encode([7u8; 32]);
        let with = |cookies: &[String]| {
            let mut headers = HeaderMap::new();
            for cookie in cookies {
                headers.append(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
            }
            cookie_value(&headers, COOKIE)
        };
        assert_eq!(with(&[format!("a=b; {COOKIE}={value}; c=d")]), Some(value.clone()));
        assert_eq!(with(&["a=b".into(), format!("{COOKIE}={value}")]), Some(value.clone()));
        for refused in [
            vec![],
            vec![format!("{COOKIE}={value}; {COOKIE}={value}x")],
            vec![format!("{COOKIE}={value}"), format!("{COOKIE}={value}")],
            vec![format!("{COOKIE}=short")],
            vec![format!("{COOKIE}={value}A")],
            vec![format!("x{COOKIE}={value}")],
            vec![format!("portcullis_session_4001={value}")],
            vec![format!("portcullis_session={value}")],
        ] {
            assert_eq!(with(&refused), None, "{refused:?}");
        }
    }
}

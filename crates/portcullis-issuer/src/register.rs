//! Dynamic client registration (RFC 7591) for public clients: a client posts its metadata to `/oidc/register`
//! and gets a `client_id` it can use at `/authorize` (PKCE S256 required) and `/oauth/token` at once. Clients are
//! held in memory, at most [`MAX_REGISTERED`]; registering one more forgets the oldest.

use crate::config::{AppType, Client};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// How many registered clients are held.
pub(crate) const MAX_REGISTERED: usize = 1000;

/// At most this many redirect URIs per client, each at most this long; string metadata at most this long.
const MAX_REDIRECT_URIS: usize = 20;
const MAX_TEXT: usize = 2048;

/// Metadata members taken as strings and answered back as given (RFC 7591 §2).
const TEXT_MEMBERS: [&str; 8] =
    ["client_name", "client_uri", "logo_uri", "scope", "tos_uri", "policy_uri", "software_id", "software_version"];

/// Why a registration is refused (RFC 7591 §3.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `invalid_redirect_uri`.
    RedirectUri(String),
    /// `invalid_client_metadata`.
    Metadata(String),
}

impl Refusal {
    /// The error code.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::RedirectUri(_) => "invalid_redirect_uri",
            Refusal::Metadata(_) => "invalid_client_metadata",
        }
    }

    /// The description.
    pub fn description(&self) -> &str {
        match self {
            Refusal::RedirectUri(why) | Refusal::Metadata(why) => why,
        }
    }
}

/// Metadata the issuer accepted: what the client becomes, and the members answered back.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Accepted {
    redirect_uris: Vec<String>,
    grant_types: Vec<String>,
    response_types: Vec<String>,
    text: BTreeMap<&'static str, String>,
    contacts: Option<Vec<String>>,
}

fn metadata(why: impl Into<String>) -> Refusal {
    Refusal::Metadata(why.into())
}

/// An array of strings, or why not.
fn strings(value: &Value, name: &str) -> Result<Vec<String>, Refusal> {
    let not = || metadata(format!("{name} must be an array of strings"));
    let items = value.as_array().ok_or_else(not)?;
    items.iter().map(|item| item.as_str().map(str::to_owned).ok_or_else(not)).collect()
}

/// Parses and checks a registration request body.
pub(crate) fn accept(body: &[u8]) -> Result<Accepted, Refusal> {
    let request: Map<String, Value> =
        serde_json::from_slice(body).map_err(|_| metadata("the body must be a JSON object"))?;
    match request.get("token_endpoint_auth_method") {
        None => {}
        Some(Value::String(method)) if method == "none" => {}
        Some(_) => {
            return Err(metadata(
                "token_endpoint_auth_method must be none: this issuer registers public clients only (PKCE)",
            ));
        }
    }
    let redirect_uris = match request.get("redirect_uris") {
        None => return Err(Refusal::RedirectUri("redirect_uris is required".into())),
        Some(value) => strings(value, "redirect_uris").map_err(|e| Refusal::RedirectUri(e.description().into()))?,
    };
    if redirect_uris.is_empty() || redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(Refusal::RedirectUri(format!("redirect_uris must hold 1 to {MAX_REDIRECT_URIS} URIs")));
    }
    for uri in &redirect_uris {
        check_redirect_uri(uri)?;
    }
    let grant_types = match request.get("grant_types") {
        None => vec!["authorization_code".to_owned()],
        Some(value) => strings(value, "grant_types")?,
    };
    if let Some(other) = grant_types.iter().find(|g| !["authorization_code", "refresh_token"].contains(&g.as_str())) {
        let other = if other.len() > 64 { "(a long value)" } else { other.as_str() };
        return Err(metadata(format!(
            "grant type {other} is not available to registered clients (authorization_code, refresh_token)"
        )));
    }
    if !grant_types.iter().any(|g| g == "authorization_code") {
        return Err(metadata("grant_types must include authorization_code"));
    }
    let response_types = match request.get("response_types") {
        None => vec!["code".to_owned()],
        Some(value) => strings(value, "response_types")?,
    };
    if response_types.iter().any(|r| r != "code") || response_types.is_empty() {
        return Err(metadata("response_types must be [\"code\"]"));
    }
    let mut text = BTreeMap::new();
    for name in TEXT_MEMBERS {
        match request.get(name) {
            None => {}
            Some(Value::String(value)) if value.len() <= MAX_TEXT => {
                text.insert(name, value.clone());
            }
            Some(_) => return Err(metadata(format!("{name} must be a string of at most {MAX_TEXT} bytes"))),
        }
    }
    let contacts = request.get("contacts").map(|value| strings(value, "contacts")).transpose()?;
    Ok(Accepted { redirect_uris, grant_types, response_types, text, contacts })
}

/// A redirect URI must be `https`, or `http` on a loopback host (RFC 8252 §7.3), without a fragment or userinfo.
fn check_redirect_uri(uri: &str) -> Result<(), Refusal> {
    let refuse = |why: &str| Err(Refusal::RedirectUri(format!("each redirect URI must be {why}")));
    if uri.len() > MAX_TEXT {
        return refuse("at most 2048 bytes long");
    }
    // A URL parser drops tabs and line breaks and percent-encodes spaces and other bytes: the login would
    // redirect to another text than the one registered and matched.
    if !uri.bytes().all(|b| b.is_ascii_graphic()) {
        return refuse("visible ASCII only (percent-encode anything else)");
    }
    let Ok(url) = url::Url::parse(uri) else { return refuse("an absolute URL") };
    if uri.contains('#') || !url.username().is_empty() || url.password().is_some() {
        return refuse("without a fragment or user information");
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" if loopback => Ok(()),
        _ => refuse("https, or http on a loopback host (127.0.0.1, [::1], localhost)"),
    }
}

impl Accepted {
    /// The client this registration makes.
    pub fn client(&self, client_id: String) -> Client {
        Client {
            client_id,
            client_secret: None,
            grants: self.grant_types.clone(),
            audiences: BTreeMap::new(),
            callbacks: self.redirect_uris.clone(),
            web_origins: Vec::new(),
            logout_urls: Vec::new(),
            app_type: Some(AppType::Native),
        }
    }

    /// The registration answer (RFC 7591 §3.2.1): the client ID and every accepted member.
    pub fn answer(&self, client_id: &str, issued_at: i64) -> Value {
        let mut answer = json!({
            "client_id": client_id,
            "client_id_issued_at": issued_at,
            "redirect_uris": self.redirect_uris,
            "grant_types": self.grant_types,
            "response_types": self.response_types,
            "token_endpoint_auth_method": "none",
        });
        for (name, value) in &self.text {
            answer[*name] = json!(value);
        }
        if let Some(contacts) = &self.contacts {
            answer["contacts"] = json!(contacts);
        }
        answer
    }
}

/// The registered clients, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    clients: HashMap<String, Client>,
    order: VecDeque<String>,
}

impl Registry {
    /// Keeps `client`, forgetting the oldest one when [`MAX_REGISTERED`] are held.
    pub fn insert(&mut self, client: Client) {
        while self.order.len() >= MAX_REGISTERED {
            if let Some(oldest) = self.order.pop_front() {
                self.clients.remove(&oldest);
            }
        }
        self.order.push_back(client.client_id.clone());
        self.clients.insert(client.client_id.clone(), client);
    }

    /// The client with this ID.
    pub fn get(&self, client_id: &str) -> Option<&Client> {
        self.clients.get(client_id)
    }

    /// How many clients are held.
    pub fn len(&self) -> usize {
        self.clients.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(body: Value) -> Result<Accepted, Refusal> {
        accept(body.to_string().as_bytes())
    }

    #[test]
    fn redirect_uris_must_be_https_or_loopback_http() {
        for good in [
            "http://127.0.0.1:3000/callback",
            "http://localhost/cb",
            "http://[::1]:8080/",
            "http://127.0.0.2/cb",
            "https://app.example/cb?x=1",
        ] {
            assert_eq!(check_redirect_uri(good), Ok(()), "{good}");
        }
        for bad in [
            "http://app.example/cb",
            "http://localhost.evil.example/cb",
            "https://app.example/cb#frag",
            "https://user@app.example/cb",
            "com.example.app:/cb",
            "javascript:alert(1)",
            "/relative",
            "ftp://127.0.0.1/cb",
        ] {
            assert!(matches!(check_redirect_uri(bad), Err(Refusal::RedirectUri(_))), "{bad}");
        }
    }

    #[test]
    fn metadata_is_checked_member_by_member() {
        let ok = register(json!({"redirect_uris": ["http://127.0.0.1:1/cb"], "client_name": "x", "extra": 1})).unwrap();
        assert_eq!(ok.grant_types, ["authorization_code"]);
        let answer = ok.answer("id", 5);
        assert_eq!(answer["client_name"], "x");
        assert!(answer.get("extra").is_none(), "unknown members are ignored");
        let cases = [
            (
                json!({"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "client_secret_post"}),
                "invalid_client_metadata",
            ),
            (
                json!({"redirect_uris": ["http://127.0.0.1/cb"], "grant_types": ["client_credentials"]}),
                "invalid_client_metadata",
            ),
            (
                json!({"redirect_uris": ["http://127.0.0.1/cb"], "grant_types": ["refresh_token"]}),
                "invalid_client_metadata",
            ),
            (json!({"redirect_uris": ["http://127.0.0.1/cb"], "response_types": ["token"]}), "invalid_client_metadata"),
            (json!({"redirect_uris": ["http://127.0.0.1/cb"], "client_name": 7}), "invalid_client_metadata"),
            (json!({"redirect_uris": []}), "invalid_redirect_uri"),
            (json!({"redirect_uris": "http://127.0.0.1/cb"}), "invalid_redirect_uri"),
            (json!({}), "invalid_redirect_uri"),
        ];
        for (body, code) in cases {
            assert_eq!(register(body.clone()).unwrap_err().code(), code, "{body}");
        }
        assert_eq!(accept(b"[]").unwrap_err().code(), "invalid_client_metadata");
    }

    #[test]
    fn the_registry_is_bounded_and_forgets_the_oldest() {
        let accepted = register(json!({"redirect_uris": ["http://127.0.0.1/cb"]})).unwrap();
        let mut registry = Registry::default();
        for n in 0..=MAX_REGISTERED {
            registry.insert(accepted.client(format!("c{n}")));
        }
        assert_eq!(registry.len(), MAX_REGISTERED);
        assert!(registry.get("c0").is_none());
        assert!(registry.get("c1").is_some() && registry.get(&format!("c{MAX_REGISTERED}")).is_some());
    }
}

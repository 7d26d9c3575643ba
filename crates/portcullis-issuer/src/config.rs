//! The tenant: APIs, clients and users, from a TOML file or the built-in demo tenant.

use crate::error::{ParseError, TenantError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// An API (resource server) tokens can be issued for.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Api {
    /// The identifier, used as `aud`.
    pub audience: String,
    /// Permissions (scopes) the API defines.
    #[serde(default)]
    pub permissions: Vec<String>,
    /// Auth0's "RBAC" + "Add Permissions in the Access Token": a `permissions` claim in tokens.
    #[serde(default = "yes")]
    pub rbac: bool,
}

impl Api {
    /// An API with this audience and these permissions, RBAC on (as the tenant file's default).
    ///
    /// ```
    /// let api = portcullis_issuer::config::Api::new("https://mcp.example/", ["tools:call"]);
    /// assert_eq!((api.audience.as_str(), api.permissions.len(), api.rbac), ("https://mcp.example/", 1, true));
    /// ```
    pub fn new(audience: impl Into<String>, permissions: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self { audience: audience.into(), permissions: permissions.into_iter().map(Into::into).collect(), rbac: true }
    }
}

/// An application that asks for tokens. Its `Debug` output never shows the secret.
///
/// ```
/// let tenant = portcullis_issuer::Tenant::demo("http://127.0.0.1:3000/callback");
/// let client = tenant.client("demo-client").unwrap();
/// assert!(!format!("{client:?}").contains("demo-secret"));
/// ```
#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Client {
    /// The client ID.
    pub client_id: String,
    /// What kind of application this is (Auth0's "Application Type"); shown by `--print-tenant` and on the
    /// login page. Grants, not the type, decide what the client may do.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub app_type: Option<AppType>,
    /// The secret of a confidential client; absent for public clients (SPAs), which must use PKCE.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Allowed grants: `client_credentials`, `authorization_code`, `implicit`, `refresh_token`.
    pub grants: Vec<String>,
    /// For `client_credentials`: the scopes granted per audience (Auth0's client grants).
    #[serde(default)]
    pub audiences: BTreeMap<String, Vec<String>>,
    /// Allowed callback URLs for `/authorize`, matched exactly.
    #[serde(default)]
    pub callbacks: Vec<String>,
    /// Origins whose browser scripts may call `/oauth/token`, `/oauth/revoke` and `/userinfo` (Auth0's "Allowed
    /// Web Origins"), e.g. `http://127.0.0.1:3000`; matched exactly against the `Origin` header.
    #[serde(default)]
    pub web_origins: Vec<String>,
    /// URLs a logout may return to (`returnTo` of `/v2/logout`, `post_logout_redirect_uri` of `/oidc/logout`;
    /// Auth0's "Allowed Logout URLs"), matched exactly.
    #[serde(default)]
    pub logout_urls: Vec<String>,
}

/// The kind of an application, as Auth0 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AppType {
    /// A single-page application: public, code flow with PKCE from the browser.
    Spa,
    /// A regular web application: a server with a client secret.
    RegularWeb,
    /// A native or mobile application: public, code flow with PKCE.
    Native,
    /// A machine-to-machine application: client credentials only.
    NonInteractive,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "<redacted>"))
            .field("grants", &self.grants)
            .field("audiences", &self.audiences)
            .field("callbacks", &self.callbacks)
            .field("web_origins", &self.web_origins)
            .field("logout_urls", &self.logout_urls)
            .finish()
    }
}

impl Client {
    /// Whether the client is public (no secret).
    pub fn is_public(&self) -> bool {
        self.client_secret.is_none()
    }

    /// Whether the client may use `grant`.
    pub fn allows(&self, grant: &str) -> bool {
        self.grants.iter().any(|g| g == grant)
    }
}

/// A user who can log in.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct User {
    /// Short ID, also the login hint; `sub` is `auth0|<id>` unless set.
    pub id: String,
    /// The subject, if not `auth0|<id>`.
    #[serde(default)]
    pub sub: Option<String>,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Email.
    #[serde(default)]
    pub email: Option<String>,
    /// Whether the email is verified (`email_verified`; true unless set).
    #[serde(default = "yes")]
    pub email_verified: bool,
    /// `nickname`; the email's local part (or the ID) unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nickname: Option<String>,
    /// `picture`, a URL; none unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
    /// `given_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    /// `family_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    /// `updated_at`, an RFC 3339 time such as `2026-01-01T00:00:00.000Z`; the issuer's start unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// Permissions per audience.
    #[serde(default)]
    pub permissions: BTreeMap<String, Vec<String>>,
    /// Extra claims added to this user's access tokens (e.g. namespaced roles).
    #[serde(default)]
    pub claims: Map<String, Value>,
}

impl User {
    /// The `sub` claim.
    pub fn subject(&self) -> String {
        self.sub.clone().unwrap_or_else(|| format!("auth0|{}", self.id))
    }
}

/// A whole tenant.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Tenant {
    /// Access token lifetime in seconds (Auth0's default is 86400).
    #[serde(default = "default_lifetime")]
    pub token_lifetime: u64,
    /// ID token lifetime in seconds (Auth0's default is 36000).
    #[serde(default = "default_id_token_lifetime")]
    pub id_token_lifetime: u64,
    /// How long the issuer remembers a login (its session cookie) without use, in seconds, for `prompt=none`
    /// (Auth0's default inactivity timeout is 259200, three days).
    #[serde(default = "default_session_lifetime")]
    pub session_lifetime: u64,
    /// The API a login without `audience` or `resource` gets its access token for (Auth0's tenant setting
    /// "Default Audience"). Without it, such a login's access token is for `/userinfo` alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_audience: Option<String>,
    /// Issue RFC 9068 access tokens (`typ: at+jwt`, `client_id`, `jti`).
    #[serde(default)]
    pub rfc9068: bool,
    /// Require DPoP server nonces at the token endpoint (RFC 9449 §8): a proof without the current nonce is
    /// answered `400 use_dpop_nonce` with the nonce in `DPoP-Nonce`.
    #[serde(default)]
    pub dpop_nonce: bool,
    /// Absolute refresh-token lifetime in seconds, counted from the login that started the token family: no
    /// refresh succeeds after it, however often the tokens were rotated (Auth0's default is 2592000, 30 days).
    #[serde(default = "default_refresh_lifetime")]
    pub refresh_token_lifetime: u64,
    /// Refresh-token inactivity lifetime in seconds: a refresh token not used within it expires (Auth0's default
    /// is 1296000, 15 days). At most `refresh_token_lifetime`.
    #[serde(default = "default_refresh_idle_lifetime")]
    pub refresh_token_idle_lifetime: u64,
    /// The APIs.
    #[serde(default)]
    pub apis: Vec<Api>,
    /// The clients.
    #[serde(default)]
    pub clients: Vec<Client>,
    /// The users.
    #[serde(default)]
    pub users: Vec<User>,
}

fn yes() -> bool {
    true
}

fn default_lifetime() -> u64 {
    86_400
}

fn default_id_token_lifetime() -> u64 {
    36_000
}

fn default_session_lifetime() -> u64 {
    259_200
}

fn default_refresh_lifetime() -> u64 {
    2_592_000
}

fn default_refresh_idle_lifetime() -> u64 {
    1_296_000
}

/// The longest refresh-token lifetime a tenant may set (ten years).
pub const MAX_LIFETIME: u64 = 315_360_000;

/// The demo API's audience.
pub const DEMO_AUDIENCE: &str = "https://api.example.com";

/// A second demo API, so the demo can show a token issued for another audience being refused.
pub const OTHER_AUDIENCE: &str = "https://billing.example.com";

/// What in a claim's value (read from TOML) has no JSON form, if anything: a TOML datetime (which arrives as the
/// parser's private table) or a float `nan` or `inf` (which arrives as null, TOML having no null of its own).
fn without_json(value: &Value) -> Option<&'static str> {
    match value {
        Value::Null => Some("nan or inf"),
        Value::Object(map) if map.contains_key("$__toml_private_datetime") => Some("a datetime"),
        Value::Object(map) => map.values().find_map(without_json),
        Value::Array(items) => items.iter().find_map(without_json),
        Value::Bool(_) | Value::Number(_) | Value::String(_) => None,
    }
}

impl Tenant {
    /// Parses a TOML tenant file.
    pub fn from_toml(text: &str) -> Result<Self, TenantError> {
        let tenant: Tenant = toml::from_str(text).map_err(ParseError)?;
        tenant.check()?;
        Ok(tenant)
    }

    /// The built-in demo tenant: API `https://api.example.com` (`read:messages`, `write:messages`, RBAC on),
    /// machine client `demo-client`/`demo-secret` granted `read:messages`, public SPA client `demo-spa` calling
    /// back to `spa_callback` (whose origin may call `/oauth/token` from a browser), users `alice` (both permissions, role `admin`) and `bob` (none). A second API,
    /// `https://billing.example.com` (`read:invoices`, granted to `demo-client`), stands for "another API".
    pub fn demo(spa_callback: &str) -> Self {
        let api = Api {
            audience: DEMO_AUDIENCE.into(),
            permissions: vec!["read:messages".into(), "write:messages".into()],
            rbac: true,
        };
        let other = Api { audience: OTHER_AUDIENCE.into(), permissions: vec!["read:invoices".into()], rbac: true };
        let machine = Client {
            client_id: "demo-client".into(),
            client_secret: Some("demo-secret".into()),
            grants: vec!["client_credentials".into()],
            audiences: BTreeMap::from([
                (DEMO_AUDIENCE.into(), vec!["read:messages".into()]),
                (OTHER_AUDIENCE.into(), vec!["read:invoices".into()]),
            ]),
            callbacks: Vec::new(),
            web_origins: Vec::new(),
            logout_urls: Vec::new(),
            app_type: Some(AppType::NonInteractive),
        };
        let spa = Client {
            client_id: "demo-spa".into(),
            client_secret: None,
            grants: vec!["authorization_code".into(), "refresh_token".into()],
            audiences: BTreeMap::new(),
            callbacks: vec![spa_callback.into()],
            web_origins: url::Url::parse(spa_callback)
                .map(|url| vec![url.origin().ascii_serialization()])
                .unwrap_or_default(),
            logout_urls: url::Url::parse(spa_callback)
                .map(|url| vec![format!("{}/", url.origin().ascii_serialization())])
                .unwrap_or_default(),
            app_type: Some(AppType::Spa),
        };
        let user = |id: &str, name: &str, permissions: Vec<String>, roles: &[&str]| User {
            id: id.into(),
            sub: None,
            name: Some(name.into()),
            email: Some(format!("{id}@example.com")),
            email_verified: true,
            nickname: Some(id.into()),
            picture: None,
            given_name: Some(name.into()),
            family_name: None,
            updated_at: None,
            permissions: BTreeMap::from([(DEMO_AUDIENCE.into(), permissions)]),
            claims: Map::from_iter([("https://example.com/roles".to_owned(), Value::from(roles.to_vec()))]),
        };
        Self {
            token_lifetime: default_lifetime(),
            id_token_lifetime: default_id_token_lifetime(),
            session_lifetime: default_session_lifetime(),
            default_audience: Some(DEMO_AUDIENCE.into()),
            rfc9068: false,
            dpop_nonce: false,
            refresh_token_lifetime: default_refresh_lifetime(),
            refresh_token_idle_lifetime: default_refresh_idle_lifetime(),
            apis: vec![api, other],
            clients: vec![machine, spa],
            users: vec![
                user("alice", "Alice", vec!["read:messages".into(), "write:messages".into()], &["admin"]),
                user("bob", "Bob", Vec::new(), &[]),
            ],
        }
    }

    fn check(&self) -> Result<(), TenantError> {
        for (key, value) in [
            ("token_lifetime", self.token_lifetime),
            ("id_token_lifetime", self.id_token_lifetime),
            ("session_lifetime", self.session_lifetime),
            ("refresh_token_lifetime", self.refresh_token_lifetime),
            ("refresh_token_idle_lifetime", self.refresh_token_idle_lifetime),
        ] {
            if !(1..=MAX_LIFETIME).contains(&value) {
                return Err(TenantError::LifetimeOutOfRange { key, value });
            }
        }
        if self.refresh_token_idle_lifetime > self.refresh_token_lifetime {
            return Err(TenantError::IdleExceedsLifetime {
                idle: self.refresh_token_idle_lifetime,
                absolute: self.refresh_token_lifetime,
            });
        }
        if let Some(audience) = self.default_audience.as_ref().filter(|a| self.api(a).is_none()) {
            return Err(TenantError::UnknownDefaultAudience { audience: audience.clone() });
        }
        for user in &self.users {
            for (claim, value) in &user.claims {
                if let Some(kind) = without_json(value) {
                    let (user, claim) = (user.id.clone(), claim.clone());
                    return Err(TenantError::ClaimNotJson { user, claim, kind });
                }
            }
        }
        for client in &self.clients {
            for grant in &client.grants {
                if !["client_credentials", "authorization_code", "implicit", "refresh_token"].contains(&grant.as_str())
                {
                    let (client, grant) = (client.client_id.clone(), grant.clone());
                    return Err(TenantError::UnknownGrant { client, grant });
                }
            }
            if let Some(origin) = client.web_origins.iter().find(|origin| !is_bare_origin(origin)) {
                let (client, origin) = (client.client_id.clone(), origin.clone());
                return Err(TenantError::BadWebOrigin { client, origin });
            }
            if client.is_public() && client.allows("client_credentials") {
                return Err(TenantError::PublicClientCredentials { client: client.client_id.clone() });
            }
            for audience in client.audiences.keys() {
                if self.api(audience).is_none() {
                    let (client, audience) = (client.client_id.clone(), audience.clone());
                    return Err(TenantError::UnknownAudience { client, audience });
                }
            }
        }
        Ok(())
    }

    /// The API with this audience.
    pub fn api(&self, audience: &str) -> Option<&Api> {
        self.apis.iter().find(|api| api.audience == audience)
    }

    /// The client with this ID.
    pub fn client(&self, client_id: &str) -> Option<&Client> {
        self.clients.iter().find(|client| client.client_id == client_id)
    }

    /// Whether a browser page from `origin` may call the token, revocation and userinfo endpoints (some client
    /// lists it).
    pub fn allows_web_origin(&self, origin: &str) -> bool {
        self.clients.iter().any(|client| client.web_origins.iter().any(|allowed| allowed == origin))
    }

    /// The user with this ID.
    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.iter().find(|user| user.id == id)
    }
}

/// Whether `value` is exactly an origin as browsers send it in `Origin`: `scheme://host[:port]`, equal to its own
/// ASCII serialization (so no path, trailing slash, default port, user info, upper case or opaque origin).
fn is_bare_origin(value: &str) -> bool {
    let Ok(url) = url::Url::parse(value) else { return false };
    let origin = url.origin();
    origin.is_tuple() && origin.ascii_serialization() == value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_tenant_is_valid_and_toml_parses() {
        assert!(Tenant::demo("http://127.0.0.1:3000/callback").check().is_ok());
        let tenant = Tenant::from_toml(
            r#"
            token_lifetime = 600
            [[apis]]
            audience = "https://orders"
            permissions = ["read:orders"]
            [[clients]]
            client_id = "m2m"
            client_secret = "s"
            grants = ["client_credentials"]
            audiences = { "https://orders" = ["read:orders"] }
            [[users]]
            id = "carol"
            claims = { "https://example.com/tier" = "gold" }
            "#,
        )
        .unwrap();
        assert_eq!(tenant.token_lifetime, 600);
        assert_eq!((tenant.refresh_token_lifetime, tenant.refresh_token_idle_lifetime), (2_592_000, 1_296_000));
        assert!(tenant.api("https://orders").unwrap().rbac);
        assert_eq!(tenant.user("carol").unwrap().subject(), "auth0|carol");
        assert!(Tenant::from_toml("[[clients]]\nclient_id = \"x\"\ngrants = [\"password\"]").is_err());
        assert!(Tenant::from_toml("bogus = 1").is_err());
        assert!(Tenant::from_toml("dpop_nonce = true").unwrap().dpop_nonce);
        assert!(!tenant.dpop_nonce, "nonces are off unless asked for");
        let refresh = Tenant::from_toml("refresh_token_lifetime = 900\nrefresh_token_idle_lifetime = 300").unwrap();
        assert_eq!((refresh.refresh_token_lifetime, refresh.refresh_token_idle_lifetime), (900, 300));
        for bad in [
            "refresh_token_lifetime = 300\nrefresh_token_idle_lifetime = 900",
            "refresh_token_idle_lifetime = 0",
            "refresh_token_lifetime = 999999999999",
        ] {
            assert!(Tenant::from_toml(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn claims_without_a_json_value_are_refused_naming_the_user_and_claim() {
        for (value, kind) in [
            ("1979-05-27T07:32:00Z", "a datetime"),
            ("1979-05-27", "a datetime"),
            ("nan", "nan or inf"),
            ("-inf", "nan or inf"),
            ("[1, inf]", "nan or inf"),
            ("{ when = 07:32:00 }", "a datetime"),
        ] {
            let text = format!("[[users]]\nid = \"carol\"\nclaims = {{ \"https://example.com/x\" = {value} }}");
            let refused = Tenant::from_toml(&text).unwrap_err().to_string();
            for says in ["carol", "https://example.com/x", kind] {
                assert!(refused.contains(says), "{value}: {says:?} in {refused}");
            }
        }
        let fine = "[[users]]\nid = \"carol\"\nclaims = { a = 1.5, b = [\"x\", { c = true }], d = \"nan\" }";
        let tenant = Tenant::from_toml(fine).unwrap();
        assert_eq!(tenant.user("carol").unwrap().claims["b"], serde_json::json!(["x", { "c": true }]));
    }

    #[test]
    fn web_origins_must_be_bare_origins() {
        let tenant = |origin: &str| {
            let text = format!(
                "[[clients]]\nclient_id = \"app\"\ngrants = []\nweb_origins = [\"http://a.example\", {origin:?}]"
            );
            Tenant::from_toml(&text)
        };
        for bad in [
            "null",
            "*",
            "http://127.0.0.1:3000/",
            "http://127.0.0.1:3000/app",
            "HTTP://127.0.0.1:3000",
            "http://Example.com",
            "https://example.com:443",
            "http://user@example.com",
            "http://example.com?x",
            "file:///tmp",
            "127.0.0.1:3000",
            "",
        ] {
            let refused = tenant(bad).unwrap_err().to_string();
            for says in ["client app", &format!("{bad:?}"), "scheme://host[:port]"] {
                assert!(refused.contains(says), "{bad:?}: {says:?} in {refused}");
            }
        }
        for good in
            ["http://127.0.0.1:3000", "https://app.example.com", "http://[::1]:5173", "https://xn--bcher-kva.example"]
        {
            assert!(tenant(good).is_ok(), "{good}");
        }
    }
}

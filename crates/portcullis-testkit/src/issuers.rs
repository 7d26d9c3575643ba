//! Two dev issuers in process, A and B, and the credentials the attack corpus sends.
//!
//! A's API is [`AUDIENCE_A`] (permissions `read:messages`, `admin:all`); B's is [`AUDIENCE_B`]. B's tenant also
//! mints tokens naming A's audience, with every permission: a gateway that trusts B only for B's audience must
//! refuse them wherever A's audience is required.

use portcullis_issuer::{DevIssuer, Tenant};
use serde_json::{Value, json};

/// The audience of issuer A's API.
pub const AUDIENCE_A: &str = "https://a.example/api";
/// The audience of issuer B's API.
pub const AUDIENCE_B: &str = "https://b.example/api";

/// What a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Credential {
    /// No `Authorization` header.
    None,
    /// A token from A for A's audience, without permissions.
    Low,
    /// A token from B naming A's audience, with every permission.
    Foreign,
    /// A token from A for A's audience, with every permission.
    Admin,
}

impl Credential {
    /// The credentials every corpus case is sent with (`Admin` is for controls).
    pub const CORPUS: [Credential; 3] = [Credential::None, Credential::Low, Credential::Foreign];

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Credential::None => "none",
            Credential::Low => "low",
            Credential::Foreign => "foreign",
            Credential::Admin => "admin",
        }
    }
}

/// Issuers A and B, served on loopback ports for discovery and keys, and the tokens they minted.
pub struct Issuers {
    /// Issuer A.
    pub a: DevIssuer,
    /// Issuer B.
    pub b: DevIssuer,
    low: String,
    foreign: String,
    admin: String,
}

/// Issuer A's tenant: its API, a user without permissions and one with all of them.
const TENANT_A: &str = r#"
[[apis]]
audience = "https://a.example/api"
permissions = ["read:messages", "admin:all"]
[[users]]
id = "low"
[[users]]
id = "admin"
permissions = { "https://a.example/api" = ["read:messages", "admin:all"] }
"#;

/// Issuer B's tenant: its own API, and A's audience too, for which its user holds every permission.
const TENANT_B: &str = r#"
[[apis]]
audience = "https://b.example/api"
permissions = ["read:messages", "admin:all"]
[[apis]]
audience = "https://a.example/api"
permissions = ["read:messages", "admin:all"]
[[users]]
id = "mallory"
permissions = { "https://a.example/api" = ["read:messages", "admin:all"], "https://b.example/api" = ["read:messages", "admin:all"] }
"#;

/// The redirect URI the demo tenant's applications register in tests.
pub const DEMO_CALLBACK: &str = "http://127.0.0.1:3000/callback";

/// A dev issuer for `tenant`, serving on a free loopback port (its issuer is `http://127.0.0.1:PORT/`).
pub async fn serve(tenant: Tenant) -> DevIssuer {
    let (listener, address) = crate::net::listen().await;
    let issuer = DevIssuer::new(tenant, &format!("http://{address}/")).unwrap();
    tokio::spawn(portcullis_issuer::serve(listener, issuer.clone()));
    issuer
}

/// The demo tenant's dev issuer (callback [`DEMO_CALLBACK`]), serving on a free loopback port.
pub async fn demo() -> DevIssuer {
    serve(Tenant::demo(DEMO_CALLBACK)).await
}

/// A client-credentials access token for `audience` from the demo tenant's dev issuer at `issuer` (with or without
/// the trailing slash), fetched from its `/oauth/token` over HTTP.
pub async fn machine_token(issuer: &str, audience: &str) -> String {
    let body: Value = reqwest::Client::new()
        .post(format!("{}/oauth/token", issuer.trim_end_matches('/')))
        .json(&json!({
            "grant_type": "client_credentials", "client_id": "demo-client", "client_secret": "demo-secret",
            "audience": audience,
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

impl Issuers {
    /// Starts both issuers (in this runtime) and mints the credentials.
    pub async fn start() -> Self {
        let a = serve(Tenant::from_toml(TENANT_A).unwrap()).await;
        let b = serve(Tenant::from_toml(TENANT_B).unwrap()).await;
        let low = a.user_token("corpus", "low", AUDIENCE_A, &[]).unwrap();
        let admin = a.user_token("corpus", "admin", AUDIENCE_A, &[]).unwrap();
        let foreign = b.user_token("corpus", "mallory", AUDIENCE_A, &[]).unwrap();
        Self { a, b, low, foreign, admin }
    }

    /// The bearer token of `credential`, if it has one.
    pub fn token(&self, credential: Credential) -> Option<&str> {
        match credential {
            Credential::None => None,
            Credential::Low => Some(&self.low),
            Credential::Foreign => Some(&self.foreign),
            Credential::Admin => Some(&self.admin),
        }
    }
}

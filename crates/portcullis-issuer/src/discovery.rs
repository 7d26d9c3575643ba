//! The issuer's metadata: RFC 8414 authorization-server metadata and OpenID Connect discovery, one document
//! with the OpenID members added for the latter.

use crate::issuer::DevIssuer;
use serde_json::{Value, json};

/// RFC 8414 §2 metadata, served at `/.well-known/oauth-authorization-server`.
pub(crate) fn authorization_server(issuer: &DevIssuer) -> Value {
    let base = issuer.issuer();
    json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}authorize"),
        "token_endpoint": format!("{base}oauth/token"),
        "jwks_uri": format!("{base}.well-known/jwks.json"),
        "registration_endpoint": format!("{base}oidc/register"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "dpop_signing_alg_values_supported": issuer.dpop().algorithms(),
    })
}

/// OpenID Connect discovery, served at `/.well-known/openid-configuration`: the RFC 8414 members and the OpenID
/// ones.
pub(crate) fn openid_configuration(issuer: &DevIssuer) -> Value {
    let mut document = authorization_server(issuer);
    document["userinfo_endpoint"] = json!(format!("{}userinfo", issuer.issuer()));
    document["subject_types_supported"] = json!(["public"]);
    document["id_token_signing_alg_values_supported"] = json!(["RS256"]);
    document
}

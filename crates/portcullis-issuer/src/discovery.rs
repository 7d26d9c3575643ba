//! The issuer's metadata: RFC 8414 authorization-server metadata and OpenID Connect discovery, one document
//! with the OpenID members added for the latter. Both list everything the issuer does, since OAuth clients (MCP
//! clients, oauth4webapi) read the first and OpenID clients (Auth0's SDKs, openid-client) the second.

use crate::issuer::DevIssuer;
use serde_json::{Value, json};

/// The scopes the issuer knows besides API permissions.
pub(crate) const SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// The claims ID tokens and `/userinfo` may carry.
const CLAIMS: [&str; 18] = [
    "at_hash",
    "aud",
    "auth_time",
    "c_hash",
    "email",
    "email_verified",
    "exp",
    "family_name",
    "given_name",
    "iat",
    "iss",
    "name",
    "nickname",
    "nonce",
    "picture",
    "sid",
    "sub",
    "updated_at",
];

/// RFC 8414 §2 metadata, served at `/.well-known/oauth-authorization-server`.
pub(crate) fn authorization_server(issuer: &DevIssuer) -> Value {
    let base = issuer.issuer();
    json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}authorize"),
        "token_endpoint": format!("{base}oauth/token"),
        "jwks_uri": format!("{base}.well-known/jwks.json"),
        "registration_endpoint": format!("{base}oidc/register"),
        "revocation_endpoint": format!("{base}oauth/revoke"),
        "response_types_supported": ["code", "id_token", "id_token token", "code id_token"],
        "response_modes_supported": ["query", "fragment", "form_post", "web_message"],
        "grant_types_supported": ["authorization_code", "client_credentials", "implicit", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "scopes_supported": SCOPES,
        "dpop_signing_alg_values_supported": issuer.dpop().algorithms(),
    })
}

/// OpenID Connect discovery, served at `/.well-known/openid-configuration`: the RFC 8414 members and the OpenID
/// ones (OpenID Connect Discovery 1.0 §3, RP-Initiated Logout 1.0 §2.1).
pub(crate) fn openid_configuration(issuer: &DevIssuer) -> Value {
    let mut document = authorization_server(issuer);
    let base = issuer.issuer();
    document["userinfo_endpoint"] = json!(format!("{base}userinfo"));
    document["end_session_endpoint"] = json!(format!("{base}oidc/logout"));
    document["subject_types_supported"] = json!(["public"]);
    document["id_token_signing_alg_values_supported"] = json!(["RS256"]);
    document["claims_supported"] = json!(CLAIMS);
    document["request_parameter_supported"] = json!(false);
    document["request_uri_parameter_supported"] = json!(false);
    document
}

//! OAuth 2.0 protected-resource metadata (RFC 9728): the document a resource server publishes so that clients
//! (an MCP client, for one) find its authorization servers, scopes and DPoP requirements from a 401 alone.

use serde::Serialize;

/// The well-known path prefix of RFC 9728 §3.
pub const WELL_KNOWN_PREFIX: &str = "/.well-known/oauth-protected-resource";

/// A protected-resource metadata document (RFC 9728 §2). Empty lists are left out of the JSON.
///
/// ```
/// use portcullis::metadata::ResourceMetadata;
/// let metadata = ResourceMetadata {
///     resource: "https://api.example.com/mcp".into(),
///     authorization_servers: vec!["https://tenant.example.com/".into()],
///     scopes_supported: vec!["read:messages".into()],
///     bearer_methods_supported: vec!["header".into()],
///     ..ResourceMetadata::default()
/// };
/// assert_eq!(metadata.well_known_path(), "/.well-known/oauth-protected-resource/mcp");
/// assert_eq!(metadata.metadata_url(), "https://api.example.com/.well-known/oauth-protected-resource/mcp");
/// let json = serde_json::to_value(&metadata).unwrap();
/// assert_eq!(json["resource"], "https://api.example.com/mcp");
/// assert!(json.get("dpop_signing_alg_values_supported").is_none());
/// assert_eq!(json["dpop_bound_access_tokens_required"], false);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ResourceMetadata {
    /// The resource identifier: an `https` URL without fragment (RFC 8707), also the tokens' audience.
    pub resource: String,
    /// The issuers of tokens for this resource.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub authorization_servers: Vec<String>,
    /// The scopes this resource uses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scopes_supported: Vec<String>,
    /// How tokens may be sent (`header`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bearer_methods_supported: Vec<String>,
    /// The algorithms DPoP proofs may use.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dpop_signing_alg_values_supported: Vec<String>,
    /// Whether only DPoP-bound tokens are accepted.
    pub dpop_bound_access_tokens_required: bool,
    /// A human-readable name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
}

impl ResourceMetadata {
    /// Metadata for `resource`, everything else empty.
    pub fn new(resource: impl Into<String>) -> Self {
        Self { resource: resource.into(), ..Self::default() }
    }

    /// The path the document is served at: the well-known prefix, then the resource's path when it is not `/`
    /// (RFC 9728 §3.1).
    pub fn well_known_path(&self) -> String {
        let path = resource_path(&self.resource);
        let path = path.trim_end_matches('/');
        format!("{WELL_KNOWN_PREFIX}{path}")
    }

    /// The absolute URL of the document: the resource's origin, then [`well_known_path`](Self::well_known_path).
    pub fn metadata_url(&self) -> String {
        format!("{}{}", resource_origin(&self.resource), self.well_known_path())
    }

    /// The JSON document.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// `scheme://authority` of a URL (the whole text when it has no path).
fn resource_origin(resource: &str) -> &str {
    let after_scheme = resource.find("://").map_or(0, |i| i + 3);
    let end = resource[after_scheme..].find(['/', '?', '#']).map_or(resource.len(), |i| after_scheme + i);
    &resource[..end]
}

/// The path of a URL without query or fragment (empty when it has none).
fn resource_path(resource: &str) -> &str {
    let rest = &resource[resource_origin(resource).len()..];
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    &rest[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        for (resource, path) in [
            ("https://api.example.com", "/.well-known/oauth-protected-resource"),
            ("https://api.example.com/", "/.well-known/oauth-protected-resource"),
            ("https://api.example.com/v1/mcp/", "/.well-known/oauth-protected-resource/v1/mcp"),
            ("http://127.0.0.1:8080/mcp?x=1", "/.well-known/oauth-protected-resource/mcp"),
        ] {
            assert_eq!(ResourceMetadata::new(resource).well_known_path(), path, "{resource}");
        }
        assert_eq!(
            ResourceMetadata::new("http://127.0.0.1:8080/mcp").metadata_url(),
            "http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp"
        );
    }
}

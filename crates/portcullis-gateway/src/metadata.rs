//! OAuth 2.0 protected-resource metadata (RFC 9728) from `[resource_metadata]`: the document, and the gateway's
//! own answer at `/.well-known/oauth-protected-resource` and at the path-inserted form for the resource
//! (§3.1), before any route is looked at and without a token. It is never forwarded upstream.

use crate::config::Config;
use crate::gateway::Policy;
use crate::request::CanonicalRequest;
use axum::response::{IntoResponse, Response};
use http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, StatusCode};
use portcullis::dpop::DpopVerifier;
use portcullis::metadata::ResourceMetadata;

/// The root form of the well-known path.
pub(crate) const ROOT: &str = "/.well-known/oauth-protected-resource";

/// The metadata document of `config`, when it has `[resource_metadata]`: the configured members, the Bearer
/// method `header`, and — when DPoP is on — the proof algorithms and whether bound tokens are required.
pub(crate) fn document(config: &Config, verifier: Option<&DpopVerifier>) -> Option<ResourceMetadata> {
    let table = config.resource_metadata.as_ref()?;
    let dpop_on = !crate::dpop_config::enabled_at(config).is_empty();
    let algorithms = match (verifier, dpop_on) {
        (Some(verifier), true) => verifier.algorithms().iter().map(|alg| alg.name().to_owned()).collect(),
        _ => Vec::new(),
    };
    let required = dpop_on
        && config.dpop.mode == crate::DpopSetting::Required
        && config.issuers.iter().all(|i| i.dpop.is_none_or(|m| m == crate::DpopSetting::Required))
        && config.routes.iter().all(|r| r.public || r.dpop.is_none_or(|m| m == crate::DpopSetting::Required));
    let mut document = ResourceMetadata::new(table.resource.clone());
    document.authorization_servers.clone_from(&table.authorization_servers);
    document.scopes_supported.clone_from(&table.scopes_supported);
    document.bearer_methods_supported = vec!["header".to_owned()];
    document.dpop_signing_alg_values_supported = algorithms;
    document.dpop_bound_access_tokens_required = required;
    document.resource_name.clone_from(&table.resource_name);
    Some(document)
}

/// The document, served: its JSON and the paths it answers at.
pub(crate) struct Published {
    json: String,
    paths: Vec<String>,
}

impl Published {
    /// Publishes `document` at the root form and its path-inserted form.
    pub(crate) fn new(document: &ResourceMetadata) -> Self {
        let json = document.to_json();
        let mut paths = vec![ROOT.to_owned()];
        let inserted = document.well_known_path();
        if !paths.contains(&inserted) {
            paths.push(inserted);
        }
        Self { json, paths }
    }

    /// Whether `request` asks for the document (its canonical path is one of the well-known paths, exactly).
    fn is_for(&self, request: &CanonicalRequest) -> bool {
        self.paths.iter().any(|path| request.path.as_str() == path)
    }
}

/// The gateway's answer when `request` is for the metadata document under `policy`; `None` otherwise. `GET` and
/// `HEAD` get the JSON (readable from any origin: it is public), `OPTIONS` a CORS answer, other methods 405.
pub(crate) fn answer(policy: &Policy, request: &CanonicalRequest) -> Option<Response> {
    let published = policy.metadata.as_ref()?;
    if !published.is_for(request) {
        return None;
    }
    let mut response = match request.method {
        Method::GET | Method::HEAD => {
            let mut response = (StatusCode::OK, published.json.clone()).into_response();
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("max-age=3600"));
            response
        }
        Method::OPTIONS => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            let methods = HeaderValue::from_static("GET, HEAD, OPTIONS");
            response.headers_mut().insert(http::header::ACCESS_CONTROL_ALLOW_METHODS, methods);
            response
        }
        _ => {
            let mut response = StatusCode::METHOD_NOT_ALLOWED.into_response();
            response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD, OPTIONS"));
            response
        }
    };
    response.headers_mut().insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    Some(response)
}

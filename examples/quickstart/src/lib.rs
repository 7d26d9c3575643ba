//! The routes of Auth0's API quickstart, protected by portcullis: the API this example's binary and
//! `portcullis demo` serve, and a compact example of the whole middleware.
//!
//! | route | needs | answers |
//! |---|---|---|
//! | `GET /api/public` | nothing | a greeting |
//! | `GET /api/protected` | a valid token | `{"message":"You made it to the protected endpoint!","user":{…claims…}}` |
//! | `GET /api/private` | a valid token | a greeting |
//! | `GET /api/private-scoped` | `read:messages` in `scope` or `permissions` | a greeting |
//!
//! With [`Sender`] ([`app_with`]) the API also accepts DPoP-bound tokens (RFC 9449) and publishes its RFC 9728
//! protected-resource metadata at `/.well-known/oauth-protected-resource`, named in every challenge.

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use portcullis::dpop::{DpopMode, DpopVerifier};
use portcullis::metadata::ResourceMetadata;
use portcullis::{Requirement, Verifier};
use portcullis_axum::{JwtLayer, Token, require};
use serde_json::json;
use serde_json::value::RawValue;

/// The public route.
pub const PUBLIC: &str = "/api/public";
/// The route that answers with the verified claims.
pub const PROTECTED: &str = "/api/protected";
/// The route that needs a valid token.
pub const PRIVATE: &str = "/api/private";
/// The route that needs `read:messages`.
pub const PRIVATE_SCOPED: &str = "/api/private-scoped";

/// What a route asks of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Access {
    /// Nothing.
    Public,
    /// A valid token.
    Token,
    /// A valid token meeting [`read_messages`].
    ReadMessages,
}

impl Access {
    /// The authorization rule beyond a valid token, if any.
    pub fn requirement(self) -> Option<Requirement> {
        match self {
            Access::Public | Access::Token => None,
            Access::ReadMessages => Some(read_messages()),
        }
    }
}

/// Every route [`app`] serves (all `GET`), in the order the table above lists them.
pub const ROUTES: [(&str, Access); 4] = [
    (PUBLIC, Access::Public),
    (PROTECTED, Access::Token),
    (PRIVATE, Access::Token),
    (PRIVATE_SCOPED, Access::ReadMessages),
];

/// The answer of `/api/protected`.
#[derive(serde::Serialize)]
struct Protected<'a> {
    message: &'static str,
    user: &'a RawValue,
}

/// The rule of `/api/private-scoped`: the `read:messages` scope, or the RBAC permission of the same name.
pub fn read_messages() -> Requirement {
    Requirement::any([Requirement::scope("read:messages"), Requirement::permission("read:messages")])
}

/// DPoP and protected-resource metadata for the API: who issues its tokens and where clients reach it.
#[derive(Clone)]
pub struct Sender {
    /// Checks the DPoP proofs (its replay cache is shared by every request).
    pub verifier: DpopVerifier,
    /// Whether DPoP-bound tokens are refused, accepted next to Bearer ones, or required.
    pub mode: DpopMode,
    /// The API's external base URL, e.g. `https://api.example.com`: the origin of every proof's `htu`, and the
    /// metadata's `resource`.
    pub public_url: String,
    /// The issuers of the API's tokens, listed as `authorization_servers`.
    pub authorization_servers: Vec<String>,
}

impl Sender {
    /// The metadata document this API publishes (the layer fills in the bearer methods and DPoP algorithms).
    pub fn metadata(&self) -> ResourceMetadata {
        let mut metadata = ResourceMetadata::new(self.public_url.trim_end_matches('/'));
        metadata.authorization_servers = self.authorization_servers.clone();
        metadata.scopes_supported = vec!["read:messages".to_owned()];
        metadata.resource_name = Some("portcullis quickstart".to_owned());
        metadata
    }
}

/// The quickstart API, trusting `verifier`, Bearer tokens only.
pub fn app(verifier: Verifier) -> Router {
    routes(JwtLayer::new(verifier), None)
}

/// The quickstart API, trusting `verifier`, with DPoP and its metadata document as `sender` says.
///
/// # Panics
///
/// When `sender.public_url` is not an absolute `http(s)` URL (a configuration mistake, found at start-up).
pub fn app_with(verifier: Verifier, sender: &Sender) -> Router {
    let metadata = sender.metadata();
    let well_known = metadata.well_known_path();
    let layer = JwtLayer::new(verifier)
        .dpop(sender.verifier.clone(), sender.mode, &sender.public_url)
        .resource_metadata(metadata);
    routes(layer, Some(well_known))
}

/// The four routes, the protected ones behind `layer`; `well_known` is the metadata path the layer answers.
fn routes(layer: JwtLayer, well_known: Option<String>) -> Router {
    let protected = Router::new()
        .route(
            PROTECTED,
            get(|Token(token): Token| async move {
                // The verified payload is answered as it is: no claim map is built, cloned or re-encoded.
                match serde_json::from_slice::<&RawValue>(token.payload()) {
                    Ok(user) => axum::Json(Protected { message: "You made it to the protected endpoint!", user })
                        .into_response(),
                    Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                }
            }),
        )
        .route(
            PRIVATE,
            get(|| async {
                axum::Json(json!({
                    "message": "Hello from a private endpoint! You need to be authenticated to see this."
                }))
            }),
        )
        .route(
            PRIVATE_SCOPED,
            get(|| async {
                axum::Json(json!({
                    "message": "Hello from a private endpoint! You need to be authenticated and have a scope of \
                                read:messages to see this."
                }))
            })
            .route_layer(require(read_messages())),
        );
    // The layer answers GET of the metadata path itself; the route only sends such requests through it.
    let protected = match well_known {
        Some(path) => protected.route(&path, get(|| async { StatusCode::NOT_FOUND })),
        None => protected,
    }
    .layer(layer);
    Router::new()
        .route(
            PUBLIC,
            get(|| async {
                axum::Json(json!({
                    "message": "Hello from a public endpoint! You don't need to be authenticated to see this."
                }))
            }),
        )
        .merge(protected)
}

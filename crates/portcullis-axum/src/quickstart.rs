//! The routes of Auth0's API quickstart, protected by portcullis — the API the `quickstart` example and
//! `portcullis demo` serve, and a compact example of the whole middleware.
//!
//! | route | needs | answers |
//! |---|---|---|
//! | `GET /api/public` | nothing | a greeting |
//! | `GET /api/protected` | a valid token | `{"message":"You made it to the protected endpoint!","user":{…claims…}}` |
//! | `GET /api/private` | a valid token | a greeting |
//! | `GET /api/private-scoped` | `read:messages` in `scope` or `permissions` | a greeting |

use crate::{JwtLayer, Token, require};
use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use portcullis::{Requirement, Verifier};
use serde_json::json;
use serde_json::value::RawValue;

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

/// The quickstart API, trusting `verifier`.
pub fn app(verifier: Verifier) -> Router {
    let protected = Router::new()
        .route(
            "/api/protected",
            get(|Token(token): Token| async move {
                // The verified payload is answered as it is: no claim map is built, cloned or re-encoded.
                match serde_json::from_slice::<&RawValue>(token.payload()) {
                    Ok(user) => axum::Json(Protected { message: "You made it to the protected endpoint!", user })
                        .into_response(),
                    Err(_) => http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                }
            }),
        )
        .route(
            "/api/private",
            get(|| async {
                axum::Json(json!({
                    "message": "Hello from a private endpoint! You need to be authenticated to see this."
                }))
            }),
        )
        .route(
            "/api/private-scoped",
            get(|| async {
                axum::Json(json!({
                    "message": "Hello from a private endpoint! You need to be authenticated and have a scope of \
                                read:messages to see this."
                }))
            })
            .route_layer(require(read_messages())),
        )
        .layer(JwtLayer::new(verifier));
    Router::new()
        .route(
            "/api/public",
            get(|| async {
                axum::Json(json!({
                    "message": "Hello from a public endpoint! You don't need to be authenticated to see this."
                }))
            }),
        )
        .merge(protected)
}

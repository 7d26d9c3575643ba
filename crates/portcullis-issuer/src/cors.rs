//! CORS: which browser pages may read the issuer's answers.
//!
//! The endpoints a browser app calls with the user's tokens (`/oauth/token`, `/oauth/revoke`, `/userinfo`) answer
//! scripts from the origins a client lists in `web_origins` (Auth0's "Allowed Web Origins") and no other: a page
//! from elsewhere gets no CORS headers, so its script cannot read the answer. The token and revocation endpoints
//! further refuse a page that is not of the authenticated client's own origins ([`crate::token::foreign_origin`]). They allow the request headers
//! Auth0's SDKs send (`Auth0-Client`, `Content-Type`, `Authorization`) and `DPoP`, and expose `DPoP-Nonce`.
//! Discovery and the JWKS are public documents that any page may read.

use crate::issuer::DevIssuer;
use axum::extract::{Request, State};
use axum::http::{HeaderName, Method, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::MethodRouter;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

/// The header Auth0's SDKs send with every call, naming the SDK and its version (base64url JSON).
const AUTH0_CLIENT: HeaderName = HeaderName::from_static("auth0-client");

/// `route` answering CORS requests (`method`) from the tenant's web origins, and no CORS header at all to a page
/// from any other origin.
pub(crate) fn for_web_origins<S>(route: MethodRouter<S>, issuer: &DevIssuer, method: Method) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    route.layer(web_origins(issuer, method)).layer(middleware::from_fn_with_state(issuer.clone(), listed_only))
}

/// Whether `origin` is one of the tenant's web origins.
fn listed(issuer: &DevIssuer, origin: &axum::http::HeaderValue) -> bool {
    origin.to_str().is_ok_and(|origin| issuer.tenant().allows_web_origin(origin))
}

/// Takes every `Access-Control-*` header off the answer to a page whose origin the tenant does not list (the CORS
/// layer would still name the allowed methods and headers in a refused preflight).
async fn listed_only(State(issuer): State<DevIssuer>, request: Request, next: Next) -> Response {
    let foreign = request.headers().get(header::ORIGIN).is_some_and(|origin| !listed(&issuer, origin));
    let mut response = next.run(request).await;
    if foreign {
        let names: Vec<HeaderName> =
            response.headers().keys().filter(|name| name.as_str().starts_with("access-control-")).cloned().collect();
        for name in names {
            response.headers_mut().remove(name);
        }
    }
    response
}

/// CORS for the tenant's web origins, for requests with `method`.
fn web_origins(issuer: &DevIssuer, method: Method) -> CorsLayer {
    let issuer = issuer.clone();
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, _| listed(&issuer, origin)))
        .allow_methods([method])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static(crate::dpop::DPOP),
            AUTH0_CLIENT,
        ])
        .expose_headers([HeaderName::from_static(crate::dpop::DPOP_NONCE), header::WWW_AUTHENTICATE])
        .max_age(Duration::from_secs(600))
}

/// CORS for public documents: `Access-Control-Allow-Origin: *` on `GET`, no credentials.
pub(crate) fn public() -> CorsLayer {
    CorsLayer::new().allow_origin(Any).allow_methods([Method::GET])
}

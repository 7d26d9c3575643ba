//! Per-route authorization: [`require`] a [`Requirement`] of the verified token.

use crate::future::ResponseFuture;
use crate::rejection::Answer;
use axum::response::Response;
use http::Request;
use portcullis::{Error, Reason, Requirement, VerifiedToken};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// A layer that lets a request through only when its verified token meets `rule`; otherwise 403
/// `insufficient_scope` with the RFC 6750 `scope` attribute (or 401 when the request has no token at all).
///
/// Put it inside a [`JwtLayer`](crate::JwtLayer), per route:
///
/// ```
/// use axum::{Router, routing::get};
/// use portcullis::Requirement;
/// use portcullis_axum::require;
///
/// let read_messages = Requirement::any([Requirement::scope("read:messages"), Requirement::permission("read:messages")]);
/// let routes: Router = Router::new().route("/api/private-scoped", get(|| async { "ok" }).route_layer(require(read_messages)));
/// ```
pub fn require(rule: Requirement) -> RequireLayer {
    RequireLayer { rule: Arc::new(rule) }
}

/// See [`require`].
#[derive(Debug, Clone)]
pub struct RequireLayer {
    rule: Arc<Requirement>,
}

impl<S> Layer<S> for RequireLayer {
    type Service = RequireService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireService { inner, rule: Arc::clone(&self.rule) }
    }
}

/// See [`require`].
#[derive(Debug, Clone)]
pub struct RequireService<S> {
    inner: S,
    rule: Arc<Requirement>,
}

impl<S, B> Service<Request<B>> for RequireService<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let outcome = match request.extensions().get::<VerifiedToken>() {
            Some(token) => self.rule.check(token),
            None => Err(Error::new(Reason::TokenMissing, "the request has no bearer token")),
        };
        match outcome {
            Ok(()) => ResponseFuture::inner(self.inner.call(request)),
            Err(error) => {
                let answer = request.extensions().get::<Answer>().cloned().unwrap_or_default();
                ResponseFuture::rejected(answer.respond(error))
            }
        }
    }
}

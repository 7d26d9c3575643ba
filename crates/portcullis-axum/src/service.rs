//! [`JwtService`]: the middleware itself.

use crate::credentials::bearer_token;
use crate::future::ResponseFuture;
use crate::layer::Config;
use axum::response::Response;
use http::{Method, Request, header};
use portcullis::{Error, Reason, VerifiedToken};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Service, ServiceExt};

/// Authenticates requests, then calls the inner service. Built by [`JwtLayer`](crate::JwtLayer).
#[derive(Clone)]
pub struct JwtService<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> std::fmt::Debug for JwtService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtService").finish_non_exhaustive()
    }
}

impl<S> JwtService<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }
}

/// What the synchronous part of a call could not finish.
enum Unfinished {
    /// Verified; the revocation check remains.
    Verified(VerifiedToken),
    /// Keys must be fetched first.
    Token(String),
}

fn is_preflight<B>(request: &Request<B>) -> bool {
    request.method() == Method::OPTIONS
        && request.headers().contains_key(header::ORIGIN)
        && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

impl<S, B> Service<Request<B>> for JwtService<S>
where
    S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let config = Arc::clone(&self.config);
        request.extensions_mut().insert(config.answer.clone());
        if config.allow_preflight && is_preflight(&request) {
            return ResponseFuture::inner(self.inner.call(request));
        }
        let unfinished = {
            let token = match bearer_token(request.headers(), request.uri().query(), &config.sources) {
                Ok(Some(token)) => token,
                Ok(None) if config.optional => return ResponseFuture::inner(self.inner.call(request)),
                Ok(None) => {
                    let error = Error::new(Reason::TokenMissing, "the request has no bearer token");
                    return ResponseFuture::rejected(config.answer.respond(error));
                }
                Err(error) => return ResponseFuture::rejected(config.answer.respond(error)),
            };
            match config.verifier.verify_now(token) {
                Some(Ok(verified)) if config.revocation.is_none() => {
                    request.extensions_mut().insert(verified);
                    return ResponseFuture::inner(self.inner.call(request));
                }
                Some(Ok(verified)) => Unfinished::Verified(verified),
                Some(Err(error)) => return ResponseFuture::rejected(config.answer.respond(error)),
                None => Unfinished::Token(token.to_owned()),
            }
        };
        // The service that was polled ready goes with the future; a fresh clone stays for the next call.
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        ResponseFuture::pending(Box::pin(async move {
            let verified = match unfinished {
                Unfinished::Verified(verified) => verified,
                Unfinished::Token(token) => match config.verifier.verify_async(&token).await {
                    Ok(verified) => verified,
                    Err(error) => return Ok(config.answer.respond(error)),
                },
            };
            if let Some(is_revoked) = &config.revocation
                && is_revoked(verified.clone()).await
            {
                return Ok(config.answer.respond(Error::new(Reason::TokenRevoked, "the token has been revoked")));
            }
            request.extensions_mut().insert(verified);
            ready.oneshot(request).await
        }))
    }
}

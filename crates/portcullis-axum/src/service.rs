//! [`JwtService`]: the middleware itself.

use crate::credentials::{credentials, dpop_proofs};
use crate::future::ResponseFuture;
use crate::layer::{Config, Dpop};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, Request, header};
use portcullis::dpop::{Htu, Proof, RequestTarget};
use portcullis::{Error, Reason, Scheme, VerifiedToken};
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
    /// Verified, with the binding checked; the revocation check remains.
    Verified(VerifiedToken, Option<Proof>),
    /// Verified; the proof must be recorded in a shared replay store, which is awaited.
    Bound(VerifiedToken),
    /// Keys must be fetched first.
    Token(String),
}

/// What the token's binding is checked against, owned so that it can wait for keys.
struct Binding {
    scheme: Scheme,
    proofs: Vec<String>,
    method: Method,
    /// The request URI, when the scheme is `DPoP` (the only case that needs it).
    htu: Option<Htu>,
}

impl Binding {
    /// Reads what the binding check needs from the request; a path that cannot make an `htu` is `request_invalid`.
    fn read<B>(request: &Request<B>, scheme: Scheme, dpop: Option<&Dpop>) -> Result<Self, Error> {
        let proofs = match dpop {
            Some(_) => dpop_proofs(request.headers())?.into_iter().map(str::to_owned).collect(),
            None => Vec::new(),
        };
        let htu = match (dpop, scheme) {
            (Some(dpop), Scheme::Dpop) => Some(Htu::join(&dpop.base, requested_path(request))?),
            _ => None,
        };
        Ok(Self { scheme, proofs, method: request.method().clone(), htu })
    }

    /// The binding rules for a verified token: RFC 9449 §7 with DPoP configured, else only "no bound token as
    /// Bearer". The per-request proof is checked here on every request, whether the token came from the cache or
    /// not.
    fn check(&self, dpop: Option<&Dpop>, token: &VerifiedToken) -> Result<Option<Proof>, Error> {
        let Some(dpop) = dpop else {
            if token.jkt().is_some() {
                return Err(Error::new(
                    Reason::TokenBindingInvalid,
                    "the token is DPoP-bound (cnf.jkt) and this resource does not accept DPoP",
                ));
            }
            return Ok(None);
        };
        let proofs: Vec<&str> = self.proofs.iter().map(String::as_str).collect();
        let htu = self.htu.as_ref().unwrap_or(&dpop.base);
        let target = RequestTarget { method: self.method.as_str(), htu };
        dpop.verifier.check_request(dpop.mode, self.scheme, &proofs, token, &target)
    }

    /// Whether the check must await a shared replay store: a `DPoP` request to a verifier that records proofs in
    /// one (the in-memory store of the process answers at once, on the synchronous path).
    fn awaits_store(&self, dpop: Option<&Dpop>) -> bool {
        self.scheme == Scheme::Dpop && dpop.is_some_and(|dpop| dpop.verifier.replay_is_shared())
    }

    /// [`check`](Self::check), awaiting the shared replay store when there is one.
    async fn check_async(&self, dpop: Option<&Dpop>, token: &VerifiedToken) -> Result<Option<Proof>, Error> {
        let Some(dpop) = dpop.filter(|_| self.awaits_store(dpop)) else {
            return self.check(dpop, token);
        };
        let proofs: Vec<&str> = self.proofs.iter().map(String::as_str).collect();
        let htu = self.htu.as_ref().unwrap_or(&dpop.base);
        let target = RequestTarget { method: self.method.as_str(), htu };
        dpop.verifier.check_request_async(dpop.mode, self.scheme, &proofs, token, &target).await
    }
}

/// The path the client requested: inside `Router::nest` the request's URI has lost the nesting prefix, which axum
/// keeps in [`OriginalUri`](axum::extract::OriginalUri); a proof's `htu` names the whole path.
fn requested_path<B>(request: &Request<B>) -> &str {
    match request.extensions().get::<axum::extract::OriginalUri>() {
        Some(original) => original.0.path(),
        None => request.uri().path(),
    }
}

fn is_preflight<B>(request: &Request<B>) -> bool {
    request.method() == Method::OPTIONS
        && request.headers().contains_key(header::ORIGIN)
        && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The RFC 9728 document, for `GET` or `HEAD` of its path.
fn metadata_response<B>(config: &Config, request: &Request<B>) -> Option<Response> {
    let metadata = config.metadata.as_ref()?;
    if !matches!(*request.method(), Method::GET | Method::HEAD) || request.uri().path() != metadata.path {
        return None;
    }
    let body = config.metadata_json()?;
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=3600"));
    Some(response)
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
        if let Some(response) = metadata_response(&config, &request) {
            return ResponseFuture::rejected(response);
        }
        let mut answer = config.answer.clone();
        if config.allow_preflight && is_preflight(&request) {
            request.extensions_mut().insert(answer);
            return ResponseFuture::inner(self.inner.call(request));
        }
        let dpop = config.dpop.as_ref();
        let (unfinished, binding) = {
            let (scheme, token) =
                match credentials(request.headers(), request.uri().query(), &config.sources, dpop.is_some()) {
                    Ok(Some(found)) => found,
                    Ok(None) if config.optional => {
                        request.extensions_mut().insert(answer);
                        return ResponseFuture::inner(self.inner.call(request));
                    }
                    Ok(None) => {
                        let error = Error::new(Reason::TokenMissing, "the request has no bearer token");
                        return ResponseFuture::rejected(answer.respond(error));
                    }
                    Err(error) => return ResponseFuture::rejected(answer.respond(error)),
                };
            answer.set_scheme_used(scheme);
            if let Some(dpop) = dpop
                && let Err(error) = dpop.mode.admits(scheme)
            {
                return ResponseFuture::rejected(answer.respond(error));
            }
            let binding = match Binding::read(&request, scheme, dpop) {
                Ok(binding) => binding,
                Err(error) => return ResponseFuture::rejected(answer.respond(error)),
            };
            let unfinished = match config.verifier.verify_now(token) {
                Some(Ok(verified)) if binding.awaits_store(dpop) => Unfinished::Bound(verified),
                Some(Ok(verified)) => match binding.check(dpop, &verified) {
                    Err(error) => return ResponseFuture::rejected(answer.respond(error)),
                    Ok(proof) if config.revocation.is_none() => {
                        let extensions = request.extensions_mut();
                        extensions.insert(answer);
                        extensions.insert(verified);
                        if let Some(proof) = proof {
                            extensions.insert(proof);
                        }
                        return ResponseFuture::inner(self.inner.call(request));
                    }
                    Ok(proof) => Unfinished::Verified(verified, proof),
                },
                Some(Err(error)) => return ResponseFuture::rejected(answer.respond(error)),
                None => Unfinished::Token(token.to_owned()),
            };
            (unfinished, binding)
        };
        // The service that was polled ready goes with the future; a fresh clone stays for the next call.
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        ResponseFuture::pending(Box::pin(async move {
            let dpop = config.dpop.as_ref();
            let (verified, proof) = match unfinished {
                // The binding of a token verified synchronously was checked already.
                Unfinished::Verified(verified, proof) => (verified, proof),
                Unfinished::Bound(verified) => match binding.check_async(dpop, &verified).await {
                    Ok(proof) => (verified, proof),
                    Err(error) => return Ok(answer.respond(error)),
                },
                Unfinished::Token(token) => match config.verifier.verify_async(&token).await {
                    Ok(verified) => match binding.check_async(dpop, &verified).await {
                        Ok(proof) => (verified, proof),
                        Err(error) => return Ok(answer.respond(error)),
                    },
                    Err(error) => return Ok(answer.respond(error)),
                },
            };
            if let Some(is_revoked) = &config.revocation
                && is_revoked(verified.clone()).await
            {
                return Ok(answer.respond(Error::new(Reason::TokenRevoked, "the token has been revoked")));
            }
            let extensions = request.extensions_mut();
            extensions.insert(answer);
            extensions.insert(verified);
            if let Some(proof) = proof {
                extensions.insert(proof);
            }
            ready.oneshot(request).await
        }))
    }
}

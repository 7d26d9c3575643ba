//! The response future of [`JwtService`](crate::JwtService): the inner service's future, a ready refusal, or — only
//! when keys must be fetched or a revocation check runs — a boxed asynchronous verification.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A boxed future answering the request.
pub(crate) type Pending<E> = Pin<Box<dyn Future<Output = Result<Response, E>> + Send>>;

pin_project! {
    /// Response future of [`JwtService`](crate::JwtService).
    pub struct ResponseFuture<F, E> {
        #[pin]
        kind: Kind<F, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, E> {
        Inner { #[pin] future: F },
        Rejected { response: Option<Response> },
        Pending { future: Pending<E> },
    }
}

impl<F, E> ResponseFuture<F, E> {
    pub(crate) fn inner(future: F) -> Self {
        Self { kind: Kind::Inner { future } }
    }

    pub(crate) fn rejected(response: Response) -> Self {
        Self { kind: Kind::Rejected { response: Some(response) } }
    }

    pub(crate) fn pending(future: Pending<E>) -> Self {
        Self { kind: Kind::Pending { future } }
    }
}

impl<F, E> Future for ResponseFuture<F, E>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            KindProj::Rejected { response } => {
                // Polled again after completion: a contract violation by the caller; answer 500 rather than panic.
                Poll::Ready(Ok(response.take().unwrap_or_else(|| StatusCode::INTERNAL_SERVER_ERROR.into_response())))
            }
            KindProj::Pending { future } => future.as_mut().poll(cx),
        }
    }
}

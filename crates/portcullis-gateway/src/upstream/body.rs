//! The upstream's response body as the client receives it: streamed from the upstream connection, which it keeps
//! driving, and which it returns to the pool once the body has ended.

use super::Link;
use axum::body::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A response body from the upstream. Until its last frame has been read it owns the connection it comes from;
/// dropped earlier (the client went away), it closes that connection, so no unread rest is ever handed to the
/// next request.
pub(crate) struct UpstreamBody {
    incoming: Incoming,
    link: Option<Link>,
}

impl UpstreamBody {
    /// `incoming`, driving `link` while it streams.
    pub(super) fn new(incoming: Incoming, link: Option<Link>) -> Self {
        Self { incoming, link }
    }

    fn release(&mut self, cx: &mut Context<'_>) {
        if let Some(link) = self.link.take() {
            link.release(cx);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        // The connection first: it reads the next part of the body into `incoming`.
        if let Some(link) = this.link.as_mut()
            && !link.drive(cx)
        {
            this.link = None;
        }
        let frame = Pin::new(&mut this.incoming).poll_frame(cx);
        match &frame {
            Poll::Ready(None) => this.release(cx),
            Poll::Ready(Some(Ok(_))) if this.incoming.is_end_stream() => this.release(cx),
            Poll::Ready(Some(Err(_))) => this.link = None,
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

//! The request a decision is about, in canonical form: method, canonical path and query. Every edge builds one
//! — the reverse proxy from the request itself, forward-auth from the front proxy's description — and the
//! decision never sees the raw target.

use crate::canonical::{self, CanonicalPath, PathError};
use http::Method;

/// A request turned canonical once, at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CanonicalRequest {
    /// The method, as sent (methods are case-sensitive; `HEAD` is matched as `GET` by the routes).
    pub method: Method,
    /// The canonical path: what routes match and what the reverse proxy forwards.
    pub path: CanonicalPath,
    /// The query, as sent (without the `?`).
    pub query: Option<String>,
    /// The path as received, before it was made canonical: the path a DPoP proof's `htu` names (after
    /// `public_url`), normalized by the proof check itself.
    pub received_path: String,
    /// Whether the target was already in canonical form.
    pub was_canonical: bool,
    /// Whether the target differs from the canonical path at most in the spelling of characters that never
    /// delimit a path (forward-auth refuses it otherwise: the front proxy forwards the raw target, which an
    /// upstream could read differently).
    pub equivalent: bool,
    /// Whether the request is known to carry a body from its framing (the reverse proxy sets it: over HTTP/2 a
    /// body needs no `Content-Length`); a body declared in headers counts as well.
    pub has_body: bool,
}

impl CanonicalRequest {
    /// Reads an origin-form target (`/path?query`) as sent by a client or described by a front proxy.
    ///
    /// ```
    /// use portcullis_gateway::CanonicalRequest;
    /// let request = CanonicalRequest::from_target(http::Method::GET, b"/api/./x/../%61dmin?q=1").unwrap();
    /// assert_eq!(request.path.as_str(), "/api/admin");
    /// assert_eq!(request.query.as_deref(), Some("q=1"));
    /// assert!(!request.was_canonical);
    /// ```
    pub fn from_target(method: Method, target: &[u8]) -> Result<Self, PathError> {
        let (path, query) = canonical::split_target(target)?;
        Self::from_parts(method, path, query)
    }

    /// Reads a path and optional query given apart.
    pub fn from_parts(method: Method, path: &[u8], query: Option<&[u8]>) -> Result<Self, PathError> {
        let canonical = canonical::canonicalize(path)?;
        let query = match query {
            None => None,
            Some(query) => Some(query_text(query)?),
        };
        Ok(Self {
            method,
            received_path: String::from_utf8_lossy(path).into_owned(),
            path: canonical.path,
            query,
            was_canonical: canonical.was_canonical,
            equivalent: canonical.equivalent,
            has_body: false,
        })
    }

    /// The target to forward: the canonical path and the query as sent.
    pub fn target(&self) -> String {
        match &self.query {
            Some(query) => format!("{}?{query}", self.path),
            None => self.path.to_string(),
        }
    }
}

/// A query is not routed on, but it must be printable ASCII without `#` (a header from a front proxy may carry
/// any byte).
fn query_text(query: &[u8]) -> Result<String, PathError> {
    for &byte in query {
        match byte {
            b'#' => return Err(PathError::Fragment),
            0..=0x1f | 0x7f => return Err(PathError::ControlByte),
            0x80.. => return Err(PathError::NonAscii),
            _ => {}
        }
    }
    Ok(String::from_utf8_lossy(query).into_owned())
}

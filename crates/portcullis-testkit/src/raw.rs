//! An HTTP/1.1 client that writes exactly the bytes it is given: the request target, method and header names
//! and values go on the wire unchanged (dot-segments, `%XX`, `\`, raw non-ASCII bytes, duplicate headers,
//! HTTP/1.0 without `Host`). HTTP libraries normalize or refuse such requests, which is what an attacker's client
//! does not do.
//!
//! Each request uses its own connection and asks for `Connection: close` (unless it sets `Connection` itself);
//! the answer is read until its framing says it is complete (`Content-Length`, chunked, no body for `HEAD`, 101,
//! 204, 304) or the server closes the connection.

use std::fmt::Write as _;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The protocol version on the request line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `HTTP/1.1`, with a `Host` header unless [`RawRequest::without_host`].
    Http11,
    /// `HTTP/1.0`, with no `Host` header unless one is added with [`RawRequest::header`].
    Http10,
}

/// A request as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRequest {
    /// The method, as sent (`get` stays lowercase).
    pub method: Vec<u8>,
    /// The request target, as sent.
    pub target: Vec<u8>,
    /// The version on the request line.
    pub version: Version,
    /// Whether a `Host: <address>` header is sent first (HTTP/1.1 default).
    pub host: bool,
    /// The headers after `Host`, in order, names and values as sent.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
}

impl RawRequest {
    /// An HTTP/1.1 request with `Host`.
    pub fn new(method: impl Into<Vec<u8>>, target: impl Into<Vec<u8>>) -> Self {
        Self { method: method.into(), target: target.into(), version: Version::Http11, host: true, headers: Vec::new() }
    }

    /// Adds a header (duplicates are kept, in order).
    #[must_use]
    pub fn header(mut self, name: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sends `HTTP/1.0` on the request line, without a `Host` header.
    #[must_use]
    pub fn http10(mut self) -> Self {
        self.version = Version::Http10;
        self.host = false;
        self
    }

    /// Sends no `Host` header.
    #[must_use]
    pub fn without_host(mut self) -> Self {
        self.host = false;
        self
    }

    /// Whether the answer has no body by definition.
    fn is_head(&self) -> bool {
        self.method == b"HEAD"
    }

    /// The bytes sent to `address` (`host:port`).
    pub fn to_bytes(&self, address: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(&self.method);
        out.push(b' ');
        out.extend_from_slice(&self.target);
        out.extend_from_slice(match self.version {
            Version::Http11 => b" HTTP/1.1\r\n",
            Version::Http10 => b" HTTP/1.0\r\n",
        });
        if self.host {
            out.extend_from_slice(format!("Host: {address}\r\n").as_bytes());
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        if !self.headers.iter().any(|(name, _)| name.eq_ignore_ascii_case(b"connection")) {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    /// The request line and headers, escaped for a one-line report; `Authorization` values are abbreviated.
    pub fn describe(&self) -> String {
        let mut text = format!("{} {}", escape(&self.method), escape(&self.target));
        if self.version == Version::Http10 {
            text.push_str(" HTTP/1.0");
        }
        if !self.host && self.version == Version::Http11 {
            text.push_str(" (no Host)");
        }
        for (name, value) in &self.headers {
            let value = if name.eq_ignore_ascii_case(b"authorization") {
                format!("{}…", escape(&value[..value.len().min(14)]))
            } else {
                escape(value)
            };
            let _ = write!(text, " | {}: {value}", escape(name));
        }
        text
    }
}

/// Printable ASCII as it is, everything else (and `\`) as `\xNN`.
pub fn escape(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    for &byte in bytes {
        if (0x20..0x7f).contains(&byte) && byte != b'\\' {
            text.push(char::from(byte));
        } else {
            let _ = write!(text, "\\x{byte:02X}");
        }
    }
    text
}

/// A response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }

    /// The first header named `name` as text (lossy).
    pub fn header_text(&self, name: &str) -> Option<String> {
        self.header(name).map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// Sends `request` to `address` (`host:port`) and reads the answer, all within `timeout`.
pub async fn send(address: &str, request: &RawRequest, timeout: Duration) -> Result<RawResponse, String> {
    let bytes = request.to_bytes(address);
    let head_only = request.is_head();
    let mut received = Vec::new();
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address).await.map_err(|e| format!("connect: {e}"))?;
        stream.write_all(&bytes).await.map_err(|e| format!("write: {e}"))?;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(response) = parse(&received, head_only, false) {
                return Ok(response);
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return parse(&received, head_only, true).ok_or("closed before an answer".to_owned()),
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => parse(&received, head_only, true).ok_or_else(|| format!("no answer within {timeout:?}")),
    }
}

/// The response in `data` once complete (or, at the end of the stream, as far as it came).
fn parse(data: &[u8], head_only: bool, at_end: bool) -> Option<RawResponse> {
    let mut data = data;
    loop {
        let end = data.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = &data[..end];
        let rest = &data[end + 4..];
        let mut lines = head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let status_line = lines.next()?;
        let status: u16 = std::str::from_utf8(status_line.get(9..12)?).ok()?.parse().ok()?;
        let headers: Vec<(String, Vec<u8>)> = lines
            .filter_map(|line| {
                let colon = line.iter().position(|&b| b == b':')?;
                let name = String::from_utf8_lossy(&line[..colon]).trim().to_owned();
                let value = line[colon + 1..].trim_ascii().to_vec();
                Some((name, value))
            })
            .collect();
        if (100..200).contains(&status) && status != 101 {
            // An interim answer (100 Continue): the real one follows.
            data = rest;
            continue;
        }
        let response = |body: Vec<u8>| Some(RawResponse { status, headers: headers.clone(), body });
        if head_only || status == 101 || status == 204 || status == 304 {
            return response(Vec::new());
        }
        let value = |name: &str| {
            headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| String::from_utf8_lossy(v))
        };
        if value("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
            return match dechunk(rest) {
                Some(body) => response(body),
                None if at_end => response(rest.to_vec()),
                None => None,
            };
        }
        if let Some(length) = value("content-length").and_then(|v| v.trim().parse::<usize>().ok()) {
            if rest.len() >= length {
                return response(rest[..length].to_vec());
            }
            return if at_end { response(rest.to_vec()) } else { None };
        }
        return if at_end { response(rest.to_vec()) } else { None };
    }
}

/// The body of a complete chunked encoding, or `None` while incomplete.
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        if data.len() < size + 2 {
            return None;
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_on_the_wire_are_the_ones_given() {
        let request = RawRequest::new("get", b"/a/%2e%2e/\xC3".to_vec()).header("X_Auth_Subject", b"v\xE9".to_vec());
        assert_eq!(
            request.to_bytes("127.0.0.1:1"),
            b"get /a/%2e%2e/\xC3 HTTP/1.1\r\nHost: 127.0.0.1:1\r\nX_Auth_Subject: v\xE9\r\nConnection: close\r\n\r\n"
        );
        let old = RawRequest::new("GET", "/").http10();
        assert_eq!(old.to_bytes("h"), b"GET / HTTP/1.0\r\nConnection: close\r\n\r\n");
        assert_eq!(request.describe(), "get /a/%2e%2e/\\xC3 | X_Auth_Subject: v\\xE9");
    }

    #[test]
    fn framing() {
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        assert_eq!(parse(chunked, false, false).unwrap().body, b"abc");
        assert!(parse(&chunked[..chunked.len() - 5], false, false).is_none());
        let sized = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nX-A: b\r\n\r\nno";
        let response = parse(sized, false, false).unwrap();
        assert_eq!((response.status, response.body.as_slice()), (404, &b"no"[..]));
        assert_eq!(response.header("x-a"), Some(&b"b"[..]));
        assert_eq!(parse(b"HTTP/1.1 101 Switching\r\nUpgrade: h2c\r\n\r\n", false, false).unwrap().status, 101);
        assert!(parse(b"HTTP/1.0 200 OK\r\n\r\nbody", false, false).is_none());
        assert_eq!(parse(b"HTTP/1.0 200 OK\r\n\r\nbody", false, true).unwrap().body, b"body");
    }
}

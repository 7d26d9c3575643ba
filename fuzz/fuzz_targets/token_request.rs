//! The dev issuer's token endpoint: the first byte picks the content type and whether the first line is an
//! `Authorization` header value; the rest is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_fuzz::RouterFixture;
use portcullis_issuer::{DevIssuer, Tenant};
use std::sync::OnceLock;

fn fixture() -> &'static RouterFixture {
    static FIXTURE: OnceLock<RouterFixture> = OnceLock::new();
    RouterFixture::get_or_init(&FIXTURE, || {
        let issuer = DevIssuer::new(Tenant::demo("http://127.0.0.1:3000/callback"), "http://127.0.0.1:4000/").unwrap();
        portcullis_issuer::router(issuer)
    })
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let Some((&selector, rest)) = data.split_first() else { return };
    let content_type = match selector % 3 {
        0 => "application/x-www-form-urlencoded",
        1 => "application/json",
        _ => "text/plain",
    };
    let (authorization, body) = match (selector & 4 != 0, rest.iter().position(|&b| b == b'\n')) {
        (true, Some(at)) => (Some(&rest[..at]), &rest[at + 1..]),
        _ => (None, rest),
    };
    let mut request = http::Request::post("/oauth/token").header("content-type", content_type);
    if let Some(value) = authorization.and_then(|v| http::HeaderValue::from_bytes(v).ok()) {
        request = request.header("authorization", value);
    }
    let request = request.body(axum::body::Body::from(body.to_vec())).unwrap();
    let response = fixture.call(request);
    // Every malformed request is the client's fault: a 4xx, never a server error.
    assert!(!response.status().is_server_error(), "{}", response.status());
});

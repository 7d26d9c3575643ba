//! JOSE header parsing: the input is the decoded header segment of an otherwise well-formed token.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::__internals::base64url;
use portcullis::__internals::{JwsPolicy, UnverifiedJws};

fuzz_target!(|data: &[u8]| {
    let token = format!("{}.e30.c2lnbmF0dXJl", base64url::encode(data));
    if let Ok(jws) = UnverifiedJws::parse(&token, &JwsPolicy::default()) {
        let header = jws.header();
        let _ = (header.alg(), header.kid(), header.typ(), header.raw().len());
    }
});

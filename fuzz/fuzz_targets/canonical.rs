//! Request targets as a client or a front proxy sends them (any bytes): split, canonicalized, never a panic; an
//! accepted path's canonical form is accepted again unchanged, and `was_canonical` says exactly whether the input
//! already was it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_gateway::__internals::{canonicalize, split_target};

fuzz_target!(|data: &[u8]| {
    let Ok((path, _query)) = split_target(data) else { return };
    let Ok(first) = canonicalize(path) else { return };
    assert_eq!(first.was_canonical, first.path.as_str().as_bytes() == path);
    let again = canonicalize(first.path.as_str().as_bytes()).expect("a canonical path is accepted");
    assert_eq!(again.path, first.path);
    assert!(again.was_canonical);
});

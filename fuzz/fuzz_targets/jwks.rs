//! JWK Set parsing, as a key set fetched from the network is parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::KeySet;

fuzz_target!(|data: &[u8]| {
    if let Ok(set) = KeySet::from_jwks_json_bounded(data, 128) {
        for key in set.keys() {
            let _ = (key.kid(), format!("{key:?}"));
        }
        for skipped in set.skipped() {
            let _ = skipped.to_string();
        }
        let _ = set.select(None);
    }
});

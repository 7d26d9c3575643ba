//! Compact token parsing and full verification. The first byte picks the shape: 0 signs the rest as the payload
//! with the key the verifier trusts (so claim checks see arbitrary JSON behind a valid signature), 1 signs it as
//! the header, anything else is the token text itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::clock::ManualClock;
use portcullis::signing::SigningKey;
use portcullis::{Algorithm, KeySet, Verifier};
use std::sync::{Arc, OnceLock};

struct Fixture {
    key: SigningKey,
    verifier: Verifier,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let key = SigningKey::generate(Algorithm::EdDSA, Some("fuzz".into())).unwrap();
        let jwks = serde_json::json!({ "keys": [key.public_jwk()] }).to_string();
        let verifier = Verifier::builder()
            .issuer("https://issuer.example/")
            .audience("https://api.example")
            .keys(KeySet::from_jwks_json(jwks.as_bytes()).unwrap())
            .clock(Arc::new(ManualClock::at_unix(1_700_000_000)))
            .build()
            .unwrap();
        Fixture { key, verifier }
    })
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let token = match data.split_first() {
        Some((0, payload)) => fixture.key.sign_parts(br#"{"alg":"EdDSA","kid":"fuzz"}"#, payload).unwrap(),
        Some((1, header)) => fixture.key.sign_parts(header, br#"{"sub":"x"}"#).unwrap(),
        _ => String::from_utf8_lossy(data).into_owned(),
    };
    if let Err(error) = fixture.verifier.verify(&token) {
        // Every refusal renders as a safe header value.
        let _ = error.www_authenticate("api");
        let _ = error.to_string();
    }
});

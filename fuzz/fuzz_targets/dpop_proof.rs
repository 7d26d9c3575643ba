//! DPoP proofs (RFC 9449): first byte 0, an `htu` to normalize; 1, a whole proof; otherwise the claims of a proof
//! signed by a fixed Ed25519 key, so every claim check sees arbitrary JSON behind a valid signature.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::Algorithm;
use portcullis::clock::ManualClock;
use portcullis::dpop::{DpopVerifier, Htu, ProofExpectations};
use portcullis::signing::SigningKey;
use std::sync::{Arc, OnceLock};

/// The instant the fixture's clock shows; seed claims use it as `iat`.
const NOW: u64 = 1_700_000_000;
const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.e30.c2ln";

struct Fixture {
    verifier: DpopVerifier,
    key: SigningKey,
    header: Vec<u8>,
    base: Htu,
    htu: Htu,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let verifier = DpopVerifier::builder()
            .clock(Arc::new(ManualClock::at_unix(NOW)))
            .nonce_secret(&[7; 32])
            .replay_capacity(1_000)
            .build()
            .unwrap();
        let key = SigningKey::generate(Algorithm::EdDSA, None).unwrap();
        let header = serde_json::json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": key.public_jwk()});
        Fixture {
            verifier,
            key,
            header: serde_json::to_vec(&header).unwrap(),
            base: Htu::parse("https://api.example.com/v1").unwrap(),
            htu: Htu::parse("https://api.example.com/v1/orders").unwrap(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let fixture = fixture();
    let expected = ProofExpectations { method: "POST", htu: &fixture.htu, access_token: Some(TOKEN), jkt: None };
    match selector {
        0 => {
            let text = String::from_utf8_lossy(rest);
            if let Ok(htu) = Htu::parse(&text) {
                let again = Htu::parse(htu.as_str()).expect("a normalized htu parses again");
                assert_eq!(again.as_str(), htu.as_str(), "normalizing an htu twice changes it");
            }
            if let Ok(joined) = Htu::join(&fixture.base, &text) {
                assert!(joined.as_str().starts_with(fixture.base.as_str()), "a joined path left the base path");
            }
        }
        1 => {
            let text = String::from_utf8_lossy(rest);
            if let Err(error) = fixture.verifier.check_proof(&text, &expected) {
                let _ = error.www_authenticate("api");
            }
        }
        _ => {
            let proof = fixture.key.sign_parts(&fixture.header, rest).unwrap();
            if let Err(error) = fixture.verifier.check_proof(&proof, &expected) {
                let _ = error.www_authenticate("api");
            }
        }
    }
});

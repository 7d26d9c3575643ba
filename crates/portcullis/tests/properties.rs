//! Properties over generated inputs: base64url is strict and canonical, and time claims follow one simple model
//! for any value (huge, negative, fractional), any clock and any leeway, without overflow or panic.
#![allow(clippy::unwrap_used)]

use portcullis::__internals::base64url;
use portcullis::clock::ManualClock;
use portcullis::signing::SigningKey;
use portcullis::{Algorithm, KeySet, Reason, Verifier};
use portcullis_testkit::keys;
use proptest::prelude::*;
use serde_json::{Value, json};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const ISSUER: &str = "https://issuer.example/";
const AUDIENCE: &str = "https://api.example";
/// 2^53: NumericDates must be below it.
const LIMIT: f64 = 9_007_199_254_740_992.0;

proptest! {
    #[test]
    fn base64url_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let text = base64url::encode(&bytes);
        prop_assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        prop_assert_eq!(base64url::decode(&text), Some(bytes));
    }

    /// Whatever decodes is the one canonical encoding of what it decodes to: no padding, no second alphabet, no
    /// whitespace, no stray trailing bits — a token cannot be altered without changing its text.
    #[test]
    fn base64url_accepts_only_canonical_text(text in "[A-Za-z0-9_=+/ \\-]{0,40}") {
        if let Some(bytes) = base64url::decode(&text) {
            prop_assert_eq!(base64url::encode(&bytes), text);
        }
    }

    #[test]
    fn base64url_refuses_padding_and_the_standard_alphabet(
        bytes in proptest::collection::vec(any::<u8>(), 1..60),
        intruder in prop::sample::select(vec!['=', '+', '/', ' ', '\n', '.']),
        at in any::<prop::sample::Index>(),
    ) {
        let mut text = base64url::encode(&bytes);
        text.insert(at.index(text.len() + 1), intruder);
        prop_assert_eq!(base64url::decode(&text), None);
    }

    #[test]
    fn time_claims_follow_the_model(
        exp in numeric(),
        nbf in prop::option::of(numeric()),
        now in 0u64..(1 << 40),
        leeway in 0u64..(7 * 86_400),
    ) {
        let mut claims = json!({ "iss": ISSUER, "aud": AUDIENCE, "exp": exp });
        if let Some(nbf) = &nbf {
            claims["nbf"] = nbf.clone();
        }
        let token = key().sign_token(&claims, None).unwrap();
        let verifier = Verifier::builder()
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .keys(keys().clone())
            .leeway(Duration::from_secs(leeway))
            .clock(Arc::new(ManualClock::at_unix(now)))
            .build()
            .unwrap();
        let outcome = verifier.verify(&token).map(|_| ()).map_err(|e| e.reason());
        prop_assert_eq!(outcome, expected(&exp, nbf.as_ref(), now as f64, leeway as f64));
    }
}

/// A JSON number as a NumericDate claim might carry it: any integer from far below zero to far beyond 2^53, or a
/// finite fraction of any size.
fn numeric() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0i64..(1 << 41)).prop_map(|n| json!(n)),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        (0.0f64..2e12).prop_map(|x| json!(x)),
        any::<f64>().prop_filter("JSON has no NaN or infinity", |x| x.is_finite()).prop_map(|x| json!(x)),
    ]
}

/// The model: out-of-range dates are invalid claims; then expiry; then not-before, each with the leeway.
fn expected(exp: &Value, nbf: Option<&Value>, now: f64, leeway: f64) -> Result<(), Reason> {
    let in_range = |v: &Value| v.as_f64().filter(|x| (0.0..LIMIT).contains(x));
    let exp = in_range(exp).ok_or(Reason::ClaimInvalid)?;
    let nbf = match nbf {
        Some(value) => Some(in_range(value).ok_or(Reason::ClaimInvalid)?),
        None => None,
    };
    if now >= exp + leeway {
        return Err(Reason::TokenExpired);
    }
    if nbf.is_some_and(|nbf| now + leeway < nbf) {
        return Err(Reason::TokenNotYetValid);
    }
    Ok(())
}

fn key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| keys::generate(Algorithm::EdDSA, "k"))
}

fn keys() -> &'static Arc<KeySet> {
    static KEYS: OnceLock<Arc<KeySet>> = OnceLock::new();
    KEYS.get_or_init(|| Arc::new(keys::key_set(&[key()])))
}

proptest! {
    /// Any text either is refused or normalizes to an `htu` that normalizes to itself: normalization never panics,
    /// and two spellings that normalize alike compare alike on both sides of a DPoP check.
    #[test]
    fn htu_normalization_is_total_and_idempotent(
        scheme in prop::sample::select(vec!["http", "HTTPS", "https", "ftp", ""]),
        host in "[A-Za-z0-9.\\-\\[\\]:@%]{0,20}",
        path in "[A-Za-z0-9/.%~!$&'()*+,;=:@ \\-_?#\u{e9}]{0,40}",
    ) {
        let uri = format!("{scheme}://{host}{path}");
        if let Ok(htu) = portcullis::dpop::Htu::parse(&uri) {
            let again = portcullis::dpop::Htu::parse(htu.as_str()).unwrap();
            prop_assert_eq!(again.as_str(), htu.as_str());
            prop_assert!(!htu.as_str().contains(['?', '#', ' ']));
            prop_assert!(htu.path().starts_with('/'));
            prop_assert!(!htu.path().split('/').any(|segment| segment == "." || segment == ".."));
        }
    }
}

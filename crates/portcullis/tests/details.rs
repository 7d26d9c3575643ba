//! The structured detail behind each refusal, and the pipeline that verification and explanation share.
#![allow(clippy::unwrap_used)]

use portcullis::clock::{ManualClock, UnixTime};
use portcullis::error::Detail;
use portcullis::signing::SigningKey;
use portcullis::{Algorithm, KeySet, Reason, Verifier};
use serde_json::{Value, json};
use std::error::Error as _;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const NOW: u64 = 1_800_000_000;
const ISSUER: &str = "https://tenant.example.com/";
const AUDIENCE: &str = "https://api.example.com";

fn signer() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate(Algorithm::ES256, Some("ec".into())).unwrap())
}

fn verifier_with(build: impl FnOnce(portcullis::VerifierBuilder) -> portcullis::VerifierBuilder) -> Verifier {
    let jwks = json!({ "keys": [signer().public_jwk()] }).to_string();
    build(
        Verifier::builder()
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .keys(KeySet::from_jwks_json(jwks.as_bytes()).unwrap())
            .clock(Arc::new(ManualClock::at_unix(NOW))),
    )
    .build()
    .unwrap()
}

fn verifier() -> Verifier {
    verifier_with(|b| b)
}

fn claims() -> Value {
    json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": "auth0|alice", "iat": NOW - 10, "exp": NOW + 3600 })
}

fn token(claims: &Value) -> String {
    signer().sign_token(claims, None).unwrap()
}

fn with(name: &str, value: Value) -> String {
    let mut c = claims();
    c[name] = value;
    token(&c)
}

#[test]
fn an_expired_token_carries_its_exp_the_clock_and_the_leeway() {
    let exp = NOW as f64 - 90.5;
    let err = verifier().verify(&with("exp", json!(exp))).unwrap_err();
    assert_eq!(err.reason(), Reason::TokenExpired);
    assert_eq!(err.description(), "token expired 1m 31s ago");
    match err.detail() {
        Detail::Expired { exp: found, now, leeway, .. } => {
            assert_eq!(*found, exp);
            assert_eq!(*now, UnixTime::from_secs(NOW));
            assert_eq!(*leeway, Duration::from_secs(60));
        }
        other => panic!("expected Expired, got {other:?}"),
    }
}

#[test]
fn time_details() {
    let err = verifier().verify(&with("nbf", json!(NOW + 600))).unwrap_err();
    assert!(
        matches!(err.detail(), Detail::NotYetValid { nbf, now, .. } if *nbf == (NOW + 600) as f64 && now.as_secs() == NOW),
        "{:?}",
        err.detail()
    );
    let err = verifier().verify(&with("iat", json!(NOW + 600))).unwrap_err();
    assert_eq!(err.reason(), Reason::ClaimInvalid);
    assert!(matches!(err.detail(), Detail::IssuedInFuture { iat, .. } if *iat == (NOW + 600) as f64));
    let old = verifier_with(|b| b.max_age(Duration::from_secs(300)));
    let err = old.verify(&with("iat", json!(NOW - 3600))).unwrap_err();
    assert_eq!(err.reason(), Reason::TokenExpired);
    assert!(
        matches!(err.detail(), Detail::TooOld { iat, max_age, .. }
            if *iat == (NOW - 3600) as f64 && *max_age == Duration::from_secs(300)),
        "{:?}",
        err.detail()
    );
}

#[test]
fn claim_details_name_what_the_token_carried() {
    let err = verifier().verify(&with("iss", json!("https://evil.example/"))).unwrap_err();
    assert!(matches!(err.detail(), Detail::IssuerMismatch { found, .. } if found == "https://evil.example/"));
    let err = verifier().verify(&with("aud", json!(["a", "b"]))).unwrap_err();
    assert!(matches!(err.detail(), Detail::AudienceMismatch { found, .. } if found == &["a", "b"]));
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    let err = verifier().verify(&token(&c)).unwrap_err();
    assert_eq!(err.reason(), Reason::ClaimMissing);
    assert!(matches!(err.detail(), Detail::ClaimMissing { claim, .. } if claim == "exp"));
    let err = verifier_with(|b| b.require_claim("org.id")).verify(&token(&claims())).unwrap_err();
    assert!(matches!(err.detail(), Detail::ClaimMissing { claim, .. } if claim == "org.id"));
    let err = verifier().verify(&with("exp", json!("soon"))).unwrap_err();
    assert_eq!(err.reason(), Reason::ClaimInvalid);
    assert!(matches!(err.detail(), Detail::ClaimInvalid { claim, .. } if claim == "exp"));
    let err = verifier_with(|b| b.allowed_client("spa")).verify(&with("azp", json!("other"))).unwrap_err();
    assert!(matches!(err.detail(), Detail::ClientNotAllowed { client, .. } if client == "other"));
}

#[test]
fn key_and_algorithm_details() {
    let stranger = SigningKey::generate(Algorithm::ES256, Some("elsewhere".into())).unwrap();
    let err = verifier().verify(&stranger.sign_token(&claims(), None).unwrap()).unwrap_err();
    assert_eq!(err.reason(), Reason::KeyNotFound);
    assert!(matches!(err.detail(), Detail::KeyNotFound { kid: Some(kid), .. } if kid == "elsewhere"));
    let header = portcullis::__internals::base64url::encode(br#"{"alg":"HS256","kid":"ec"}"#);
    let payload = portcullis::__internals::base64url::encode(claims().to_string());
    let err = verifier().verify(&format!("{header}.{payload}.c2ln")).unwrap_err();
    assert_eq!(err.reason(), Reason::AlgorithmNotAllowed);
    assert!(matches!(err.detail(), Detail::AlgorithmNotAllowed { alg, .. } if alg == "HS256"));
}

#[test]
fn a_malformed_claim_set_chains_the_parser_error() {
    let header = portcullis::__internals::base64url::encode(br#"{"alg":"ES256","kid":"ec"}"#);
    let payload = portcullis::__internals::base64url::encode(br#"{"exp": 1, "exp": 2}"#);
    let signature = signer().sign(format!("{header}.{payload}").as_bytes()).unwrap();
    let token = format!("{header}.{payload}.{}", portcullis::__internals::base64url::encode(signature));
    let err = verifier().verify(&token).unwrap_err();
    assert_eq!(err.reason(), Reason::TokenMalformed);
    let source = err.source().expect("the JSON parser's error is the source");
    assert!(err.description().ends_with(&source.to_string()), "{err} / {source}");
}

#[test]
fn explain_and_verify_agree_on_every_token() {
    let stranger = SigningKey::generate(Algorithm::ES256, Some("elsewhere".into())).unwrap();
    let mut tokens = vec![
        "not-a-token".to_owned(),
        "a.b.c.d.e".to_owned(),
        token(&claims()),
        with("exp", json!(NOW - 3600)),
        with("iss", json!("https://evil.example/")),
        with("aud", json!("https://other.example")),
        with("nbf", json!(NOW + 3600)),
        stranger.sign_token(&claims(), None).unwrap(),
    ];
    let mut both = claims();
    both["aud"] = json!("x");
    both["exp"] = json!(NOW - 3600);
    tokens.push(token(&both));
    let verifier = verifier_with(|b| b.without_cache());
    for token in &tokens {
        let verified = verifier.verify(token).map(|t| t.subject().map(str::to_owned));
        let report = verifier.explain(token);
        let explained = report.verdict.as_ref().map(|t| t.subject().map(str::to_owned)).map_err(Clone::clone);
        assert_eq!(verified, explained, "{token}");
        let failed: Vec<_> = report.steps.iter().filter(|s| s.outcome.is_err()).collect();
        assert_eq!(failed.is_empty(), verified.is_ok(), "{token}");
        if let (Some(first), Err(err)) = (failed.first(), &verified) {
            assert_eq!(first.outcome.as_ref().unwrap_err(), err, "the first failed step is the verdict");
        }
    }
    let report = verifier.explain(&token(&both));
    let failed: Vec<_> = report.steps.iter().filter(|s| s.outcome.is_err()).map(|s| s.check.label()).collect();
    assert_eq!(failed, ["audience", "expiry"], "every claim check runs in a report");
}

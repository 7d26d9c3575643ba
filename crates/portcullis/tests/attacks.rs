//! Attack classes from RFC 8725 and the JWT CVE history, each refused with the right reason.
#![allow(clippy::unwrap_used)]

use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use portcullis::__internals::base64url;
use portcullis::clock::ManualClock;
use portcullis::signing::SigningKey;
use portcullis::{Algorithm, KeySet, Reason, Verifier};
use portcullis_testkit::claims::access;
use portcullis_testkit::keys::{self, hex, verifier_at};
use serde_json::{Value, json};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const NOW: u64 = 1_800_000_000;
const ISSUER: &str = "https://tenant.example.com/";
const AUDIENCE: &str = "https://api.example.com";

struct Keys {
    rsa: SigningKey,
    ec: SigningKey,
    ed: SigningKey,
    jwks: String,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let rsa = keys::generate(Algorithm::RS256, "rsa");
        let ec = keys::generate(Algorithm::ES256, "ec");
        let ed = keys::generate(Algorithm::EdDSA, "ed");
        let jwks = keys::jwks(&[&rsa, &ec, &ed]);
        Keys { rsa, ec, ed, jwks }
    })
}

fn verifier_for(jwks: &str) -> Verifier {
    verifier_at(ISSUER, AUDIENCE, KeySet::from_jwks_json(jwks.as_bytes()).unwrap(), NOW)
}

fn verifier() -> Verifier {
    verifier_for(&keys().jwks)
}

fn claims() -> Value {
    access(ISSUER, AUDIENCE, NOW - 10, NOW + 3600)
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64url::encode(bytes)
}

fn reason(token: &str) -> Reason {
    verifier().verify(token).unwrap_err().reason()
}

fn signed_claims(claims: &Value) -> String {
    keys().rsa.sign_token(claims, None).unwrap()
}

#[test]
fn baseline_tokens_from_each_key_verify() {
    for key in [&keys().rsa, &keys().ec, &keys().ed] {
        let token = key.sign_token(&claims(), None).unwrap();
        let verified = verifier().verify(&token).unwrap();
        assert_eq!(verified.key().kid(), key.kid());
    }
}

#[test]
fn alg_none_in_every_spelling() {
    let payload = b64(claims().to_string());
    for alg in ["none", "None", "NONE", "nOnE"] {
        for kid in [None, Some("rsa")] {
            let mut header = json!({ "alg": alg, "typ": "JWT" });
            if let Some(kid) = kid {
                header["kid"] = json!(kid);
            }
            let header = b64(header.to_string());
            for signature in ["", "c2ln"] {
                let token = format!("{header}.{payload}.{signature}");
                let err = verifier().verify(&token).unwrap_err();
                assert_eq!(err.reason(), Reason::AlgorithmNotAllowed, "{alg}: {err}");
            }
        }
    }
    assert!(verifier().verify("eyJhbGciOiJub25lIn0.e30.").unwrap_err().description().contains("alg none"));
}

#[test]
fn hs256_signed_with_the_rsa_public_key() {
    let jwk = keys().rsa.public_jwk();
    let header = b64(json!({ "alg": "HS256", "typ": "JWT", "kid": "rsa" }).to_string());
    let signing_input = format!("{header}.{}", b64(claims().to_string()));
    // Try every public form an attacker might use as the HMAC secret.
    let secrets: Vec<Vec<u8>> = vec![
        jwk.to_string().into_bytes(),
        base64url::decode(jwk["n"].as_str().unwrap()).unwrap(),
        jwk["n"].as_str().unwrap().as_bytes().to_vec(),
    ];
    for secret in secrets {
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &secret), signing_input.as_bytes());
        let token = format!("{signing_input}.{}", b64(tag.as_ref()));
        let err = verifier().verify(&token).unwrap_err();
        assert_eq!(err.reason(), Reason::AlgorithmNotAllowed);
        assert!(err.description().contains("HMAC"), "{err}");
    }
}

fn es256_token_with_signature(signature: &[u8]) -> String {
    let header = b64(json!({ "alg": "ES256", "typ": "JWT", "kid": "ec" }).to_string());
    format!("{header}.{}.{}", b64(claims().to_string()), b64(signature))
}

#[test]
fn psychic_ecdsa_signatures_r_s_zero_or_order() {
    // CVE-2022-21449: r = s = 0 verified everything in some Java releases.
    assert_eq!(reason(&es256_token_with_signature(&[0u8; 64])), Reason::SignatureInvalid);
    // r = s = n (the P-256 group order) reduce to zero as well.
    let n = hex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
    let mut rs = n.clone();
    rs.extend_from_slice(&n);
    assert_eq!(reason(&es256_token_with_signature(&rs)), Reason::SignatureInvalid);
    let mut one_zero = vec![0u8; 32];
    one_zero.extend_from_slice(&[1u8; 32]);
    assert_eq!(reason(&es256_token_with_signature(&one_zero)), Reason::SignatureInvalid);
}

#[test]
fn der_encoded_ecdsa_signature_is_refused() {
    // A genuine signature by the real key, but DER-encoded (as some libraries emit) instead of r||s.
    let pkcs8 = keys().ec.to_pkcs8().unwrap();
    let der_signer = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8).unwrap();
    let header = b64(json!({ "alg": "ES256", "typ": "JWT", "kid": "ec" }).to_string());
    let signing_input = format!("{header}.{}", b64(claims().to_string()));
    let der = der_signer.sign(&SystemRandom::new(), signing_input.as_bytes()).unwrap();
    assert_eq!(der.as_ref()[0], 0x30, "DER SEQUENCE");
    let token = format!("{signing_input}.{}", b64(der.as_ref()));
    let err = verifier().verify(&token).unwrap_err();
    assert_eq!(err.reason(), Reason::SignatureInvalid);
    assert!(err.description().contains("must be 64 bytes"), "{err}");
}

#[test]
fn embedded_keys_and_key_urls_are_never_used() {
    let attacker = SigningKey::generate(Algorithm::RS256, None).unwrap();
    let attacker_jwk = attacker.public_jwk();
    let headers = [
        json!({ "jwk": attacker_jwk }),
        json!({ "jwk": attacker_jwk, "kid": "rsa" }),
        json!({ "jku": "https://attacker.example/jwks.json", "kid": "rsa" }),
        json!({ "x5u": "https://attacker.example/cert.pem", "kid": "rsa" }),
        json!({ "x5c": ["MIIB"], "kid": "rsa" }),
    ];
    for header in headers {
        let token = attacker.sign_token(&claims(), header.as_object()).unwrap();
        let err = verifier().verify(&token).unwrap_err();
        assert!(matches!(err.reason(), Reason::SignatureInvalid | Reason::KeyNotFound), "{header}: {err}");
    }
    // Even against a single-key set (where a kid-less token selects the only key), the embedded key is ignored.
    let single = json!({ "keys": [keys().rsa.public_jwk()] }).to_string();
    let token = attacker.sign_token(&claims(), json!({ "jwk": attacker_jwk }).as_object()).unwrap();
    assert_eq!(verifier_for(&single).verify(&token).unwrap_err().reason(), Reason::SignatureInvalid);
}

#[test]
fn critical_and_unencoded_payload_headers() {
    let cases = [
        json!({ "crit": ["exp"], "exp": 1 }),
        json!({ "crit": ["urn:example:unknown"] }),
        json!({ "crit": [] }),
        json!({ "crit": "b64" }),
        json!({ "crit": ["b64"], "b64": false }),
        json!({ "b64": false }),
    ];
    for header in cases {
        let token = keys().rsa.sign_token(&claims(), header.as_object()).unwrap();
        assert_eq!(reason(&token), Reason::HeaderInvalid, "{header}");
    }
}

#[test]
fn duplicate_members_in_header_or_claims() {
    let key = &keys().rsa;
    let payload = claims().to_string();
    let header = br#"{"alg":"RS256","kid":"rsa","alg":"RS256"}"#;
    assert_eq!(reason(&key.sign_parts(header, payload.as_bytes()).unwrap()), Reason::TokenMalformed);
    let header = br#"{"alg":"RS256","kid":"rsa","kid":"ec"}"#;
    assert_eq!(reason(&key.sign_parts(header, payload.as_bytes()).unwrap()), Reason::TokenMalformed);
    // A second "aud" after a valid one: parsers disagree about which wins.
    let header = br#"{"alg":"RS256","kid":"rsa"}"#;
    let doubled = payload
        .replacen('{', &format!(r#"{{"aud":"{AUDIENCE}","#), 1)
        .replace(&format!(r#""aud":"{AUDIENCE}""#), r#""aud":"https://evil.example""#);
    let doubled = doubled.replacen(r#""aud":"https://evil.example""#, &format!(r#""aud":"{AUDIENCE}""#), 1);
    assert_eq!(doubled.matches("\"aud\"").count(), 2, "{doubled}");
    assert_eq!(reason(&key.sign_parts(header, doubled.as_bytes()).unwrap()), Reason::TokenMalformed);
}

#[test]
fn algorithm_must_match_the_key() {
    // The EC key's kid with an RSA algorithm, signed by the RSA key.
    let rsa_as_ec = keys().rsa.sign_token(&claims(), json!({ "kid": "ec" }).as_object()).unwrap();
    assert_eq!(reason(&rsa_as_ec), Reason::AlgorithmNotAllowed);
    // The RSA key declares RS256; a PS256 signature by the same private key is refused.
    let pss = SigningKey::from_pkcs8(Algorithm::PS256, Some("rsa".into()), &keys().rsa.to_pkcs8().unwrap()).unwrap();
    let err = verifier().verify(&pss.sign_token(&claims(), None).unwrap()).unwrap_err();
    assert_eq!(err.reason(), Reason::AlgorithmNotAllowed);
    assert!(err.description().contains("PS256"), "{err}");
    // Ed25519 under ES256's name.
    let ed_as_es = keys().ed.sign_token(&claims(), json!({ "alg": "ES256" }).as_object()).unwrap();
    assert_eq!(reason(&ed_as_es), Reason::AlgorithmNotAllowed);
    // A key without alg is usable only with an allowlist.
    let mut bare = keys().rsa.public_jwk();
    bare.as_object_mut().unwrap().remove("alg");
    let bare_set = json!({ "keys": [bare] }).to_string();
    let token = signed_claims(&claims());
    assert_eq!(verifier_for(&bare_set).verify(&token).unwrap_err().reason(), Reason::AlgorithmNotAllowed);
    let allowlisted = Verifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .algorithms([Algorithm::RS256])
        .keys(KeySet::from_jwks_json(bare_set.as_bytes()).unwrap())
        .clock(Arc::new(ManualClock::at_unix(NOW)))
        .build()
        .unwrap();
    assert!(allowlisted.verify(&token).is_ok());
    assert_eq!(
        allowlisted.verify(&pss.sign_token(&claims(), None).unwrap()).unwrap_err().reason(),
        Reason::AlgorithmNotAllowed
    );
}

#[test]
fn malformed_and_non_canonical_base64url() {
    let token = signed_claims(&claims());
    let (signing_input, signature) = token.rsplit_once('.').unwrap();
    let (header, payload) = signing_input.split_once('.').unwrap();
    let variants = [
        format!("{header}=.{payload}.{signature}"),
        format!("{header}.{payload}.{signature}="),
        format!("{header}.{payload}.{signature}=="),
        format!("{header}.{payload} .{signature}"),
        format!("{header}.{payload}.\n{signature}"),
        format!("{header}.{payload}.{}", signature.replacen(|c: char| c.is_ascii_alphanumeric(), "+", 1)),
        format!("{header}.{payload}.{}", signature.replacen(|c: char| c.is_ascii_alphanumeric(), "/", 1)),
        format!("{header}.{payload}.{signature}%"),
    ];
    for variant in &variants {
        assert_eq!(reason(variant), Reason::TokenMalformed, "{variant}");
    }
    // Non-canonical trailing bits: the same bytes, spelled differently. A 256-byte RSA signature leaves 4 spare
    // bits in its last base64url character, so setting the lowest one changes the spelling but not the bytes.
    let last = signature.chars().last().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let index = alphabet.find(last).unwrap();
    let sibling = alphabet.chars().nth(index ^ 1).unwrap();
    let malleable = format!("{signing_input}.{}{sibling}", &signature[..signature.len() - 1]);
    assert_eq!(reason(&malleable), Reason::TokenMalformed);
}

#[test]
fn wrong_segment_counts() {
    let token = signed_claims(&claims());
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(reason(&parts[..2].join(".")), Reason::TokenMalformed);
    assert_eq!(reason(&format!("{token}.")), Reason::TokenMalformed);
    assert_eq!(reason(&format!("{token}.x.y")), Reason::TokenMalformed);
    assert!(verifier().verify("a.b.c.d.e").unwrap_err().description().contains("encrypted"));
    assert_eq!(reason(""), Reason::TokenMalformed);
    assert_eq!(reason(".."), Reason::TokenMalformed);
    // An empty payload is well-formed base64url; it fails at the signature, before any JSON is parsed.
    assert_eq!(reason(&format!("{}..{}", parts[0], parts[2])), Reason::SignatureInvalid);
}

#[test]
fn malformed_time_claims() {
    let bad = [json!("1800003600"), json!(-1), json!(1e20), json!(9_007_199_254_740_992u64), json!(null), json!(true)];
    for name in ["exp", "nbf", "iat"] {
        for value in &bad {
            let mut c = claims();
            c[name] = value.clone();
            let err = verifier().verify(&signed_claims(&c)).unwrap_err();
            assert_eq!(err.reason(), Reason::ClaimInvalid, "{name}={value}: {err}");
        }
    }
    // A number too large for a double is not JSON we accept at all.
    let payload = claims().to_string().replacen(&format!("{}", NOW + 3600), "1e309", 1);
    let token = keys().rsa.sign_parts(br#"{"alg":"RS256","kid":"rsa"}"#, payload.as_bytes()).unwrap();
    assert_eq!(reason(&token), Reason::TokenMalformed);
    // Fractional NumericDates are legal (RFC 7519 §2) and compared exactly, not truncated.
    let strict = Verifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .keys(KeySet::from_jwks_json(keys().jwks.as_bytes()).unwrap())
        .leeway(std::time::Duration::ZERO)
        .clock(Arc::new(ManualClock::at_unix(NOW)))
        .build()
        .unwrap();
    let mut c = claims();
    c["exp"] = json!(NOW as f64 + 0.5);
    assert!(strict.verify(&signed_claims(&c)).is_ok());
    c["exp"] = json!(NOW as f64 - 0.5);
    assert_eq!(strict.verify(&signed_claims(&c)).unwrap_err().reason(), Reason::TokenExpired);
}

#[test]
fn missing_exp_and_time_windows() {
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    let err = verifier().verify(&signed_claims(&c)).unwrap_err();
    assert_eq!(err.reason(), Reason::ClaimMissing);
    assert!(err.description().contains("exp"));

    let at = |exp: u64, nbf: Option<u64>, iat: u64| {
        let mut c = claims();
        c["exp"] = json!(exp);
        c["iat"] = json!(iat);
        if let Some(nbf) = nbf {
            c["nbf"] = json!(nbf);
        }
        verifier().verify(&signed_claims(&c)).map(|_| ()).map_err(|e| e.reason())
    };
    // Leeway is 60 s by default.
    assert_eq!(at(NOW - 59, None, NOW - 100), Ok(()));
    assert_eq!(at(NOW - 60, None, NOW - 100), Err(Reason::TokenExpired));
    assert_eq!(at(NOW + 100, Some(NOW + 60), NOW - 100), Ok(()));
    assert_eq!(at(NOW + 100, Some(NOW + 61), NOW - 100), Err(Reason::TokenNotYetValid));
    assert_eq!(at(NOW + 100, None, NOW + 61), Err(Reason::ClaimInvalid));
}

#[test]
fn issuer_and_audience_are_exact() {
    for iss in [
        "https://tenant.example.com",
        "https://tenant.example.com//",
        "HTTPS://tenant.example.com/",
        "https://tenant.example.com/ ",
    ] {
        let mut c = claims();
        c["iss"] = json!(iss);
        assert_eq!(reason(&signed_claims(&c)), Reason::IssuerMismatch, "{iss}");
    }
    let mut c = claims();
    c["iss"] = json!([ISSUER]);
    assert_eq!(reason(&signed_claims(&c)), Reason::ClaimInvalid);

    let mut c = claims();
    c["aud"] = json!(["https://other.example.com", "https://api.example.com/", "https://tenant.example.com/userinfo"]);
    let err = verifier().verify(&signed_claims(&c)).unwrap_err();
    assert_eq!(err.reason(), Reason::AudienceMismatch);
    assert!(err.description().contains("this API is 'https://api.example.com'"), "{err}");
    c["aud"] = json!(["https://tenant.example.com/userinfo", AUDIENCE]);
    assert!(verifier().verify(&signed_claims(&c)).is_ok());
    c["aud"] = json!([AUDIENCE, 7]);
    assert_eq!(reason(&signed_claims(&c)), Reason::ClaimInvalid);
    c.as_object_mut().unwrap().remove("aud");
    assert_eq!(reason(&signed_claims(&c)), Reason::ClaimMissing);
}

const ISSUER_A: &str = "https://a.example.com/";
const ISSUER_B: &str = "https://b.example.com/";
const AUDIENCE_A: &str = "https://orders.example.com";
const AUDIENCE_B: &str = "https://reports.example.com";

/// A and B each with their own key set and their own audience.
fn two_issuers(builder: portcullis::VerifierBuilder) -> (Verifier, SigningKey, SigningKey) {
    let (key_a, key_b) = (keys::key("a"), keys::key("b"));
    let source = |key: &SigningKey| -> Arc<dyn portcullis::KeySource> {
        Arc::new(portcullis::StaticKeys(Arc::new(keys::key_set(&[key]))))
    };
    let verifier = builder
        .issuer_keys(ISSUER_A, source(&key_a))
        .audience_for(ISSUER_A, AUDIENCE_A)
        .issuer_keys(ISSUER_B, source(&key_b))
        .audience_for(ISSUER_B, AUDIENCE_B)
        .clock(Arc::new(ManualClock::at_unix(NOW)))
        .build()
        .unwrap();
    (verifier, key_a, key_b)
}

fn token_from(key: &SigningKey, iss: &str, aud: Value) -> String {
    key.sign_token(&json!({ "iss": iss, "aud": aud, "sub": "auth0|mallory", "exp": NOW + 3600 }), None).unwrap()
}

#[test]
fn another_issuers_audience_is_refused() {
    for builder in [Verifier::builder(), Verifier::builder().without_cache()] {
        let (verifier, key_a, key_b) = two_issuers(builder);
        assert!(verifier.verify(&token_from(&key_a, ISSUER_A, json!(AUDIENCE_A))).is_ok());
        assert!(verifier.verify(&token_from(&key_b, ISSUER_B, json!(AUDIENCE_B))).is_ok());
        assert!(verifier.verify(&token_from(&key_b, ISSUER_B, json!([AUDIENCE_A, AUDIENCE_B]))).is_ok());

        for aud in [json!(AUDIENCE_A), json!([AUDIENCE_A]), json!([AUDIENCE_A, "https://b.example.com/userinfo"])] {
            let forged = token_from(&key_b, ISSUER_B, aud.clone());
            let err = verifier.verify(&forged).unwrap_err();
            assert_eq!(err.reason(), Reason::AudienceMismatch, "{aud}");
            assert_eq!(err.http_status(), 401);
            assert!(
                err.description().contains(&format!("tokens from '{ISSUER_B}' are accepted for '{AUDIENCE_B}'")),
                "{err}"
            );
            let report = verifier.explain(&forged);
            assert_eq!(report.verdict.unwrap_err().reason(), Reason::AudienceMismatch);
            let hint = report.steps.iter().find_map(|step| step.hint.clone()).unwrap();
            assert!(hint.contains(&format!("audience={AUDIENCE_B}")), "{hint}");
        }
        let err = verifier.verify(&token_from(&key_a, ISSUER_A, json!(AUDIENCE_B))).unwrap_err();
        assert_eq!(err.reason(), Reason::AudienceMismatch);
        assert!(err.description().contains(&format!("accepted for '{AUDIENCE_A}'")), "{err}");
    }
}

#[test]
fn shared_audiences_serve_only_issuers_without_their_own() {
    let key = SigningKey::generate(Algorithm::ES256, Some("k".into())).unwrap();
    let jwks = json!({ "keys": [key.public_jwk()] }).to_string();
    let builder = || {
        Verifier::builder()
            .keys(KeySet::from_jwks_json(jwks.as_bytes()).unwrap())
            .clock(Arc::new(ManualClock::at_unix(NOW)))
    };
    let verifier = builder()
        .issuer(ISSUER_A)
        .audience_for(ISSUER_A, AUDIENCE_A)
        .issuer(ISSUER_B)
        .audience(AUDIENCE_B)
        .build()
        .unwrap();
    assert!(verifier.verify(&token_from(&key, ISSUER_A, json!(AUDIENCE_A))).is_ok());
    assert!(verifier.verify(&token_from(&key, ISSUER_B, json!(AUDIENCE_B))).is_ok());
    assert_eq!(
        verifier.verify(&token_from(&key, ISSUER_A, json!(AUDIENCE_B))).unwrap_err().reason(),
        Reason::AudienceMismatch
    );
    assert_eq!(
        verifier.verify(&token_from(&key, ISSUER_B, json!(AUDIENCE_A))).unwrap_err().reason(),
        Reason::AudienceMismatch
    );

    // Several issuers sharing audiences keep pooling them, as before.
    let pooled = builder().issuer(ISSUER_A).issuer(ISSUER_B).audience(AUDIENCE_A).build().unwrap();
    assert!(pooled.verify(&token_from(&key, ISSUER_B, json!(AUDIENCE_A))).is_ok());

    use portcullis::ConfigError;
    let err = builder().issuer(ISSUER_A).audience_for(ISSUER_B, AUDIENCE_B).build().unwrap_err();
    assert_eq!(err, ConfigError::AudienceForUnknownIssuer(ISSUER_B.into()));
    let err = builder().issuer(ISSUER_A).audience_for(ISSUER_A, AUDIENCE_A).issuer(ISSUER_B).build().unwrap_err();
    assert_eq!(err, ConfigError::IssuerWithoutAudience(ISSUER_B.into()));
    let err = builder().issuer(ISSUER_A).audience_for(ISSUER_A, "").build().unwrap_err();
    assert_eq!(err, ConfigError::Empty("audience"));
    assert_eq!(builder().issuer(ISSUER_A).build().unwrap_err(), ConfigError::MissingAudience);
}

#[test]
fn a_single_issuers_audiences_behave_as_before() {
    let mut c = claims();
    c["aud"] = json!("https://other.example.com");
    let err = verifier().verify(&signed_claims(&c)).unwrap_err();
    assert_eq!(err.reason(), Reason::AudienceMismatch);
    assert_eq!(
        err.description(),
        "audience mismatch: token is for 'https://other.example.com', this API is 'https://api.example.com'"
    );
    assert!(verifier().verify(&signed_claims(&claims())).is_ok());

    // Binding the audience to the only issuer accepts and refuses the same tokens.
    let bound = Verifier::builder()
        .issuer(ISSUER)
        .audience_for(ISSUER, AUDIENCE)
        .keys(KeySet::from_jwks_json(keys().jwks.as_bytes()).unwrap())
        .clock(Arc::new(ManualClock::at_unix(NOW)))
        .build()
        .unwrap();
    assert!(bound.verify(&signed_claims(&claims())).is_ok());
    assert_eq!(bound.verify(&signed_claims(&c)).unwrap_err().reason(), Reason::AudienceMismatch);
}

#[test]
fn oversized_and_deeply_nested_input() {
    let mut c = claims();
    c["padding"] = json!("x".repeat(20_000));
    let err = verifier().verify(&signed_claims(&c)).unwrap_err();
    assert_eq!(err.reason(), Reason::TokenMalformed);
    assert!(err.description().contains("limit"), "{err}");

    let deep = format!(
        r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","exp":{},"x":{}{}}}"#,
        NOW + 60,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let token = keys().rsa.sign_parts(br#"{"alg":"RS256","kid":"rsa"}"#, deep.as_bytes()).unwrap();
    let err = Verifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .keys(KeySet::from_jwks_json(keys().jwks.as_bytes()).unwrap())
        .max_token_len(64 * 1024)
        .clock(Arc::new(ManualClock::at_unix(NOW)))
        .build()
        .unwrap()
        .verify(&token)
        .unwrap_err();
    assert_eq!(err.reason(), Reason::TokenMalformed);
    assert!(err.description().contains("nesting"), "{err}");

    let deep_header = format!(r#"{{"alg":"RS256","x":{}{}}}"#, "[".repeat(100), "]".repeat(100));
    let token = format!("{}.{}.{}", b64(&deep_header), b64(claims().to_string()), b64("sig"));
    assert_eq!(reason(&token), Reason::TokenMalformed);
}

#[test]
fn the_nesting_limit_is_configurable_within_bounds() {
    let with_depth = |levels: usize| {
        Verifier::builder()
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .keys(KeySet::from_jwks_json(keys().jwks.as_bytes()).unwrap())
            .max_json_depth(levels)
            .clock(Arc::new(ManualClock::at_unix(NOW)))
            .build()
    };
    // A claim nested `levels` deep, the claim set counting as level 1.
    let nested_claim = |levels: usize| {
        let inner = format!("{}{}", "[".repeat(levels - 1), "]".repeat(levels - 1));
        let payload = format!(r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","exp":{},"ctx":{inner}}}"#, NOW + 60);
        keys().rsa.sign_parts(br#"{"alg":"RS256","kid":"rsa"}"#, payload.as_bytes()).unwrap()
    };

    let strict = with_depth(4).unwrap();
    assert!(strict.verify(&nested_claim(4)).is_ok());
    let err = strict.verify(&nested_claim(5)).unwrap_err();
    assert_eq!(err.reason(), Reason::TokenMalformed);
    assert!(err.description().contains("nesting deeper than 4 levels"), "{err}");
    // The header obeys the same limit.
    let header = br#"{"alg":"RS256","kid":"rsa","x":{"y":{"z":{"w":[1]}}}}"#;
    let token = keys().rsa.sign_parts(header, claims().to_string().as_bytes()).unwrap();
    assert_eq!(strict.verify(&token).unwrap_err().reason(), Reason::TokenMalformed);
    assert!(with_depth(5).unwrap().verify(&token).is_ok());

    // The default is 64; raised to the ceiling, deeper claims verify and read back whole.
    assert_eq!(verifier().verify(&nested_claim(65)).unwrap_err().reason(), Reason::TokenMalformed);
    let verified = with_depth(100).unwrap().verify(&nested_claim(100)).unwrap();
    assert!(verified.claims()["ctx"].is_array());
    assert_eq!(with_depth(100).unwrap().verify(&nested_claim(101)).unwrap_err().reason(), Reason::TokenMalformed);

    for levels in [0, 1, 101, usize::MAX] {
        assert_eq!(with_depth(levels).unwrap_err(), portcullis::ConfigError::JsonDepth(levels), "{levels}");
    }
}

#[test]
fn a_leeway_long_enough_to_switch_expiry_off_is_refused() {
    let week = portcullis::MAX_LEEWAY.as_secs();
    let expired = keys().rsa.sign_token(&access(ISSUER, AUDIENCE, NOW - week - 7300, NOW - week - 100), None).unwrap();
    let with_leeway = |leeway| {
        Verifier::builder()
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .keys(KeySet::from_jwks_json(keys().jwks.as_bytes()).unwrap())
            .clock(Arc::new(ManualClock::at_unix(NOW)))
            .leeway(leeway)
            .build()
    };
    for leeway in [portcullis::MAX_LEEWAY + Duration::from_secs(1), Duration::MAX] {
        assert_eq!(with_leeway(leeway).unwrap_err(), portcullis::ConfigError::Leeway(leeway));
    }
    // At the ceiling, a token a week and 100 s past its expiry is still refused.
    assert_eq!(
        with_leeway(portcullis::MAX_LEEWAY).unwrap().verify(&expired).unwrap_err().reason(),
        Reason::TokenExpired
    );
}

#[test]
fn kid_lookup_is_exact_and_injection_proof() {
    for kid in ["rsa\u{0}", "RSA", "rs", "rsa ", "../../etc/passwd", "' OR 1=1 --", "rsa\nec"] {
        let token = keys().rsa.sign_token(&claims(), json!({ "kid": kid }).as_object()).unwrap();
        assert_eq!(reason(&token), Reason::KeyNotFound, "{kid:?}");
    }
    let token = keys().rsa.sign_token(&claims(), json!({ "kid": 1 }).as_object()).unwrap();
    assert_eq!(reason(&token), Reason::HeaderInvalid);
    // No kid against a three-key set: no trial verification.
    let header = br#"{"alg":"RS256","typ":"JWT"}"#;
    let token = keys().rsa.sign_parts(header, claims().to_string().as_bytes()).unwrap();
    let err = verifier().verify(&token).unwrap_err();
    assert_eq!(err.description(), "token has no kid and the key set has 3 keys");
}

#[test]
fn header_typ_and_structure_rules() {
    for typ in ["JOSE", "JOSE+JSON", "application/jose", "secevent+jwt"] {
        let token = keys().rsa.sign_token(&claims(), json!({ "typ": typ }).as_object()).unwrap();
        assert_eq!(reason(&token), Reason::HeaderInvalid, "{typ}");
    }
    for typ in ["JWT", "jwt", "application/JWT", "at+jwt", "application/at+jwt"] {
        let token = keys().rsa.sign_token(&claims(), json!({ "typ": typ }).as_object()).unwrap();
        assert!(verifier().verify(&token).is_ok(), "{typ}");
    }
    let nested = keys().rsa.sign_token(&claims(), json!({ "cty": "JWT" }).as_object()).unwrap();
    assert_eq!(reason(&nested), Reason::HeaderInvalid);
    let bom = keys()
        .rsa
        .sign_parts(b"\xEF\xBB\xBF{\"alg\":\"RS256\",\"kid\":\"rsa\"}", claims().to_string().as_bytes())
        .unwrap();
    assert_eq!(reason(&bom), Reason::TokenMalformed);
    let text_payload = keys().rsa.sign_parts(br#"{"alg":"RS256","kid":"rsa"}"#, b"just text").unwrap();
    assert_eq!(reason(&text_payload), Reason::TokenMalformed);
    let array_payload = keys().rsa.sign_parts(br#"{"alg":"RS256","kid":"rsa"}"#, b"[1,2]").unwrap();
    assert_eq!(reason(&array_payload), Reason::TokenMalformed);
}

#[test]
fn swapped_header_breaks_the_signature() {
    let token = signed_claims(&claims());
    let (_, rest) = token.split_once('.').unwrap();
    let forged_header = b64(br#"{"alg":"RS256","kid":"rsa","typ":"at+jwt"}"#);
    assert_eq!(reason(&format!("{forged_header}.{rest}")), Reason::SignatureInvalid);
    let mut c = claims();
    c["sub"] = json!("auth0|mallory");
    let (header, _) = token.split_once('.').unwrap();
    let signature = token.rsplit('.').next().unwrap();
    assert_eq!(reason(&format!("{header}.{}.{signature}", b64(c.to_string()))), Reason::SignatureInvalid);
}

#[test]
fn errors_are_safe_for_headers_and_never_echo_the_token() {
    let token = signed_claims(&claims());
    let mut c = claims();
    c["aud"] = json!("https://\"quoted\"\\evil\u{7}.example/\r\nX-Injected: 1");
    let hostile = signed_claims(&c);
    for candidate in [token.replace('.', "!"), hostile, format!("{token}x")] {
        let err = verifier().verify(&candidate).unwrap_err();
        let description = err.description();
        assert!(description.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'), "{description}");
        assert!(!description.contains(token.split('.').nth(2).unwrap()), "signature echoed");
    }
}

#[test]
fn header_cache_only_learns_from_verified_tokens() {
    let verifier = verifier();
    assert_eq!(verifier.cached_headers(), 0);
    // A forged token with a well-formed header does not teach the cache anything.
    let attacker = SigningKey::generate(Algorithm::RS256, Some("rsa".into())).unwrap();
    let forged = attacker.sign_token(&claims(), None).unwrap();
    assert_eq!(verifier.verify(&forged).unwrap_err().reason(), Reason::SignatureInvalid);
    assert_eq!(verifier.cached_headers(), 0);
    // A genuine token does; the next token with the same header is verified as strictly as the first.
    let genuine = signed_claims(&claims());
    assert!(verifier.verify(&genuine).is_ok());
    assert_eq!(verifier.cached_headers(), 1);
    assert!(verifier.verify(&genuine).is_ok());
    assert_eq!(verifier.verify(&forged).unwrap_err().reason(), Reason::SignatureInvalid);
    let mut expired = claims();
    expired["exp"] = json!(NOW - 3600);
    assert_eq!(verifier.verify(&signed_claims(&expired)).unwrap_err().reason(), Reason::TokenExpired);
    assert_eq!(verifier.cached_headers(), 1);
    // Bounded: many distinct valid headers never grow it past its capacity.
    for i in 0..(portcullis::__internals::HeaderCache::CAPACITY + 10) {
        let token = keys().rsa.sign_token(&claims(), json!({ "x-n": i }).as_object()).unwrap();
        assert!(verifier.verify(&token).is_ok());
    }
    assert_eq!(verifier.cached_headers(), portcullis::__internals::HeaderCache::CAPACITY);
}

#[test]
fn header_cache_is_bound_to_its_verifiers_policy() {
    // A header accepted by a lax verifier is refused by a strict one (typ required), cache or no cache.
    let token = signed_claims(&claims());
    let lax = verifier();
    assert!(lax.verify(&token).is_ok());
    let strict = Verifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .typ("at+jwt")
        .keys(KeySet::from_jwks_json(keys().jwks.as_bytes()).unwrap())
        .clock(Arc::new(ManualClock::at_unix(NOW)))
        .build()
        .unwrap();
    assert_eq!(strict.verify(&token).unwrap_err().reason(), Reason::HeaderInvalid);
    let cloned = strict.clone();
    assert_eq!(cloned.verify(&token).unwrap_err().reason(), Reason::HeaderInvalid);
}

/// 65537^k as big-endian bytes: an odd number whose residue modulo every small prime lies in the subgroup that
/// 65537 generates, which is the ROCA fingerprint (CVE-2017-15361).
fn power_of_65537(k: u32) -> Vec<u8> {
    let mut little_endian = vec![1u8];
    for _ in 0..k {
        let mut carry = 0u32;
        for byte in &mut little_endian {
            let product = u32::from(*byte) * 65537 + carry;
            *byte = (product & 0xff) as u8;
            carry = product >> 8;
        }
        while carry > 0 {
            little_endian.push((carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    little_endian.reverse();
    little_endian
}

#[test]
fn weak_and_fingerprinted_rsa_keys_are_refused_at_load() {
    let good = keys().rsa.public_jwk();
    let n = good["n"].as_str().unwrap().to_owned();
    let mut even_n = base64url::decode(&n).unwrap();
    *even_n.last_mut().unwrap() &= 0xfe;
    let mut short_n = vec![0u8; 128];
    short_n[0] = 0x80;
    short_n[127] = 1;
    let rsa = |kid: &str, n: &str, e: &str| json!({ "kty": "RSA", "kid": kid, "n": n, "e": e });
    let jwks = json!({ "keys": [
        good,
        rsa("short", &base64url::encode(&short_n), "AQAB"),
        rsa("exponent-one", &n, "AQ"),
        rsa("even-exponent", &n, "AQAA"),
        rsa("even-modulus", &base64url::encode(&even_n), "AQAB"),
        rsa("roca", &base64url::encode(power_of_65537(128)), "AQAB"),
    ]});
    let set = KeySet::from_jwks_json(jwks.to_string().as_bytes()).unwrap();
    assert_eq!(set.len(), 1, "only the sound key is loaded");
    let reasons: Vec<(String, String)> =
        set.skipped().iter().map(|s| (s.kid.clone().unwrap(), s.reason.clone())).collect();
    let reason = |kid: &str| reasons.iter().find(|(k, _)| k == kid).map(|(_, r)| r.as_str()).unwrap();
    assert_eq!(reason("short"), "RSA key of 1024 bits is too weak (minimum 2048)");
    assert_eq!(reason("exponent-one"), "RSA public exponent 1 is not allowed (must be odd and at least 3)");
    assert_eq!(reason("even-exponent"), "RSA public exponent 65536 is not allowed (must be odd and at least 3)");
    assert_eq!(reason("even-modulus"), "RSA modulus is even");
    assert!(reason("roca").contains("ROCA fingerprint (CVE-2017-15361)"), "{}", reason("roca"));

    // A token signed by the sound key still verifies against the set.
    assert!(verifier_for(&jwks.to_string()).verify(&signed_claims(&claims())).is_ok());
}

//! Conformance against public test vectors: Wycheproof (C2SP) signature and JOSE files, and the RFC 7515/7520/8037
//! worked examples. Every case runs; deliberate differences are listed in `tests/vectors/exceptions.toml`, and a
//! listed case that stops needing its exception fails the test.
#![allow(clippy::unwrap_used)]

use portcullis::__internals::base64url;
use portcullis::__internals::{AlgorithmPolicy, JwsPolicy, verify_compact};
use portcullis::{Algorithm, AlgorithmSet, KeySet, Reason, Verifier, VerifyingKey};
use portcullis_testkit::keys::hex;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn load(path: &str) -> Value {
    let text = std::fs::read(vectors_dir().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Writes to the real stderr, past the test harness's capture, so the counts always show.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

#[derive(Deserialize)]
struct ExceptionFile {
    exception: Vec<ExceptionEntry>,
}

#[derive(Deserialize)]
struct ExceptionEntry {
    file: String,
    cases: Vec<CaseSpec>,
    kind: Kind,
    reason: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CaseSpec {
    One(u64),
    Range(String),
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Rejected,
    Inapplicable,
}

struct Exceptions {
    by_case: HashMap<(String, u64), (Kind, String)>,
}

impl Exceptions {
    fn load() -> Self {
        let text = std::fs::read_to_string(vectors_dir().join("exceptions.toml")).unwrap();
        let file: ExceptionFile = toml::from_str(&text).unwrap();
        let mut by_case = HashMap::new();
        for entry in file.exception {
            assert!(!entry.reason.trim().is_empty(), "every exception needs a reason");
            for spec in entry.cases {
                let (first, last) = match spec {
                    CaseSpec::One(id) => (id, id),
                    CaseSpec::Range(range) => {
                        let (a, b) = range.split_once('-').unwrap();
                        (a.parse().unwrap(), b.parse().unwrap())
                    }
                };
                for id in first..=last {
                    let previous = by_case.insert((entry.file.clone(), id), (entry.kind, entry.reason.clone()));
                    assert!(previous.is_none(), "{} case {id} listed twice", entry.file);
                }
            }
        }
        Self { by_case }
    }
}

#[derive(Default)]
struct Tally {
    per_file: BTreeMap<String, [usize; 4]>, // run, passed as expected, excepted (rejected), inapplicable
    failures: Vec<String>,
}

impl Tally {
    fn record(
        &mut self,
        file: &str,
        id: u64,
        expected_valid: bool,
        accepted: bool,
        exception: Option<&(Kind, String)>,
    ) {
        let counts = self.per_file.entry(file.to_owned()).or_default();
        counts[0] += 1;
        match exception {
            None if accepted == expected_valid => counts[1] += 1,
            None => self.failures.push(format!(
                "{file} #{id}: expected {}, portcullis {}",
                if expected_valid { "accept" } else { "reject" },
                if accepted { "accepted" } else { "rejected" }
            )),
            Some((Kind::Rejected, reason)) => {
                if expected_valid && !accepted {
                    counts[2] += 1;
                } else {
                    self.failures.push(format!(
                        "{file} #{id}: listed as a deliberate rejection ({reason}) but no longer needs it"
                    ));
                }
            }
            Some((Kind::Inapplicable, _)) => {
                self.failures.push(format!("{file} #{id}: listed as inapplicable but it ran"));
            }
        }
    }

    fn inapplicable(&mut self, file: &str, id: u64, exception: Option<&(Kind, String)>) {
        let counts = self.per_file.entry(file.to_owned()).or_default();
        match exception {
            Some((Kind::Inapplicable, _)) => counts[3] += 1,
            _ => self.failures.push(format!("{file} #{id}: cannot be run and is not listed as inapplicable")),
        }
    }
}

fn b64_of_hex(s: &str) -> String {
    base64url::encode(hex(s))
}

/// Left-pads or trims a leading zero so an EC coordinate has exactly `len` bytes.
fn fixed(bytes: Vec<u8>, len: usize) -> Vec<u8> {
    let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    let mut out = vec![0; len.saturating_sub(trimmed.len())];
    out.extend(trimmed);
    out
}

fn hash_bits(name: &str) -> Option<u32> {
    match name {
        "SHA-256" => Some(256),
        "SHA-384" => Some(384),
        "SHA-512" => Some(512),
        _ => None,
    }
}

/// The JOSE algorithm a Wycheproof signature group corresponds to, and the JWK to verify with.
fn group_key(group: &Value) -> Option<(Algorithm, Value)> {
    let kind = group["type"].as_str().unwrap();
    let sha = group["sha"].as_str().unwrap_or("");
    let alg = match kind {
        "RsassaPkcs1Verify" => match hash_bits(sha)? {
            256 => Algorithm::RS256,
            384 => Algorithm::RS384,
            _ => Algorithm::RS512,
        },
        "RsassaPssVerify" => match hash_bits(sha)? {
            256 => Algorithm::PS256,
            384 => Algorithm::PS384,
            _ => Algorithm::PS512,
        },
        "EcdsaP1363Verify" => match group["publicKey"]["curve"].as_str().unwrap() {
            "secp256r1" => Algorithm::ES256,
            "secp384r1" => Algorithm::ES384,
            "secp521r1" => Algorithm::ES512,
            other => panic!("curve {other}"),
        },
        "EddsaVerify" => Algorithm::EdDSA,
        other => panic!("group type {other}"),
    };
    let jwk = group.get("publicKeyJwk").or_else(|| group.get("keyJwk")).cloned();
    let mut jwk = jwk.unwrap_or_else(|| jwk_from_components(group, alg));
    jwk["alg"] = json!(alg.name());
    Some((alg, jwk))
}

fn jwk_from_components(group: &Value, alg: Algorithm) -> Value {
    let key = &group["publicKey"];
    match alg.family() {
        portcullis::algorithm::KeyFamily::Rsa => json!({
            "kty": "RSA",
            "n": b64_of_hex(key["modulus"].as_str().unwrap()),
            "e": b64_of_hex(key["publicExponent"].as_str().unwrap()),
        }),
        portcullis::algorithm::KeyFamily::Ec(curve) => {
            let len = curve.coordinate_len();
            json!({
                "kty": "EC",
                "crv": curve.name(),
                "x": base64url::encode(fixed(hex(key["wx"].as_str().unwrap()), len)),
                "y": base64url::encode(fixed(hex(key["wy"].as_str().unwrap()), len)),
            })
        }
        portcullis::algorithm::KeyFamily::Ed25519 => json!({
            "kty": "OKP", "crv": "Ed25519", "x": b64_of_hex(key["pk"].as_str().unwrap()),
        }),
        family => panic!("no test vectors for {family:?}"),
    }
}

const SIGNATURE_FILES: [&str; 20] = [
    "ecdsa_secp256r1_sha256_p1363_test.json",
    "ecdsa_secp384r1_sha384_p1363_test.json",
    "ecdsa_secp521r1_sha512_p1363_test.json",
    "ed25519_test.json",
    "rsa_pss_2048_sha256_mgf1_32_test.json",
    "rsa_pss_2048_sha384_mgf1_48_test.json",
    "rsa_pss_3072_sha256_mgf1_32_test.json",
    "rsa_pss_4096_sha256_mgf1_32_test.json",
    "rsa_pss_4096_sha384_mgf1_48_test.json",
    "rsa_pss_4096_sha512_mgf1_64_test.json",
    "rsa_pss_misc_test.json",
    "rsa_signature_2048_sha256_test.json",
    "rsa_signature_2048_sha384_test.json",
    "rsa_signature_2048_sha512_test.json",
    "rsa_signature_3072_sha256_test.json",
    "rsa_signature_3072_sha384_test.json",
    "rsa_signature_3072_sha512_test.json",
    "rsa_signature_4096_sha256_test.json",
    "rsa_signature_4096_sha384_test.json",
    "rsa_signature_4096_sha512_test.json",
];

fn run_signature_file(file: &str, exceptions: &Exceptions, tally: &mut Tally) {
    let doc = load(&format!("wycheproof/{file}"));
    let mut total = 0;
    for group in doc["testGroups"].as_array().unwrap() {
        let tests = group["tests"].as_array().unwrap();
        total += tests.len();
        let Some((alg, jwk)) = group_key(group) else {
            for test in tests {
                let id = test["tcId"].as_u64().unwrap();
                tally.inapplicable(file, id, exceptions.by_case.get(&(file.to_owned(), id)));
            }
            continue;
        };
        // A key refused at load time rejects every signature of its group.
        let key = VerifyingKey::from_jwk_json(jwk.to_string().as_bytes()).ok();
        for test in tests {
            let id = test["tcId"].as_u64().unwrap();
            let expected_valid = test["result"] == "valid";
            let accepted = key.as_ref().is_some_and(|key| {
                let msg = hex(test["msg"].as_str().unwrap());
                let sig = hex(test["sig"].as_str().unwrap());
                key.verify_signature(alg, &msg, &sig).is_ok()
            });
            tally.record(file, id, expected_valid, accepted, exceptions.by_case.get(&(file.to_owned(), id)));
        }
    }
    assert_eq!(total as u64, doc["numberOfTests"].as_u64().unwrap(), "{file}: every case is counted");
}

fn run_jose_file(file: &str, exceptions: &Exceptions, tally: &mut Tally) {
    let doc = load(&format!("wycheproof/{file}"));
    let policy = JwsPolicy {
        algorithms: AlgorithmPolicy::Allow(Algorithm::ALL.into_iter().collect::<AlgorithmSet>()),
        ..JwsPolicy::default()
    };
    let mut total = 0;
    for group in doc["testGroups"].as_array().unwrap() {
        let keys = match group.get("public").filter(|v| !v.is_null()).or_else(|| group.get("private")) {
            Some(set) if set.get("keys").is_some() => set.clone(),
            Some(jwk) => json!({ "keys": [jwk] }),
            None => json!({ "keys": [] }),
        };
        let keys = KeySet::from_jwks_json(keys.to_string().as_bytes()).unwrap();
        for test in group["tests"].as_array().unwrap() {
            total += 1;
            let id = test["tcId"].as_u64().unwrap();
            let expected_valid = test["result"] == "valid";
            let accepted = match test["jws"].as_str() {
                Some(token) => verify_compact(token, &keys, &policy).is_ok(),
                None => false, // JSON serialization is not a bearer token format
            };
            tally.record(file, id, expected_valid, accepted, exceptions.by_case.get(&(file.to_owned(), id)));
        }
    }
    assert_eq!(total as u64, doc["numberOfTests"].as_u64().unwrap(), "{file}: every case is counted");
}

#[test]
fn wycheproof() {
    let exceptions = Exceptions::load();
    let mut tally = Tally::default();
    for file in SIGNATURE_FILES {
        run_signature_file(file, &exceptions, &mut tally);
    }
    for file in ["json_web_signature_test.json", "json_web_key_test.json"] {
        run_jose_file(file, &exceptions, &mut tally);
    }
    let mut totals = [0usize; 4];
    report("wycheproof: file | cases | as expected | deliberate rejections | inapplicable");
    for (file, counts) in &tally.per_file {
        report(&format!(
            "wycheproof: {file} | {} | {} | {} | {}",
            counts[0] + counts[3],
            counts[1],
            counts[2],
            counts[3]
        ));
        for (total, count) in totals.iter_mut().zip(counts) {
            *total += count;
        }
    }
    report(&format!(
        "wycheproof: TOTAL {} cases in {} files: {} as expected, {} deliberate rejections, {} inapplicable, {} failures",
        totals[0] + totals[3],
        tally.per_file.len(),
        totals[1],
        totals[2],
        totals[3],
        tally.failures.len()
    ));
    assert!(tally.failures.is_empty(), "{} failures:\n{}", tally.failures.len(), tally.failures.join("\n"));
    assert_eq!(totals[0] + totals[3], 4703, "every Wycheproof case is accounted for");
}

#[test]
fn rfc_examples() {
    let examples = load("rfc/jws_examples.json");
    let policy =
        JwsPolicy { algorithms: AlgorithmPolicy::Allow(Algorithm::ALL.into_iter().collect()), ..JwsPolicy::default() };
    let mut passed = 0;
    for example in examples.as_array().unwrap() {
        let source = example["source"].as_str().unwrap();
        let keys = KeySet::from_jwks_json(json!({ "keys": [example["jwk"]] }).to_string().as_bytes()).unwrap();
        let token = example["token"].as_str().unwrap();
        let outcome = verify_compact(token, &keys, &policy);
        match example["expected"].as_str().unwrap() {
            "valid" => {
                let verified = outcome.unwrap_or_else(|e| panic!("{source}: {e}"));
                assert_eq!(verified.header().alg().name(), example["alg"].as_str().unwrap(), "{source}");
                // Flipping one bit of the signature must break it.
                let mut tampered = token.to_owned();
                let last = tampered.pop().unwrap();
                tampered.push(if last == 'A' { 'Q' } else { 'A' });
                assert!(verify_compact(&tampered, &keys, &policy).is_err(), "{source}: tampered token accepted");
            }
            _ => {
                let err = outcome.expect_err(source);
                assert_eq!(err.reason(), Reason::AlgorithmNotAllowed, "{source}");
            }
        }
        passed += 1;
    }
    report(&format!("rfc examples: {passed} of {} behaved as expected", examples.as_array().unwrap().len()));
    assert_eq!(passed, 8);
}

#[test]
fn rfc7515_tokens_fail_full_verification_for_claim_reasons() {
    let examples = load("rfc/jws_examples.json");
    let a2 = &examples.as_array().unwrap()[0];
    let keys = KeySet::from_jwks_json(json!({ "keys": [a2["jwk"]] }).to_string().as_bytes()).unwrap();
    let verifier = Verifier::builder()
        .issuer("joe")
        .audience("https://api.example.com")
        .algorithms([Algorithm::RS256])
        .keys(keys)
        .build()
        .unwrap();
    let err = verifier.verify(a2["token"].as_str().unwrap()).unwrap_err();
    // Signed correctly, issuer matches, but it has no aud (and expired in 2011).
    assert_eq!(err.reason(), Reason::ClaimMissing, "{err}");
    assert!(err.description().contains("aud"), "{err}");
}

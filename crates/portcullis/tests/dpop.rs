//! DPoP proofs (RFC 9449): the RFC's own examples, one refusal per check (each for the reason it names), replay,
//! nonces, `htu` normalization, and the request rules of §7 (no Bearer downgrade, exactly one proof, binding).
#![allow(clippy::unwrap_used)]

use portcullis::clock::ManualClock;
use portcullis::dpop::{
    DpopCheck, DpopMode, DpopVerifier, Htu, ProofExpectations, RequestTarget, Scheme, access_token_hash, thumbprint,
};
use portcullis::error::Challenges;
use portcullis::signing::SigningKey;
use portcullis::{Algorithm, ConfigError, Error, KeySet, Reason, VerifiedToken, Verifier};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Duration;

// RFC 9449 Figure 2 (§4.1): a proof for a token request (no ath), line breaks of the figure removed.
const FIGURE_2: &str = concat!(
    "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6Ik",
    "VDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCR",
    "nMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JE",
    "QSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIj",
    "oiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwia",
    "WF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg",
    "4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg",
);
const FIGURE_2_IAT: u64 = 1_562_262_616;

// RFC 9449 Figure 13 (§7.1): a proof for a protected-resource request with `ath`, and the access token it goes with.
const FIGURE_13: &str = concat!(
    "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6Ik",
    "VDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCR",
    "nMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JE",
    "QSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIj",
    "oiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0Z",
    "WRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNF",
    "c05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9.2oW9RP35yRqzhrtNP86L-Ey71E",
    "OptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA",
);
const FIGURE_13_IAT: u64 = 1_562_262_618;
const FIGURE_13_TOKEN: &str = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
// Figure 14's `ath`, and the `jkt` of §6 (Figures 7 to 9) for the key of both proofs.
const FIGURE_14_ATH: &str = "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo";
const RFC_JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";

const NOW: u64 = 1_800_000_000;
const ISSUER: &str = "https://tenant.example.com/";
const AUDIENCE: &str = "https://api.example.com";
const URI: &str = "https://api.example.com/orders";

fn at(secs: u64) -> Arc<ManualClock> {
    Arc::new(ManualClock::at_unix(secs))
}

fn htu(uri: &str) -> Htu {
    Htu::parse(uri).unwrap()
}

#[test]
fn rfc9449_figure_2_verifies_at_its_iat_and_its_key_has_the_rfc_thumbprint() {
    let dpop = DpopVerifier::builder().clock(at(FIGURE_2_IAT)).build().unwrap();
    let uri = htu("https://server.example.com/token");
    let expected = ProofExpectations { method: "POST", htu: &uri, access_token: None, jkt: None };
    let proof = dpop.check_proof(FIGURE_2, &expected).unwrap();
    assert_eq!(proof.thumbprint(), RFC_JKT);
    assert_eq!(proof.jti(), "-BwC3ESc6acc2lTc");
    assert_eq!(proof.iat(), FIGURE_2_IAT);
    assert_eq!(proof.algorithm(), Algorithm::ES256);

    // At the RFC's time plus a day, the same proof is too old; a day before, it is in the future.
    for secs in [FIGURE_2_IAT + 86_400, FIGURE_2_IAT - 86_400] {
        let dpop = DpopVerifier::builder().clock(at(secs)).build().unwrap();
        let err = dpop.check_proof(FIGURE_2, &expected).unwrap_err();
        assert_eq!(err.reason(), Reason::DpopProofInvalid);
        assert!(err.description().contains("iat") || err.description().contains("issued"), "{err}");
    }
}

#[test]
fn rfc9449_figure_13_verifies_with_its_access_token_and_binding() {
    assert_eq!(access_token_hash(FIGURE_13_TOKEN), FIGURE_14_ATH);
    let dpop = DpopVerifier::builder().clock(at(FIGURE_13_IAT)).build().unwrap();
    let uri = htu("https://resource.example.org/protectedresource");
    let expected =
        ProofExpectations { method: "GET", htu: &uri, access_token: Some(FIGURE_13_TOKEN), jkt: Some(RFC_JKT) };
    let proof = dpop.check_proof(FIGURE_13, &expected).unwrap();
    assert_eq!(proof.thumbprint(), RFC_JKT);
    assert_eq!(proof.jti(), "e1j3V_bKic8-LAEB");
    assert_eq!(proof.iat(), FIGURE_13_IAT);

    // Another token: the ath no longer matches.
    let fresh = DpopVerifier::builder().clock(at(FIGURE_13_IAT)).build().unwrap();
    let other = ProofExpectations { access_token: Some("another-token"), ..expected };
    let err = fresh.check_proof(FIGURE_13, &other).unwrap_err();
    assert_eq!(
        (err.reason(), err.description()),
        (Reason::DpopProofInvalid, "DPoP proof ath does not match the access token")
    );
    // Another binding: the token is bound to another key.
    let bound_elsewhere = ProofExpectations { jkt: Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"), ..expected };
    assert_eq!(fresh.check_proof(FIGURE_13, &bound_elsewhere).unwrap_err().reason(), Reason::TokenBindingInvalid);
    // The same URI spelled another way is the same htu.
    let spelled = htu("HTTPS://Resource.Example.ORG:443/./protectedresource?page=2");
    let same = ProofExpectations { htu: &spelled, ..expected };
    assert!(fresh.check_proof(FIGURE_13, &same).is_ok());
}

#[test]
fn rfc7638_and_rfc8037_thumbprint_examples() {
    // RFC 7638 §3.1 (optional members do not change the thumbprint).
    let rsa = json!({
        "kty": "RSA",
        "n": concat!(
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn6",
            "4tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n9",
            "1CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        ),
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    });
    assert_eq!(thumbprint(rsa.as_object().unwrap()).unwrap(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    // RFC 8037 A.3.
    let okp = json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
    assert_eq!(thumbprint(okp.as_object().unwrap()).unwrap(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    // RFC 9449's example key (§6.1 publishes its jkt).
    let ec = json!({"kty": "EC", "crv": "P-256", "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
                    "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA"});
    assert_eq!(thumbprint(ec.as_object().unwrap()).unwrap(), RFC_JKT);
    // A required member missing, or an unknown kty, has no thumbprint.
    let mut missing = ec.as_object().unwrap().clone();
    missing.remove("y");
    assert!(thumbprint(&missing).is_err());
    assert!(thumbprint(json!({"kty": "oct", "k": "AAAA"}).as_object().unwrap()).is_err());
}

/// A client key, an issuer key, a clock, and the verifiers of one test.
struct Fixture {
    client: SigningKey,
    issuer: SigningKey,
    clock: Arc<ManualClock>,
    verifier: Verifier,
    dpop: DpopVerifier,
    uri: Htu,
}

impl Fixture {
    fn new() -> Self {
        Self::with(|builder| builder)
    }

    fn with(
        configure: impl FnOnce(portcullis::dpop::DpopVerifierBuilder) -> portcullis::dpop::DpopVerifierBuilder,
    ) -> Self {
        let clock = at(NOW);
        let issuer = SigningKey::generate(Algorithm::ES256, Some("issuer-key".into())).unwrap();
        let jwks = json!({ "keys": [issuer.public_jwk()] }).to_string();
        let verifier = Verifier::builder()
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .keys(KeySet::from_jwks_json(jwks.as_bytes()).unwrap())
            .clock(clock.clone())
            .build()
            .unwrap();
        let dpop = configure(DpopVerifier::builder().clock(clock.clone())).build().unwrap();
        Self {
            client: SigningKey::generate(Algorithm::ES256, None).unwrap(),
            issuer,
            clock,
            verifier,
            dpop,
            uri: htu(URI),
        }
    }

    /// The client key's JWK, public members only.
    fn client_jwk(&self) -> Map<String, Value> {
        public_members(&self.client)
    }

    fn jkt(&self) -> String {
        thumbprint(&self.client_jwk()).unwrap()
    }

    /// An access token, bound to the client key when `bound`.
    fn token(&self, bound: bool) -> VerifiedToken {
        let mut claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": NOW + 600, "iat": NOW});
        if bound {
            claims["cnf"] = json!({ "jkt": self.jkt() });
        }
        self.verifier.verify(&self.issuer.sign_token(&claims, None).unwrap()).unwrap()
    }

    /// The claims of a good proof for `GET URI` with `token`.
    fn claims(&self, token: Option<&VerifiedToken>) -> Map<String, Value> {
        let mut claims = json!({"jti": unique_jti(), "htm": "GET", "htu": URI, "iat": NOW});
        if let Some(token) = token {
            claims["ath"] = json!(access_token_hash(token.raw()));
        }
        claims.as_object().unwrap().clone()
    }

    /// The header of a good proof by the client key.
    fn header(&self) -> Map<String, Value> {
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.client_jwk()});
        header.as_object().unwrap().clone()
    }

    fn sign(&self, header: &Map<String, Value>, claims: &Map<String, Value>) -> String {
        self.client.sign_parts(&serde_json::to_vec(header).unwrap(), &serde_json::to_vec(claims).unwrap()).unwrap()
    }

    /// A proof with the header and claims changed by `edit`.
    fn proof(
        &self,
        token: Option<&VerifiedToken>,
        edit: impl FnOnce(&mut Map<String, Value>, &mut Map<String, Value>),
    ) -> String {
        let (mut header, mut claims) = (self.header(), self.claims(token));
        edit(&mut header, &mut claims);
        self.sign(&header, &claims)
    }

    fn expectations<'a>(&'a self, token: Option<&'a VerifiedToken>, jkt: Option<&'a str>) -> ProofExpectations<'a> {
        ProofExpectations { method: "GET", htu: &self.uri, access_token: token.map(VerifiedToken::raw), jkt }
    }

    /// Checks a proof against `GET URI` for a bound token; the error's reason and description.
    fn refusal(&self, edit: impl FnOnce(&mut Map<String, Value>, &mut Map<String, Value>)) -> (Reason, String) {
        let token = self.token(true);
        let proof = self.proof(Some(&token), edit);
        let jkt = self.jkt();
        let err = self.dpop.check_proof(&proof, &self.expectations(Some(&token), Some(&jkt))).unwrap_err();
        (err.reason(), err.description().to_owned())
    }
}

fn public_members(key: &SigningKey) -> Map<String, Value> {
    let mut jwk = key.public_jwk().as_object().unwrap().clone();
    for optional in ["use", "alg", "kid"] {
        jwk.remove(optional);
    }
    jwk
}

fn unique_jti() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("jti-{}", NEXT.fetch_add(1, Ordering::SeqCst))
}

#[test]
fn a_good_proof_passes_and_its_key_is_reported() {
    let fx = Fixture::new();
    let token = fx.token(true);
    let jkt = fx.jkt();
    let proof = fx.proof(Some(&token), |_, _| {});
    let checked = fx.dpop.check_proof(&proof, &fx.expectations(Some(&token), Some(&jkt))).unwrap();
    assert_eq!(checked.thumbprint(), jkt);
    assert_eq!(checked.iat(), NOW);
    assert_eq!(token.jkt(), Some(jkt.as_str()));
}

/// A change to a good proof's header and claims.
type Edit = dyn Fn(&mut Map<String, Value>, &mut Map<String, Value>);

#[test]
fn each_check_refuses_for_its_own_reason() {
    let fx = Fixture::new();
    let invalid = Reason::DpopProofInvalid;
    let cases: Vec<(&str, Box<Edit>, Reason, &str)> = vec![
        ("typ missing", Box::new(|h, _| drop(h.remove("typ"))), invalid, "DPoP proof has no typ; it must be dpop+jwt"),
        (
            "typ JWT",
            Box::new(|h, _| drop(h.insert("typ".into(), json!("JWT")))),
            invalid,
            "DPoP proof typ must be dpop+jwt",
        ),
        (
            "typ at+jwt",
            Box::new(|h, _| drop(h.insert("typ".into(), json!("at+jwt")))),
            invalid,
            "DPoP proof typ must be dpop+jwt",
        ),
        ("alg none", Box::new(|h, _| drop(h.insert("alg".into(), json!("none")))), invalid, "none and HMAC never are"),
        (
            "alg HS256",
            Box::new(|h, _| drop(h.insert("alg".into(), json!("HS256")))),
            invalid,
            "none and HMAC never are",
        ),
        (
            "alg not the key's",
            Box::new(|h, _| drop(h.insert("alg".into(), json!("ES384")))),
            invalid,
            "cannot be used with its jwk",
        ),
        ("no jwk", Box::new(|h, _| drop(h.remove("jwk"))), invalid, "DPoP proof header has no jwk"),
        (
            "jwk a string",
            Box::new(|h, _| drop(h.insert("jwk".into(), json!("{}")))),
            invalid,
            "DPoP proof header jwk must be a JSON object",
        ),
        (
            "jwk with d",
            Box::new(|h, _| drop(h["jwk"].as_object_mut().unwrap().insert("d".into(), json!("AAAA")))),
            invalid,
            "holds private key members",
        ),
        (
            "jwk oct",
            Box::new(|h, _| drop(h.insert("jwk".into(), json!({"kty": "oct", "k": "c2VjcmV0"})))),
            invalid,
            "symmetric key",
        ),
        (
            "jwk unusable",
            Box::new(|h, _| drop(h["jwk"].as_object_mut().unwrap().insert("x".into(), json!("AAAA")))),
            invalid,
            "not a usable public key",
        ),
        ("jti missing", Box::new(|_, c| drop(c.remove("jti"))), invalid, "DPoP proof has no jti"),
        (
            "jti a number",
            Box::new(|_, c| drop(c.insert("jti".into(), json!(7)))),
            invalid,
            "DPoP proof jti must be a string",
        ),
        ("jti empty", Box::new(|_, c| drop(c.insert("jti".into(), json!("")))), invalid, "jti must be 1 to 256 bytes"),
        (
            "jti too long",
            Box::new(|_, c| drop(c.insert("jti".into(), json!("j".repeat(257))))),
            invalid,
            "jti must be 1 to 256 bytes",
        ),
        ("htm missing", Box::new(|_, c| drop(c.remove("htm"))), invalid, "DPoP proof has no htm"),
        (
            "htm POST",
            Box::new(|_, c| drop(c.insert("htm".into(), json!("POST")))),
            invalid,
            "htm does not match the request method",
        ),
        (
            "htm get",
            Box::new(|_, c| drop(c.insert("htm".into(), json!("get")))),
            invalid,
            "htm does not match the request method",
        ),
        ("htu missing", Box::new(|_, c| drop(c.remove("htu"))), invalid, "DPoP proof has no htu"),
        (
            "htu relative",
            Box::new(|_, c| drop(c.insert("htu".into(), json!("/orders")))),
            invalid,
            "htu is not an absolute http(s) URI",
        ),
        (
            "htu other path",
            Box::new(|_, c| drop(c.insert("htu".into(), json!("https://api.example.com/orders/1")))),
            invalid,
            "htu does not match the URI of this request",
        ),
        (
            "htu other host",
            Box::new(|_, c| drop(c.insert("htu".into(), json!("https://evil.example/orders")))),
            invalid,
            "htu does not match the URI of this request",
        ),
        (
            "htu http",
            Box::new(|_, c| drop(c.insert("htu".into(), json!("http://api.example.com/orders")))),
            invalid,
            "htu does not match the URI of this request",
        ),
        ("iat missing", Box::new(|_, c| drop(c.remove("iat"))), invalid, "DPoP proof has no iat"),
        (
            "iat a string",
            Box::new(|_, c| drop(c.insert("iat".into(), json!(NOW.to_string())))),
            invalid,
            "iat must be a NumericDate",
        ),
        ("iat negative", Box::new(|_, c| drop(c.insert("iat".into(), json!(-1)))), invalid, "iat is out of range"),
        (
            "iat too old",
            Box::new(|_, c| drop(c.insert("iat".into(), json!(NOW - 301)))),
            invalid,
            "more than the 300s a proof is accepted",
        ),
        (
            "iat future",
            Box::new(|_, c| drop(c.insert("iat".into(), json!(NOW + 6)))),
            invalid,
            "iat is 6s in the future",
        ),
        (
            "ath missing",
            Box::new(|_, c| drop(c.remove("ath"))),
            invalid,
            "DPoP proof has no ath; it is required with an access token",
        ),
        (
            "ath a number",
            Box::new(|_, c| drop(c.insert("ath".into(), json!(1)))),
            invalid,
            "DPoP proof ath must be a string",
        ),
        (
            "ath other token",
            Box::new(|_, c| drop(c.insert("ath".into(), json!(access_token_hash("other"))))),
            invalid,
            "ath does not match the access token",
        ),
    ];
    for (name, edit, reason, says) in cases {
        let (got, description) = fx.refusal(edit);
        assert_eq!(got, reason, "{name}: {description}");
        assert!(description.contains(says), "{name}: {description}");
    }
}

#[test]
fn the_edges_of_the_iat_window_are_inside() {
    let fx = Fixture::new();
    let token = fx.token(true);
    let jkt = fx.jkt();
    for iat in [NOW - 300, NOW + 5] {
        let proof = fx.proof(Some(&token), |_, c| drop(c.insert("iat".into(), json!(iat))));
        assert!(fx.dpop.check_proof(&proof, &fx.expectations(Some(&token), Some(&jkt))).is_ok(), "iat {iat}");
    }
}

#[test]
fn the_signature_must_be_by_the_header_jwk_and_nothing_else_selects_a_key() {
    let fx = Fixture::new();
    let token = fx.token(true);
    let jkt = fx.jkt();
    // Signed by another key but naming the client key (and pointing elsewhere with kid, jku and x5c).
    let other = SigningKey::generate(Algorithm::ES256, None).unwrap();
    let mut header = fx.header();
    header.insert("kid".into(), json!("issuer-key"));
    header.insert("jku".into(), json!("https://evil.example/jwks.json"));
    header.insert("x5c".into(), json!(["MIIB"]));
    let claims = fx.claims(Some(&token));
    let forged =
        other.sign_parts(&serde_json::to_vec(&header).unwrap(), &serde_json::to_vec(&claims).unwrap()).unwrap();
    let err = fx.dpop.check_proof(&forged, &fx.expectations(Some(&token), Some(&jkt))).unwrap_err();
    assert_eq!(err.reason(), Reason::DpopProofInvalid);
    assert_eq!(err.description(), "DPoP proof signature does not verify with its jwk");
    // The same header signed by the client key passes: kid, jku and x5c do nothing.
    assert!(fx.dpop.check_proof(&fx.sign(&header, &claims), &fx.expectations(Some(&token), Some(&jkt))).is_ok());
    // An access token is not a proof (typ JWT, no jwk).
    let err = fx.dpop.check_proof(token.raw(), &fx.expectations(Some(&token), Some(&jkt))).unwrap_err();
    assert_eq!(err.reason(), Reason::DpopProofInvalid);
}

#[test]
fn a_proof_by_another_key_breaks_the_binding() {
    let fx = Fixture::new();
    let token = fx.token(true);
    let jkt = fx.jkt();
    let thief = SigningKey::generate(Algorithm::ES256, None).unwrap();
    let mut header = fx.header();
    header.insert("jwk".into(), Value::Object(public_members(&thief)));
    let claims = fx.claims(Some(&token));
    let proof = thief.sign_parts(&serde_json::to_vec(&header).unwrap(), &serde_json::to_vec(&claims).unwrap()).unwrap();
    let err = fx.dpop.check_proof(&proof, &fx.expectations(Some(&token), Some(&jkt))).unwrap_err();
    assert_eq!(err.reason(), Reason::TokenBindingInvalid);
    assert_eq!(err.http_status(), 401);
    assert_eq!(err.reason().bearer_error().unwrap().as_str(), "invalid_token");
}

#[test]
fn only_configured_algorithms_are_accepted() {
    let fx = Fixture::with(|b| b.algorithms([Algorithm::EdDSA]));
    let (reason, description) = fx.refusal(|_, _| {});
    assert_eq!(reason, Reason::DpopProofInvalid);
    assert_eq!(description, "DPoP proof alg ES256 is not allowed here (allowed: EdDSA)");
    assert_eq!(fx.dpop.algorithms().iter().collect::<Vec<_>>(), [Algorithm::EdDSA]);
    // Every other supported algorithm works by default, e.g. EdDSA and PS256.
    for alg in [Algorithm::EdDSA, Algorithm::PS256] {
        let dpop = DpopVerifier::builder().clock(at(NOW)).build().unwrap();
        let key = SigningKey::generate(alg, None).unwrap();
        let header = json!({"typ": "dpop+jwt", "alg": alg.name(), "jwk": public_members(&key)});
        let claims = json!({"jti": unique_jti(), "htm": "GET", "htu": URI, "iat": NOW});
        let proof =
            key.sign_parts(&serde_json::to_vec(&header).unwrap(), &serde_json::to_vec(&claims).unwrap()).unwrap();
        let uri = htu(URI);
        let expected = ProofExpectations { method: "GET", htu: &uri, access_token: None, jkt: None };
        assert!(dpop.check_proof(&proof, &expected).is_ok(), "{alg}");
    }
}

#[test]
fn a_proof_is_accepted_once_per_uri() {
    let fx = Fixture::new();
    let token = fx.token(true);
    let jkt = fx.jkt();
    let proof = fx.proof(Some(&token), |_, c| drop(c.insert("jti".into(), json!("only-once"))));
    let expected = fx.expectations(Some(&token), Some(&jkt));
    // A report looks without recording.
    let report = fx.dpop.explain_proof(&proof, &expected);
    assert!(report.verdict.is_ok());
    assert_eq!(report.steps.last().unwrap().check, DpopCheck::Replay);
    assert!(fx.dpop.check_proof(&proof, &expected).is_ok());
    let err = fx.dpop.check_proof(&proof, &expected).unwrap_err();
    assert_eq!(err.reason(), Reason::DpopProofInvalid);
    assert_eq!(err.description(), "DPoP proof replayed: its jti was already used for this URI");
    let report = fx.dpop.explain_proof(&proof, &expected);
    assert_eq!(report.steps.last().unwrap().check, DpopCheck::Replay);
    assert!(report.steps.last().unwrap().outcome.is_err());
    // A clone shares the cache.
    assert!(fx.dpop.clone().check_proof(&proof, &expected).is_err());

    // The same jti for another URI is another proof.
    let elsewhere = htu("https://api.example.com/invoices");
    let other = fx.proof(Some(&token), |_, c| {
        c.insert("jti".into(), json!("only-once"));
        c.insert("htu".into(), json!(elsewhere.as_str()));
    });
    let other_expected = ProofExpectations { htu: &elsewhere, ..expected };
    assert!(fx.dpop.check_proof(&other, &other_expected).is_ok());
    assert!(fx.dpop.check_proof(&other, &other_expected).is_err());
    assert!(fx.dpop.replay_entries() <= 2);
}

#[test]
fn a_verifier_built_to_replace_another_takes_over_its_used_proofs() {
    let fx = Fixture::new();
    let token = fx.token(true);
    let jkt = fx.jkt();
    let expected = fx.expectations(Some(&token), Some(&jkt));
    let used = fx.proof(Some(&token), |_, _| {});
    assert!(fx.dpop.check_proof(&used, &expected).is_ok());
    // Settings that keep the cache (same capacity, shorter window) and settings that need a new one.
    for (capacity, max_age) in [(100_000, 60), (100_000, 900), (10, 300)] {
        let next = DpopVerifier::builder()
            .clock(fx.clock.clone())
            .replay_capacity(capacity)
            .max_age(std::time::Duration::from_secs(max_age))
            .replay_cache_of(&fx.dpop)
            .build()
            .unwrap();
        let err = next.check_proof(&used, &expected).unwrap_err();
        assert_eq!(err.description(), "DPoP proof replayed: its jti was already used for this URI", "{capacity}");
        let fresh = fx.proof(Some(&token), |_, _| {});
        assert!(next.check_proof(&fresh, &expected).is_ok(), "{capacity} {max_age}");
    }
    // Without it, a new verifier knows nothing of the proofs used before.
    let unrelated = DpopVerifier::builder().clock(fx.clock.clone()).build().unwrap();
    assert!(unrelated.check_proof(&used, &expected).is_ok());
}

#[test]
fn one_proof_sent_many_times_at_once_is_accepted_once() {
    let fx = Fixture::new();
    let token = fx.token(true);
    let jkt = fx.jkt();
    let expected = fx.expectations(Some(&token), Some(&jkt));
    let threads = 16;
    for round in 0..40 {
        let proof = fx.proof(Some(&token), |_, _| {});
        let barrier = std::sync::Barrier::new(threads);
        let accepted = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    barrier.wait();
                    if fx.dpop.check_proof(&proof, &expected).is_ok() {
                        accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(accepted.into_inner(), 1, "round {round}");
    }
}

#[test]
fn a_refused_proof_does_not_use_up_its_jti() {
    let fx = Fixture::new();
    let token = fx.token(true);
    let jkt = fx.jkt();
    let proof = fx.proof(Some(&token), |_, c| drop(c.insert("jti".into(), json!("kept"))));
    // Checked against another token first: refused at ath, before the replay entry.
    let other = fx.token(false);
    let wrong = fx.expectations(Some(&other), Some(&jkt));
    assert_eq!(fx.dpop.check_proof(&proof, &wrong).unwrap_err().reason(), Reason::DpopProofInvalid);
    assert!(fx.dpop.check_proof(&proof, &fx.expectations(Some(&token), Some(&jkt))).is_ok());
}

#[test]
fn explain_proof_names_the_failed_check() {
    let fx = Fixture::new();
    let token = fx.token(true);
    let jkt = fx.jkt();
    let proof = fx.proof(Some(&token), |_, c| drop(c.insert("htm".into(), json!("DELETE"))));
    let report = fx.dpop.explain_proof(&proof, &fx.expectations(Some(&token), Some(&jkt)));
    let checks: Vec<DpopCheck> = report.steps.iter().map(|step| step.check).collect();
    assert_eq!(
        checks,
        [
            DpopCheck::Structure,
            DpopCheck::Algorithm,
            DpopCheck::Key,
            DpopCheck::Signature,
            DpopCheck::Claims,
            DpopCheck::Method
        ]
    );
    assert!(report.steps[..5].iter().all(|step| step.outcome.is_ok()));
    assert_eq!(report.verdict.unwrap_err().reason(), Reason::DpopProofInvalid);
}

#[test]
fn nonces_are_issued_accepted_and_expire() {
    let secret = [42u8; 32];
    let fx = Fixture::with(|b| b.nonce_secret(&secret).nonce_lifetime(Duration::from_secs(60)));
    let token = fx.token(true);
    let jkt = fx.jkt();
    let nonce = fx.dpop.nonce().unwrap();

    let (reason, description) = fx.refusal(|_, _| {});
    assert_eq!(reason, Reason::DpopNonceRequired);
    assert!(description.contains("no nonce"), "{description}");
    assert_eq!(Reason::DpopNonceRequired.bearer_error().unwrap().as_str(), "use_dpop_nonce");

    let (reason, _) = fx.refusal(|_, c| drop(c.insert("nonce".into(), json!("made-up"))));
    assert_eq!(reason, Reason::DpopNonceRequired);
    let (reason, _) = fx.refusal(|_, c| drop(c.insert("nonce".into(), json!(5))));
    assert_eq!(reason, Reason::DpopNonceRequired);

    let with_nonce = |nonce: &str| {
        let nonce = nonce.to_owned();
        fx.proof(Some(&token), move |_, c| drop(c.insert("nonce".into(), json!(nonce))))
    };
    assert!(fx.dpop.check_proof(&with_nonce(&nonce), &fx.expectations(Some(&token), Some(&jkt))).is_ok());

    // A replica with the same secret agrees; one with another secret does not.
    let replica =
        DpopVerifier::builder().clock(fx.clock.clone()).nonce_secret(&secret).nonce_lifetime(Duration::from_secs(60));
    assert_eq!(replica.build().unwrap().nonce().as_deref(), Some(nonce.as_str()));
    let stranger = DpopVerifier::builder().clock(fx.clock.clone()).nonce_secret(&[7u8; 32]).build().unwrap();
    assert_ne!(stranger.nonce(), Some(nonce.clone()));

    // Two lifetimes later the nonce is stale (and the proof's iat must move along).
    fx.clock.advance(Duration::from_secs(125));
    let stale = fx.proof(Some(&token), |_, c| {
        c.insert("nonce".into(), json!(nonce));
        c.insert("iat".into(), json!(NOW + 125));
    });
    let err = fx.dpop.check_proof(&stale, &fx.expectations(Some(&token), Some(&jkt))).unwrap_err();
    assert_eq!(err.reason(), Reason::DpopNonceRequired);
    assert!(err.description().contains("stale"), "{err}");
    assert_ne!(fx.dpop.nonce().unwrap(), nonce, "a new window, a new nonce");

    // Without nonces, a nonce claim is ignored and none is issued.
    let plain = Fixture::new();
    assert_eq!(plain.dpop.nonce(), None);
}

#[test]
fn settings_out_of_range_are_refused() {
    let refused = |builder: portcullis::dpop::DpopVerifierBuilder| builder.build().unwrap_err();
    assert!(matches!(refused(DpopVerifier::builder().nonce_secret(&[1u8; 31])), ConfigError::Dpop(_)));
    assert!(matches!(refused(DpopVerifier::builder().algorithms([])), ConfigError::NoAlgorithms));
    assert!(matches!(refused(DpopVerifier::builder().max_age(Duration::ZERO)), ConfigError::Dpop(_)));
    assert!(matches!(refused(DpopVerifier::builder().replay_capacity(0)), ConfigError::Dpop(_)));
    assert!(matches!(refused(DpopVerifier::builder().leeway(Duration::from_secs(8 * 86_400))), ConfigError::Leeway(_)));
}

#[test]
fn a_request_path_never_climbs_out_of_the_base_url_path() {
    // Behind a balancer that maps https://api.example.com/v1/* to the service, the service's `/../admin` is the
    // external `/v1/admin` at most: dot-segments of the request path resolve below the base path, never above.
    let base = htu("https://api.example.com/v1");
    for (path, expected) in [
        ("/../admin", "https://api.example.com/v1/admin"),
        ("/a/../../../admin", "https://api.example.com/v1/admin"),
        ("/%2e%2e/admin", "https://api.example.com/v1/admin"),
        ("/.%2E/%2e/admin", "https://api.example.com/v1/admin"),
        ("/..", "https://api.example.com/v1/"),
        ("/orders/./1", "https://api.example.com/v1/orders/1"),
    ] {
        assert_eq!(Htu::join(&base, path).unwrap().as_str(), expected, "{path}");
    }
    assert_eq!(
        Htu::join(&htu("https://api.example.com"), "/../admin").unwrap().as_str(),
        "https://api.example.com/admin"
    );
}

#[test]
fn htu_normalization() {
    let fx = Fixture::new();
    let token = fx.token(true);
    let jkt = fx.jkt();
    let cases = [
        ("https://API.Example.COM/orders", "https://api.example.com/orders"),
        ("HTTPS://api.example.com/orders", "https://api.example.com/orders"),
        ("https://api.example.com:443/orders", "https://api.example.com/orders"),
        ("https://api.example.com/a/../orders", "https://api.example.com/orders"),
        ("https://api.example.com/./orders", "https://api.example.com/orders"),
        ("https://api.example.com/orders?page=2", "https://api.example.com/orders"),
        ("https://api.example.com/orders#top", "https://api.example.com/orders"),
        ("https://api.example.com/%7Euser", "https://api.example.com/~user"),
        ("https://api.example.com/%7euser", "https://api.example.com/~user"),
        ("https://api.example.com/a%2fb", "https://api.example.com/a%2Fb"),
        ("http://api.example.com:80", "http://api.example.com/"),
        ("https://api.example.com:8443/orders", "https://api.example.com:8443/orders"),
    ];
    for (claim, expected) in cases {
        assert_eq!(htu(claim).as_str(), expected, "{claim}");
        // A proof with the claim spelled so passes for a request at the normalized URI.
        let target = htu(expected);
        let proof = fx.proof(Some(&token), |_, c| drop(c.insert("htu".into(), json!(claim))));
        let expectations = ProofExpectations { htu: &target, ..fx.expectations(Some(&token), Some(&jkt)) };
        assert!(fx.dpop.check_proof(&proof, &expectations).is_ok(), "{claim}");
    }
    // Different resources stay different.
    assert_ne!(htu("https://api.example.com/orders"), htu("https://api.example.com/orders/"));
    assert_ne!(htu("https://api.example.com/Orders"), htu("https://api.example.com/orders"));
    assert_ne!(htu("https://api.example.com/a%2Fb"), htu("https://api.example.com/a/b"));
    // The external base URL and the request path.
    let base = htu("https://api.example.com/v1/");
    assert_eq!(Htu::join(&base, "/orders?x=1").unwrap().as_str(), "https://api.example.com/v1/orders");
    assert_eq!(Htu::join(&htu("http://127.0.0.1:8080"), "/").unwrap().as_str(), "http://127.0.0.1:8080/");
    for bad in
        ["mailto:a@example.com", "https://user@api.example.com/", "https://api.example.com/%G0", "//api.example.com/"]
    {
        assert_eq!(Htu::parse(bad).unwrap_err().reason(), Reason::RequestInvalid, "{bad}");
    }
}

fn target(uri: &Htu) -> RequestTarget<'_> {
    RequestTarget { method: "GET", htu: uri }
}

#[test]
fn request_rules() {
    let fx = Fixture::new();
    let bound = fx.token(true);
    let plain = fx.token(false);
    let request = target(&fx.uri);
    let good = |token: &VerifiedToken| fx.proof(Some(token), |_, _| {});
    let check = |mode, scheme, proofs: &[&str], token: &VerifiedToken| {
        fx.dpop.check_request(mode, scheme, proofs, token, &request).map_err(|err| err.reason())
    };
    let (allowed, required, off) = (DpopMode::Allowed, DpopMode::Required, DpopMode::Off);

    // Accepted: an unbound token as Bearer (unless DPoP is required), a bound one with DPoP and a good proof.
    assert_eq!(check(allowed, Scheme::Bearer, &[], &plain), Ok(None));
    assert_eq!(check(off, Scheme::Bearer, &[], &plain), Ok(None));
    let proof = good(&bound);
    let accepted = check(allowed, Scheme::Dpop, &[&proof], &bound).unwrap().unwrap();
    assert_eq!(accepted.thumbprint(), fx.jkt());
    assert!(check(required, Scheme::Dpop, &[&good(&bound)], &bound).unwrap().is_some());

    // No downgrade: a bound token as Bearer is refused in every mode.
    for mode in [off, allowed, required] {
        assert_eq!(check(mode, Scheme::Bearer, &[], &bound), Err(Reason::TokenBindingInvalid), "{mode}");
    }
    // Bearer where DPoP is required.
    assert_eq!(check(required, Scheme::Bearer, &[], &plain), Err(Reason::TokenBindingInvalid));
    // Bearer with a DPoP header.
    assert_eq!(check(allowed, Scheme::Bearer, &[&good(&plain)], &plain), Err(Reason::RequestInvalid));
    // DPoP where DPoP is off.
    assert_eq!(check(off, Scheme::Dpop, &[&good(&bound)], &bound), Err(Reason::RequestInvalid));
    // Exactly one proof.
    assert_eq!(check(allowed, Scheme::Dpop, &[], &bound), Err(Reason::DpopProofInvalid));
    let (one, two) = (good(&bound), good(&bound));
    assert_eq!(check(allowed, Scheme::Dpop, &[&one, &two], &bound), Err(Reason::DpopProofInvalid));
    // Two proofs joined by a comma in one header value are not a proof.
    let joined = format!("{}, {}", good(&bound), good(&bound));
    assert_eq!(check(allowed, Scheme::Dpop, &[&joined], &bound), Err(Reason::DpopProofInvalid));
    // An unbound token with the DPoP scheme.
    assert_eq!(check(allowed, Scheme::Dpop, &[&good(&plain)], &plain), Err(Reason::TokenBindingInvalid));
    // The proof is for the token sent: ath of another token.
    assert_eq!(check(allowed, Scheme::Dpop, &[&good(&plain)], &bound), Err(Reason::DpopProofInvalid));
    // The same proof twice.
    assert_eq!(check(allowed, Scheme::Dpop, &[&proof], &bound), Err(Reason::DpopProofInvalid));

    // The scheme check before verification.
    assert!(DpopMode::Allowed.admits(Scheme::Bearer).is_ok() && DpopMode::Allowed.admits(Scheme::Dpop).is_ok());
    assert_eq!("required".parse::<DpopMode>(), Ok(DpopMode::Required));
    assert_eq!(DpopMode::default(), DpopMode::Off);
    assert!("on".parse::<DpopMode>().is_err());
    assert_eq!(serde_json::from_value::<DpopMode>(json!("allowed")).unwrap(), DpopMode::Allowed);
    assert!(serde_json::from_value::<DpopMode>(json!("Allowed")).is_err());
    assert_eq!(serde_json::to_value(DpopMode::Required).unwrap(), json!("required"));
}

#[test]
fn a_malformed_cnf_fails_verification() {
    let fx = Fixture::new();
    let token = |cnf: Value| {
        let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "exp": NOW + 60, "cnf": cnf});
        fx.verifier.verify(&fx.issuer.sign_token(&claims, None).unwrap())
    };
    for bad in [json!("jkt"), json!(["a"]), json!({"jkt": 5}), json!({"jkt": null}), json!({"jkt": {"x": 1}})] {
        let err = token(bad.clone()).unwrap_err();
        assert_eq!(err.reason(), Reason::ClaimInvalid, "{bad}");
        assert!(err.description().starts_with("cnf"), "{bad}: {err}");
    }
    assert_eq!(token(json!({})).unwrap().jkt(), None);
    assert_eq!(token(json!({"x5t#S256": "abc"})).unwrap().jkt(), None);
    assert_eq!(token(json!({"jkt": "abc", "other": [1]})).unwrap().jkt(), Some("abc"));
    // A duplicate member inside cnf is malformed JSON.
    let payload =
        format!(r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","exp":{},"cnf":{{"jkt":"a","jkt":"b"}}}}"#, NOW + 60);
    let dup = fx.issuer.sign_parts(br#"{"alg":"ES256","kid":"issuer-key"}"#, payload.as_bytes()).unwrap();
    assert_eq!(fx.verifier.verify(&dup).unwrap_err().reason(), Reason::TokenMalformed);
}

#[test]
fn challenges_name_each_scheme_and_put_the_error_on_the_one_used() {
    let metadata = "https://api.example.com/.well-known/oauth-protected-resource";
    let algs = [Algorithm::ES256, Algorithm::EdDSA].into_iter().collect();
    let both = |scheme_used| Challenges {
        realm: "api",
        bearer: true,
        dpop_algs: Some(algs),
        resource_metadata: Some(metadata),
        scheme_used,
    };
    // No credentials: both challenges, no error.
    let missing = Error::new(Reason::TokenMissing, "no token");
    assert_eq!(
        missing.challenges(&both(None)),
        [
            format!(r#"Bearer realm="api", resource_metadata="{metadata}""#),
            format!(r#"DPoP realm="api", resource_metadata="{metadata}", algs="ES256 EdDSA""#),
        ]
    );
    // A token defect goes on the scheme used.
    let expired = Error::new(Reason::TokenExpired, "token expired 5s ago");
    let on_bearer = expired.challenges(&both(Some(Scheme::Bearer)));
    assert!(on_bearer[0].contains(r#"error="invalid_token""#) && !on_bearer[1].contains("error="));
    let on_dpop = expired.challenges(&both(Some(Scheme::Dpop)));
    assert!(!on_dpop[0].contains("error=") && on_dpop[1].contains(r#"error="invalid_token""#));
    // DPoP reasons always go on DPoP.
    let nonce = Error::new(Reason::DpopNonceRequired, "no nonce");
    let challenges = nonce.challenges(&both(Some(Scheme::Bearer)));
    assert!(challenges[1].contains(r#"error="use_dpop_nonce""#) && !challenges[0].contains("error="));
    // A 403 carries the scope.
    let scope = Error::new(Reason::InsufficientScope, "needs read").with_scope("read:orders");
    assert!(scope.challenges(&both(Some(Scheme::Bearer)))[0].contains(r#"scope="read:orders""#));
    // DPoP required: the DPoP challenge only.
    let only_dpop = Challenges { bearer: false, ..both(Some(Scheme::Dpop)) };
    let challenges = Error::new(Reason::TokenBindingInvalid, "bound").challenges(&only_dpop);
    assert_eq!(challenges.len(), 1);
    assert!(challenges[0].starts_with(r#"DPoP realm="api", error="invalid_token""#), "{challenges:?}");
    // Bearer only: as www_authenticate, plus the metadata.
    let bearer_only = Challenges { dpop_algs: None, resource_metadata: None, ..both(Some(Scheme::Bearer)) };
    assert_eq!(expired.challenges(&bearer_only), [expired.www_authenticate("api").unwrap()]);
    // No challenge for an outage.
    assert!(Error::new(Reason::KeysUnavailable, "down").challenges(&both(None)).is_empty());
}

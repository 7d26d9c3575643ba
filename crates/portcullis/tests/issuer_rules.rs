//! Rules of one issuer (leeway, maximum age, `typ`, algorithms) apply to that issuer's tokens only, and never
//! loosen the verifier's core checks.
#![allow(clippy::unwrap_used)]

use portcullis::clock::ManualClock;
use portcullis::rules::IssuerRules;
use portcullis::signing::SigningKey;
use portcullis::{Algorithm, ConfigError, KeySet, MAX_LEEWAY, Reason, Verifier, VerifierBuilder};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Duration;

const STRICT: &str = "https://strict.example/";
const LAX: &str = "https://lax.example/";
const AUDIENCE: &str = "https://api.example";
const NOW: u64 = 1_800_000_000;

struct Setup {
    key: SigningKey,
    clock: Arc<ManualClock>,
}

impl Setup {
    fn new() -> Self {
        Self {
            key: SigningKey::generate(Algorithm::ES256, Some("k1".into())).unwrap(),
            clock: Arc::new(ManualClock::at_unix(NOW)),
        }
    }

    fn builder(&self) -> VerifierBuilder {
        let jwks = json!({ "keys": [self.key.public_jwk()] }).to_string();
        Verifier::builder()
            .issuer(STRICT)
            .issuer(LAX)
            .audience(AUDIENCE)
            .keys(KeySet::from_jwks_json(jwks.as_bytes()).unwrap())
            .clock(self.clock.clone())
    }

    fn verifier(&self, rules: IssuerRules) -> Verifier {
        self.builder().issuer_rules(STRICT, rules).build().unwrap()
    }

    /// A token of `iss`, issued `age` seconds ago and expiring `exp_in` seconds from now (negative: in the past).
    fn token(&self, iss: &str, age: i64, exp_in: i64, typ: Option<&str>) -> String {
        let now = NOW as i64;
        let claims = json!({"iss": iss, "aud": AUDIENCE, "sub": "alice", "iat": now - age, "exp": now + exp_in});
        let mut header = Map::new();
        if let Some(typ) = typ {
            header.insert("typ".into(), Value::from(typ));
        }
        self.key.sign_token(&claims, Some(&header)).unwrap()
    }
}

fn reason(verifier: &Verifier, token: &str) -> Option<Reason> {
    verifier.verify(token).err().map(|err| err.reason())
}

#[test]
fn leeway_is_the_issuers_own() {
    let setup = Setup::new();
    let verifier = setup.verifier(IssuerRules::new().leeway(Duration::ZERO));
    // Expired 30 s ago: within the default 60 s leeway, beyond the strict issuer's none.
    assert_eq!(reason(&verifier, &setup.token(STRICT, 600, -30, None)), Some(Reason::TokenExpired));
    assert_eq!(reason(&verifier, &setup.token(LAX, 600, -30, None)), None);
    assert_eq!(verifier.leeway(Some(STRICT)), Duration::ZERO);
    assert_eq!(verifier.leeway(Some(LAX)), portcullis::verifier::DEFAULT_LEEWAY);

    let generous = setup.verifier(IssuerRules::new().leeway(Duration::from_secs(300)));
    assert_eq!(reason(&generous, &setup.token(STRICT, 600, -200, None)), None);
    assert_eq!(reason(&generous, &setup.token(LAX, 600, -200, None)), Some(Reason::TokenExpired));
}

#[test]
fn maximum_age_is_the_issuers_own_and_needs_iat() {
    let setup = Setup::new();
    let verifier = setup.verifier(IssuerRules::new().max_age(Duration::from_secs(600)).leeway(Duration::ZERO));
    assert_eq!(reason(&verifier, &setup.token(STRICT, 300, 3600, None)), None);
    assert_eq!(reason(&verifier, &setup.token(STRICT, 700, 3600, None)), Some(Reason::TokenExpired));
    assert_eq!(reason(&verifier, &setup.token(LAX, 7200, 3600, None)), None);
    let no_iat = setup.key.sign_token(&json!({"iss": STRICT, "aud": AUDIENCE, "exp": NOW + 3600}), None).unwrap();
    assert_eq!(reason(&verifier, &no_iat), Some(Reason::ClaimMissing));
}

#[test]
fn a_cached_token_ages_out_under_its_issuers_rules() {
    let setup = Setup::new();
    let verifier = setup.verifier(IssuerRules::new().max_age(Duration::from_secs(600)).leeway(Duration::ZERO));
    let token = setup.token(STRICT, 0, 3600, None);
    assert_eq!(reason(&verifier, &token), None);
    setup.clock.advance(Duration::from_secs(601));
    assert_eq!(reason(&verifier, &token), Some(Reason::TokenExpired), "the cache must not outlive the maximum age");
}

#[test]
fn typ_is_required_of_the_issuers_tokens_only() {
    let setup = Setup::new();
    let verifier = setup.verifier(IssuerRules::new().typ("at+jwt"));
    assert_eq!(reason(&verifier, &setup.token(STRICT, 0, 3600, Some("at+jwt"))), None);
    assert_eq!(reason(&verifier, &setup.token(STRICT, 0, 3600, Some("application/at+jwt"))), None);
    assert_eq!(reason(&verifier, &setup.token(STRICT, 0, 3600, Some("JWT"))), Some(Reason::HeaderInvalid));
    assert_eq!(reason(&verifier, &setup.token(LAX, 0, 3600, Some("JWT"))), None);
    // The report shows the refusal as a structure failure, with nothing after it.
    let report = verifier.explain(&setup.token(STRICT, 0, 3600, Some("JWT")));
    let last = report.steps.last().unwrap();
    assert_eq!(last.check, portcullis::rules::Check::Structure);
    assert!(last.outcome.as_ref().unwrap_err().description().contains("at+jwt"));
}

#[test]
fn algorithms_narrow_what_the_key_allows_never_widen_it() {
    let setup = Setup::new();
    let rsa_only = setup.verifier(IssuerRules::new().algorithms([Algorithm::RS256]));
    // The ES256 key signs: refused for the issuer that allows RS256 only, accepted for the other.
    assert_eq!(reason(&rsa_only, &setup.token(STRICT, 0, 3600, None)), Some(Reason::AlgorithmNotAllowed));
    assert_eq!(reason(&rsa_only, &setup.token(LAX, 0, 3600, None)), None);
    let both = setup.verifier(IssuerRules::new().algorithms([Algorithm::RS256, Algorithm::ES256]));
    assert_eq!(reason(&both, &setup.token(STRICT, 0, 3600, None)), None);
    // A token claiming an algorithm the key cannot use stays refused whatever the allowlist says.
    let token = setup.token(STRICT, 0, 3600, None);
    let (_, rest) = token.split_once('.').unwrap();
    let header = portcullis::__internals::base64url::encode(br#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#);
    let forged = format!("{header}.{rest}");
    assert_eq!(reason(&both, &forged), Some(Reason::AlgorithmNotAllowed));
}

#[test]
fn rules_that_cannot_work_are_refused_at_build() {
    let setup = Setup::new();
    let build = |issuer: &str, rules: IssuerRules| setup.builder().issuer_rules(issuer, rules).build().unwrap_err();
    assert_eq!(
        build("https://other.example/", IssuerRules::new()),
        ConfigError::RulesForUnknownIssuer("https://other.example/".into())
    );
    let too_long = MAX_LEEWAY + Duration::from_secs(1);
    assert_eq!(build(STRICT, IssuerRules::new().leeway(too_long)), ConfigError::Leeway(too_long));
    assert_eq!(build(STRICT, IssuerRules::new().algorithms([])), ConfigError::NoAlgorithms);
    assert!(matches!(build(STRICT, IssuerRules::new().typ("JOSE")), ConfigError::IssuerTyp { .. }));
    let twice = setup
        .builder()
        .issuer_rules(STRICT, IssuerRules::new())
        .issuer_rules(STRICT, IssuerRules::new())
        .build()
        .unwrap_err();
    assert_eq!(twice, ConfigError::RulesForUnknownIssuer(STRICT.into()));
    // An issuer typ that contradicts the verifier's own can never be met.
    let conflicting = setup.builder().typ("jwt").issuer_rules(STRICT, IssuerRules::new().typ("at+jwt")).build();
    assert!(matches!(conflicting.unwrap_err(), ConfigError::IssuerTyp { .. }));
}

/// A complete RFC 9068 access token of `iss`, with `typ` and claims changed by `edit`.
fn rfc9068_token(setup: &Setup, iss: &str, typ: &str, edit: impl FnOnce(&mut Map<String, Value>)) -> String {
    let mut claims = json!({"iss": iss, "aud": AUDIENCE, "sub": "auth0|alice", "client_id": "app-1",
                            "iat": NOW, "exp": NOW + 600, "jti": "t-1", "scope": "read"})
    .as_object()
    .unwrap()
    .clone();
    edit(&mut claims);
    let header = json!({"typ": typ}).as_object().unwrap().clone();
    setup.key.sign_token(&Value::Object(claims), Some(&header)).unwrap()
}

#[test]
fn the_rfc9068_profile_requires_at_jwt_and_names_each_missing_claim() {
    let setup = Setup::new();
    let verifier = setup.verifier(IssuerRules::new().rfc9068());
    assert_eq!(reason(&verifier, &rfc9068_token(&setup, STRICT, "at+jwt", |_| {})), None);
    assert_eq!(reason(&verifier, &rfc9068_token(&setup, STRICT, "application/at+jwt", |_| {})), None);
    // typ JWT is not the profile's.
    let jwt = rfc9068_token(&setup, STRICT, "JWT", |_| {});
    assert_eq!(reason(&verifier, &jwt), Some(Reason::HeaderInvalid));
    // Each required claim, missing, is claim_missing naming it.
    for claim in ["iss", "exp", "aud", "sub", "client_id", "iat", "jti"] {
        let token = rfc9068_token(&setup, STRICT, "at+jwt", |claims| drop(claims.remove(claim)));
        let err = verifier.verify(&token).unwrap_err();
        // Without iss the issuer's own rules cannot apply, but the verifier's own iss rule refuses it the same way.
        assert_eq!(err.reason(), Reason::ClaimMissing, "{claim}: {err}");
        assert!(
            matches!(err.detail(), portcullis::error::Detail::ClaimMissing { claim: named, .. } if named == claim),
            "{claim}"
        );
        assert!(err.description().contains(claim), "{claim}: {err}");
    }
    // The other issuer is not held to the profile.
    let lax = rfc9068_token(&setup, LAX, "JWT", |claims| {
        claims.remove("client_id");
        claims.remove("jti");
    });
    assert_eq!(reason(&verifier, &lax), None);
    // The report shows the failed required-claims step.
    let report = verifier.explain(&rfc9068_token(&setup, STRICT, "at+jwt", |claims| drop(claims.remove("jti"))));
    let failed: Vec<_> = report.steps.iter().filter(|step| step.outcome.is_err()).map(|step| step.check).collect();
    assert_eq!(failed, [portcullis::rules::Check::RequiredClaims]);
}

#[test]
fn an_issuers_required_claims_add_to_the_verifiers() {
    let setup = Setup::new();
    let verifier = setup
        .builder()
        .require_claim("org.id")
        .issuer_rules(STRICT, IssuerRules::new().require_claim("tenant"))
        .build()
        .unwrap();
    let token = |iss: &str, extra: Value| {
        let mut claims = json!({"iss": iss, "aud": AUDIENCE, "exp": NOW + 60, "org": {"id": "o1"}});
        claims.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        setup.key.sign_token(&claims, None).unwrap()
    };
    assert_eq!(reason(&verifier, &token(STRICT, json!({"tenant": "t"}))), None);
    let err = verifier.verify(&token(STRICT, json!({}))).unwrap_err();
    assert_eq!((err.reason(), err.description()), (Reason::ClaimMissing, "required claim 'tenant' is missing"));
    assert_eq!(reason(&verifier, &token(LAX, json!({}))), None);
    assert_eq!(reason(&verifier, &token(LAX, json!({"org": null}))), Some(Reason::ClaimMissing));
}

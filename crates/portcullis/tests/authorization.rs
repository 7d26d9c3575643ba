//! Authorization rules against verified tokens.
#![allow(clippy::unwrap_used)]

use portcullis::{Algorithm, Reason, Requirement, VerifiedToken};
use portcullis_testkit::keys;
use serde_json::{Value, json};

const NOW: u64 = 1_800_000_000;

fn verified(extra: Value) -> VerifiedToken {
    let key = keys::generate(Algorithm::EdDSA, "k");
    let mut claims = json!({"iss": "https://t.example/", "aud": "api", "exp": NOW + 60});
    for (name, value) in extra.as_object().unwrap() {
        claims[name] = value.clone();
    }
    keys::verifier_at("https://t.example/", "api", keys::key_set(&[&key]), NOW)
        .verify(&key.sign_token(&claims, None).unwrap())
        .unwrap()
}

#[test]
fn scopes_permissions_and_combinators() {
    let token = verified(json!({"scope": "openid read:messages", "permissions": ["write:messages"]}));
    let read = Requirement::scope("read:messages");
    let write = Requirement::permission("write:messages");
    assert!(read.is_met(&token));
    assert!(write.is_met(&token));
    assert!(!Requirement::scope("write:messages").is_met(&token), "a permission is not a scope");
    assert!(!Requirement::permission("read:messages").is_met(&token), "a scope is not a permission");
    assert!(Requirement::all([read.clone(), write.clone()]).is_met(&token));
    assert!(Requirement::any([Requirement::scope("admin"), write.clone()]).is_met(&token));
    assert!(!Requirement::any([Requirement::scope("admin"), Requirement::permission("admin")]).is_met(&token));
    assert!(Requirement::not(Requirement::scope("admin")).is_met(&token));
    assert!(Requirement::all([]).is_met(&token));
    assert!(!Requirement::any([]).is_met(&token));
    assert!(Requirement::scopes(["openid", "read:messages"]).is_met(&token));
    assert!(!Requirement::scopes(["openid", "read:messages", "profile"]).is_met(&token));
    let scp = verified(json!({"scp": ["a", "b"]}));
    assert!(Requirement::scopes(["a", "b"]).is_met(&scp));
}

#[test]
fn claims_by_path_and_namespace() {
    let token = verified(json!({
        "https://example.com/roles": ["admin", "editor"],
        "org": {"id": "acme", "tier": 3},
        "amr": "pwd mfa",
        "nothing": null,
    }));
    assert!(Requirement::claim_includes("https://example.com/roles", "admin").is_met(&token));
    assert!(!Requirement::claim_includes("https://example.com/roles", "owner").is_met(&token));
    assert!(Requirement::claim_includes("amr", "mfa").is_met(&token));
    assert!(!Requirement::claim_includes("amr", "mf").is_met(&token), "whole words only");
    assert!(Requirement::claim_equals("org.id", "acme").is_met(&token));
    assert!(Requirement::claim_equals("org.tier", 3).is_met(&token));
    assert!(!Requirement::claim_equals("org.tier", "3").is_met(&token), "JSON types must match");
    assert!(Requirement::claim_exists("org.id").is_met(&token));
    assert!(!Requirement::claim_exists("org.name").is_met(&token));
    assert!(!Requirement::claim_exists("nothing").is_met(&token), "null counts as absent");
    assert!(Requirement::Issuer("https://t.example/".into()).is_met(&token));
}

#[test]
fn unmet_rules_are_insufficient_scope_with_the_scope_attribute() {
    let token = verified(json!({"scope": "openid"}));
    let rule = Requirement::any([Requirement::scope("read:messages"), Requirement::permission("read:messages")]);
    let err = rule.check(&token).unwrap_err();
    assert_eq!(err.reason(), Reason::InsufficientScope);
    assert_eq!(err.http_status(), 403);
    assert_eq!(err.scope(), Some("read:messages"));
    assert_eq!(err.description(), "requires any of (scope 'read:messages', permission 'read:messages')");
    assert_eq!(
        err.www_authenticate("api").unwrap(),
        "Bearer realm=\"api\", error=\"insufficient_scope\", error_description=\"requires any of (scope \
         'read:messages', permission 'read:messages')\", scope=\"read:messages\""
    );
    let both = Requirement::scopes(["a", "b"]).check(&token).unwrap_err();
    assert_eq!(both.scope(), Some("a b"));
    let claim_only = Requirement::claim_equals("org", "acme").check(&token).unwrap_err();
    assert_eq!(claim_only.scope(), None);
    assert!(Requirement::scope("openid").check(&token).is_ok());
}

#[test]
fn rules_round_trip_through_toml_and_json() {
    let rule = Requirement::all([
        Requirement::any([Requirement::scope("read:messages"), Requirement::permission("read:messages")]),
        Requirement::not(Requirement::claim_equals("org.suspended", true)),
        Requirement::claim_includes("https://example.com/roles", "editor"),
    ]);
    let json = serde_json::to_string(&rule).unwrap();
    assert_eq!(serde_json::from_str::<Requirement>(&json).unwrap(), rule);
    let from_toml: Requirement = toml::from_str(
        r#"
        all = [
          { any = [{ scope = "read:messages" }, { permission = "read:messages" }] },
          { not = { claim_equals = { claim = "org.suspended", value = true } } },
          { claim_includes = { claim = "https://example.com/roles", value = "editor" } },
        ]
        "#,
    )
    .unwrap();
    assert_eq!(from_toml, rule);
    assert!(toml::from_str::<Requirement>(r#"scopes = "x""#).is_err(), "unknown rule names are refused");
}

/// An empty `all` would let every token through and an empty `any` refuse every one: neither is read, in any
/// format, at any depth; the rules around them are read as before.
#[test]
fn empty_any_and_all_are_refused_when_read() {
    for json in [r#"{"all":[]}"#, r#"{"any":[]}"#, r#"{"not":{"all":[]}}"#, r#"{"any":[{"scope":"a"},{"all":[]}]}"#] {
        let refused = serde_json::from_str::<Requirement>(json).unwrap_err().to_string();
        assert!(refused.contains("an empty `"), "{json}: {refused}");
    }
    let refused = toml::from_str::<Requirement>("any = []").unwrap_err().to_string();
    assert!(refused.contains("an empty `any` is never met and would refuse every token"), "{refused}");
    let kept: Requirement = serde_json::from_str(r#"{"any":[{"scope":"a"},{"all":[{"permission":"b"}]}]}"#).unwrap();
    assert_eq!(kept, Requirement::any([Requirement::scope("a"), Requirement::all([Requirement::permission("b")])]));
}

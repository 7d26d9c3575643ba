//! Interoperability both ways with independent implementations:
//! - tokens from the dev issuer verified by PyJWT (Python, with `cryptography`);
//! - tokens signed by `jose` (Node.js) for RS256, PS256, ES256 and EdDSA, verified by portcullis against the JWKS
//!   that `jose` exported;
//! - DPoP proofs made by `jose` (keys, `EmbeddedJWK`-style header, its own RFC 7638 thumbprint) taken by the dev
//!   issuer's token endpoint, whose `cnf.jkt` must be `jose`'s thumbprint.
//!
//! `.ci/run` installs both (`pip install pyjwt[crypto]`, `npm install jose@5` into `PORTCULLIS_INTEROP_DIR`,
//! default `~/.cache/portcullis-interop`). Without them the tests print why they skip; with `CI=true` they fail.
#![allow(clippy::unwrap_used)]

use portcullis::{KeySet, Reason, Verifier};
use portcullis_issuer::{DEMO_AUDIENCE, DevIssuer, Tenant};
use portcullis_testkit::probe;
use serde_json::{Value, json};
use std::io::Write;
use std::process::{Command, Stdio};

/// `true` when the tool works; otherwise skips (printing why) or, in CI, fails.
fn available(what: &str, program: &str, args: &[&str], envs: &[(&str, String)]) -> bool {
    let works = probe::succeeds(Command::new(program).args(args).envs(envs.iter().map(|(k, v)| (*k, v.as_str()))));
    probe::require(what, works.map_err(|why| format!("{why}; run .ci/run, or install it, to include this test")))
}

fn run_with_stdin(program: &str, args: &[&str], envs: &[(&str, String)], input: &str) -> String {
    let mut child = Command::new(program)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{program} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

const PYJWT_VERIFY: &str = r#"
import json, sys
import jwt
data = json.load(sys.stdin)
keys = {k["kid"]: k for k in data["jwks"]["keys"]}
results = {}
for name, token in data["tokens"].items():
    try:
        kid = jwt.get_unverified_header(token)["kid"]
        key = jwt.PyJWK(keys[kid]).key
        claims = jwt.decode(token, key=key, algorithms=["RS256"], audience=data["audience"], issuer=data["issuer"])
        results[name] = {"ok": True, "sub": claims["sub"]}
    except Exception as e:
        results[name] = {"ok": False, "error": type(e).__name__}
print(json.dumps(results))
"#;

#[tokio::test]
async fn dev_issuer_tokens_verify_in_pyjwt() {
    if !available("Python PyJWT with cryptography", "python3", &["-c", "import jwt, cryptography"], &[]) {
        return;
    }
    let issuer = DevIssuer::new(Tenant::demo("http://127.0.0.1:3000/callback"), "http://127.0.0.1:4000/").unwrap();
    let machine = issuer.client_credentials_token("demo-client", DEMO_AUDIENCE).unwrap();
    let alice = issuer.user_token("demo-spa", "alice", DEMO_AUDIENCE, &["openid", "read:messages"]).unwrap();
    issuer.rotate_keys().unwrap();
    let after_rotation = issuer.client_credentials_token("demo-client", DEMO_AUDIENCE).unwrap();
    let mut tampered = machine.clone();
    tampered.replace_range(tampered.len() - 6.., "AAAAAA");
    let input = json!({
        "jwks": issuer.jwks(),
        "issuer": issuer.issuer(),
        "audience": DEMO_AUDIENCE,
        "tokens": {"machine": machine, "alice": alice, "after_rotation": after_rotation, "tampered": tampered},
    });
    let results: Value =
        serde_json::from_str(&run_with_stdin("python3", &["-c", PYJWT_VERIFY], &[], &input.to_string())).unwrap();
    assert_eq!(results["machine"], json!({"ok": true, "sub": "demo-client@clients"}));
    assert_eq!(results["alice"], json!({"ok": true, "sub": "auth0|alice"}));
    assert_eq!(results["after_rotation"]["ok"], true);
    assert_eq!(results["tampered"]["ok"], false, "PyJWT must refuse the tampered token: {results}");
}

const JOSE_SIGN: &str = r#"
const jose = require('jose');
(async () => {
  const keys = [], tokens = {};
  for (const alg of ['RS256', 'PS256', 'ES256', 'EdDSA']) {
    const { publicKey, privateKey } = await jose.generateKeyPair(alg, alg === 'EdDSA' ? { crv: 'Ed25519' } : {});
    const jwk = await jose.exportJWK(publicKey);
    const kid = 'jose-' + alg;
    keys.push({ ...jwk, kid, alg, use: 'sig' });
    tokens[alg] = await new jose.SignJWT({ scope: 'read:messages' })
      .setProtectedHeader({ alg, kid, typ: 'JWT' })
      .setIssuer('https://jose.example/')
      .setAudience('https://api.example.com')
      .setSubject('jose|' + alg)
      .setIssuedAt()
      .setExpirationTime('10m')
      .sign(privateKey);
  }
  process.stdout.write(JSON.stringify({ jwks: { keys }, tokens }));
})().catch((e) => { console.error(e); process.exit(1); });
"#;

#[test]
fn jose_signed_tokens_verify_in_portcullis() {
    let dir = std::env::var("PORTCULLIS_INTEROP_DIR")
        .unwrap_or_else(|_| format!("{}/.cache/portcullis-interop", std::env::var("HOME").unwrap_or_default()));
    let env = [("NODE_PATH", format!("{dir}/node_modules"))];
    if !available("Node.js package jose@5", "node", &["-e", "require('jose')"], &env) {
        return;
    }
    let output: Value = serde_json::from_str(&run_with_stdin("node", &["-e", JOSE_SIGN], &env, "")).unwrap();
    let keys = KeySet::from_jwks_json(output["jwks"].to_string().as_bytes()).unwrap();
    assert_eq!(keys.len(), 4, "every key jose exported is usable: {:?}", keys.skipped());
    let verifier = Verifier::builder()
        .issuer("https://jose.example/")
        .audience("https://api.example.com")
        .keys(keys)
        .build()
        .unwrap();
    for alg in ["RS256", "PS256", "ES256", "EdDSA"] {
        let token = output["tokens"][alg].as_str().unwrap();
        let verified = verifier.verify(token).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(verified.subject(), Some(format!("jose|{alg}").as_str()));
        assert_eq!(verified.header().alg().name(), alg);
        let (input, _) = token.rsplit_once('.').unwrap();
        let other = output["tokens"][if alg == "RS256" { "PS256" } else { "RS256" }].as_str().unwrap();
        let spliced = format!("{input}.{}", other.rsplit('.').next().unwrap());
        assert_eq!(verifier.verify(&spliced).unwrap_err().reason(), Reason::SignatureInvalid, "{alg}");
    }
}

const JOSE_DPOP: &str = r#"
const jose = require('jose');
const crypto = require('crypto');
(async () => {
  const htu = process.argv[1];
  const proofs = {};
  for (const alg of ['ES256', 'RS256', 'EdDSA']) {
    const { publicKey, privateKey } = await jose.generateKeyPair(alg, alg === 'EdDSA' ? { crv: 'Ed25519' } : {});
    const jwk = await jose.exportJWK(publicKey);
    const proof = await new jose.SignJWT({ htm: 'POST', htu, jti: crypto.randomUUID() })
      .setProtectedHeader({ alg, typ: 'dpop+jwt', jwk })
      .setIssuedAt()
      .sign(privateKey);
    proofs[alg] = { proof, thumbprint: await jose.calculateJwkThumbprint(jwk, 'sha256') };
  }
  process.stdout.write(JSON.stringify(proofs));
})().catch((e) => { console.error(e); process.exit(1); });
"#;

#[tokio::test]
async fn jose_dpop_proofs_bind_tokens_to_jose_thumbprints() {
    let dir = std::env::var("PORTCULLIS_INTEROP_DIR")
        .unwrap_or_else(|_| format!("{}/.cache/portcullis-interop", std::env::var("HOME").unwrap_or_default()));
    let env = [("NODE_PATH", format!("{dir}/node_modules"))];
    if !available("Node.js package jose@5", "node", &["-e", "require('jose')"], &env) {
        return;
    }
    let issuer = portcullis_testkit::issuers::demo().await;
    let htu = format!("{}oauth/token", issuer.issuer());
    let proofs: Value = serde_json::from_str(&run_with_stdin("node", &["-e", JOSE_DPOP, &htu], &env, "")).unwrap();
    let http = reqwest::Client::new();
    for alg in ["ES256", "RS256", "EdDSA"] {
        let proof = proofs[alg]["proof"].as_str().unwrap();
        let answer: Value = http
            .post(&htu)
            .header("dpop", proof)
            .json(&json!({"grant_type": "client_credentials", "client_id": "demo-client", "client_secret": "demo-secret", "audience": DEMO_AUDIENCE}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["token_type"], "DPoP", "{alg}: {answer}");
        let claims = portcullis_testkit::claims::part(answer["access_token"].as_str().unwrap(), 1);
        assert_eq!(claims["cnf"]["jkt"], proofs[alg]["thumbprint"], "{alg}");
        // The same proof again is a replay.
        let replayed = http
            .post(&htu)
            .header("dpop", proof)
            .json(&json!({"grant_type": "client_credentials", "client_id": "demo-client", "client_secret": "demo-secret", "audience": DEMO_AUDIENCE}))
            .send()
            .await
            .unwrap();
        assert_eq!(replayed.status(), 400, "{alg}");
    }
}

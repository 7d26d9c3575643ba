//! `portcullis verify` run as a process, on tokens minted here.
#![allow(clippy::unwrap_used)]

use portcullis::__internals::base64url;
use portcullis::Algorithm;
use portcullis::signing::SigningKey;
use portcullis_testkit::claims::{access, now, with};
use portcullis_testkit::keys;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};

const ISSUER: &str = "https://tenant.example.com/";
const AUDIENCE: &str = "https://api.example.com";

struct Fixture {
    _dir: tempfile::TempDir,
    jwks_path: String,
    jwks: String,
    key: SigningKey,
}

fn fixture() -> Fixture {
    let key = keys::generate(Algorithm::RS256, "key-1");
    let jwks = keys::jwks(&[&key]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, &jwks).unwrap();
    Fixture { jwks_path: path.to_str().unwrap().to_owned(), jwks, _dir: dir, key }
}

fn claims() -> Value {
    let audiences = json!([AUDIENCE, "https://tenant.example.com/userinfo"]);
    let claims = with(access(ISSUER, audiences, now(), now() + 3600), "azp", json!("client-1"));
    with(claims, "scope", json!("openid read:messages"))
}

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn verify(fx: &Fixture, token: &str, extra: &[&str]) -> Output {
    let mut args = vec!["verify", "--jwks", &fx.jwks_path, "--issuer", ISSUER, "--audience", AUDIENCE];
    args.extend_from_slice(extra);
    args.push(token);
    run(&args, None)
}

fn json_verdict(output: &Output) -> Value {
    let text = String::from_utf8(output.stdout.clone()).unwrap();
    assert_eq!(text.trim().lines().count(), 1, "exactly one JSON object: {text}");
    serde_json::from_str(&text).unwrap()
}

fn assert_invalid(fx: &Fixture, token: &str, reason: &str) -> Output {
    let output = verify(fx, token, &["--json"]);
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));
    let verdict = json_verdict(&output);
    assert_eq!(verdict["valid"], false);
    assert_eq!(verdict["reason"], reason, "{verdict}");
    assert!(verdict["description"].as_str().is_some_and(|d| !d.is_empty()));
    output
}

#[test]
fn valid_token_exits_zero_with_header_and_claims() {
    let fx = fixture();
    let token = fx.key.sign_token(&claims(), None).unwrap();
    let output = verify(&fx, &token, &["--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let verdict = json_verdict(&output);
    assert_eq!(verdict["valid"], true);
    assert_eq!(verdict["header"]["kid"], "key-1");
    assert_eq!(verdict["claims"]["sub"], "auth0|alice");

    let readable = verify(&fx, &token, &[]);
    assert_eq!(readable.status.code(), Some(0));
    let text = String::from_utf8(readable.stdout).unwrap();
    assert!(text.contains("[ok]   signature"), "{text}");
    assert!(text.contains("\"sub\": \"auth0|alice\""), "{text}");
    assert!(text.trim_end().ends_with("VALID"), "{text}");
}

#[test]
fn token_from_stdin_with_bearer_prefix() {
    let fx = fixture();
    let token = fx.key.sign_token(&claims(), None).unwrap();
    let args = ["verify", "--jwks", &fx.jwks_path, "--issuer", ISSUER, "--audience", AUDIENCE, "--json"];
    let output = run(&args, Some(&format!("  Bearer {token}\n")));
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let two = run(&args, Some(&format!("{token} {token}")));
    assert_eq!(two.status.code(), Some(2));
}

#[test]
fn each_defect_exits_one_with_its_reason() {
    let fx = fixture();
    let sign = |claims: &Value| fx.key.sign_token(claims, None).unwrap();

    let expired = sign(&with(claims(), "exp", json!(now() - 7200)));
    let output = assert_invalid(&fx, &expired, "token_expired");
    assert!(json_verdict(&output)["description"].as_str().unwrap().contains("ago"));

    assert_invalid(&fx, &sign(&with(claims(), "aud", json!("https://other.example"))), "audience_mismatch");
    assert_invalid(&fx, &sign(&with(claims(), "iss", json!("https://tenant.example.com"))), "issuer_mismatch");
    assert_invalid(&fx, &sign(&with(claims(), "nbf", json!(now() + 3600))), "token_not_yet_valid");
    assert_invalid(&fx, &sign(&with(claims(), "exp", json!("tomorrow"))), "claim_invalid");

    let mut no_exp = claims();
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_invalid(&fx, &sign(&no_exp), "claim_missing");

    let stranger = SigningKey::generate(Algorithm::RS256, Some("key-2".into())).unwrap();
    assert_invalid(&fx, &stranger.sign_token(&claims(), None).unwrap(), "key_not_found");

    let impostor = SigningKey::generate(Algorithm::RS256, Some("key-1".into())).unwrap();
    assert_invalid(&fx, &impostor.sign_token(&claims(), None).unwrap(), "signature_invalid");

    let header = base64url::encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = base64url::encode(claims().to_string());
    assert_invalid(&fx, &format!("{header}.{payload}."), "algorithm_not_allowed");

    assert_invalid(&fx, "not.a-token", "token_malformed");
}

#[test]
fn readable_output_explains_common_mistakes() {
    let fx = fixture();
    let sign = |claims: &Value| fx.key.sign_token(claims, None).unwrap();

    let slashless = sign(&with(claims(), "iss", json!("https://tenant.example.com")));
    let text = String::from_utf8(verify(&fx, &slashless, &[]).stdout).unwrap();
    assert!(text.contains("trailing slash"), "{text}");
    assert!(text.contains("INVALID (issuer_mismatch)"), "{text}");

    let other = sign(&with(claims(), "aud", json!("https://other.example")));
    let text = String::from_utf8(verify(&fx, &other, &[]).stdout).unwrap();
    assert!(text.contains("token is for 'https://other.example', this API is 'https://api.example.com'"), "{text}");
    assert!(text.contains("hint: request the token with audience=https://api.example.com"), "{text}");

    let expired = sign(&with(claims(), "exp", json!(now() - 3 * 3600 - 120)));
    let text = String::from_utf8(verify(&fx, &expired, &[]).stdout).unwrap();
    assert!(text.contains("token expired 3h 2m ago"), "{text}");

    let stranger = SigningKey::generate(Algorithm::RS256, Some("rotated".into())).unwrap();
    let text = String::from_utf8(verify(&fx, &stranger.sign_token(&claims(), None).unwrap(), &[]).stdout).unwrap();
    assert!(text.contains("no key with kid 'rotated' in the key set (kids: 'key-1')"), "{text}");
    assert!(text.contains("rotated keys"), "{text}");
}

#[test]
fn algorithm_flag_restricts() {
    let fx = fixture();
    let token = fx.key.sign_token(&claims(), None).unwrap();
    let output = verify(&fx, &token, &["--json", "--alg", "ES256"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(json_verdict(&output)["reason"], "algorithm_not_allowed");
    let output = verify(&fx, &token, &["--json", "--alg", "ES256", "--alg", "RS256"]);
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn typ_flag_requires_at_jwt() {
    let fx = fixture();
    let plain = fx.key.sign_token(&claims(), None).unwrap();
    let output = verify(&fx, &plain, &["--json", "--typ", "at+jwt"]);
    assert_eq!(json_verdict(&output)["reason"], "header_invalid");
    let header = json!({ "typ": "at+jwt" });
    let typed = fx.key.sign_token(&claims(), header.as_object()).unwrap();
    assert_eq!(verify(&fx, &typed, &["--typ", "at+jwt"]).status.code(), Some(0));
}

#[test]
fn usage_errors_exit_two_and_configuration_errors_three() {
    let fx = fixture();
    let token = fx.key.sign_token(&claims(), None).unwrap();
    let missing_issuer = run(&["verify", "--jwks", &fx.jwks_path, "--audience", AUDIENCE, &token], None);
    assert_eq!(missing_issuer.status.code(), Some(2));
    let bad_alg = verify(&fx, &token, &["--alg", "HS256"]);
    assert_eq!(bad_alg.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_alg.stderr).contains("unsupported algorithm"));
    let bad_flag = verify(&fx, &token, &["--frobnicate"]);
    assert_eq!(bad_flag.status.code(), Some(2));
    let unreadable =
        run(&["verify", "--jwks", "/nonexistent/jwks.json", "--issuer", ISSUER, "--audience", AUDIENCE, &token], None);
    assert_eq!(unreadable.status.code(), Some(3), "configuration");
    assert!(String::from_utf8_lossy(&unreadable.stderr).contains("cannot read the key set"));

    let dir = tempfile::tempdir().unwrap();
    let only_secret = dir.path().join("secret.json");
    std::fs::write(&only_secret, r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"s"}]}"#).unwrap();
    let output = run(
        &["verify", "--jwks", only_secret.to_str().unwrap(), "--issuer", ISSUER, "--audience", AUDIENCE, &token],
        None,
    );
    assert_eq!(output.status.code(), Some(3), "configuration");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("symmetric") && stderr.contains("no usable keys"), "{stderr}");
    let help = run(&["verify", "--help"], None);
    assert_eq!(help.status.code(), Some(0));
}

/// Reads a request's head (up to the blank line).
fn read_request(stream: &mut std::net::TcpStream) -> Vec<u8> {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    request
}

/// Serves `body` once over HTTP on 127.0.0.1:0 and returns the URL; the thread ends after one request.
fn serve_once(status: &str, body: String) -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
    let status = status.to_owned();
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let request = read_request(&mut stream);
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).unwrap();
        String::from_utf8_lossy(&request).into_owned()
    });
    (url, handle)
}

#[test]
fn jwks_from_a_local_url() {
    let fx = fixture();
    let token = fx.key.sign_token(&claims(), None).unwrap();
    let (url, server) = serve_once("200 OK", fx.jwks.clone());
    let output = run(&["verify", "--jwks", &url, "--issuer", ISSUER, "--audience", AUDIENCE, "--json", &token], None);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let request = server.join().unwrap().to_ascii_lowercase();
    assert!(request.starts_with("get /.well-known/jwks.json"), "{request}");
    assert!(request.contains("accept: application/jwk-set+json, application/json"), "{request}");

    let (url, server) = serve_once("503 Service Unavailable", "{}".into());
    let output = run(&["verify", "--jwks", &url, "--issuer", ISSUER, "--audience", AUDIENCE, &token], None);
    server.join().unwrap();
    assert_eq!(output.status.code(), Some(4), "keys unreachable");
    assert!(String::from_utf8_lossy(&output.stderr).contains("HTTP 503"));
}

/// Serves `requests` requests on 127.0.0.1:0, answering each path from `routes(base_url)`; returns the base URL
/// and a handle yielding the request lines seen.
fn serve_routes(
    requests: usize,
    routes: impl FnOnce(&str) -> Vec<(String, String)>,
) -> (String, std::thread::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let routes = routes(&base);
    let handle = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for _ in 0..requests {
            let (mut stream, _) = listener.accept().unwrap();
            let request = read_request(&mut stream);
            let line = String::from_utf8_lossy(&request).lines().next().unwrap_or_default().to_owned();
            let path = line.split(' ').nth(1).unwrap_or_default().to_owned();
            let (status, body) = match routes.iter().find(|(p, _)| *p == path) {
                Some((_, body)) => ("200 OK", body.clone()),
                None => ("404 Not Found", "{}".to_owned()),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(response.as_bytes()).unwrap();
            seen.push(line);
        }
        seen
    });
    (base, handle)
}

#[test]
fn discover_finds_the_key_set_from_the_issuer() {
    let fx = fixture();
    let jwks = fx.jwks.clone();
    let (base, server) = serve_routes(2, |base| {
        vec![
            (
                "/.well-known/openid-configuration".into(),
                json!({ "issuer": format!("{base}/"), "jwks_uri": format!("{base}/keys") }).to_string(),
            ),
            ("/keys".into(), jwks),
        ]
    });
    let issuer = format!("{base}/");
    let now = now();
    let claims = json!({ "iss": issuer, "aud": AUDIENCE, "sub": "x", "iat": now, "exp": now + 600 });
    let token = fx.key.sign_token(&claims, None).unwrap();
    let output = run(&["verify", "--discover", "--issuer", &issuer, "--audience", AUDIENCE, "--json", &token], None);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let seen = server.join().unwrap();
    assert_eq!(seen, ["GET /.well-known/openid-configuration HTTP/1.1", "GET /keys HTTP/1.1"]);

    // A provider whose metadata names another issuer (no trailing slash) is refused with the reason.
    let (base, server) = serve_routes(1, |base| {
        vec![(
            "/.well-known/openid-configuration".into(),
            json!({ "issuer": base, "jwks_uri": format!("{base}/keys") }).to_string(),
        )]
    });
    let issuer = format!("{base}/");
    let output = run(&["verify", "--discover", "--issuer", &issuer, "--audience", AUDIENCE, &token], None);
    server.join().unwrap();
    assert_eq!(output.status.code(), Some(4), "keys unreachable");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("differ only in the trailing slash"), "{stderr}");

    let both =
        run(&["verify", "--discover", "--jwks", "x.json", "--issuer", ISSUER, "--audience", AUDIENCE, &token], None);
    assert_eq!(both.status.code(), Some(2));
}

#[test]
fn decode_shows_any_jwt_unverified_without_keys() {
    let fx = fixture();
    let token = fx.key.sign_token(&claims(), None).unwrap();
    let output = run(&["verify", "--decode", &token], None);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.starts_with("UNVERIFIED: decoded without keys"), "{text}");
    assert!(
        text.trim_end()
            .ends_with("UNVERIFIED: verify it with --jwks FILE|URL or --discover, and --issuer and --audience"),
        "{text}"
    );
    assert!(text.contains("Header (unverified)") && text.contains("\"kid\": \"key-1\""), "{text}");
    assert!(text.contains("Claims (unverified)") && text.contains("\"sub\": \"auth0|alice\""), "{text}");
    assert!(text.contains("  exp = "), "{text}");

    // As JSON, from standard input with the Bearer prefix; the token need not be valid to be read.
    let exp = now() - 7200;
    let expired = fx.key.sign_token(&with(claims(), "exp", json!(exp)), None).unwrap();
    let output = run(&["verify", "--decode", "--json"], Some(&format!("Bearer {expired}\n")));
    assert_eq!(output.status.code(), Some(0));
    let decoded = json_verdict(&output);
    assert_eq!(decoded["unverified"], true);
    assert_eq!(decoded["header"]["alg"], "RS256");
    assert_eq!(decoded["claims"]["exp"], json!(exp));
    assert!(decoded.get("valid").is_none(), "a decoded token is not called valid: {decoded}");

    // Any JWT, even one verification always refuses: alg none, HMAC.
    for header in [json!({ "alg": "none" }), json!({ "alg": "HS256", "typ": "JWT" })] {
        let unsecured =
            format!("{}.{}.", base64url::encode(header.to_string()), base64url::encode(claims().to_string()));
        let output = run(&["verify", "--decode", "--json", &unsecured], None);
        assert_eq!(output.status.code(), Some(0), "{header}");
        assert_eq!(json_verdict(&output)["header"], header);
    }
}

#[test]
fn decode_refuses_what_is_not_a_jwt() {
    for (input, said) in [
        ("an-opaque-access-token", "this is not a JWT (no dots): an opaque access token"),
        ("a.b.c.d.e", "encrypted token (JWE, 5 parts)"),
        ("abc.def", "a JWT has 3 parts separated by dots, this input has 2"),
        ("e30.!!!.", "the claim set is not unpadded base64url"),
        ("bm9wZQ.e30.", "the header is not a JSON object"),
    ] {
        let output = run(&["verify", "--decode", input], None);
        assert_eq!(output.status.code(), Some(1), "{input}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("cannot decode") && stderr.contains(said), "{input}: {stderr}");
        assert!(output.stdout.is_empty(), "{input}: nothing decoded is printed");
        let output = run(&["verify", "--decode", "--json", input], None);
        let refused = json_verdict(&output);
        assert_eq!((refused["valid"].as_bool(), refused["reason"].as_str()), (Some(false), Some("token_malformed")));
        assert!(refused["description"].as_str().unwrap().contains(said), "{refused}");
    }
    // --decode checks nothing, so verification flags do not go with it.
    let fx = fixture();
    let both = run(&["verify", "--decode", "--jwks", &fx.jwks_path, "a.b.c"], None);
    assert_eq!(both.status.code(), Some(2));
    let with_issuer = run(&["verify", "--decode", "--issuer", ISSUER, "a.b.c"], None);
    assert_eq!(with_issuer.status.code(), Some(2));
}

#[test]
fn a_missing_key_source_names_both_ways_to_give_one() {
    let fx = fixture();
    let token = fx.key.sign_token(&claims(), None).unwrap();
    let output = run(&["verify", "--issuer", ISSUER, "--audience", AUDIENCE, &token], None);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--jwks FILE|URL") && stderr.contains("--discover"), "{stderr}");
    let output = run(&["verify", "--issuer", ISSUER, "--audience", AUDIENCE, "--json", &token], None);
    assert_eq!(json_verdict(&output)["reason"], "usage_error");
}

#[test]
fn an_algorithm_refusal_names_what_the_key_allows() {
    let fx = fixture();
    let token = fx.key.sign_token(&claims(), None).unwrap();
    // --alg allows another algorithm than the token's.
    let output = verify(&fx, &token, &["--json", "--alg", "ES256"]);
    assert_eq!(output.status.code(), Some(1));
    let verdict = json_verdict(&output);
    assert_eq!(verdict["reason"], "algorithm_not_allowed");
    let said = verdict["description"].as_str().unwrap();
    assert_eq!(said, "token alg RS256 is not allowed here (allowed: ES256); key 'key-1' allows RS256", "{verdict}");

    // The token's alg is not the one the JWK declares: the key's algorithm is named.
    let impostor = SigningKey::generate(Algorithm::ES256, Some("key-1".into())).unwrap();
    let output = verify(&fx, &impostor.sign_token(&claims(), None).unwrap(), &[]);
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("token alg ES256 does not match key 'key-1', which allows only RS256 (its JWK alg)"),
        "{text}"
    );
}

/// The `--json` reason codes docs/cli.md lists, with the exit status of each.
fn documented_reasons() -> Vec<(String, i32)> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/cli.md")).unwrap();
    let table = doc.split("### Reason codes").nth(1).expect("docs/cli.md has a Reason codes section");
    table
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2) // the header and the separator
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            (cells[1].trim_matches('`').to_owned(), cells[2].parse().unwrap())
        })
        .collect()
}

#[test]
fn every_documented_reason_code_is_what_verify_emits() {
    use portcullis::Reason;
    use portcullis_cli::Exit;
    let documented = documented_reasons();

    // Every reason of the library is documented for verify, or is one verify cannot give: it reads one given token
    // (no token_missing, request_invalid), checks no rule, no revocation and no DPoP proof (so it asks no shared
    // store), and loads keys before judging.
    let never_from_verify = [
        Reason::TokenMissing,
        Reason::RequestInvalid,
        Reason::TokenRevoked,
        Reason::InsufficientScope,
        Reason::KeysUnavailable,
        Reason::StoreUnavailable,
        Reason::DpopProofInvalid,
        Reason::DpopNonceRequired,
        Reason::TokenBindingInvalid,
    ];
    let token_codes: Vec<&str> =
        documented.iter().filter(|(_, exit)| *exit == 1).map(|(code, _)| code.as_str()).collect();
    let expected: Vec<&str> =
        Reason::ALL.into_iter().filter(|reason| !never_from_verify.contains(reason)).map(Reason::code).collect();
    assert_eq!(token_codes, expected, "docs/cli.md lists the token reasons in the library's order");
    // Each failure before a verdict has its own code, the one Exit gives.
    let failures: Vec<(String, i32)> = documented.iter().filter(|(_, exit)| *exit != 1).cloned().collect();
    let expected: Vec<(String, i32)> = [Exit::Usage, Exit::Config, Exit::Unreachable, Exit::CannotStart]
        .into_iter()
        .map(|exit| (exit.failure_code().unwrap().to_owned(), i32::from(exit.code())))
        .collect();
    assert_eq!(failures, expected);

    // And the binary emits each documented code with its documented status.
    let fx = fixture();
    let sign = |claims: &Value| fx.key.sign_token(claims, None).unwrap();
    let plain = sign(&claims());
    let unreachable = format!("http://127.0.0.1:{}/jwks.json", {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    });
    let mut no_exp = claims();
    no_exp.as_object_mut().unwrap().remove("exp");
    let checked = |token: String, extra: &[&str]| {
        let mut args = vec!["verify", "--jwks", &fx.jwks_path, "--issuer", ISSUER, "--audience", AUDIENCE, "--json"];
        args.extend_from_slice(extra);
        args.push(&token);
        run(&args, None)
    };
    let base = |args: &[&str]| {
        let mut all = vec!["verify", "--issuer", ISSUER, "--audience", AUDIENCE, "--json"];
        all.extend_from_slice(args);
        all.push(&plain);
        run(&all, None)
    };
    for (code, status) in &documented {
        let output = match code.as_str() {
            "token_malformed" => checked("not.a-token".into(), &[]),
            "header_invalid" => checked(plain.clone(), &["--typ", "at+jwt"]),
            "algorithm_not_allowed" => checked(plain.clone(), &["--alg", "ES256"]),
            "key_not_found" => {
                checked(keys::generate(Algorithm::RS256, "key-2").sign_token(&claims(), None).unwrap(), &[])
            }
            "signature_invalid" => {
                checked(keys::generate(Algorithm::RS256, "key-1").sign_token(&claims(), None).unwrap(), &[])
            }
            "token_expired" => checked(sign(&with(claims(), "exp", json!(now() - 7200))), &[]),
            "token_not_yet_valid" => checked(sign(&with(claims(), "nbf", json!(now() + 3600))), &[]),
            "issuer_mismatch" => checked(sign(&with(claims(), "iss", json!("https://other.example/"))), &[]),
            "audience_mismatch" => checked(sign(&with(claims(), "aud", json!("https://other.example"))), &[]),
            "claim_missing" => checked(sign(&no_exp), &[]),
            "claim_invalid" => checked(sign(&with(claims(), "exp", json!("tomorrow"))), &[]),
            "usage_error" => base(&[]),
            "config_error" => base(&["--jwks", "/nonexistent/jwks.json"]),
            "keys_unreachable" => base(&["--jwks", &unreachable]),
            // The runtime and the HTTP client cannot be made to fail from outside; Exit names the code (above).
            "cannot_start" => continue,
            other => panic!("docs/cli.md documents {other:?}, which this test cannot produce"),
        };
        assert_eq!(output.status.code(), Some(*status), "{code}: {}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(json_verdict(&output)["reason"], code.as_str(), "{code}");
    }
}

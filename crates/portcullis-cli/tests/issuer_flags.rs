//! `portcullis issuer --api` and `--dpop-nonce` as a test that learns ports at run time uses them: the added API is
//! listed and is a resource tokens are issued for, and token requests with a DPoP proof must carry the nonce.
#![allow(clippy::unwrap_used)]

mod support;

use portcullis::Algorithm;
use portcullis::signing::SigningKey;
use portcullis_testkit::claims::{now, part};
use serde_json::{Value, json};
use support::{drain, line_with, portcullis, url_after};

#[tokio::test]
async fn added_apis_are_resources_and_nonces_are_required() {
    let mcp = "http://127.0.0.1:1/mcp";
    let (_child, mut out) = portcullis(&[
        "issuer",
        "--listen",
        "127.0.0.1:0",
        "--api",
        mcp,
        "--api",
        "https://api.example.com",
        "--dpop-nonce",
    ]);
    let base = url_after(&mut out, "portcullis dev issuer at").await;
    line_with(&mut out, "DPoP nonces required").await;
    // An audience the tenant has is left as it is: the demo API keeps its permissions.
    line_with(&mut out, "API     https://api.example.com  permissions: read:messages, write:messages").await;
    line_with(&mut out, &format!("API     {mcp}  permissions: ")).await;
    drain(out);
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    // The added API is a resource: a user logs in for it, and the token's audience is it.
    let verifier = "a-code-verifier-that-is-long-enough-0123456789";
    let challenge = portcullis_issuer::pkce::challenge_of(verifier);
    let callback = "http://127.0.0.1:3000/callback";
    let response = http
        .get(format!("{base}authorize"))
        .query(&[
            ("response_type", "code"),
            ("client_id", "demo-spa"),
            ("redirect_uri", callback),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("resource", mcp),
            ("login_hint", "alice"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let code = location.query_pairs().find(|(n, _)| n == "code").unwrap().1.into_owned();
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", "demo-spa"),
        ("code", code.as_str()),
        ("code_verifier", verifier),
        ("redirect_uri", callback),
    ];
    let token = |proof: Option<String>| {
        let mut request = http.post(format!("{base}oauth/token")).form(&form);
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        async move { request.send().await.unwrap() }
    };

    // A proof without the nonce: 400 use_dpop_nonce and the nonce; with it, a DPoP token for the added API.
    let key = SigningKey::generate(Algorithm::ES256, None).unwrap();
    let proof = |nonce: Option<&str>| {
        let mut claims =
            json!({"jti": format!("j-{nonce:?}"), "htm": "POST", "htu": format!("{base}oauth/token"), "iat": now()});
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        key.sign_token(&claims, json!({"typ": "dpop+jwt", "jwk": key.public_jwk()}).as_object()).unwrap()
    };
    let first = token(Some(proof(None))).await;
    assert_eq!(first.status(), 400);
    let nonce = first.headers()["dpop-nonce"].to_str().unwrap().to_owned();
    assert_eq!(first.json::<Value>().await.unwrap()["error"], "use_dpop_nonce");
    let answer: Value = token(Some(proof(Some(&nonce)))).await.json().await.unwrap();
    assert_eq!(answer["token_type"], "DPoP", "{answer}");
    let claims = part(answer["access_token"].as_str().unwrap(), 1);
    assert_eq!(claims["aud"][0], mcp, "openid is the default scope: the userinfo audience comes second");
    assert!(claims["cnf"]["jkt"].as_str().is_some_and(|jkt| jkt.len() == 43), "{claims}");
}

#[test]
fn an_empty_api_audience_is_a_usage_error() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["issuer", "--listen", "127.0.0.1:0", "--api", ""])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--api"));
}

/// The example tenant file of docs/issuer.md's section "The tenant file".
fn documented_tenant() -> String {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/issuer.md")).unwrap();
    let (_, section) = page.split_once("\n## The tenant file\n").expect("docs/issuer.md has \"The tenant file\"");
    let section = section.split("\n## ").next().unwrap();
    let blocks = portcullis_testkit::markdown::fenced_blocks(section, &["toml"]);
    blocks.into_iter().next().expect("the section has an example tenant file").text
}

/// Runs `portcullis issuer --print-tenant` with `args` on a port this test holds (so a listening issuer would fail
/// to start), and returns its exit status and stdout; the command must end within the deadline.
async fn print_tenant(args: &[&str]) -> (Option<i32>, String) {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = held.local_addr().unwrap().to_string();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["issuer", "--print-tenant", "--listen", &listen])
        .args(args)
        .env_remove("PORTCULLIS_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("--print-tenant exits without serving")
        .unwrap();
    drop(held);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.is_empty(), "{stderr}");
    (output.status.code(), String::from_utf8(output.stdout).unwrap())
}

#[tokio::test]
async fn print_tenant_shows_the_effective_tenant_and_config_reads_it_back_unchanged() {
    use portcullis_issuer::Tenant;
    // The demo tenant, with an added API and one the tenant has (left as it is), and nonces.
    let mcp = "http://127.0.0.1:1/mcp";
    let (status, printed) = print_tenant(&["--api", mcp, "--api", "https://api.example.com", "--dpop-nonce"]).await;
    assert_eq!(status, Some(0));
    let tenant = Tenant::from_toml(&printed).unwrap_or_else(|e| panic!("{e}:\n{printed}"));
    let mut expected = Tenant::demo("http://127.0.0.1:3000/callback");
    expected.apis.push(portcullis_issuer::config::Api::new(mcp, Vec::<String>::new()));
    expected.dpop_nonce = true;
    assert_eq!(tenant, expected);
    assert!(printed.contains("type = \"spa\"") && printed.contains("client_secret = \"demo-secret\""), "{printed}");
    assert!(!printed.contains("BANNER") && !printed.contains("dev issuer at"), "only the tenant: {printed}");

    // Round trip: the printed file, given back with --config, prints the same text.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tenant.toml");
    std::fs::write(&file, &printed).unwrap();
    let (status, again) = print_tenant(&["--config", file.to_str().unwrap()]).await;
    assert_eq!((status, again.as_str()), (Some(0), printed.as_str()));

    // The documented tenant file, every key set: printed as the same tenant, and stable from then on.
    let documented = documented_tenant();
    let file = dir.path().join("documented.toml");
    std::fs::write(&file, &documented).unwrap();
    let (status, printed) = print_tenant(&["--config", file.to_str().unwrap(), "--api", mcp]).await;
    assert_eq!(status, Some(0));
    let mut expected = Tenant::from_toml(&documented).unwrap();
    expected.apis.push(portcullis_issuer::config::Api::new(mcp, Vec::<String>::new()));
    assert_eq!(Tenant::from_toml(&printed).unwrap(), expected);
    std::fs::write(&file, &printed).unwrap();
    assert_eq!(print_tenant(&["--config", file.to_str().unwrap()]).await.1, printed);

    // A tenant file with a mistake is refused, as when serving.
    std::fs::write(&file, "[[clients]]\nclient_id = \"x\"\ngrants = [\"password\"]\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["issuer", "--print-tenant", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_ne!(output.status.code(), Some(0));
    assert!(output.stdout.is_empty());
}

#[tokio::test]
async fn the_start_up_listing_shows_each_clients_type_and_urls() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tenant.toml");
    std::fs::write(&file, documented_tenant()).unwrap();
    let (_child, mut out) = portcullis(&["issuer", "--listen", "127.0.0.1:0", "--config", file.to_str().unwrap()]);
    url_after(&mut out, "portcullis dev issuer at").await;
    line_with(&mut out, "client  shop-spa (public, PKCE) grants: authorization_code, refresh_token").await;
    line_with(&mut out, "type: spa").await;
    line_with(&mut out, "callbacks: http://127.0.0.1:5173/").await;
    line_with(&mut out, "logout URLs: http://127.0.0.1:5173/").await;
    line_with(&mut out, "web origins: http://127.0.0.1:5173").await;
    line_with(&mut out, "client  shop-web (secret shop-web-secret)").await;
    line_with(&mut out, "type: regular_web").await;
    line_with(&mut out, "callbacks: http://127.0.0.1:3000/callback").await;
    line_with(&mut out, "client  nightly-job").await;
    line_with(&mut out, "type: non_interactive").await;
    drain(out);
}

#[test]
fn claims_without_a_json_form_are_refused_when_the_tenant_loads() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tenant.toml");
    for value in ["1979-05-27T07:32:00Z", "nan", "[1, inf]"] {
        let tenant = format!("[[users]]\nid = \"carol\"\nclaims = {{ \"https://example.com/since\" = {value} }}\n");
        std::fs::write(&file, tenant).unwrap();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["issuer", "--print-tenant", "--config", file.to_str().unwrap()])
            .env_remove("PORTCULLIS_CONFIG")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_ne!(output.status.code(), Some(0), "{value}: {stderr}");
        assert!(output.stdout.is_empty(), "{value}");
        assert!(stderr.contains("user carol: claim https://example.com/since"), "{value}: {stderr}");
    }
}

//! `portcullis serve --ext-authz-grpc ADDR`: the gRPC ext_authz service next to the HTTP listener, announced on
//! stdout, deciding Envoy's check requests with the dev issuer's tokens; and bad values refused before starting.
#![allow(clippy::unwrap_used)]

mod support;

use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use support::{line_with, machine_token, portcullis, url_after};

const AUDIENCE: &str = "https://api.example.com";

fn check(path: &str, authorization: Option<&str>) -> CheckRequest {
    let mut headers = std::collections::HashMap::new();
    if let Some(value) = authorization {
        headers.insert("authorization".to_owned(), value.to_owned());
    }
    let http = HttpRequest { method: "GET".into(), path: path.into(), headers, size: -1, ..Default::default() };
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request { http: Some(http), ..Default::default() }),
            ..Default::default()
        }),
    }
}

#[tokio::test]
async fn serve_announces_the_grpc_listener_and_answers_check() {
    let (_issuer, mut issuer_out) = portcullis(&["issuer", "--listen", "127.0.0.1:0"]);
    let issuer = url_after(&mut issuer_out, "portcullis dev issuer at").await;
    // No upstream: the gRPC service decides, the HTTP listener answers 404.
    let (mut gateway, mut out) = portcullis(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--ext-authz-grpc",
        "127.0.0.1:0",
        "--issuer",
        &issuer,
        "--audience",
        AUDIENCE,
    ]);
    let listening = line_with(&mut out, "portcullis gateway listening on").await;
    assert!(listening.contains("no upstream"), "{listening}");
    let http_base = support::url_in(&listening);
    let grpc_line = line_with(&mut out, "ext_authz gRPC listening on").await;
    let address = grpc_line.strip_prefix("ext_authz gRPC listening on ").unwrap();
    assert!(address.starts_with("127.0.0.1:") && !address.ends_with(":0"), "{grpc_line}");
    let mut client = AuthorizationClient::connect(format!("http://{address}")).await.unwrap();

    let token = machine_token(&issuer, AUDIENCE).await;
    let allowed = client.check(check("/api/x?q=1", Some(&format!("Bearer {token}")))).await.unwrap().into_inner();
    assert_eq!(allowed.status.as_ref().map(|s| s.code), Some(0), "{allowed:?}");
    let Some(HttpResponse::OkResponse(ok)) = &allowed.http_response else { panic!("{allowed:?}") };
    let subject = ok.headers.iter().filter_map(|h| h.header.as_ref()).find(|h| h.key == "x-auth-subject");
    assert_eq!(subject.map(|h| h.value.as_str()), Some("demo-client@clients"));
    assert!(ok.headers_to_remove.contains(&"authorization".to_owned()), "{ok:?}");

    let missing = client.check(check("/api/x", None)).await.unwrap().into_inner();
    assert_eq!(missing.status.as_ref().map(|s| s.code), Some(16));
    let Some(HttpResponse::DeniedResponse(denied)) = &missing.http_response else { panic!("{missing:?}") };
    assert_eq!(denied.status.map(|s| s.code), Some(401));
    let challenge = denied.headers.iter().filter_map(|h| h.header.as_ref()).find(|h| h.key == "www-authenticate");
    assert!(challenge.is_some_and(|h| h.value.starts_with("Bearer")), "{denied:?}");

    let plain = reqwest::get(format!("{http_base}/api/x")).await.unwrap();
    assert_eq!(plain.status(), 404);
    let body: serde_json::Value = plain.json().await.unwrap();
    assert_eq!(body["reason"], "no_upstream");

    // Stopped with the gateway: SIGTERM ends both listeners and the process.
    let pid = gateway.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), gateway.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(tokio::net::TcpStream::connect(address).await.is_err(), "the gRPC listener is closed");
}

#[test]
fn a_bad_ext_authz_grpc_value_is_a_usage_error() {
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(args)
            .env_remove("PORTCULLIS_CONFIG")
            .env_remove("PORTCULLIS_EXT_AUTHZ_GRPC")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let flags = ["--issuer", "https://t.example/", "--audience", "api", "--jwks-uri", "http://127.0.0.1:9/jwks"];
    for command in ["serve", "check-config"] {
        let (code, said) = run(&[&[command, "--ext-authz-grpc", "localhost"][..], &flags].concat(), &[]);
        assert_eq!(code, Some(2), "{command}: {said}");
        assert!(said.contains("--ext-authz-grpc"), "{command}: {said}");
        let (code, said) = run(&[&[command][..], &flags].concat(), &[("PORTCULLIS_EXT_AUTHZ_GRPC", "nope")]);
        assert_eq!(code, Some(2), "{command}: {said}");
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([&["check-config", "--ext-authz-grpc", "127.0.0.1:9001"][..], &flags].concat())
        .env_remove("PORTCULLIS_CONFIG")
        .env_remove("PORTCULLIS_EXT_AUTHZ_GRPC")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{said}");
    assert!(said.contains("(no upstream, ext_authz gRPC on 127.0.0.1:9001, 1 issuer(s)"), "{said}");
}

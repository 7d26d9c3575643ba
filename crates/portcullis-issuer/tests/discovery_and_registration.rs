//! The dev issuer for clients that discover and register themselves (MCP clients among them), over real sockets:
//! RFC 8414 metadata, RFC 8707 `resource` as the audience, APIs added at run time, and RFC 7591 registration of
//! public clients that then log in with PKCE through the plain-HTML login form.
#![allow(clippy::unwrap_used)]

use portcullis::{KeySet, Verifier};
use portcullis_issuer::config::Api;
use portcullis_issuer::{DEMO_AUDIENCE, DevIssuer, OTHER_AUDIENCE, Tenant, pkce};
use portcullis_testkit::claims::part as decode;
use portcullis_testkit::issuers;
use serde_json::{Value, json};
use std::collections::HashMap;

const CALLBACK: &str = "http://127.0.0.1:3000/callback";
const VERIFIER: &str = "a-code-verifier-that-is-long-enough-0123456789";

struct Running {
    issuer: DevIssuer,
    base: String,
    http: reqwest::Client,
    no_redirect: reqwest::Client,
}

async fn start() -> Running {
    let issuer = issuers::serve(Tenant::demo(CALLBACK)).await;
    let base = issuer.issuer().to_owned();
    let no_redirect = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    Running { issuer, base, http: reqwest::Client::new(), no_redirect }
}

impl Running {
    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
    }

    /// POSTs JSON; status, headers and the body (JSON, or text as a JSON string).
    async fn post(&self, path: &str, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
        let response = self.http.post(format!("{}{path}", self.base)).json(body).send().await.unwrap();
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let text = response.text().await.unwrap();
        (status, headers, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// POSTs a form to the token endpoint; status and body.
    async fn token_form(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let response = self.http.post(format!("{}oauth/token", self.base)).form(form).send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn verifier(&self, audience: &str) -> Verifier {
        let (_, jwks) = self.get(".well-known/jwks.json").await;
        let keys = KeySet::from_jwks_json(jwks.to_string().as_bytes()).unwrap();
        Verifier::builder().issuer(&self.base).audience(audience).keys(keys).without_cache().build().unwrap()
    }
}

const MACHINE: [(&str, &str); 3] =
    [("grant_type", "client_credentials"), ("client_id", "demo-client"), ("client_secret", "demo-secret")];

#[tokio::test]
async fn rfc8414_metadata_lists_what_the_issuer_does() {
    let r = start().await;
    let (status, metadata) = r.get(".well-known/oauth-authorization-server").await;
    assert_eq!(status, 200);
    let base = &r.base;
    assert_eq!(metadata["issuer"], r.base.as_str());
    for (member, url) in [
        ("authorization_endpoint", format!("{base}authorize")),
        ("token_endpoint", format!("{base}oauth/token")),
        ("jwks_uri", format!("{base}.well-known/jwks.json")),
        ("registration_endpoint", format!("{base}oidc/register")),
    ] {
        assert_eq!(metadata[member], url.as_str(), "{member}");
    }
    assert_eq!(metadata["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(metadata["response_types_supported"], json!(["code", "id_token", "id_token token", "code id_token"]));
    let listed = |member: &str| -> Vec<String> {
        metadata[member].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
    };
    assert!(listed("token_endpoint_auth_methods_supported").contains(&"none".to_owned()));
    for grant in ["authorization_code", "client_credentials", "refresh_token"] {
        assert!(listed("grant_types_supported").contains(&grant.to_owned()), "{grant}");
    }
    let algs = listed("dpop_signing_alg_values_supported");
    for alg in ["ES256", "RS256", "PS256", "EdDSA"] {
        assert!(algs.contains(&alg.to_owned()), "{alg} in {algs:?}");
    }
    assert!(algs.iter().all(|alg| !alg.starts_with("HS") && alg != "none"), "asymmetric only: {algs:?}");
    // The OpenID document has the same members and the OpenID ones.
    let (_, openid) = r.get(".well-known/openid-configuration").await;
    for (member, value) in metadata.as_object().unwrap() {
        assert_eq!(&openid[member], value, "{member}");
    }
    assert_eq!(openid["userinfo_endpoint"], format!("{base}userinfo"));
    // The endpoints it names exist.
    assert_eq!(r.http.get(metadata["jwks_uri"].as_str().unwrap()).send().await.unwrap().status(), 200);
    let register = r.http.post(metadata["registration_endpoint"].as_str().unwrap()).json(&json!({})).send();
    assert_eq!(register.await.unwrap().status(), 400);
    let token = r.http.post(metadata["token_endpoint"].as_str().unwrap()).form(&[("grant_type", "x")]).send();
    assert_eq!(token.await.unwrap().status(), 401);
}

#[tokio::test]
async fn resource_becomes_the_audience_and_must_name_an_api() {
    let r = &start().await;
    let with = |extra: &[(&'static str, &'static str)]| [&MACHINE[..], extra].concat();
    let (status, answer) = r.token_form(&with(&[("resource", DEMO_AUDIENCE)])).await;
    assert_eq!(status, 200, "{answer}");
    let token = answer["access_token"].as_str().unwrap();
    assert_eq!(decode(token, 1)["aud"], DEMO_AUDIENCE);
    assert!(r.verifier(DEMO_AUDIENCE).await.verify(token).is_ok());
    let (status, answer) = r.token_form(&with(&[("resource", OTHER_AUDIENCE), ("audience", OTHER_AUDIENCE)])).await;
    assert_eq!((status, &decode(answer["access_token"].as_str().unwrap(), 1)["aud"]), (200, &json!(OTHER_AUDIENCE)));
    for (extra, status, error) in [
        (&[("resource", "https://unknown.example")][..], 400, "invalid_target"),
        (&[("resource", "not-a-uri")], 400, "invalid_target"),
        (&[("resource", "https://api.example.com#frag")], 400, "invalid_target"),
        (&[("resource", DEMO_AUDIENCE), ("resource", OTHER_AUDIENCE)], 400, "invalid_target"),
        (&[("resource", DEMO_AUDIENCE), ("audience", OTHER_AUDIENCE)], 400, "invalid_request"),
    ] {
        let (got, answer) = r.token_form(&with(extra)).await;
        assert_eq!((got, answer["error"].as_str()), (status, Some(error)), "{extra:?}: {answer}");
    }

    // At /authorize the resource goes through the code into the token.
    let authorize = |resource: &'static str| {
        let challenge = pkce::challenge_of(VERIFIER);
        let request = r.no_redirect.get(format!("{}authorize", r.base)).query(&[
            ("response_type", "code"),
            ("client_id", "demo-spa"),
            ("redirect_uri", CALLBACK),
            ("scope", "openid"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("resource", resource),
            ("login_hint", "alice"),
        ]);
        async move { request.send().await.unwrap() }
    };
    let response = authorize(OTHER_AUDIENCE).await;
    assert_eq!(response.status(), 303);
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let code = location.query_pairs().find(|(n, _)| n == "code").unwrap().1.into_owned();
    let exchange = |code: String, resource: &'static str| async move {
        let form = [
            ("grant_type", "authorization_code"),
            ("client_id", "demo-spa"),
            ("code", code.as_str()),
            ("code_verifier", VERIFIER),
            ("redirect_uri", CALLBACK),
            ("resource", resource),
        ];
        r.token_form(&form).await
    };
    let (status, answer) = exchange(code, OTHER_AUDIENCE).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(decode(answer["access_token"].as_str().unwrap(), 1)["aud"][0], OTHER_AUDIENCE);
    // A token request naming another resource than the authorization request: invalid_target.
    let response = authorize(OTHER_AUDIENCE).await;
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let code = location.query_pairs().find(|(n, _)| n == "code").unwrap().1.into_owned();
    assert_eq!(exchange(code, DEMO_AUDIENCE).await.1["error"], "invalid_target");
    // An unknown resource at /authorize: the page says invalid_target, and nothing is redirected.
    let refused = authorize("https://unknown.example").await;
    assert_eq!(refused.status(), 400);
    assert!(refused.headers().get("location").is_none());
    assert!(refused.text().await.unwrap().contains("invalid_target"));
}

#[tokio::test]
async fn apis_added_at_run_time_are_resources() {
    let r = start().await;
    let audience = format!("{}mcp", r.base.replace("127.0.0.1", "localhost"));
    // Before: not a resource of the tenant.
    let refused = r.token_form(&[&MACHINE[..], &[("resource", audience.as_str())]].concat()).await;
    assert_eq!(refused.1["error"], "invalid_target");
    let (status, _, answer) =
        r.post("__admin/apis", &json!({"audience": audience, "permissions": ["tools:call"]})).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer, json!({"audience": audience, "permissions": ["tools:call"]}));
    assert_eq!(r.post("__admin/apis", &json!({"audience": audience})).await.0, 409);
    assert_eq!(r.post("__admin/apis", &json!({"audience": DEMO_AUDIENCE})).await.0, 409, "the tenant's own API");
    assert_eq!(r.post("__admin/apis", &json!({"audience": ""})).await.0, 400);
    assert_eq!(r.post("__admin/apis", &json!({"audience": "x", "rbac": false})).await.0, 422);
    assert_eq!(r.issuer.api(&audience).unwrap().permissions, ["tools:call"]);
    // After: the machine client has no grant for it (403), and a user logs in for it.
    let (status, answer) = r.token_form(&[&MACHINE[..], &[("resource", audience.as_str())]].concat()).await;
    assert_eq!((status, answer["error"].as_str()), (403, Some("access_denied")));
    let challenge = pkce::challenge_of(VERIFIER);
    let response = r
        .no_redirect
        .get(format!("{}authorize", r.base))
        .query(&[
            ("response_type", "code"),
            ("client_id", "demo-spa"),
            ("redirect_uri", CALLBACK),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("resource", audience.as_str()),
            ("login_hint", "bob"),
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
        ("code_verifier", VERIFIER),
        ("redirect_uri", CALLBACK),
    ];
    let (status, answer) = r.token_form(&form).await;
    assert_eq!(status, 200, "{answer}");
    let token = answer["access_token"].as_str().unwrap();
    assert!(r.verifier(&audience).await.verify(token).is_ok());
    assert_eq!(decode(token, 1)["permissions"], json!([]), "RBAC on: bob holds no permission on it");

    // Added APIs are bounded.
    let mut added = 1;
    while r.issuer.add_api(Api::new(format!("https://api-{added}.example"), Vec::<String>::new())).is_ok() {
        added += 1;
    }
    assert_eq!(added, portcullis_issuer::MAX_ADDED_APIS);
    let (status, _, answer) = r.post("__admin/apis", &json!({"audience": "https://one-more.example"})).await;
    assert_eq!((status, answer.as_str()), (507, Some("at most 1000 APIs can be added at run time")));
    assert!(r.issuer.api("https://one-more.example").is_none());
}

#[tokio::test]
async fn registration_accepts_public_clients_and_refuses_the_rest() {
    let r = start().await;
    let (status, headers, answer) = r
        .post(
            "oidc/register",
            &json!({
                "redirect_uris": ["http://127.0.0.1:33418/callback", "https://app.example/cb"],
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "client_name": "An MCP client",
                "scope": "openid offline_access",
                "software_version": "1.2.3",
                "unknown_member": {"ignored": true},
            }),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(headers["cache-control"], "no-store");
    let client_id = answer["client_id"].as_str().unwrap();
    assert!(client_id.len() >= 16, "{client_id}");
    let issued_at = answer["client_id_issued_at"].as_i64().unwrap();
    assert!((r.issuer.now() - issued_at).abs() <= 5, "{issued_at}");
    let mut expected = json!({
        "client_id": client_id,
        "client_id_issued_at": issued_at,
        "redirect_uris": ["http://127.0.0.1:33418/callback", "https://app.example/cb"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "client_name": "An MCP client",
        "scope": "openid offline_access",
        "software_version": "1.2.3",
    });
    assert_eq!(answer, expected);
    // The smallest registration: defaults filled in.
    let (status, _, minimal) = r.post("oidc/register", &json!({"redirect_uris": ["http://localhost/cb"]})).await;
    assert_eq!(status, 201);
    expected = json!(["authorization_code"]);
    assert_eq!((&minimal["grant_types"], &minimal["token_endpoint_auth_method"]), (&expected, &json!("none")));
    assert_ne!(minimal["client_id"], client_id);
    assert_eq!(r.issuer.registered_clients(), 2);

    let cases = [
        (
            json!({"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "client_secret_post"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "client_secret_basic"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["http://127.0.0.1/cb"], "grant_types": ["client_credentials"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["http://127.0.0.1/cb"], "grant_types": ["authorization_code", "password"]}),
            "invalid_client_metadata",
        ),
        (json!({"redirect_uris": ["http://127.0.0.1/cb"], "response_types": ["token"]}), "invalid_client_metadata"),
        (json!({"redirect_uris": ["http://127.0.0.1/cb"], "client_name": ["x"]}), "invalid_client_metadata"),
        (json!({}), "invalid_redirect_uri"),
        (json!({"redirect_uris": []}), "invalid_redirect_uri"),
        (json!({"redirect_uris": ["http://app.example/cb"]}), "invalid_redirect_uri"),
        (json!({"redirect_uris": ["https://app.example/cb#x"]}), "invalid_redirect_uri"),
        (json!({"redirect_uris": ["com.example.app:/cb"]}), "invalid_redirect_uri"),
        (json!({"redirect_uris": ["http://127.0.0.1/cb", "http://evil.example/cb"]}), "invalid_redirect_uri"),
    ];
    for (body, error) in cases {
        let (status, _, answer) = r.post("oidc/register", &body).await;
        assert_eq!((status, answer["error"].as_str()), (400, Some(error)), "{body}: {answer}");
    }
    // Not JSON: refused.
    let form = r.http.post(format!("{}oidc/register", r.base)).form(&[("redirect_uris", "http://127.0.0.1/cb")]);
    let form: Value = form.send().await.unwrap().json().await.unwrap();
    assert_eq!(form["error"], "invalid_client_metadata");
    assert_eq!(r.issuer.registered_clients(), 2, "no refused registration was kept");
}

/// The login page's form, as a plain HTTP client reads it: the action and every named field.
fn form_fields(page: &str) -> (String, Vec<(String, String)>) {
    let attribute = |tag: &str, name: &str| -> Option<String> {
        let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
        let end = tag[start..].find('"')? + start;
        Some(tag[start..end].replace("&amp;", "&").replace("&quot;", "\""))
    };
    let form = page.split("<form").nth(1).unwrap();
    let action = attribute(form.split('>').next().unwrap(), "action").unwrap();
    let fields = form
        .split("<input")
        .skip(1)
        .filter_map(|tag| {
            let tag = tag.split('>').next().unwrap();
            Some((attribute(tag, "name")?, attribute(tag, "value").unwrap_or_default()))
        })
        .collect();
    (action, fields)
}

#[tokio::test]
async fn a_registered_client_logs_in_with_pkce_and_resource_through_the_form() {
    let r = start().await;
    let redirect = "http://127.0.0.1:33418/callback";
    let registration = json!({
        "redirect_uris": [redirect],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
    });
    let (status, _, client) = r.post("oidc/register", &registration).await;
    assert_eq!(status, 201);
    let client_id = client["client_id"].as_str().unwrap();
    let challenge = pkce::challenge_of(VERIFIER);
    let query = [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect),
        ("scope", "openid read:messages offline_access"),
        ("state", "st-1"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("resource", DEMO_AUDIENCE),
    ];
    // The login page, then its form posted back as a browser would, picking alice.
    let page = r.http.get(format!("{}authorize", r.base)).query(&query).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains(&format!("Log in to {client_id}")), "{page}");
    let (action, mut fields) = form_fields(&page);
    assert_eq!(action, "/authorize");
    fields.push(("user".into(), "alice".into()));
    let response = r.no_redirect.post(format!("{}authorize", r.base)).form(&fields).send().await.unwrap();
    assert_eq!(response.status(), 303);
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(redirect), "{location}");
    let pairs: HashMap<String, String> = location.query_pairs().into_owned().collect();
    assert_eq!(pairs["state"], "st-1");
    // The exchange: PKCE verified, the resource is the audience.
    let exchange = [
        ("grant_type", "authorization_code"),
        ("client_id", client_id),
        ("code", pairs["code"].as_str()),
        ("code_verifier", VERIFIER),
        ("redirect_uri", redirect),
        ("resource", DEMO_AUDIENCE),
    ];
    let (status, answer) = r.token_form(&exchange).await;
    assert_eq!(status, 200, "{answer}");
    let token = answer["access_token"].as_str().unwrap();
    let verified = r.verifier(DEMO_AUDIENCE).await.verify(token).unwrap();
    assert_eq!(verified.subject(), Some("auth0|alice"));
    let claims = decode(token, 1);
    assert_eq!(
        (claims["azp"].as_str(), claims["scope"].as_str()),
        (Some(client_id), Some("openid read:messages offline_access"))
    );
    // Refresh with the registered client.
    let refresh = answer["refresh_token"].as_str().unwrap();
    let (status, refreshed) =
        r.token_form(&[("grant_type", "refresh_token"), ("client_id", client_id), ("refresh_token", refresh)]).await;
    assert_eq!(status, 200, "{refreshed}");

    // Without PKCE, or to a redirect URI it did not register: refused at /authorize.
    let without_pkce: Vec<_> = query.iter().filter(|(n, _)| !n.starts_with("code_challenge")).collect();
    let refused = r.no_redirect.get(format!("{}authorize", r.base)).query(&without_pkce).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    let mut elsewhere = query;
    elsewhere[2].1 = "http://127.0.0.1:33418/other";
    let refused = r.no_redirect.get(format!("{}authorize", r.base)).query(&elsewhere).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    // It is a public client: client credentials are not among its grants.
    let (status, answer) = r
        .token_form(&[("grant_type", "client_credentials"), ("client_id", client_id), ("audience", DEMO_AUDIENCE)])
        .await;
    assert_eq!((status, answer["error"].as_str()), (403, Some("unauthorized_client")));
}

#[tokio::test]
async fn a_redirect_uri_is_registered_only_as_the_exact_text_the_login_redirects_to() {
    // A URL parser drops tabs and line breaks and encodes the rest: the issuer would redirect elsewhere than the
    // URI it registered. Only visible ASCII is taken.
    let r = start().await;
    for bad in [
        "http://127.0.0.1/cb\r\nX-Injected: y",
        "http://127.0.0.1/c\tb",
        "http://127.0.0.1/c\nb",
        "http://127.0.0.1/cb\u{0}",
        "http://127.0.0.1/cb\u{7f}",
        "http://127.0.0.1/c b",
        "http://127.0.0.1/caf\u{e9}",
        " http://127.0.0.1/cb",
    ] {
        let body = json!({"redirect_uris": [bad], "token_endpoint_auth_method": "none"});
        let (status, _, answer) = r.post("oidc/register", &body).await;
        assert_eq!((status, answer["error"].as_str()), (400, Some("invalid_redirect_uri")), "{bad:?}: {answer}");
    }
    let (status, _, answer) = r
        .post(
            "oidc/register",
            &json!({"redirect_uris": ["http://127.0.0.1/caf%C3%A9?x=1"], "token_endpoint_auth_method": "none"}),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
}

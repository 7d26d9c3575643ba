//! `portcullis demo`: the whole system on one machine — the dev issuer, the quickstart API trusting it, real
//! tokens — and a guided tour, or with `--check` the tour run and checked.

use crate::issuer_cmd::BANNER;
use crate::{BoxError, Error, Exit};
use clap::Args;
use portcullis::clock::UnixTime;
use portcullis::remote::{KeyLocation, RemoteKeySet, RemoteOptions};
use portcullis::{Clock, Report, SystemClock, VerifiedToken, Verifier};
use portcullis_issuer::{DEMO_AUDIENCE, DevIssuer, OTHER_AUDIENCE, Tenant, pkce};
use portcullis_web::spa::SpaConfig;
use portcullis_web::{Inspect, IssuerView, KeySetView, RouteRule, Tally};
use quickstart::{Access, ROUTES};
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Port of the API on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 3000)]
    port: u16,
    /// Port of the dev issuer on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 4000)]
    issuer_port: u16,
    /// Run the tour, print each step with pass/fail, and exit (0 only if every step behaved as described).
    #[arg(long)]
    check: bool,
}

/// The demo API as its debugger and status pages see it.
struct DemoApi {
    verifier: Verifier,
    keys: RemoteKeySet,
    issuer: String,
    tally: Tally,
}

impl Inspect for DemoApi {
    fn explain(&self, token: &str) -> Report {
        self.verifier.explain(token)
    }

    fn routes(&self) -> Vec<RouteRule> {
        ROUTES
            .iter()
            .map(|(path, access)| match (access, access.requirement()) {
                (Access::Public, _) => RouteRule::public(format!("GET {path}")),
                (_, Some(requirement)) => RouteRule::requiring(format!("GET {path}"), &requirement),
                (_, None) => RouteRule::token(format!("GET {path}")),
            })
            .collect()
    }

    fn check_route(&self, route: usize, token: &VerifiedToken) -> Result<(), portcullis::Error> {
        match ROUTES.get(route).and_then(|(_, access)| access.requirement()) {
            Some(requirement) => requirement.check(token),
            None => Ok(()),
        }
    }

    fn issuers(&self) -> Vec<IssuerView> {
        vec![IssuerView::new(self.issuer.clone(), vec![DEMO_AUDIENCE.to_owned()], KeySetView::remote(&self.keys))]
    }

    fn tally(&self) -> &Tally {
        &self.tally
    }

    fn now(&self) -> UnixTime {
        self.verifier.now()
    }

    fn app_path(&self) -> Option<&str> {
        Some("/")
    }
}

/// Counts every API answer for the status page: refusals by the reason the middleware put in the response.
async fn count(
    api: Arc<DemoApi>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let response = next.run(request).await;
    match response.extensions().get::<portcullis_axum::Rejected>() {
        Some(rejected) => api.tally.denied(rejected.0.reason().code()),
        None if response.status().is_success() => api.tally.allowed(),
        None => {}
    }
    response
}

struct Running {
    api: String,
    issuer: String,
    http: reqwest::Client,
}

pub(crate) fn run(args: DemoArgs) -> Exit {
    let runtime = match crate::runtime() {
        Ok(runtime) => runtime,
        Err(error) => return error.report("demo"),
    };
    runtime.block_on(async {
        let running = match start(&args).await {
            Ok(running) => running,
            Err(error) => return error.report("demo"),
        };
        let passed = tour(&running, args.check).await;
        if args.check {
            return if passed { Exit::Success } else { Exit::Failed };
        }
        println!("\nThe issuer and the API keep running; press Ctrl-C to stop.");
        let _ = tokio::signal::ctrl_c().await;
        Exit::Success
    })
}

async fn start(args: &DemoArgs) -> Result<Running, Error> {
    let issuer_address = ("127.0.0.1", args.issuer_port);
    let for_issuer = " for the issuer (try --issuer-port)";
    let issuer_listener = tokio::net::TcpListener::bind(issuer_address)
        .await
        .map_err(|e| Error::listen(format!("127.0.0.1:{}", args.issuer_port), for_issuer, e))?;
    let for_api = " for the API (try --port)";
    let api_listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .map_err(|e| Error::listen(format!("127.0.0.1:{}", args.port), for_api, e))?;
    let issuer_address = issuer_listener.local_addr().map_err(|e| Error::listen("127.0.0.1", for_issuer, e))?;
    let api_address = api_listener.local_addr().map_err(|e| Error::listen("127.0.0.1", for_api, e))?;
    let (issuer_url, api_url) = (format!("http://{issuer_address}/"), format!("http://{api_address}"));
    // One clock for the issuer (its shifts move only its own view), the API's key set and its verifier.
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let issuer = DevIssuer::with_clock(Tenant::demo(&format!("{api_url}/callback")), &issuer_url, Arc::clone(&clock))
        .map_err(|e| Error::start("cannot create the issuer's signing keys", e))?;
    tokio::spawn(portcullis_issuer::serve(issuer_listener, issuer));

    let keys = RemoteKeySet::new(
        KeyLocation::Discovery { issuer: issuer_url.clone() },
        RemoteOptions::default(),
        Arc::clone(&clock),
    )
    .map_err(|e| Error::start("cannot create the API's key set", e))?;
    keys.refresh().await.map_err(|e| Error::unreachable("the API cannot load the issuer's keys", e))?;
    keys.spawn_refresher();
    let verifier = Verifier::builder()
        .clock(clock)
        .issuer(&issuer_url)
        .audience(DEMO_AUDIENCE)
        .key_source(Arc::new(keys.clone()))
        .build()
        .map_err(|e| Error::start("cannot create the API's verifier", e))?;
    let inspect =
        Arc::new(DemoApi { verifier: verifier.clone(), keys, issuer: issuer_url.clone(), tally: Tally::default() });
    let spa = SpaConfig::new(
        issuer_url.clone(),
        "demo-spa",
        DEMO_AUDIENCE,
        "openid profile read:messages",
        ROUTES.iter().map(|(path, _)| (*path).to_owned()).collect(),
    );
    let counted = Arc::clone(&inspect);
    let spa = portcullis_web::spa::router(spa).map_err(|e| Error::start("cannot create the demo app's page", e))?;
    let app = quickstart::app(verifier)
        .layer(axum::middleware::from_fn(move |request, next| count(Arc::clone(&counted), request, next)))
        .merge(spa)
        .merge(portcullis_web::pages(inspect));
    tokio::spawn(async move { axum::serve(api_listener, app).await });
    println!("{BANNER}\n");
    println!("portcullis demo: three parties on this machine");
    println!("  identity provider  {issuer_url}  (Auth0-shaped dev issuer)");
    println!(
        "  API                {api_url}  (the quickstart routes, guarded by portcullis, audience {DEMO_AUDIENCE})"
    );
    println!("  clients            demo-client / demo-secret (machine), demo-spa (browser, PKCE), users alice and bob");
    println!("\nIn a browser:");
    println!("  {api_url}/          the demo app: log in as alice or bob (authorization code + PKCE), call the API");
    println!("  {api_url}/debugger  the token debugger: paste a token, see every check this API runs on it");
    println!("  {api_url}/status    the issuer's keys (kid, fetched at, next refresh) and requests by outcome");
    Ok(Running { api: api_url, issuer: issuer_url, http: reqwest::Client::new() })
}

/// A client-credentials token, fetched over HTTP as any client would.
async fn machine_token(running: &Running, audience: &str) -> Result<String, BoxError> {
    let response = running
        .http
        .post(format!("{}oauth/token", running.issuer))
        .json(&json!({"grant_type": "client_credentials", "client_id": "demo-client", "client_secret": "demo-secret", "audience": audience}))
        .send()
        .await
        ?;
    access_token(response).await
}

/// A user token through the real authorization-code flow with PKCE (the login page skipped with `login_hint`).
async fn user_token(running: &Running, user: &str) -> Result<String, BoxError> {
    let verifier = "demo-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";
    let callback = format!("{}/callback", running.api);
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let authorize = no_redirects
        .get(format!("{}authorize", running.issuer))
        .query(&[
            ("response_type", "code"),
            ("client_id", "demo-spa"),
            ("redirect_uri", callback.as_str()),
            ("scope", "openid profile read:messages"),
            ("audience", DEMO_AUDIENCE),
            ("state", "demo"),
            ("code_challenge", pkce::challenge_of(verifier).as_str()),
            ("code_challenge_method", "S256"),
            ("login_hint", user),
        ])
        .send()
        .await?;
    let location =
        authorize.headers().get("location").and_then(|v| v.to_str().ok()).ok_or("no redirect from /authorize")?;
    let code = url::Url::parse(location)?
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .ok_or("no code in the redirect")?;
    let response = running
        .http
        .post(format!("{}oauth/token", running.issuer))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "demo-spa"),
            ("code", code.as_str()),
            ("redirect_uri", callback.as_str()),
            ("code_verifier", verifier),
        ])
        .send()
        .await?;
    access_token(response).await
}

async fn access_token(response: reqwest::Response) -> Result<String, BoxError> {
    let status = response.status();
    let body: Value = serde_json::from_str(&response.text().await?)?;
    body["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("token endpoint answered {status}: {body}").into())
}

struct Outcome {
    status: u16,
    challenge: Option<String>,
    body: Value,
}

async fn call(running: &Running, path: &str, token: Option<&str>) -> Result<Outcome, BoxError> {
    let mut request = running.http.get(format!("{}{path}", running.api));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let challenge = response.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let text = response.text().await?;
    Ok(Outcome { status, challenge, body: serde_json::from_str(&text).unwrap_or(Value::String(text)) })
}

/// A shell line that fetches a token without printing it.
fn token_command(issuer: &str, body: &str, endpoint: &str) -> String {
    format!(
        "curl -s -X POST {issuer}{endpoint} -H 'content-type: application/json' -d '{body}' | sed -E 's/.*\"access_token\":\"([^\"]+)\".*/\\1/'"
    )
}

async fn tour(running: &Running, check: bool) -> bool {
    let (api, issuer) = (&running.api, &running.issuer);
    let machine_body = format!(
        r#"{{"grant_type":"client_credentials","client_id":"demo-client","client_secret":"demo-secret","audience":"{DEMO_AUDIENCE}"}}"#
    );
    let other_body = format!(
        r#"{{"grant_type":"client_credentials","client_id":"demo-client","client_secret":"demo-secret","audience":"{OTHER_AUDIENCE}"}}"#
    );
    let user_body =
        |user: &str| format!(r#"{{"client_id":"demo-spa","user":"{user}","scopes":["openid","read:messages"]}}"#);
    println!("\nGet tokens (each line stores one in a shell variable; nothing is printed):\n");
    println!("  TOKEN=$({})", token_command(issuer, &machine_body, "oauth/token"));
    println!("  OTHER=$({})", token_command(issuer, &other_body, "oauth/token"));
    println!("  ALICE=$({})", token_command(issuer, &user_body("alice"), "__admin/tokens"));
    println!("  BOB=$({})", token_command(issuer, &user_body("bob"), "__admin/tokens"));
    println!(
        "  (alice and bob can also log in for real: {issuer}authorize with PKCE; the demo below does exactly that)"
    );

    let tokens = async {
        Ok::<_, BoxError>((
            machine_token(running, DEMO_AUDIENCE).await?,
            machine_token(running, OTHER_AUDIENCE).await?,
            user_token(running, "alice").await?,
            user_token(running, "bob").await?,
        ))
    };
    let (machine, other, alice, bob) = match tokens.await {
        Ok(tokens) => tokens,
        Err(why) => {
            println!("\n[FAIL] getting tokens from the issuer: {why}");
            return false;
        }
    };
    println!(
        "\n[ok]   got a machine token (client credentials), a token for {OTHER_AUDIENCE}, and alice's and bob's tokens (authorization code + PKCE)"
    );

    type Expect = fn(&Outcome) -> bool;
    let steps: [(&str, String, &str, Option<&str>, Expect); 6] = [
        ("The public route needs nothing", format!("curl -s {api}/api/public"), "/api/public", None, |o| {
            o.status == 200
        }),
        (
            "The protected route without a token: 401 and a bare Bearer challenge",
            format!("curl -si {api}/api/protected"),
            "/api/protected",
            None,
            |o| {
                o.status == 401
                    && o.challenge.as_deref().is_some_and(|c| c.starts_with("Bearer realm="))
                    && o.body["reason"] == "token_missing"
            },
        ),
        (
            "With the token: 200 and the verified claims",
            format!("curl -s {api}/api/protected -H \"Authorization: Bearer $TOKEN\""),
            "/api/protected",
            Some(&machine),
            |o| o.status == 200 && o.body["user"]["sub"] == "demo-client@clients",
        ),
        (
            "A token issued for another API: 401 audience mismatch (express-jwt's 'invalid audience')",
            format!("curl -si {api}/api/protected -H \"Authorization: Bearer $OTHER\""),
            "/api/protected",
            Some(&other),
            |o| o.status == 401 && o.body["reason"] == "audience_mismatch",
        ),
        (
            "bob has no read:messages permission: 403 insufficient_scope",
            format!("curl -si {api}/api/private-scoped -H \"Authorization: Bearer $BOB\""),
            "/api/private-scoped",
            Some(&bob),
            |o| o.status == 403 && o.challenge.as_deref().is_some_and(|c| c.contains("scope=\"read:messages\"")),
        ),
        (
            "alice has it: 200",
            format!("curl -s {api}/api/private-scoped -H \"Authorization: Bearer $ALICE\""),
            "/api/private-scoped",
            Some(&alice),
            |o| o.status == 200,
        ),
    ];
    let mut all_passed = true;
    for (number, (title, command, path, token, expect)) in steps.into_iter().enumerate() {
        println!("\n{}. {title}\n   $ {command}", number + 1);
        match call(running, path, token).await {
            Ok(outcome) => {
                let passed = expect(&outcome);
                all_passed &= passed;
                let mark = if !check {
                    "  "
                } else if passed {
                    "[ok]"
                } else {
                    "[FAIL]"
                };
                println!("   {mark} HTTP {}", outcome.status);
                if let Some(challenge) = &outcome.challenge {
                    println!("   WWW-Authenticate: {challenge}");
                }
                let body = outcome.body.to_string();
                println!("   {}", if body.len() > 300 { format!("{}…", &body[..300]) } else { body });
                if outcome.body["reason"] == "audience_mismatch" {
                    println!(
                        "   hint: ask the issuer for a token with audience={DEMO_AUDIENCE} (Auth0: the API Identifier)"
                    );
                }
            }
            Err(why) => {
                all_passed = false;
                println!("   [FAIL] {why}");
            }
        }
    }
    if check {
        println!("\n{}", if all_passed { "demo check: every step behaved as described" } else { "demo check: FAILED" });
    }
    all_passed
}

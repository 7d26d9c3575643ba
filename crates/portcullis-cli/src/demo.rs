//! `portcullis demo`: the whole system on one machine — the dev issuer, the quickstart API trusting it, real
//! tokens — and a guided tour, or with `--check` the tour run and checked.

use crate::issuer_cmd::BANNER;
use crate::{BoxError, Error, Exit};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use clap::Args;
use portcullis::clock::UnixTime;
use portcullis::dpop::{DpopMode, DpopVerifier};
use portcullis::remote::{KeyLocation, RemoteKeySet, RemoteOptions};
use portcullis::signing::SigningKey;
use portcullis::{Algorithm, Clock, Report, SystemClock, VerifiedToken, Verifier};
use portcullis_issuer::{DEMO_AUDIENCE, DevIssuer, OTHER_AUDIENCE, Tenant, pkce};
use portcullis_web::spa::SpaConfig;
use portcullis_web::{Inspect, IssuerView, KeySetView, RouteRule, Tally};
use quickstart::{Access, ROUTES, Sender};
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
    dpop: DpopVerifier,
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

    fn dpop(&self) -> Option<&DpopVerifier> {
        Some(&self.dpop)
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
        .clock(Arc::clone(&clock))
        .issuer(&issuer_url)
        .audience(DEMO_AUDIENCE)
        .key_source(Arc::new(keys.clone()))
        .build()
        .map_err(|e| Error::start("cannot create the API's verifier", e))?;
    // DPoP "allowed": Bearer tokens as before, and DPoP-bound tokens with a proof per request, checked against
    // the API's own URL; the metadata document names the issuer.
    let sender = Sender {
        verifier: DpopVerifier::builder()
            .clock(Arc::clone(&clock))
            .build()
            .map_err(|e| Error::start("cannot create the API's DPoP verifier", e))?,
        mode: DpopMode::Allowed,
        public_url: api_url.clone(),
        authorization_servers: vec![issuer_url.clone()],
    };
    let inspect = Arc::new(DemoApi {
        verifier: verifier.clone(),
        dpop: sender.verifier.clone(),
        keys,
        issuer: issuer_url.clone(),
        tally: Tally::default(),
    });
    let spa = SpaConfig::new(
        issuer_url.clone(),
        "demo-spa",
        DEMO_AUDIENCE,
        "openid profile read:messages",
        ROUTES.iter().map(|(path, _)| (*path).to_owned()).collect(),
    );
    let counted = Arc::clone(&inspect);
    let spa = portcullis_web::spa::router(spa).map_err(|e| Error::start("cannot create the demo app's page", e))?;
    let app = quickstart::app_with(verifier, &sender)
        .layer(axum::middleware::from_fn(move |request, next| count(Arc::clone(&counted), request, next)))
        .merge(spa)
        .merge(portcullis_web::pages(inspect));
    tokio::spawn(async move { axum::serve(api_listener, app).await });
    println!("{BANNER}\n");
    println!("portcullis demo: three parties on this machine");
    println!("  identity provider  {issuer_url}  (Auth0-shaped dev issuer)");
    println!(
        "  API                {api_url}  (the quickstart routes, guarded by portcullis, audience {DEMO_AUDIENCE}; DPoP allowed)"
    );
    println!("  clients            demo-client / demo-secret (machine), demo-spa (browser, PKCE), users alice and bob");
    println!("\nIn a browser:");
    println!("  {api_url}/          the demo app: log in as alice or bob (authorization code + PKCE), call the API");
    println!("  {api_url}/debugger  the token debugger: paste a token, see every check this API runs on it");
    println!("  {api_url}/status    the issuer's keys (kid, fetched at, next refresh) and requests by outcome");
    println!(
        "  {api_url}/.well-known/oauth-protected-resource  the API's metadata (RFC 9728): its issuer, DPoP algorithms"
    );
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

/// A DPoP client's key pair and the proofs it signs (RFC 9449 §4.2), as any DPoP client library makes them.
struct ProofKey {
    key: SigningKey,
    /// The public key as the proofs' `jwk` header carries it: the key members only.
    jwk: serde_json::Map<String, Value>,
    random: SystemRandom,
}

impl ProofKey {
    fn generate() -> Result<Self, BoxError> {
        let key = SigningKey::generate(Algorithm::ES256, None)?;
        let mut jwk = key.public_jwk().as_object().cloned().ok_or("the public key is not a JSON object")?;
        jwk.retain(|name, _| ["kty", "crv", "x", "y"].contains(&name.as_str()));
        Ok(Self { key, jwk, random: SystemRandom::new() })
    }

    /// The RFC 7638 thumbprint the issuer puts in a bound token's `cnf.jkt`.
    fn thumbprint(&self) -> Result<String, BoxError> {
        Ok(portcullis::dpop::thumbprint(&self.jwk)?)
    }

    /// A proof for one request: `htm`, `htu`, `iat`, a fresh random `jti`, and `ath` when a token goes with it.
    fn proof(&self, method: &str, url: &str, token: Option<&str>) -> Result<String, BoxError> {
        let mut jti = [0u8; 16];
        self.random.fill(&mut jti).map_err(|_| "no randomness for a proof's jti")?;
        let jti: String = jti.iter().map(|byte| format!("{byte:02x}")).collect();
        let iat = SystemClock.now().as_secs();
        let mut claims = json!({"jti": jti, "htm": method, "htu": url, "iat": iat});
        if let Some(token) = token {
            claims["ath"] = json!(portcullis::dpop::access_token_hash(token));
        }
        let header = serde_json::Map::from_iter([
            ("typ".to_owned(), json!("dpop+jwt")),
            ("jwk".to_owned(), Value::Object(self.jwk.clone())),
        ]);
        Ok(self.key.sign_token(&claims, Some(&header))?)
    }
}

/// A client-credentials token bound to `key`: the token request carries a proof for the token endpoint.
async fn dpop_token(running: &Running, key: &ProofKey) -> Result<String, BoxError> {
    let endpoint = format!("{}oauth/token", running.issuer);
    let response = running
        .http
        .post(&endpoint)
        .header("DPoP", key.proof("POST", &endpoint, None)?)
        .json(&json!({"grant_type": "client_credentials", "client_id": "demo-client", "client_secret": "demo-secret", "audience": DEMO_AUDIENCE}))
        .send()
        .await?;
    let status = response.status();
    let body: Value = serde_json::from_str(&response.text().await?)?;
    match (body["token_type"].as_str(), body["access_token"].as_str()) {
        (Some(kind), Some(token)) if kind.eq_ignore_ascii_case("DPoP") => Ok(token.to_owned()),
        _ => Err(format!("token endpoint answered {status} without a DPoP-bound token: {}", body["error"]).into()),
    }
}

/// How a tour request authenticates.
#[derive(Clone, Copy)]
enum Credentials<'a> {
    None,
    Bearer(&'a str),
    /// `Authorization: DPoP <token>` with one `DPoP: <proof>` header.
    Dpop(&'a str, &'a str),
}

struct Outcome {
    status: u16,
    /// Every `WWW-Authenticate` line, in order.
    challenges: Vec<String>,
    body: Value,
}

impl Outcome {
    /// The challenge of `scheme` (`Bearer` or `DPoP`), if the answer has one.
    fn challenge(&self, scheme: &str) -> Option<&str> {
        self.challenges.iter().map(String::as_str).find(|c| c.starts_with(&format!("{scheme} ")))
    }
}

async fn call(running: &Running, path: &str, credentials: Credentials<'_>) -> Result<Outcome, BoxError> {
    let mut request = running.http.get(format!("{}{path}", running.api));
    match credentials {
        Credentials::None => {}
        Credentials::Bearer(token) => request = request.bearer_auth(token),
        Credentials::Dpop(token, proof) => {
            request = request.header("authorization", format!("DPoP {token}")).header("dpop", proof);
        }
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let challenges = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect();
    let text = response.text().await?;
    Ok(Outcome { status, challenges, body: serde_json::from_str(&text).unwrap_or(Value::String(text)) })
}

/// A shell line that fetches a token without printing it.
fn token_command(issuer: &str, body: &str, endpoint: &str) -> String {
    format!(
        "curl -s -X POST {issuer}{endpoint} -H 'content-type: application/json' -d '{body}' | sed -E 's/.*\"access_token\":\"([^\"]+)\".*/\\1/'"
    )
}

/// One step of the tour: what it shows, the shell command that does the same, the request, and what must happen.
struct Step<'a> {
    title: &'static str,
    command: String,
    path: &'a str,
    credentials: Credentials<'a>,
    expect: Box<dyn Fn(&Outcome) -> bool + 'a>,
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
    println!(
        "  DPOP_TOKEN, PROOF: a DPoP client (oauth4webapi, for one) signs a proof per request with its own key, sends\n  \
         one with the token request to get a token bound to that key, and one with every API call; the demo below\n  \
         plays that client with an ES256 key of its own"
    );

    let tokens = async {
        let key = ProofKey::generate()?;
        let bound = dpop_token(running, &key).await?;
        Ok::<_, BoxError>((
            machine_token(running, DEMO_AUDIENCE).await?,
            machine_token(running, OTHER_AUDIENCE).await?,
            user_token(running, "alice").await?,
            user_token(running, "bob").await?,
            key,
            bound,
        ))
    };
    let (machine, other, alice, bob, key, bound) = match tokens.await {
        Ok(tokens) => tokens,
        Err(why) => {
            println!("\n[FAIL] getting tokens from the issuer: {why}");
            return false;
        }
    };
    // One proof, sent twice: the API takes it once, then refuses the replay.
    let (proof, thumbprint) = match (key.proof("GET", &format!("{api}/api/protected"), Some(&bound)), key.thumbprint())
    {
        (Ok(proof), Ok(thumbprint)) => (proof, thumbprint),
        (Err(why), _) | (_, Err(why)) => {
            println!("\n[FAIL] making a DPoP proof: {why}");
            return false;
        }
    };
    println!(
        "\n[ok]   got a machine token (client credentials), a token for {OTHER_AUDIENCE}, alice's and bob's tokens (authorization code + PKCE), and a DPoP-bound machine token (cnf.jkt {thumbprint})"
    );

    let metadata_url = format!("{api}/.well-known/oauth-protected-resource");
    let named_in_challenge = format!("resource_metadata=\"{metadata_url}\"");
    let steps = vec![
        Step {
            title: "The public route needs nothing",
            command: format!("curl -s {api}/api/public"),
            path: "/api/public",
            credentials: Credentials::None,
            expect: Box::new(|o: &Outcome| o.status == 200),
        },
        Step {
            title: "The protected route without a token: 401, a Bearer and a DPoP challenge, both naming the metadata",
            command: format!("curl -si {api}/api/protected"),
            path: "/api/protected",
            credentials: Credentials::None,
            expect: Box::new(|o: &Outcome| {
                o.status == 401
                    && o.challenges.first().is_some_and(|c| c.starts_with("Bearer realm="))
                    && o.challenge("DPoP").is_some_and(|c| c.contains("algs=\"") && c.contains(&named_in_challenge))
                    && o.challenge("Bearer").is_some_and(|c| c.contains(&named_in_challenge))
                    && o.body["reason"] == "token_missing"
            }),
        },
        Step {
            title: "With the token: 200 and the verified claims",
            command: format!("curl -s {api}/api/protected -H \"Authorization: Bearer $TOKEN\""),
            path: "/api/protected",
            credentials: Credentials::Bearer(&machine),
            expect: Box::new(|o: &Outcome| o.status == 200 && o.body["user"]["sub"] == "demo-client@clients"),
        },
        Step {
            title: "A token issued for another API: 401 audience mismatch (express-jwt's 'invalid audience')",
            command: format!("curl -si {api}/api/protected -H \"Authorization: Bearer $OTHER\""),
            path: "/api/protected",
            credentials: Credentials::Bearer(&other),
            expect: Box::new(|o: &Outcome| o.status == 401 && o.body["reason"] == "audience_mismatch"),
        },
        Step {
            title: "bob has no read:messages permission: 403 insufficient_scope",
            command: format!("curl -si {api}/api/private-scoped -H \"Authorization: Bearer $BOB\""),
            path: "/api/private-scoped",
            credentials: Credentials::Bearer(&bob),
            expect: Box::new(|o: &Outcome| {
                o.status == 403 && o.challenge("Bearer").is_some_and(|c| c.contains("scope=\"read:messages\""))
            }),
        },
        Step {
            title: "alice has it: 200",
            command: format!("curl -s {api}/api/private-scoped -H \"Authorization: Bearer $ALICE\""),
            path: "/api/private-scoped",
            credentials: Credentials::Bearer(&alice),
            expect: Box::new(|o: &Outcome| o.status == 200),
        },
        Step {
            title: "The API's protected-resource metadata (RFC 9728): its issuer, and that DPoP-bound tokens are welcome",
            command: format!("curl -s {metadata_url}"),
            path: "/.well-known/oauth-protected-resource",
            credentials: Credentials::None,
            expect: Box::new(|o: &Outcome| {
                o.status == 200
                    && o.body["resource"] == api.as_str()
                    && o.body["authorization_servers"] == json!([issuer])
                    && o.body["dpop_signing_alg_values_supported"]
                        .as_array()
                        .is_some_and(|algs| algs.contains(&json!("ES256")))
                    && o.body["dpop_bound_access_tokens_required"] == false
            }),
        },
        Step {
            title: "A DPoP-bound token with a fresh proof (htm, htu, iat, jti, ath; signed by the bound key): 200",
            command: format!("curl -s {api}/api/protected -H \"Authorization: DPoP $DPOP_TOKEN\" -H \"DPoP: $PROOF\""),
            path: "/api/protected",
            credentials: Credentials::Dpop(&bound, &proof),
            expect: Box::new(|o: &Outcome| o.status == 200 && o.body["user"]["cnf"]["jkt"] == thumbprint.as_str()),
        },
        Step {
            title: "The same proof again, as a thief replaying a captured request would: 401 invalid_dpop_proof",
            command: format!("curl -si {api}/api/protected -H \"Authorization: DPoP $DPOP_TOKEN\" -H \"DPoP: $PROOF\""),
            path: "/api/protected",
            credentials: Credentials::Dpop(&bound, &proof),
            expect: Box::new(|o: &Outcome| {
                o.status == 401
                    && o.body["reason"] == "dpop_proof_invalid"
                    && o.challenge("DPoP").is_some_and(|c| c.contains("error=\"invalid_dpop_proof\""))
            }),
        },
        Step {
            title: "The bound token sent as a plain Bearer token, without a proof: 401 invalid_token (no downgrade)",
            command: format!("curl -si {api}/api/protected -H \"Authorization: Bearer $DPOP_TOKEN\""),
            path: "/api/protected",
            credentials: Credentials::Bearer(&bound),
            expect: Box::new(|o: &Outcome| {
                o.status == 401
                    && o.body["reason"] == "token_binding_invalid"
                    && o.challenges.iter().any(|c| c.contains("error=\"invalid_token\""))
            }),
        },
    ];
    let mut all_passed = true;
    for (number, step) in steps.into_iter().enumerate() {
        println!("\n{}. {}\n   $ {}", number + 1, step.title, step.command);
        match call(running, step.path, step.credentials).await {
            Ok(outcome) => {
                let passed = (step.expect)(&outcome);
                all_passed &= passed;
                let mark = if !check {
                    "  "
                } else if passed {
                    "[ok]"
                } else {
                    "[FAIL]"
                };
                println!("   {mark} HTTP {}", outcome.status);
                for challenge in &outcome.challenges {
                    println!("   WWW-Authenticate: {challenge}");
                }
                let body = outcome.body.to_string();
                let shown = match body.char_indices().nth(300) {
                    Some((cut, _)) => format!("{}…", &body[..cut]),
                    None => body,
                };
                println!("   {shown}");
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

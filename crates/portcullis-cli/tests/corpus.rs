//! The end-to-end attack corpus: hundreds of generated requests — path encodings, methods, header spellings,
//! forward-auth headers, upgrades — each with no credential, a token without permissions, and a token from another
//! issuer naming this API's audience, sent as exact bytes through every front (the `portcullis` gateway as a
//! reverse proxy; nginx `auth_request`, Caddy `forward_auth` and Envoy `ext_authz` over gRPC and over HTTP asking
//! it, Envoy with the bootstraps of docs/deployment/envoy.md) to real upstreams (Express, a stdlib WSGI app, nginx
//! serving files).
//!
//! The invariant: a request is refused, or the upstream serves it as a resource whose requirement the credential
//! meets. A bypass is a resource served to a credential that does not meet its requirement; a client-sent copy of
//! a managed claim header (`X-Auth-*`, in any spelling, `HTTP_X_AUTH_*` in WSGI included) or of `Forwarded`,
//! `X-Forwarded-Host` or `X-Real-IP` reaching the upstream; or an accepted `h2c` upgrade.
//!
//! Controls (an admin token on every canonical path, a plain token on `/api/private`, everyone on `/public/x`)
//! must be served through every front, so a gateway that refuses everything fails.
//!
//! Environment:
//! - `PORTCULLIS_CORPUS_BIN`: the gateway binary (default: this build's `portcullis`);
//! - `PORTCULLIS_CORPUS_LEGACY=1`: configure forward-auth with `mode = "forward_auth"` (gateways before
//!   `forward_auth = "nginx" | "caddy" | "traefik"`);
//! - `PORTCULLIS_CORPUS_REPORT_ONLY=1`: print the table without failing on bypasses (controls still must pass);
//! - `PORTCULLIS_CORPUS_DUMP=FILE`: also write every bypass to FILE, one tab-separated line each (front, upstream,
//!   class, credential, request, why).
//!
//! Without nginx, Caddy, Envoy, Node with the example's Express, or python3, the cells needing them print
//! `SKIPPED:` and are left out; with `CI=true` that fails instead. The legacy spelling leaves Envoy out (gateways
//! from before it have no ext_authz).
#![allow(clippy::unwrap_used)]

use portcullis_testkit::envoy::Envoy;
use portcullis_testkit::fronts::{
    ENVOY_PATH_PREFIX, EnvoyMode, Front, GUIDE_CLAIM_HEADERS, GatewayProcess, caddy_front, envoy_front, nginx_front,
};
use portcullis_testkit::issuers::{AUDIENCE_A, AUDIENCE_B, Credential, Issuers};
use portcullis_testkit::probe::require;
use portcullis_testkit::process::available;
use portcullis_testkit::raw::{RawRequest, RawResponse, send};
use portcullis_testkit::upstreams::{Upstream, UpstreamKind, served};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What a credential must hold for a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Nothing.
    Public,
    /// Any valid token for A's API.
    Token,
    /// A valid token holding this permission.
    Permission(&'static str),
    /// A valid token from issuer A for A's audience.
    IssuerA,
}

/// A resource of the upstreams and the gateway route protecting it. The gateway's routes are generated from this
/// table, in this order (first match wins), and the corpus judges what the upstreams serve by it.
struct Resource {
    /// The name upstreams report in `X-Served-Resource`.
    name: &'static str,
    /// A canonical request path for it.
    path: &'static str,
    /// The gateway route.
    route: &'static str,
    /// The route's methods (all when empty).
    methods: &'static [&'static str],
    /// What the route requires.
    need: Need,
}

const RESOURCES: [Resource; 7] = [
    Resource { name: "public", path: "/public/x", route: "/public/*", methods: &[], need: Need::Public },
    Resource { name: "private", path: "/api/private", route: "/api/private", methods: &[], need: Need::Token },
    Resource {
        name: "scoped",
        path: "/api/scoped",
        route: "/api/scoped",
        methods: &[],
        need: Need::Permission("read:messages"),
    },
    Resource { name: "admin", path: "/admin/x", route: "/admin/*", methods: &[], need: Need::Permission("admin:all") },
    Resource {
        name: "docs-internal",
        path: "/docs/internal",
        route: "/docs/internal",
        methods: &["GET"],
        need: Need::Permission("admin:all"),
    },
    Resource { name: "docs", path: "/docs/x", route: "/docs/*", methods: &[], need: Need::Public },
    Resource { name: "a-only", path: "/a-only/x", route: "/a-only/*", methods: &[], need: Need::IssuerA },
];

/// The permissions each credential's token holds, when the gateway must accept it as a valid token for A's API
/// (`Foreign` is never valid there: issuer B is trusted for B's audience only).
fn valid_for_a(credential: Credential) -> Option<&'static [&'static str]> {
    match credential {
        Credential::None | Credential::Foreign => None,
        Credential::Low => Some(&[]),
        Credential::Admin => Some(&["read:messages", "admin:all"]),
    }
}

/// Whether `credential` meets `need`.
fn meets(credential: Credential, need: Need) -> bool {
    match need {
        Need::Public => true,
        Need::Token | Need::IssuerA => valid_for_a(credential).is_some(),
        Need::Permission(permission) => valid_for_a(credential).is_some_and(|held| held.contains(&permission)),
    }
}

fn resource(name: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.name == name)
}

/// The front a client talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum FrontKind {
    /// The gateway as reverse proxy.
    Proxy,
    /// nginx `auth_request` asking the gateway in forward-auth mode.
    Nginx,
    /// Caddy `forward_auth` asking the gateway in forward-auth mode.
    Caddy,
    /// Envoy `ext_authz` asking the gateway's gRPC Check service.
    EnvoyGrpc,
    /// Envoy `ext_authz` asking the gateway in Envoy's HTTP mode (`forward_auth = "envoy"`).
    EnvoyHttp,
}

impl FrontKind {
    fn name(self) -> &'static str {
        match self {
            FrontKind::Proxy => "proxy",
            FrontKind::Nginx => "nginx",
            FrontKind::Caddy => "caddy",
            FrontKind::EnvoyGrpc => "envoy-grpc",
            FrontKind::EnvoyHttp => "envoy-http",
        }
    }

    /// The Envoy mode of an Envoy front.
    fn envoy_mode(self) -> Option<EnvoyMode> {
        match self {
            FrontKind::EnvoyGrpc => Some(EnvoyMode::Grpc),
            FrontKind::EnvoyHttp => Some(EnvoyMode::Http),
            _ => None,
        }
    }
}

/// The gateway configuration: listeners, issuers A and B (each with its own audience), and the routes of
/// [`RESOURCES`]; as a reverse proxy to `upstream` for [`FrontKind::Proxy`], else as the forward-auth endpoint of
/// `front` (`legacy`: the `mode = "forward_auth"` spelling).
fn gateway_config(issuers: &Issuers, front: FrontKind, upstream: Option<&str>, legacy: bool) -> String {
    let mut config = String::from("listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nworkers = 1\n");
    match (front, upstream) {
        (FrontKind::Proxy, Some(upstream)) => writeln!(config, "upstream = \"{upstream}\"").unwrap(),
        (FrontKind::Proxy, None) => unreachable!("a reverse proxy needs an upstream"),
        (_, _) if legacy => config.push_str("mode = \"forward_auth\"\n"),
        (FrontKind::EnvoyGrpc, _) => config.push_str("ext_authz_grpc = \"127.0.0.1:0\"\n"),
        (FrontKind::EnvoyHttp, _) => {
            writeln!(config, "forward_auth = \"envoy\"\nenvoy_path_prefix = \"{ENVOY_PATH_PREFIX}\"").unwrap();
        }
        (front, _) => writeln!(config, "forward_auth = \"{}\"", front.name()).unwrap(),
    }
    for (issuer, audience) in [(issuers.a.issuer(), AUDIENCE_A), (issuers.b.issuer(), AUDIENCE_B)] {
        writeln!(config, "[[issuers]]\nissuer = \"{issuer}\"\naudiences = [\"{audience}\"]").unwrap();
    }
    for resource in &RESOURCES {
        writeln!(config, "[[routes]]\npath = \"{}\"", resource.route).unwrap();
        if !resource.methods.is_empty() {
            let methods: Vec<String> = resource.methods.iter().map(|m| format!("\"{m}\"")).collect();
            writeln!(config, "methods = [{}]", methods.join(", ")).unwrap();
        }
        match resource.need {
            Need::Public => config.push_str("public = true\n"),
            Need::Token => {}
            Need::Permission(permission) => writeln!(config, "require = {{ permission = \"{permission}\" }}").unwrap(),
            Need::IssuerA => {
                writeln!(config, "issuers = [\"{}\"]\naudiences = [\"{AUDIENCE_A}\"]", issuers.a.issuer()).unwrap();
            }
        }
    }
    config
}

/// The attack classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Class {
    /// 1: client-sent `X-Original-*` / `X-Forwarded-*` steering a forward-auth decision.
    ForwardAuthHeaders,
    /// 2: a path or method the gateway matches differently from the upstream.
    PathMethod,
    /// 3: client copies of managed, forwarding and host headers reaching the upstream.
    HeaderHygiene,
    /// 4: tokens accepted for an audience their issuer is not trusted for.
    Audience,
    /// 6: protocol upgrades tunnelled past the gateway.
    Upgrade,
}

impl Class {
    fn label(self) -> &'static str {
        match self {
            Class::ForwardAuthHeaders => "1 forward-auth header trust",
            Class::PathMethod => "2 path/method",
            Class::HeaderHygiene => "3 header hygiene",
            Class::Audience => "4 audience per issuer",
            Class::Upgrade => "6 upgrade",
        }
    }
}

/// One request of the corpus, before a credential is added.
#[derive(Clone)]
struct Case {
    class: Class,
    request: RawRequest,
    /// The resource the request names when read canonically (judges upgrades, which serve no resource).
    intended: &'static str,
}

/// The value client-sent copies of managed and host headers carry.
const MARKER: &str = "spoofed-by-client";
/// The address client-sent forwarding headers name.
const MARKER_IP: &str = "203.0.113.66";
/// The claim headers the gateway manages (its default `claim_headers`).
const MANAGED: [&str; 3] = ["x-auth-subject", "x-auth-scope", "x-auth-permissions"];
/// Headers only the proxies in front may set.
const FORWARDING: [&str; 3] = ["forwarded", "x-forwarded-host", "x-real-ip"];

/// Paths that name `path` (`/first/rest`) to some server but may not to the gateway.
fn path_variants(path: &str) -> Vec<Vec<u8>> {
    let inner = &path[1..];
    let (first, rest) = inner.split_once('/').unwrap();
    let encoded = |c: u8, upper: bool| if upper { format!("%{c:02X}") } else { format!("%{c:02x}") };
    let mut capital = first.to_owned();
    capital[..1].make_ascii_uppercase();
    let mut capital_rest = rest.to_owned();
    capital_rest[..1].make_ascii_uppercase();
    let mut text: Vec<String> = vec![
        path.to_ascii_uppercase(),
        format!("/{capital}/{rest}"),
        format!("/{first}/{}", rest.to_ascii_uppercase()),
        format!("/{first}/{capital_rest}"),
        format!("{path}/"),
        format!("/{path}"),
        format!("/{first}//{rest}"),
        format!("/{first}/./{rest}"),
        format!("{path}/."),
        format!("/{first}/x/../{rest}"),
        format!("/{first}/x/%2e%2e/{rest}"),
        format!("/{first}/x/%2E%2E/{rest}"),
        format!("/{first}/%2E/{rest}"),
        format!("/{first}%2F{rest}"),
        format!("/{first}%2f{rest}"),
        format!("/{}{}/{rest}", encoded(first.as_bytes()[0], true), &first[1..]),
        format!("/{first}/{}{}", encoded(rest.as_bytes()[0], true), &rest[1..]),
        format!("/{first}/{}{}", encoded(rest.as_bytes()[0], false), &rest[1..]),
        format!("{path};x=1"),
        format!("/{first};x=1/{rest}"),
        format!("/{first}\\{rest}"),
        format!("/{first}%5C{rest}"),
        format!("/{first}%5c{rest}"),
        format!("{path}%00"),
        format!("/{first}/x/%252e%252e/{rest}"),
        format!("/{first}/%C3%A9/../{rest}"),
        format!("http://127.0.0.1{path}"),
        // From a public prefix to the protected path.
        format!("/public/../{inner}"),
        format!("/public/x/../../{inner}"),
        format!("/public/%2e%2e/{inner}"),
        format!("/public/%2E%2E/{inner}"),
        format!("/public/.%2e/{inner}"),
        format!("/public/..%2F{inner}"),
        format!("/public/%2e%2e%2f{inner}"),
        format!("/public/..;/{inner}"),
        format!("/public/..\\{inner}"),
        format!("/public/..%5C{inner}"),
        format!("/public/%252e%252e/{inner}"),
        format!("/public/%C3%A9/../../{inner}"),
        format!("/docs/../{inner}"),
        format!("/docs/%2e%2e/{inner}"),
    ];
    let mut seen = std::collections::HashSet::new();
    text.retain(|variant| variant != path && seen.insert(variant.clone()));
    let mut variants: Vec<Vec<u8>> = text.into_iter().map(String::into_bytes).collect();
    // Raw non-ASCII bytes (not UTF-8) in a segment the dot-segment removes, and in the query.
    variants.push([format!("/{first}/").as_bytes(), b"\xC3", format!("/../{rest}").as_bytes()].concat());
    variants.push([path.as_bytes(), b"?q=\xC3"].concat());
    variants.push([b"/public/\xC3/../../".as_slice(), inner.as_bytes()].concat());
    variants
}

/// The corpus: every class, every protected resource, without credentials (added when sending).
fn corpus() -> Vec<Case> {
    let mut cases = Vec::new();
    let protected: Vec<&Resource> = RESOURCES.iter().filter(|r| r.need != Need::Public).collect();
    let public = "/public/x";

    // 1. Forward-auth headers naming a public resource (or another method) while the real request is protected.
    for resource in &protected {
        let sets: Vec<Vec<(&str, &[u8])>> = vec![
            vec![("X-Original-URI", public.as_bytes()), ("X-Original-Method", b"GET")],
            vec![("X-Original-URI", public.as_bytes())],
            vec![("X-Forwarded-Uri", public.as_bytes()), ("X-Forwarded-Method", b"GET")],
            vec![("X-Forwarded-Uri", public.as_bytes())],
            vec![("X-Original-URI", public.as_bytes()), ("X-Forwarded-Uri", public.as_bytes())],
            vec![("X-Original-Method", b"POST")],
            vec![("X-Forwarded-Method", b"POST")],
            vec![("X-Original-Method", b"HEAD")],
            vec![("X-Forwarded-Method", b"HEAD")],
            vec![("x-original-uri", public.as_bytes())],
            vec![("X_Original_URI", public.as_bytes())],
            vec![("X-Forwarded-Prefix", b"/public"), ("X-Forwarded-Uri", public.as_bytes())],
        ];
        for set in sets {
            let mut request = RawRequest::new("GET", resource.path);
            for (name, value) in set {
                request = request.header(name, value);
            }
            cases.push(Case { class: Class::ForwardAuthHeaders, request, intended: resource.name });
        }
        // A real URI the gateway cannot read as text (a raw non-ASCII byte), with the other family's header.
        for target in
            [[resource.path.as_bytes(), b"?q=\xC3"].concat(), [resource.path.as_bytes(), b"?\xC3\xA9"].concat()]
        {
            for name in ["X-Forwarded-Uri", "X-Original-URI"] {
                let request = RawRequest::new("GET", target.clone()).header(name, public);
                cases.push(Case { class: Class::ForwardAuthHeaders, request, intended: resource.name });
            }
        }
    }

    // 2. Paths and methods.
    for resource in &protected {
        for target in path_variants(resource.path) {
            for method in ["GET", "HEAD"] {
                let request = RawRequest::new(method, target.clone());
                cases.push(Case { class: Class::PathMethod, request, intended: resource.name });
            }
        }
        for method in ["HEAD", "POST", "OPTIONS", "PUT", "get", "head", "Get"] {
            let request = RawRequest::new(method, resource.path);
            cases.push(Case { class: Class::PathMethod, request, intended: resource.name });
        }
    }

    // 3. Header hygiene: managed headers in every spelling, forwarding headers, HTTP/1.0 without Host.
    let mut spoofs: Vec<Vec<(String, String)>> = Vec::new();
    for claim in ["Subject", "Scope", "Permissions"] {
        let upper = claim.to_ascii_uppercase();
        let lower = claim.to_ascii_lowercase();
        for name in [
            format!("X-Auth-{claim}"),
            format!("x-auth-{lower}"),
            format!("X-AUTH-{upper}"),
            format!("X_Auth_{claim}"),
            format!("x_auth_{lower}"),
            format!("X-Auth_{claim}"),
        ] {
            spoofs.push(vec![(name, MARKER.to_owned())]);
        }
    }
    spoofs.push(vec![("X-Auth-Subject".into(), MARKER.into()), ("X-Auth-Subject".into(), MARKER.into())]);
    spoofs.push(vec![("X_Auth_Subject".into(), MARKER.into()), ("X-Auth-Subject".into(), MARKER.into())]);
    spoofs.push(vec![("Forwarded".into(), format!("for={MARKER_IP};host={MARKER}.example;proto=https"))]);
    for name in ["X-Forwarded-Host", "x-forwarded-host", "X_Forwarded_Host"] {
        spoofs.push(vec![(name.into(), format!("{MARKER}.example"))]);
    }
    for name in ["X-Real-IP", "X_Real_IP", "X-Forwarded-For"] {
        spoofs.push(vec![(name.into(), MARKER_IP.into())]);
    }
    for target in [public, "/api/private"] {
        let intended = resource_at(target);
        for spoof in &spoofs {
            for method in ["GET", "HEAD"] {
                let mut request = RawRequest::new(method, target);
                for (name, value) in spoof {
                    request = request.header(name.as_str(), value.as_str());
                }
                cases.push(Case { class: Class::HeaderHygiene, request, intended });
            }
        }
        let old = RawRequest::new("GET", target).http10();
        cases.push(Case { class: Class::HeaderHygiene, request: old.clone(), intended });
        let spoofed_host = old.header("X-Forwarded-Host", format!("{MARKER}.example"));
        cases.push(Case { class: Class::HeaderHygiene, request: spoofed_host, intended });
        let no_host = RawRequest::new("GET", target).without_host().header("X-Auth-Subject", MARKER);
        cases.push(Case { class: Class::HeaderHygiene, request: no_host, intended });
    }

    // 4. Every resource at its canonical path (other methods are class 2).
    for resource in &RESOURCES {
        let request = RawRequest::new("GET", resource.path);
        cases.push(Case { class: Class::Audience, request, intended: resource.name });
    }

    // 6. Upgrades.
    let upgrades: [&[(&str, &str)]; 4] = [
        &[
            ("Connection", "Upgrade, HTTP2-Settings"),
            ("Upgrade", "h2c"),
            ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"),
        ],
        &[("Connection", "upgrade"), ("Upgrade", "H2C")],
        &[
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
        &[("Connection", "keep-alive, Upgrade"), ("Upgrade", "h2c, websocket")],
    ];
    for target in [public, "/api/private", "/admin/x"] {
        for headers in upgrades {
            let mut request = RawRequest::new("GET", target);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            cases.push(Case { class: Class::Upgrade, request, intended: resource_at(target) });
        }
    }
    cases
}

/// The resource at a canonical path.
fn resource_at(path: &str) -> &'static str {
    RESOURCES.iter().find(|r| r.path == path).unwrap().name
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Nothing was served (any status).
    Refused,
    /// A resource the credential may have, with clean headers.
    Served,
    /// Why the invariant broke.
    Bypass(String),
}

/// A header name as the application reads it: lowercase, `_` as `-`, without the CGI `HTTP_` prefix.
fn application_name(name: &str) -> String {
    let name = name.to_ascii_lowercase().replace('_', "-");
    name.strip_prefix("http-").map(str::to_owned).unwrap_or(name)
}

/// Judges one answer against the invariant.
fn judge(case: &Case, credential: Credential, answer: &Result<RawResponse, String>) -> Outcome {
    let Ok(response) = answer else { return Outcome::Refused };
    if response.status == 101 {
        let asked = case
            .request
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(b"upgrade"))
            .map(|(_, value)| String::from_utf8_lossy(value).to_ascii_lowercase())
            .unwrap_or_default();
        if asked.contains("h2c") {
            return Outcome::Bypass(format!("101: upgrade to {asked:?} accepted"));
        }
        let need = resource(case.intended).map_or(Need::Permission("-"), |r| r.need);
        if !meets(credential, need) {
            return Outcome::Bypass(format!("101: {asked} to {} for {}", case.intended, credential.name()));
        }
        return Outcome::Served;
    }
    let seen = served(response);
    let mut problems = Vec::new();
    for (name, value) in &seen.headers {
        let as_read = application_name(name);
        if MANAGED.contains(&as_read.as_str()) && value.contains(MARKER) {
            problems.push(format!("client {as_read} reached the upstream as {name}: {value}"));
        }
        if FORWARDING.contains(&as_read.as_str()) && (value.contains(MARKER) || value.contains(MARKER_IP)) {
            problems.push(format!("client {as_read} reached the upstream as {name}: {value}"));
        }
    }
    if let Some(name) = &seen.resource {
        match resource(name) {
            Some(served) if meets(credential, served.need) => {}
            Some(_) => problems.insert(0, format!("{} served {name} to {}", response.status, credential.name())),
            None => problems.insert(0, format!("{} served an unknown resource {name:?}", response.status)),
        }
    }
    match (problems.is_empty(), seen.resource.is_some()) {
        (false, _) => Outcome::Bypass(problems.join("; ")),
        (true, true) => Outcome::Served,
        (true, false) => Outcome::Refused,
    }
}

/// Counts for one table row.
#[derive(Default)]
struct Tally {
    sent: usize,
    /// Of `refused`: no answer at all (connection refused or closed, timeout).
    no_answer: usize,
    refused: usize,
    served: usize,
    bypasses: usize,
    /// Bypasses by credential, in [`Credential::CORPUS`] order.
    by_credential: [usize; 3],
    /// Every bypass: credential, request, why.
    found: Vec<(Credential, String, String)>,
}

impl Tally {
    /// The first bypasses to show: without a foreign token first (those are not explained by audience pooling),
    /// one per distinct reason before repeating one.
    fn examples(&self) -> Vec<String> {
        let mut order: Vec<&(Credential, String, String)> = self.found.iter().collect();
        order.sort_by_key(|(credential, _, _)| *credential == Credential::Foreign);
        let mut picked: Vec<&(Credential, String, String)> = Vec::new();
        for candidate in &order {
            let reason = candidate.2.split(':').next().unwrap_or_default();
            if picked.len() < EXAMPLES && !picked.iter().any(|p| p.2.split(':').next() == Some(reason)) {
                picked.push(candidate);
            }
        }
        for candidate in &order {
            if picked.len() < EXAMPLES && !picked.iter().any(|p| std::ptr::eq(*p, *candidate)) {
                picked.push(candidate);
            }
        }
        picked.iter().map(|(credential, request, why)| format!("[{}] {request} => {why}", credential.name())).collect()
    }
}

/// How many bypassing requests each row lists.
const EXAMPLES: usize = 3;
/// Requests in flight at once.
const PARALLEL: usize = 8;
/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Adds `credential`'s bearer token to `request`.
fn with_credential(request: &RawRequest, issuers: &Issuers, credential: Credential) -> RawRequest {
    match issuers.token(credential) {
        Some(token) => request.clone().header("Authorization", format!("Bearer {token}")),
        None => request.clone(),
    }
}

/// Sends every case with every corpus credential to `address`; returns the tally per class.
async fn run_cell(address: &str, issuers: &Issuers, cases: &[Case]) -> BTreeMap<Class, Tally> {
    let jobs: Vec<(usize, Credential, RawRequest)> = cases
        .iter()
        .enumerate()
        .flat_map(|(i, case)| Credential::CORPUS.map(|c| (i, c, with_credential(&case.request, issuers, c))))
        .collect();
    let jobs = Arc::new(jobs);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..PARALLEL {
        let (jobs, next, address) = (Arc::clone(&jobs), Arc::clone(&next), address.to_owned());
        workers.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some((_, _, request)) = jobs.get(index) else { return answers };
                answers.push((index, send(&address, request, REQUEST_TIMEOUT).await));
            }
        }));
    }
    let mut answers = Vec::with_capacity(jobs.len());
    for worker in workers {
        answers.extend(worker.await.unwrap());
    }
    answers.sort_by_key(|(index, _)| *index);
    let mut tally: BTreeMap<Class, Tally> = BTreeMap::new();
    for (index, answer) in answers {
        let (case, credential, request) = (&cases[jobs[index].0], jobs[index].1, &jobs[index].2);
        let row = tally.entry(case.class).or_default();
        row.sent += 1;
        row.no_answer += usize::from(answer.is_err());
        match judge(case, credential, &answer) {
            Outcome::Refused => row.refused += 1,
            Outcome::Served => row.served += 1,
            Outcome::Bypass(why) => {
                row.bypasses += 1;
                let slot = Credential::CORPUS.iter().position(|c| *c == credential).unwrap();
                row.by_credential[slot] += 1;
                row.found.push((credential, request.describe(), why));
            }
        }
    }
    tally
}

/// Controls: what must be served through every front. Returns the failures.
async fn controls(address: &str, issuers: &Issuers) -> Vec<String> {
    let mut checks: Vec<(Credential, &str, &str)> =
        RESOURCES.iter().map(|r| (Credential::Admin, r.path, r.name)).collect();
    checks.push((Credential::Low, "/api/private", "private"));
    checks.push((Credential::Low, "/a-only/x", "a-only"));
    for credential in [Credential::None, Credential::Low, Credential::Foreign, Credential::Admin] {
        checks.push((credential, "/public/x", "public"));
    }
    let mut failures = Vec::new();
    for (credential, path, expected) in checks {
        let request = with_credential(&RawRequest::new("GET", path), issuers, credential);
        let answer = send(address, &request, REQUEST_TIMEOUT).await;
        let got = answer.as_ref().map(|r| (r.status, served(r).resource));
        if !matches!(&got, Ok((200, Some(name))) if name == expected) {
            let body = answer.as_ref().map(|r| String::from_utf8_lossy(&r.body[..r.body.len().min(200)]).into_owned());
            failures.push(format!("[{}] GET {path}: expected {expected}, got {got:?} {body:?}", credential.name()));
        }
    }
    failures
}

/// A front's process, held (never read) so that it runs for its cell and stops when the cell is done.
#[allow(dead_code)]
enum Process {
    Gateway(GatewayProcess),
    Front(Front),
    Envoy(Envoy),
}

fn node_modules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/express-behind-gateway/node_modules")
}

fn flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_corpus_through_every_front_and_upstream() {
    let binary = std::env::var_os("PORTCULLIS_CORPUS_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_portcullis")), PathBuf::from);
    let legacy = flag("PORTCULLIS_CORPUS_LEGACY");
    let report_only = flag("PORTCULLIS_CORPUS_REPORT_ONLY");
    let nginx = require("nginx front and nginx-files upstream", available("nginx", &["-v"]));
    let caddy = require("caddy front", available("caddy", &["version"]));
    let express = require(
        "express upstream",
        available("node", &["--version"]).and_then(|()| {
            if node_modules().join("express/package.json").exists() {
                Ok(())
            } else {
                Err("npm ci --prefix examples/express-behind-gateway has not been run".into())
            }
        }),
    );
    let python = require("wsgi upstream", available("python3", &["--version"]));
    let envoy = !legacy && require("envoy front", portcullis_testkit::envoy::installed());
    let fronts: Vec<FrontKind> = [
        (FrontKind::Proxy, true),
        (FrontKind::Nginx, nginx),
        (FrontKind::Caddy, caddy),
        (FrontKind::EnvoyGrpc, envoy),
        (FrontKind::EnvoyHttp, envoy),
    ]
    .into_iter()
    .filter_map(|(front, there)| there.then_some(front))
    .collect();
    let upstream_kinds: Vec<UpstreamKind> =
        [(UpstreamKind::Express, express), (UpstreamKind::NginxFiles, nginx), (UpstreamKind::Wsgi, python)]
            .into_iter()
            .filter_map(|(kind, there)| there.then_some(kind))
            .collect();

    let started = Instant::now();
    let issuers = Issuers::start().await;
    let cases = corpus();
    // One forward-auth gateway per front proxy kind, shared by that front's cells.
    let mut deciders = BTreeMap::new();
    for front in fronts.iter().copied().filter(|f| *f != FrontKind::Proxy) {
        let config = gateway_config(&issuers, front, None, legacy);
        let name = format!("forward-auth gateway for {}", front.name());
        deciders.insert(front, GatewayProcess::start(&binary, &name, &config).await);
    }

    let mut table: BTreeMap<(FrontKind, UpstreamKind), BTreeMap<Class, Tally>> = BTreeMap::new();
    let mut control_failures = Vec::new();
    for kind in upstream_kinds {
        let upstream = match kind {
            UpstreamKind::Express => Upstream::express(&node_modules()).await,
            UpstreamKind::NginxFiles => Upstream::nginx_files().await,
            UpstreamKind::Wsgi => Upstream::wsgi().await,
        };
        for front in &fronts {
            // Each front process lives for its cell only.
            let (address, _front) = match front {
                FrontKind::Proxy => {
                    let config = gateway_config(&issuers, *front, Some(&upstream.url()), legacy);
                    let gateway = GatewayProcess::start(&binary, "reverse-proxy gateway", &config).await;
                    (gateway.address.clone(), Process::Gateway(gateway))
                }
                FrontKind::Nginx => {
                    let proxy = nginx_front(&deciders[front].address, &upstream.address, &GUIDE_CLAIM_HEADERS).await;
                    (proxy.address.clone(), Process::Front(proxy))
                }
                FrontKind::Caddy => {
                    let proxy = caddy_front(&deciders[front].address, &upstream.address, &GUIDE_CLAIM_HEADERS).await;
                    (proxy.address.clone(), Process::Front(proxy))
                }
                FrontKind::EnvoyGrpc | FrontKind::EnvoyHttp => {
                    let decider = &deciders[front];
                    let authorizer = match front {
                        FrontKind::EnvoyGrpc => decider.ext_authz_grpc.as_deref().expect("gRPC ext_authz address"),
                        _ => &decider.address,
                    };
                    let mode = front.envoy_mode().unwrap();
                    let proxy = envoy_front(mode, authorizer, &upstream.address, &GUIDE_CLAIM_HEADERS).await;
                    (proxy.address.clone(), Process::Envoy(proxy))
                }
            };
            let cell = format!("{} -> {}", front.name(), kind.name());
            control_failures.extend(controls(&address, &issuers).await.into_iter().map(|f| format!("{cell}: {f}")));
            table.insert((*front, kind), run_cell(&address, &issuers, &cases).await);
        }
    }

    let report = render(&table, &binary, legacy, started.elapsed());
    println!("{report}");
    if let Some(file) = std::env::var_os("PORTCULLIS_CORPUS_DUMP") {
        std::fs::write(file, dump(&table)).unwrap();
    }
    assert!(control_failures.is_empty(), "controls failed:\n{}", control_failures.join("\n"));
    let bypasses: usize = table.values().flat_map(|row| row.values()).map(|t| t.bypasses).sum();
    assert!(report_only || bypasses == 0, "{bypasses} bypasses (table above)");
}

/// The table: per front × upstream × class, requests sent, refused (of which without any answer), served
/// correctly and bypasses (of which by credential none/low/foreign); then the first bypassing requests of each
/// row.
fn render(
    table: &BTreeMap<(FrontKind, UpstreamKind), BTreeMap<Class, Tally>>,
    binary: &Path,
    legacy: bool,
    elapsed: Duration,
) -> String {
    let mut out = String::new();
    let style = if legacy { "mode = \"forward_auth\"" } else { "forward_auth = \"<front>\"" };
    writeln!(out, "attack corpus: {} ({style}), {:.0} s", binary.display(), elapsed.as_secs_f64()).unwrap();
    writeln!(
        out,
        "refused = nothing served (any status; no-ans: no answer at all); served = a resource the credential may \
         have, with clean headers;\nbypasses n/l/f = by credential none/low/foreign (foreign: a token from issuer B \
         naming A's audience)"
    )
    .unwrap();
    let row = |out: &mut String, front: &str, upstream: &str, class: &str, t: &Tally| {
        let [n, l, f] = t.by_credential;
        writeln!(
            out,
            "{front:<10} {upstream:<12} {class:<28} {:>6} {:>8} {:>7} {:>7} {:>9} {:>14}",
            t.sent,
            t.refused,
            t.no_answer,
            t.served,
            t.bypasses,
            format!("{n}/{l}/{f}")
        )
        .unwrap();
    };
    let header = format!(
        "{:<10} {:<12} {:<28} {:>6} {:>8} {:>7} {:>7} {:>9} {:>14}",
        "front", "upstream", "class", "sent", "refused", "no-ans", "served", "bypasses", "n/l/f"
    );
    writeln!(out, "{header}\n{}", "-".repeat(header.len())).unwrap();
    let mut totals = Tally::default();
    for ((front, upstream), rows) in table {
        for (class, tally) in rows {
            row(&mut out, front.name(), upstream.name(), class.label(), tally);
            totals.sent += tally.sent;
            totals.refused += tally.refused;
            totals.no_answer += tally.no_answer;
            totals.served += tally.served;
            totals.bypasses += tally.bypasses;
            for (total, count) in totals.by_credential.iter_mut().zip(tally.by_credential) {
                *total += count;
            }
        }
    }
    row(&mut out, "total", "", "", &totals);
    let mut first = true;
    for ((front, upstream), rows) in table {
        for (class, tally) in rows.iter().filter(|(_, t)| t.bypasses > 0) {
            if first {
                writeln!(out, "\nfirst bypassing requests per row (without a foreign token first):").unwrap();
                first = false;
            }
            writeln!(out, "{} -> {} / {}:", front.name(), upstream.name(), class.label()).unwrap();
            for example in tally.examples() {
                writeln!(out, "    {example}").unwrap();
            }
        }
    }
    out
}

/// Every bypass, one per line, for `PORTCULLIS_CORPUS_DUMP`.
fn dump(table: &BTreeMap<(FrontKind, UpstreamKind), BTreeMap<Class, Tally>>) -> String {
    let mut out = String::new();
    for ((front, upstream), rows) in table {
        for (class, tally) in rows {
            for (credential, request, why) in &tally.found {
                let (front, upstream, class, credential) =
                    (front.name(), upstream.name(), class.label(), credential.name());
                writeln!(out, "{front}\t{upstream}\t{class}\t{credential}\t{request}\t{why}").unwrap();
            }
        }
    }
    out
}

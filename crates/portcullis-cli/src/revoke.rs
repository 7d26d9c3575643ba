//! `portcullis revoke`: records a revocation through a gateway's admin endpoint (`POST /revocations`), by `jti`,
//! by the SHA-256 of the token's signing input, or for every token of a subject issued up to a time; or, with
//! `--hash-token`, prints the hash of a token read on standard input (so a token can be revoked by hash without sending it anywhere).

use crate::exit::{Error, Exit};
use clap::Args;
use portcullis::store::TokenHash;
use serde_json::{Map, Value, json};
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `portcullis revoke` arguments.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("what").args(["jti", "token_hash", "sub", "hash_token"]).required(true))]
pub(crate) struct RevokeArgs {
    /// The gateway's admin listener, e.g. http://127.0.0.1:9090 (plain http only to a loopback host; see
    /// --allow-insecure-http).
    #[arg(long, env = "PORTCULLIS_ADMIN_URL", value_name = "URL")]
    admin: Option<String>,
    /// Take a plain http:// admin URL to a host that is not loopback, although the admin token then crosses the
    /// network in clear.
    #[arg(long, conflicts_with = "hash_token")]
    allow_insecure_http: bool,
    /// A file holding the caller's access token (of the `[revocation]` issuer, with its permission); else the
    /// environment variable PORTCULLIS_ADMIN_TOKEN.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Revoke the token with this `jti` claim.
    #[arg(long, value_name = "ID")]
    jti: Option<String>,
    /// Revoke the token whose hash is HEX: the SHA-256 of its signing input, header.payload (64 hex digits; see
    /// --hash-token).
    #[arg(long, value_name = "HEX")]
    token_hash: Option<String>,
    /// Revoke every token of this subject issued up to --before.
    #[arg(long, value_name = "SUBJECT")]
    sub: Option<String>,
    /// With --sub: tokens issued at or before TIME are refused (default: now plus the gateway's clock leeway).
    #[arg(long, value_name = "TIME", requires = "sub")]
    before: Option<String>,
    /// When the entry may be dropped (default: the gateway's retention_secs after now, or after --before).
    #[arg(long, value_name = "TIME", conflicts_with = "hash_token")]
    expires: Option<String>,
    /// Print the hash of the token on standard input, for --token-hash: the SHA-256 of its signing input
    /// (header.payload, everything before the second dot); nothing is sent.
    #[arg(long, conflicts_with_all = ["admin", "token_file"])]
    hash_token: bool,
}

/// Runs `portcullis revoke`.
pub(crate) fn run(args: RevokeArgs) -> Exit {
    match revoke(args) {
        Ok(()) => Exit::Success,
        Err(error) => error.report("revoke"),
    }
}

fn revoke(args: RevokeArgs) -> Result<(), Error> {
    // clap's `requires = "sub"` is not enforced while `sub` belongs to the required group, so it is checked here:
    // a --before with --jti or --token-hash would otherwise be dropped silently.
    if args.before.is_some() && args.sub.is_none() {
        return Err(Error::Usage("--before goes with --sub only (not with --jti or --token-hash)".to_owned()));
    }
    if args.hash_token {
        let mut token = String::new();
        std::io::stdin().read_to_string(&mut token).map_err(Error::Stdin)?;
        let token = token.trim();
        if token.is_empty() || token.contains(char::is_whitespace) {
            return Err(Error::Usage("standard input must hold exactly one token".to_owned()));
        }
        println!("{}", TokenHash::of_token(token));
        return Ok(());
    }
    let admin = args.admin.as_deref().ok_or_else(|| {
        Error::Usage("name the gateway's admin listener with --admin URL or PORTCULLIS_ADMIN_URL".to_owned())
    })?;
    let endpoint = endpoint(admin, args.allow_insecure_http)?;
    let token = admin_token(args.token_file.as_deref())?;
    let body = request_body(&args)?;
    crate::runtime()?.block_on(send(&endpoint, &token, &body))
}

/// `URL/revocations`, for an http(s) `admin` base URL without query or fragment; plain http only to a loopback
/// host unless `insecure_http`.
fn endpoint(admin: &str, insecure_http: bool) -> Result<url::Url, Error> {
    let mut url = url::Url::parse(admin).map_err(|e| Error::Usage(format!("--admin {admin:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(Error::Usage(format!("--admin {admin:?}: an http:// or https:// URL of the admin listener")));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::Usage(format!(
            "--admin {admin:?}: the admin listener's base URL, without a query or fragment"
        )));
    }
    if url.scheme() == "http" && !is_loopback(&url) && !insecure_http {
        return Err(Error::Usage(format!(
            "--admin {admin:?}: plain http to a host that is not loopback would send the admin token across the \
             network in clear; use https://, or --allow-insecure-http on a network you trust"
        )));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url.join("revocations").map_err(|e| Error::Usage(format!("--admin {admin:?}: {e}")))
}

/// Whether `url` names a loopback host: `127.0.0.0/8`, `::1` or `localhost`.
fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// The caller's token, from `file` or `PORTCULLIS_ADMIN_TOKEN`.
fn admin_token(file: Option<&std::path::Path>) -> Result<String, Error> {
    let token = match file {
        Some(path) => std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?,
        None => std::env::var("PORTCULLIS_ADMIN_TOKEN").map_err(|_| {
            Error::Usage("give the caller's token with --token-file FILE or PORTCULLIS_ADMIN_TOKEN".to_owned())
        })?,
    };
    let token = token.trim().to_owned();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(Error::Usage("the admin token must be one token, without spaces".to_owned()));
    }
    Ok(token)
}

/// The JSON the endpoint takes.
fn request_body(args: &RevokeArgs) -> Result<Value, Error> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut body = Map::new();
    if let Some(jti) = &args.jti {
        body.insert("jti".into(), json!(jti));
    }
    if let Some(hash) = &args.token_hash {
        let hash: TokenHash = hash
            .parse()
            .map_err(|_| Error::Usage(format!("--token-hash {hash:?}: 64 hexadecimal digits (see --hash-token)")))?;
        body.insert("token_sha256".into(), json!(hash.to_string()));
    }
    if let Some(sub) = &args.sub {
        body.insert("sub".into(), json!(sub));
        if let Some(before) = &args.before {
            body.insert("before".into(), json!(time("--before", before, now)?));
        }
    }
    if let Some(expires) = &args.expires {
        body.insert("expires_at".into(), json!(time("--expires", expires, now)?));
    }
    Ok(Value::Object(body))
}

/// A TIME argument: `now`, seconds since the epoch, or an RFC 3339 time in UTC (`2026-11-30T12:00:00Z`).
fn time(flag: &str, text: &str, now: u64) -> Result<u64, Error> {
    if text == "now" {
        return Ok(now);
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(secs);
    }
    let at = humantime::parse_rfc3339(text).map_err(|_| {
        Error::Usage(format!(
            "{flag} {text:?}: give now, seconds since the epoch, or an RFC 3339 time such as 2026-11-30T12:00:00Z"
        ))
    })?;
    at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).map_err(|_| Error::Usage(format!("{flag}: before 1970")))
}

/// Sends the revocation and prints what the gateway recorded.
async fn send(endpoint: &url::Url, token: &str, body: &Value) -> Result<(), Error> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| Error::start("an HTTP client", e))?;
    let response = client
        .post(endpoint.clone())
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .map_err(|e| Error::unreachable(format!("the admin endpoint {endpoint}"), e))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| Error::unreachable(format!("the admin endpoint {endpoint}"), e))?;
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status.as_u16() != 201 {
        let error = answer["error"].as_str().unwrap_or("");
        let description = answer["error_description"].as_str().or(answer["message"].as_str()).unwrap_or(text.trim());
        return Err(Error::Refused(format!("the gateway answered {status}: {error}: {description}")));
    }
    let revoked = &answer["revoked"];
    let what = match revoked["kind"].as_str() {
        Some("jti") => format!("the token with jti {}", revoked["jti"]),
        Some("token_hash") => format!("the token with SHA-256 {}", revoked["sha256"].as_str().unwrap_or("?")),
        Some("subject") => {
            format!("the tokens of subject {} issued at or before {}", revoked["sub"], when(revoked["before"].as_u64()))
        }
        _ => revoked.to_string(),
    };
    println!(
        "revoked {what} until {} (store: {})",
        when(revoked["expires_at"].as_u64()),
        answer["store"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// Seconds since the epoch as an RFC 3339 time.
fn when(secs: Option<u64>) -> String {
    match secs {
        Some(secs) => humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string(),
        None => "?".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::endpoint;

    #[test]
    fn the_endpoint_is_joined_under_the_admin_base_path() {
        for (admin, expected) in [
            ("http://127.0.0.1:9090", "http://127.0.0.1:9090/revocations"),
            ("http://127.0.0.1:9090/", "http://127.0.0.1:9090/revocations"),
            ("https://gw.example.com/admin", "https://gw.example.com/admin/revocations"),
            ("https://gw.example.com/admin/", "https://gw.example.com/admin/revocations"),
            ("http://[::1]:9090", "http://[::1]:9090/revocations"),
            ("http://LOCALHOST:9090", "http://localhost:9090/revocations"),
            ("http://127.8.9.10:9090", "http://127.8.9.10:9090/revocations"),
        ] {
            assert_eq!(endpoint(admin, false).map(String::from).ok().as_deref(), Some(expected), "{admin}");
        }
        for refused in ["http://10.0.0.5:9090", "http://gw.example.com", "http://[::2]:1", "http://localhost.evil.test"]
        {
            assert!(endpoint(refused, false).is_err(), "{refused}");
            assert!(endpoint(refused, true).is_ok(), "{refused} with --allow-insecure-http");
        }
        for refused in ["http://127.0.0.1:9090/?a=1", "http://127.0.0.1:9090/#x", "ftp://127.0.0.1/", "unix:/x"] {
            assert!(endpoint(refused, true).is_err(), "{refused}");
        }
    }
}

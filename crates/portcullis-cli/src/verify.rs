//! `portcullis verify`: one token, one verdict, and an explanation a person can act on.

use crate::{Error, Exit};
use clap::Args;
use portcullis::fetch::{FetchError, FetchPolicy, Fetcher};
use portcullis::remote::{KeyLocation, RemoteKeySet, RemoteOptions, SetupError};
use portcullis::{Algorithm, Clock, KeySet, KeySource, SystemClock, Verifier};
use serde_json::json;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

/// Longest input read from standard input.
const MAX_STDIN: u64 = 64 * 1024;

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The key set: a JWKS file, or an http(s) URL to fetch it from.
    #[arg(long, value_name = "FILE|URL", conflicts_with = "discover")]
    jwks: Option<String>,
    /// Find each issuer's key set by OpenID Connect discovery instead of --jwks.
    #[arg(long)]
    discover: bool,
    /// Only decode: print the header and claims of any JWT without keys or checks, marked UNVERIFIED.
    #[arg(long, conflicts_with_all = ["jwks", "discover", "issuers", "audiences", "algorithms", "typ"])]
    decode: bool,
    /// An accepted issuer (`iss`), exactly as the token carries it; may repeat.
    #[arg(long = "issuer", value_name = "ISS", required_unless_present = "decode")]
    issuers: Vec<String>,
    /// An accepted audience (`aud`); may repeat.
    #[arg(long = "audience", value_name = "AUD", required_unless_present = "decode")]
    audiences: Vec<String>,
    /// An allowed algorithm; may repeat. Without it, each key's own `alg` is the only one it accepts.
    #[arg(long = "alg", value_name = "ALG")]
    algorithms: Vec<Algorithm>,
    /// Clock-skew allowance for exp, nbf and iat, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    leeway: u64,
    /// Require this header `typ`, e.g. `at+jwt` (RFC 9068).
    #[arg(long, value_name = "TYP")]
    typ: Option<String>,
    /// Print exactly one JSON object instead of the explanation (its reason codes: docs/cli.md).
    #[arg(long)]
    json: bool,
    /// The token; read from standard input when absent (a leading `Bearer ` is accepted).
    token: Option<String>,
}

pub(crate) fn run(args: VerifyArgs) -> Exit {
    if args.decode {
        return decode(&args);
    }
    match prepare(&args) {
        Ok((verifier, token)) => {
            let report = verifier.explain(&token);
            if args.json {
                println!("{}", crate::explain::json_verdict(&report));
            } else {
                print!("{}", crate::explain::readable(&report));
            }
            if report.verdict.is_ok() { Exit::Success } else { Exit::TokenInvalid }
        }
        Err(error) => failed(&error, args.json),
    }
}

/// Reports a failure before any verdict: the message on stderr and, with `--json`, the object with the exit
/// status's own reason code (`usage_error`, `config_error`, `keys_unreachable`, `cannot_start`).
fn failed(error: &Error, json: bool) -> Exit {
    let exit = error.report("verify");
    if json {
        let reason = exit.failure_code().unwrap_or("failed");
        println!("{}", json!({ "valid": false, "reason": reason, "description": error.chain() }));
    }
    exit
}

/// `--decode`: the header and claims without any check; input that is not a signed JWT is refused (exit 1).
fn decode(args: &VerifyArgs) -> Exit {
    let token = match read_token(args) {
        Ok(token) => token,
        Err(error) => return failed(&error, args.json),
    };
    match crate::decode::decode(&token) {
        Ok(decoded) => {
            if args.json {
                println!("{}", decoded.json());
            } else {
                print!("{}", decoded.readable());
            }
            Exit::Success
        }
        Err(refused) => {
            eprintln!("portcullis verify: cannot decode: {refused}");
            if args.json {
                println!(
                    "{}",
                    json!({ "valid": false, "reason": refused.reason(), "description": refused.to_string() })
                );
            }
            Exit::TokenInvalid
        }
    }
}

/// What is wrong with the token as given (before it is verified).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
enum TokenInput {
    /// Nothing but whitespace (and perhaps `Bearer`).
    #[error("no token given (pass it as an argument or on standard input)")]
    Missing,
    /// Several words where one token belongs.
    #[error("expected exactly one token")]
    Several,
}

/// The token from the argument or standard input.
fn read_token(args: &VerifyArgs) -> Result<String, Error> {
    match &args.token {
        Some(token) => normalize_token(token).map_err(|e| Error::UsageBecause(e.into())),
        None => {
            let mut input = String::new();
            std::io::stdin().take(MAX_STDIN).read_to_string(&mut input).map_err(Error::Stdin)?;
            normalize_token(&input).map_err(|e| Error::UsageBecause(e.into()))
        }
    }
}

/// Said when no key source is given.
const NO_KEY_SOURCE: &str = "no key set to verify with: give --jwks FILE|URL (a JWKS file, or the URL to fetch \
     it from), or --discover to find each issuer's key set through OpenID Connect discovery (or --decode to only \
     read the token, unverified)";

fn prepare(args: &VerifyArgs) -> Result<(Verifier, String), Error> {
    if args.jwks.is_none() && !args.discover {
        return Err(Error::Usage(NO_KEY_SOURCE.into()));
    }
    let token = read_token(args)?;
    // One clock for the key sets and the claim checks.
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut builder = Verifier::builder().leeway(Duration::from_secs(args.leeway)).clock(Arc::clone(&clock));
    match &args.jwks {
        Some(source) => {
            let keys = load_keys(source)?;
            for skipped in keys.skipped() {
                eprintln!("warning: skipping {skipped}");
            }
            if keys.is_empty() {
                let what = format!("the key set {source} has no usable keys");
                return Err(if is_url(source) {
                    Error::Unreachable { what, source: None }
                } else {
                    Error::Config { what, source: None }
                });
            }
            builder = builder.keys(keys);
            for issuer in &args.issuers {
                builder = builder.issuer(issuer);
            }
        }
        None => {
            for issuer in &args.issuers {
                builder = builder.issuer_keys(issuer, discover(issuer, Arc::clone(&clock))?);
            }
        }
    }
    for audience in &args.audiences {
        builder = builder.audience(audience);
    }
    if !args.algorithms.is_empty() {
        builder = builder.algorithms(args.algorithms.iter().copied());
    }
    if let Some(typ) = &args.typ {
        builder = builder.typ(typ);
    }
    let verifier = builder.build().map_err(|e| Error::UsageBecause(e.into()))?;
    Ok((verifier, token))
}

/// Trims whitespace and an optional `Bearer ` prefix; exactly one token must remain.
fn normalize_token(input: &str) -> Result<String, TokenInput> {
    let trimmed = input.trim();
    let token = match trimmed.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => trimmed,
    };
    if token.is_empty() {
        return Err(TokenInput::Missing);
    }
    if token.split_whitespace().nth(1).is_some() {
        return Err(TokenInput::Several);
    }
    Ok(token.to_owned())
}

fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// A key set from a file (unreadable or invalid: configuration) or a URL (not fetched or invalid: unreachable).
fn load_keys(source: &str) -> Result<KeySet, Error> {
    if is_url(source) {
        let bytes = fetch(source)?;
        KeySet::from_jwks_json(&bytes).map_err(|e| Error::unreachable(source, e))
    } else {
        let bytes = std::fs::read(source).map_err(|e| Error::config(format!("cannot read the key set {source}"), e))?;
        KeySet::from_jwks_json(&bytes).map_err(|e| Error::config(source, e))
    }
}

/// A URL the fetch policy refuses is a usage error; any other failure means the keys are out of reach.
fn fetch_error(what: String, error: FetchError) -> Error {
    match error {
        FetchError::Refused { .. } => Error::UsageBecause(error.into()),
        other => Error::unreachable(what, other),
    }
}

fn fetch(url: &str) -> Result<Vec<u8>, Error> {
    crate::runtime()?.block_on(async {
        let fetcher =
            Fetcher::new(FetchPolicy::default()).map_err(|e| Error::start("cannot create an HTTP client", e))?;
        let fetched = fetcher.get(url).await.map_err(|e| fetch_error("cannot fetch the key set".into(), e))?;
        Ok(fetched.body)
    })
}

/// Discovers and loads an issuer's key set once.
fn discover(issuer: &str, clock: Arc<dyn Clock>) -> Result<Arc<dyn KeySource>, Error> {
    let location = KeyLocation::Discovery { issuer: issuer.to_owned() };
    let keys = RemoteKeySet::new(location, RemoteOptions::default(), clock).map_err(|e| match e {
        SetupError::Fetch(e) => fetch_error(format!("cannot load the key set of {issuer}"), e),
        other => Error::UsageBecause(other.into()),
    })?;
    crate::runtime()?
        .block_on(keys.refresh())
        .map_err(|e| Error::unreachable(format!("cannot load the key set of {issuer}"), e))?;
    Ok(Arc::new(keys))
}

#[cfg(test)]
mod tests {
    use super::normalize_token;

    #[test]
    fn token_input_forms() {
        assert_eq!(normalize_token("  abc.def.ghi\n").as_deref(), Ok("abc.def.ghi"));
        assert_eq!(normalize_token("Bearer abc.def.ghi").as_deref(), Ok("abc.def.ghi"));
        assert_eq!(normalize_token("bearer   abc.def.ghi ").as_deref(), Ok("abc.def.ghi"));
        assert!(normalize_token("a.b.c d.e.f").is_err());
        assert!(normalize_token("   ").is_err());
        assert!(normalize_token("Bearer").is_ok()); // a lone word is taken as the token and fails verification
    }
}

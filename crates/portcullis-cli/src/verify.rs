//! `portcullis verify`: one token, one verdict, and an explanation a person can act on.

use crate::{EXIT_INVALID, EXIT_USAGE};
use clap::Args;
use portcullis::fetch::{FetchPolicy, Fetcher};
use portcullis::remote::{KeyLocation, RemoteKeySet, RemoteOptions};
use portcullis::{Algorithm, KeySet, KeySource, SystemClock, Verifier};
use serde_json::json;
use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Longest input read from standard input.
const MAX_STDIN: u64 = 64 * 1024;

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The key set: a JWKS file, or an http(s) URL to fetch it from.
    #[arg(long, value_name = "FILE|URL", required_unless_present = "discover", conflicts_with = "discover")]
    jwks: Option<String>,
    /// Find each issuer's key set by OpenID Connect discovery instead of --jwks.
    #[arg(long)]
    discover: bool,
    /// An accepted issuer (`iss`), exactly as the token carries it; may repeat.
    #[arg(long = "issuer", value_name = "ISS", required = true)]
    issuers: Vec<String>,
    /// An accepted audience (`aud`); may repeat.
    #[arg(long = "audience", value_name = "AUD", required = true)]
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
    /// Print exactly one JSON object instead of the explanation.
    #[arg(long)]
    json: bool,
    /// The token; read from standard input when absent (a leading `Bearer ` is accepted).
    token: Option<String>,
}

pub(crate) fn run(args: VerifyArgs) -> ExitCode {
    match prepare(&args) {
        Ok((verifier, token)) => {
            let report = verifier.explain(&token);
            if args.json {
                println!("{}", crate::explain::json_verdict(&report));
            } else {
                print!("{}", crate::explain::readable(&report));
            }
            if report.verdict.is_ok() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_INVALID) }
        }
        Err(message) => {
            eprintln!("portcullis verify: {message}");
            if args.json {
                println!("{}", json!({ "valid": false, "reason": "usage_error", "description": message }));
            }
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn prepare(args: &VerifyArgs) -> Result<(Verifier, String), String> {
    let token = match &args.token {
        Some(token) => normalize_token(token)?,
        None => {
            let mut input = String::new();
            std::io::stdin()
                .take(MAX_STDIN)
                .read_to_string(&mut input)
                .map_err(|e| format!("cannot read the token from standard input: {e}"))?;
            normalize_token(&input)?
        }
    };
    let mut builder = Verifier::builder().leeway(Duration::from_secs(args.leeway));
    match &args.jwks {
        Some(source) => {
            let keys = load_keys(source)?;
            for skipped in keys.skipped() {
                eprintln!("warning: skipping {skipped}");
            }
            if keys.is_empty() {
                return Err(format!("the key set {source} has no usable keys"));
            }
            builder = builder.keys(keys);
            for issuer in &args.issuers {
                builder = builder.issuer(issuer);
            }
        }
        None => {
            for issuer in &args.issuers {
                builder = builder.issuer_keys(issuer, discover(issuer)?);
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
    let verifier = builder.build().map_err(|e| e.to_string())?;
    Ok((verifier, token))
}

/// Trims whitespace and an optional `Bearer ` prefix; exactly one token must remain.
fn normalize_token(input: &str) -> Result<String, String> {
    let trimmed = input.trim();
    let token = match trimmed.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => trimmed,
    };
    if token.is_empty() {
        return Err("no token given (pass it as an argument or on standard input)".into());
    }
    if token.split_whitespace().nth(1).is_some() {
        return Err("expected exactly one token".into());
    }
    Ok(token.to_owned())
}

fn load_keys(source: &str) -> Result<KeySet, String> {
    let bytes = if source.starts_with("http://") || source.starts_with("https://") {
        fetch(source)?
    } else {
        std::fs::read(source).map_err(|e| format!("cannot read the key set {source}: {e}"))?
    };
    KeySet::from_jwks_json(&bytes).map_err(|e| format!("{source}: {e}"))
}

fn fetch(url: &str) -> Result<Vec<u8>, String> {
    crate::runtime()?.block_on(async {
        let fetcher = Fetcher::new(FetchPolicy::default()).map_err(|e| e.to_string())?;
        fetcher.get(url).await.map(|fetched| fetched.body).map_err(|e| e.to_string())
    })
}

/// Discovers and loads an issuer's key set once.
fn discover(issuer: &str) -> Result<Arc<dyn KeySource>, String> {
    let location = KeyLocation::Discovery { issuer: issuer.to_owned() };
    let keys =
        RemoteKeySet::new(location, RemoteOptions::default(), Arc::new(SystemClock)).map_err(|e| e.to_string())?;
    crate::runtime()?.block_on(keys.refresh()).map_err(|e| format!("cannot load the key set of {issuer}: {e}"))?;
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

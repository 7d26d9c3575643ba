//! Verifies one Auth0-shaped token in a loop, fully or with the bare aws-lc-rs signature check on the same bytes.
//!
//! - `full N` / `bare N`: N verifications, for `bench/instructions.sh` to count instructions under callgrind
//!   (repeatable on a noisy machine).
//! - `ratio N`: N rounds, each timing a batch of full and a batch of bare verifications back to back (alternating
//!   which goes first), then prints the median of the per-round ratios: slow drift of a shared machine cancels out.
//!
//! Usage: `verify_loop <RS256|ES256> <full|bare|ratio> <N>`

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use portcullis::__internals::base64url;
use portcullis::signing::SigningKey;
use portcullis::{Algorithm, KeySet, Verifier};
use serde_json::json;
use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(alg), Some(mode), Some(count)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("usage: verify_loop <RS256|ES256> <full|bare> <iterations>");
        return ExitCode::from(2);
    };
    let (Ok(alg), Ok(count)) = (alg.parse::<Algorithm>(), count.parse::<u32>()) else {
        eprintln!("bad algorithm or count");
        return ExitCode::from(2);
    };
    match run(alg, mode, count) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn run(alg: Algorithm, mode: &str, count: u32) -> Result<(), String> {
    let issuer = "https://dev-portcullis.us.auth0.com/";
    let signer = SigningKey::generate(alg, Some("bench-key".into())).map_err(|e| e.to_string())?;
    let claims = json!({
        "iss": issuer, "sub": "auth0|65a1f0c2e4b0a1b2c3d4e5f6",
        "aud": ["https://api.example.com", format!("{issuer}userinfo")],
        "iat": 1_700_000_000u64, "exp": 4_000_000_000u64, "scope": "openid profile email read:messages",
        "azp": "k3Xh9YpQ2mZ7vB1nC4dF6gH8jL0", "permissions": ["read:messages", "write:messages"],
    });
    let token = signer.sign_token(&claims, None).map_err(|e| e.to_string())?;
    let jwk = signer.public_jwk();

    let keys = KeySet::from_jwks_json(json!({ "keys": [jwk] }).to_string().as_bytes()).map_err(|e| e.to_string())?;
    let verifier = Verifier::builder()
        .issuer(issuer)
        .audience("https://api.example.com")
        .without_cache()
        .keys(keys)
        .build()
        .map_err(|e| e.to_string())?;
    let full =
        || verifier.verify(black_box(&token)).map(|verified| drop(black_box(verified))).map_err(|e| e.to_string());

    let decode = |name: &str| base64url::decode(jwk[name].as_str().unwrap_or_default()).unwrap_or_default();
    let key = match alg {
        Algorithm::RS256 => RsaPublicKeyComponents { n: &decode("n")[..], e: &decode("e")[..] }
            .to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256),
        _ => ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, [vec![4], decode("x"), decode("y")].concat()),
    }
    .map_err(|e| e.to_string())?;
    let (input, signature) = token.rsplit_once('.').ok_or("token has no signature")?;
    let signature = base64url::decode(signature).ok_or("signature is not base64url")?;
    let bare = || key.verify_sig(black_box(input.as_bytes()), black_box(&signature)).map_err(|e| e.to_string());

    match mode {
        "full" => measured_loop(count, &full),
        "bare" => measured_loop(count, &bare),
        "ratio" => {
            const BATCH: u32 = 50;
            let time = |op: &dyn Fn() -> Result<(), String>| -> Result<f64, String> {
                let start = Instant::now();
                (0..BATCH).try_for_each(|_| op())?;
                Ok(start.elapsed().as_secs_f64() / f64::from(BATCH))
            };
            let mut ratios = Vec::new();
            let (mut bare_total, mut full_total) = (0.0, 0.0);
            for round in 0..count {
                let (b, f) = if round % 2 == 0 {
                    let b = time(&bare)?;
                    (b, time(&full)?)
                } else {
                    let f = time(&full)?;
                    (time(&bare)?, f)
                };
                bare_total += b;
                full_total += f;
                ratios.push(f / b);
            }
            ratios.sort_by(f64::total_cmp);
            let median = ratios[ratios.len() / 2];
            let n = f64::from(count);
            println!(
                "{alg}: bare {:.2} us, portcullis {:.2} us (means of {count} rounds x {BATCH}), median ratio {median:.3}",
                bare_total / n * 1e6,
                full_total / n * 1e6
            );
            Ok(())
        }
        other => Err(format!("unknown mode {other}")),
    }
}

/// The loop callgrind counts (`--toggle-collect=*measured_loop*`): key generation and setup stay outside.
#[inline(never)]
fn measured_loop(count: u32, op: &dyn Fn() -> Result<(), String>) -> Result<(), String> {
    (0..count).try_for_each(|_| op())
}

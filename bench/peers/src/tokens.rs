//! Keys and token sets. RS256-2048 for the side-by-side tables; ES256 where millions of distinct tokens must be
//! signed quickly (the memory run), since an RSA-2048 signature costs about a millisecond.

use crate::{AUDIENCE, ISSUER};
use portcullis::Algorithm;
use portcullis::signing::SigningKey;
use serde_json::{Value, json};
use std::path::Path;

/// The key id of the benchmark RSA key; the ES256 key is `bench-es`.
pub const RSA_KID: &str = "bench-rs";
pub const EC_KID: &str = "bench-es";

/// An Auth0-shaped access token's claims for subject number `n`.
pub fn claims(n: u64, audience: &str, issuer: &str) -> Value {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    json!({
        "iss": issuer,
        "sub": format!("auth0|bench-user-{n}"),
        "aud": [audience, "https://bench.portcullis.test/userinfo"],
        "iat": now,
        "exp": now + 7 * 86_400,
        "azp": "bench-client",
        "scope": "openid profile read:messages",
        "permissions": ["read:messages"],
    })
}

fn key(dir: &Path, alg: Algorithm, kid: &str, file: &str) -> Result<SigningKey, String> {
    let path = dir.join(file);
    if let Ok(der) = std::fs::read(&path) {
        return SigningKey::from_pkcs8(alg, Some(kid.into()), &der).map_err(|e| e.to_string());
    }
    let key = SigningKey::generate(alg, Some(kid.into())).map_err(|e| e.to_string())?;
    std::fs::write(&path, key.to_pkcs8().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    Ok(key)
}

/// Loads the benchmark signing keys from `dir` (generating them the first time).
pub fn keys(dir: &Path) -> Result<(SigningKey, SigningKey), String> {
    Ok((key(dir, Algorithm::RS256, RSA_KID, "rs256.pk8")?, key(dir, Algorithm::ES256, EC_KID, "es256.pk8")?))
}

fn write_lines(path: &Path, lines: &[String]) -> Result<(), String> {
    std::fs::write(path, lines.join("\n") + "\n").map_err(|e| format!("{}: {e}", path.display()))
}

/// Flips one base64url character in the middle of the signature (still canonical base64url).
pub fn bad_signature(token: &str) -> String {
    let at = token.len() - 20;
    let flipped = if &token[at..=at] == "A" { "B" } else { "A" };
    format!("{}{flipped}{}", &token[..at], &token[at + 1..])
}

/// Signs `claims(n)` for every n in `range` on every core, in order.
fn sign_all(
    key: &SigningKey,
    range: std::ops::Range<u64>,
    claims_for: &(dyn Fn(u64) -> Value + Sync),
) -> Result<Vec<String>, String> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let chunk = (range.end - range.start).div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let start = range.start + t * chunk;
                let end = (start + chunk).min(range.end);
                scope.spawn(move || {
                    (start..end)
                        .map(|n| key.sign_token(&claims_for(n), None).map_err(|e| e.to_string()))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut all = Vec::new();
        for handle in handles {
            all.extend(handle.join().map_err(|_| "a signing thread panicked".to_owned())??);
        }
        Ok(all)
    })
}

/// Writes keys, JWKS files and token sets: one token; `distinct` distinct valid tokens; `mixed` tokens of which
/// half are valid (and distinct from the distinct set), a quarter carry a bad signature and a quarter another
/// audience. Kept when present with these sizes and less than six days old (tokens live seven days).
pub fn setup(dir: &Path, distinct: u64, mixed: u64) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let stamp = dir.join("sizes");
    let wanted = format!("{distinct} {mixed}");
    let fresh = std::fs::metadata(&stamp)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() < 6 * 86_400));
    if fresh && std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        println!("setup: token sets in {} are current", dir.display());
        return Ok(());
    }
    let (rsa, ec) = keys(dir)?;

    // JWKS: the two benchmark keys; and the same plus 98 more RSA keys (P5: 1 -> 100 keys).
    let base = vec![rsa.public_jwk(), ec.public_jwk()];
    std::fs::write(dir.join("jwks.json"), json!({ "keys": base }).to_string()).map_err(|e| e.to_string())?;
    if !dir.join("jwks-100.json").exists() {
        let mut many = Vec::new();
        for i in 0..98 {
            let extra =
                SigningKey::generate(Algorithm::RS256, Some(format!("extra-{i}"))).map_err(|e| e.to_string())?;
            many.push(extra.public_jwk());
        }
        many.extend(base.iter().cloned());
        std::fs::write(dir.join("jwks-100.json"), json!({ "keys": many }).to_string()).map_err(|e| e.to_string())?;
    }

    let valid = |n: u64| claims(n, AUDIENCE, ISSUER);
    write_lines(&dir.join("tokens-one.txt"), &sign_all(&rsa, 0..1, &valid)?)?;
    write_lines(&dir.join("tokens-distinct.txt"), &sign_all(&rsa, 1..distinct + 1, &valid)?)?;

    let base_n = distinct + 1;
    let valid_half = sign_all(&rsa, base_n..base_n + mixed / 2, &valid)?;
    let other = |n: u64| claims(n, "https://other.example.com", ISSUER);
    let wrong_audience = sign_all(&rsa, 0..mixed / 4, &other)?;
    let mut tokens = Vec::with_capacity(mixed as usize);
    let (mut v, mut w) = (valid_half.iter(), wrong_audience.iter());
    for n in 0..mixed {
        let next = match n % 4 {
            0 | 2 => v.next().cloned(),
            1 => v.clone().next().map(|t| bad_signature(t)),
            _ => w.next().cloned(),
        };
        tokens.extend(next);
    }
    write_lines(&dir.join("tokens-mixed.txt"), &tokens)?;
    std::fs::write(&stamp, wanted).map_err(|e| e.to_string())?;
    println!(
        "setup: keys, jwks.json, jwks-100.json and token sets (1, {distinct} distinct, {mixed} mixed) in {}",
        dir.display()
    );
    Ok(())
}

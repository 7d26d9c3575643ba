//! Checks of the sender-constraint and metadata settings: `public_url`, the `[dpop]` table, `dpop` per issuer and
//! per route, an issuer's `profile`, and `[resource_metadata]`. Each error names its key.

use crate::config::{Config, ConfigError, DpopSetting, Profile};
use portcullis::Algorithm;

/// The fewest bytes a nonce secret may hold.
pub(crate) const MIN_NONCE_SECRET: usize = 32;

/// An absolute http(s) URL's origin: lower-case scheme and host, and the port (the scheme's default when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

/// The origin of `url`, or why it is not an absolute http(s) URL without user information, query or fragment.
pub(crate) fn origin(url: &str) -> Result<Origin, String> {
    if url.contains('#') {
        return Err("has a fragment ('#'); give the base URL only".into());
    }
    if url.contains('?') {
        return Err("has a query ('?'); give the base URL only".into());
    }
    let uri: http::Uri = url.parse().map_err(|_| "is not a URL".to_owned())?;
    let scheme = uri.scheme_str().map(str::to_ascii_lowercase).unwrap_or_default();
    let default_port = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        _ => return Err("must be an http:// or https:// URL".into()),
    };
    let authority = uri.authority().ok_or("has no host")?;
    if authority.as_str().contains('@') {
        return Err("carries user information ('@'); give the host only".into());
    }
    let host = authority.host().to_ascii_lowercase();
    if host.is_empty() {
        return Err("has no host".into());
    }
    Ok(Origin { scheme, host, port: authority.port_u16().unwrap_or(default_port) })
}

/// Why `url` (already an http(s) base URL by [`origin`]) cannot be the base the gateway serves under, if it
/// cannot: the proof verifier refuses it as an `htu` base, or its path is one the gateway refuses in a request
/// target or spells otherwise once canonical. Then the metadata URL named in challenges would answer 400 or 404, and
/// no request's `htu` would have that prefix.
fn base_problem(url: &str) -> Option<String> {
    if let Err(error) = portcullis::dpop::Htu::parse(url) {
        return Some(error.description().to_owned());
    }
    let uri: http::Uri = url.parse().ok()?;
    let path = match uri.path() {
        "" => "/",
        path => path,
    };
    match crate::canonical::canonicalize(path.as_bytes()) {
        Err(why) => Some(format!("has a path the gateway refuses in requests: {why}")),
        Ok(canonical) if !canonical.was_canonical => {
            Some(format!("has a path the gateway spells otherwise in requests: write {}", canonical.path))
        }
        Ok(_) => None,
    }
}

/// Whether DPoP is on anywhere in `config`: the keys that turn it on.
pub(crate) fn enabled_at(config: &Config) -> Vec<String> {
    let on = |setting: Option<DpopSetting>| setting.is_some_and(|s| s != DpopSetting::Off);
    let mut keys = Vec::new();
    if config.dpop.mode != DpopSetting::Off {
        keys.push("dpop.mode".to_owned());
    }
    for (i, issuer) in config.issuers.iter().enumerate() {
        if on(issuer.dpop) {
            keys.push(format!("issuers[{i}].dpop"));
        }
    }
    for (i, route) in config.routes.iter().enumerate() {
        if on(route.dpop) {
            keys.push(format!("routes[{i}].dpop"));
        }
    }
    keys
}

/// Every error of the DPoP, profile and metadata settings of `config`.
pub(crate) fn check(config: &Config) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let public = match &config.public_url {
        Some(url) => match origin(url) {
            Ok(origin) => {
                if let Some(why) = base_problem(url) {
                    errors.push(ConfigError::at("public_url", format!("{url:?} {why}")));
                }
                Some(origin)
            }
            Err(why) => {
                errors.push(ConfigError::at("public_url", format!("{url:?} {why}")));
                None
            }
        },
        None => None,
    };
    if config.public_url.is_none() {
        for key in enabled_at(config) {
            errors.push(ConfigError::at(
                key,
                "DPoP needs public_url (the external base URL, e.g. \"https://api.example.com\"): every proof's htu \
                 is checked against it, never against the Host header",
            ));
        }
    }
    check_dpop_table(config, &mut errors);
    for (i, issuer) in config.issuers.iter().enumerate() {
        let typ = issuer.typ.as_deref().map(str::to_ascii_lowercase);
        let typ = typ.as_deref().map(|t| t.strip_prefix("application/").unwrap_or(t));
        if issuer.profile == Some(Profile::Rfc9068) && typ.is_some_and(|t| t != "at+jwt") {
            errors.push(ConfigError::at(
                format!("issuers[{i}].typ"),
                "profile = \"rfc9068\" requires typ at+jwt: leave typ out or set it to \"at+jwt\"",
            ));
        }
    }
    if let Some(metadata) = &config.resource_metadata {
        match (&config.public_url, &public) {
            (None, _) => errors.push(ConfigError::at(
                "resource_metadata",
                "needs public_url: the metadata URL named in challenges is absolute, on public_url's origin",
            )),
            (Some(url), Some(public)) => match origin(&metadata.resource) {
                Err(why) => {
                    errors.push(ConfigError::at("resource_metadata.resource", format!("{:?} {why}", metadata.resource)))
                }
                Ok(resource) if resource != *public => errors.push(ConfigError::at(
                    "resource_metadata.resource",
                    format!(
                        "{:?} is not on public_url's origin ({url}): the metadata is served, and named in challenges, \
                         there",
                        metadata.resource
                    ),
                )),
                Ok(_) => {
                    if let Some(why) = base_problem(&metadata.resource) {
                        let message = format!("{:?} {why}", metadata.resource);
                        errors.push(ConfigError::at("resource_metadata.resource", message));
                    }
                }
            },
            (Some(_), None) => {}
        }
        for (j, server) in metadata.authorization_servers.iter().enumerate() {
            if let Err(why) = origin(server) {
                errors.push(ConfigError::at(
                    format!("resource_metadata.authorization_servers[{j}]"),
                    format!("{server:?} {why} (an issuer URL)"),
                ));
            }
        }
        for (j, scope) in metadata.scopes_supported.iter().enumerate() {
            if scope.is_empty() || scope.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\') {
                errors.push(ConfigError::at(
                    format!("resource_metadata.scopes_supported[{j}]"),
                    format!("{scope:?} is not a scope (no spaces, quotes or backslashes)"),
                ));
            }
        }
    }
    errors
}

fn check_dpop_table(config: &Config, errors: &mut Vec<ConfigError>) {
    let dpop = &config.dpop;
    for (j, name) in dpop.algorithms.iter().enumerate() {
        if Algorithm::from_name(name).is_none() {
            errors.push(ConfigError::at(
                format!("dpop.algorithms[{j}]"),
                format!("{name:?} is not an asymmetric algorithm portcullis verifies (ES256, PS256, EdDSA, …)"),
            ));
        }
    }
    if dpop.max_age_secs == 0 || dpop.max_age_secs > 86_400 {
        errors.push(ConfigError::at("dpop.max_age_secs", "must be between 1 and 86400 seconds"));
    }
    if dpop.leeway_secs > 300 {
        errors.push(ConfigError::at("dpop.leeway_secs", "must be at most 300 seconds"));
    }
    if dpop.replay_capacity == 0 {
        errors.push(ConfigError::at("dpop.replay_capacity", "must be at least 1"));
    }
    if let Some(path) = &dpop.nonce_secret_file
        && let Err(why) = nonce_secret(path)
    {
        errors.push(ConfigError::at("dpop.nonce_secret_file", why));
    }
}

/// The largest nonce secret file read: a secret is a few dozen bytes; a larger file is a mistake.
const MAX_NONCE_SECRET_FILE: u64 = 64 * 1024;

/// The nonce secret in the file at `path`: at least [`MIN_NONCE_SECRET`] bytes (surrounding whitespace, as a
/// trailing newline, is not part of it). The file must be a regular file (a symbolic link to one is fine) of at
/// most [`MAX_NONCE_SECRET_FILE`] bytes: a FIFO would block the check until someone writes to it, and a device
/// such as `/dev/zero` never ends.
pub(crate) fn nonce_secret(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let unreadable = |e: std::io::Error| format!("{} cannot be read: {e}", path.display());
    let metadata = std::fs::metadata(path).map_err(unreadable)?;
    if metadata.is_dir() {
        return Err(format!("{} cannot be read: it is a directory", path.display()));
    }
    if !metadata.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    let file = std::fs::File::open(path).map_err(unreadable)?;
    // The file may have changed since: what is read is bounded whatever it is now.
    let mut bytes = Vec::new();
    file.take(MAX_NONCE_SECRET_FILE + 1).read_to_end(&mut bytes).map_err(unreadable)?;
    if metadata.len() > MAX_NONCE_SECRET_FILE || bytes.len() as u64 > MAX_NONCE_SECRET_FILE {
        return Err(format!(
            "{} is larger than {MAX_NONCE_SECRET_FILE} bytes; a nonce secret file holds a few dozen",
            path.display()
        ));
    }
    let secret = bytes.trim_ascii().to_vec();
    if secret.len() < MIN_NONCE_SECRET {
        return Err(format!(
            "{} holds {} bytes; a nonce secret needs at least {MIN_NONCE_SECRET} (e.g. head -c 48 /dev/urandom | \
             base64 > FILE)",
            path.display(),
            secret.len()
        ));
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn origins_are_http_urls_without_query_fragment_or_user() {
        let o = origin("HTTPS://API.Example.com/base/").unwrap();
        assert_eq!((o.scheme.as_str(), o.host.as_str(), o.port), ("https", "api.example.com", 443));
        assert_eq!(origin("http://127.0.0.1:8080").unwrap().port, 8080);
        for bad in ["ftp://x", "https://u@x", "https://x/?a", "https://x/#f", "/relative", "https://"] {
            assert!(origin(bad).is_err(), "{bad}");
        }
    }
}

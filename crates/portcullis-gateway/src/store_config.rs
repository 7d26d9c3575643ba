//! The `[store]` and `[revocation]` tables: where replicas share DPoP replay entries and revocations, and whose
//! tokens may revoke others through the admin listener. Parsed by serde, checked here with each error at its key
//! path.

use crate::config::{Config, ConfigError};
use portcullis::store::ReplayFailure;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What a DPoP proof check does when the shared replay store cannot answer within its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReplayOnFailure {
    /// Refuse the request with `store_unavailable` (503). The default.
    #[default]
    FailClosed,
    /// Check the proof against this replica's memory instead (counted and logged).
    LocalOnly,
}

impl ReplayOnFailure {
    /// The core's setting.
    pub fn failure(self) -> ReplayFailure {
        match self {
            Self::FailClosed => ReplayFailure::FailClosed,
            Self::LocalOnly => ReplayFailure::LocalOnly,
        }
    }
}

/// The `[store]` table: the Redis shared by every replica (absent `redis_url`: memory, one replica).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct StoreConfig {
    /// `redis://[user:password@]host[:port][/db]`; none (default): replay entries and revocations in memory.
    pub redis_url: Option<String>,
    /// Prefix of every key and channel, so that deployments can share one Redis.
    pub key_prefix: String,
    /// The budget of one store call on the request path, in milliseconds (1 to 5000).
    pub timeout_ms: u64,
    /// How long a connection attempt may take, in milliseconds (1 to 60000).
    pub connect_timeout_ms: u64,
    /// How often the whole revocation set is read again, in seconds (1 to 86400).
    pub resync_secs: u64,
    /// When Redis cannot answer a DPoP replay check: `fail_closed` (default) or `local_only`.
    pub replay_on_failure: ReplayOnFailure,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            redis_url: None,
            key_prefix: "portcullis:".to_owned(),
            timeout_ms: 50,
            connect_timeout_ms: 1000,
            resync_secs: 60,
            replay_on_failure: ReplayOnFailure::FailClosed,
        }
    }
}

impl StoreConfig {
    /// The Redis settings, when `redis_url` is set.
    pub(crate) fn redis_settings(&self) -> Option<portcullis_redis::RedisSettings> {
        let url = self.redis_url.as_ref()?;
        let mut settings = portcullis_redis::RedisSettings::new(url.clone());
        settings.key_prefix = self.key_prefix.clone();
        settings.timeout = Duration::from_millis(self.timeout_ms);
        settings.connect_timeout = Duration::from_millis(self.connect_timeout_ms);
        settings.resync_interval = Duration::from_secs(self.resync_secs);
        Some(settings)
    }
}

/// The `[revocation]` table: the admin endpoint `POST /revocations` and who may call it. Absent: no endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RevocationConfig {
    /// The issuer whose tokens may revoke (its keys by discovery, or from `jwks_uri`).
    pub issuer: String,
    /// The JWKS URL or local file of `issuer`; discovery when absent (or the key set of the same issuer in
    /// `[[issuers]]`).
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// The audience an admin token must carry.
    pub audience: String,
    /// The permission an admin token must carry, in `permissions` or `scope`.
    #[serde(default = "default_permission")]
    pub permission: String,
    /// The life of an entry given no `expires_at`, in seconds; a subject entry lives `before` plus this.
    #[serde(default = "default_retention")]
    pub retention_secs: u64,
    /// The most entries the list may hold (default 100000); `POST /revocations` answers 503
    /// `revocation_list_full` beyond.
    #[serde(default = "default_max_entries")]
    pub max_entries: usize,
}

fn default_permission() -> String {
    "revoke:tokens".to_owned()
}

fn default_retention() -> u64 {
    86_400
}

fn default_max_entries() -> usize {
    100_000
}

/// The longest `retention_secs`: a year.
pub(crate) const MAX_RETENTION_SECS: u64 = 366 * 86_400;

/// Every error of the `[store]` and `[revocation]` tables of `config`.
pub(crate) fn check(config: &Config) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let store = &config.store;
    if let Some(url) = &store.redis_url
        && let Err(message) = check_redis_url(url)
    {
        errors.push(ConfigError::at("store.redis_url", message));
    }
    if store.key_prefix.is_empty() || store.key_prefix.len() > 64 {
        errors.push(ConfigError::at("store.key_prefix", "must be 1 to 64 bytes long"));
    } else if store.key_prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        errors.push(ConfigError::at("store.key_prefix", "must not hold spaces or control characters"));
    }
    for (key, value, max) in [
        ("store.timeout_ms", store.timeout_ms, 5_000),
        ("store.connect_timeout_ms", store.connect_timeout_ms, 60_000),
        ("store.resync_secs", store.resync_secs, 86_400),
    ] {
        if !(1..=max).contains(&value) {
            errors.push(ConfigError::at(key, format!("must be 1 to {max}, not {value}")));
        }
    }
    if let Some(revocation) = &config.revocation {
        check_revocation(config, revocation, &mut errors);
    }
    errors
}

fn check_revocation(config: &Config, revocation: &RevocationConfig, errors: &mut Vec<ConfigError>) {
    if config.admin_listen.is_none() {
        errors.push(ConfigError::at(
            "revocation",
            "the revocation endpoint is on the admin listener: set admin_listen (or remove [revocation])",
        ));
    }
    if !(revocation.issuer.starts_with("https://") || revocation.issuer.starts_with("http://"))
        || revocation.issuer.len() <= "https://".len()
    {
        errors.push(ConfigError::at("revocation.issuer", "must be the issuer's URL, exactly as in its tokens"));
    }
    if let Some(uri) = &revocation.jwks_uri
        && !["https://", "http://", "file://"].iter().any(|scheme| uri.starts_with(scheme))
    {
        errors.push(ConfigError::at(
            "revocation.jwks_uri",
            "must be an https:// or http:// URL, or a local key set file (file:///path/jwks.json)",
        ));
    }
    if revocation.audience.trim().is_empty() {
        errors.push(ConfigError::at("revocation.audience", "must name the audience admin tokens carry"));
    }
    if revocation.permission.is_empty()
        || revocation.permission.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\')
    {
        errors.push(ConfigError::at(
            "revocation.permission",
            "must be one permission or scope: not empty, without spaces, quotes or backslashes",
        ));
    }
    if !(60..=MAX_RETENTION_SECS).contains(&revocation.retention_secs) {
        errors.push(ConfigError::at(
            "revocation.retention_secs",
            format!("must be 60 to {MAX_RETENTION_SECS} (a year), not {}", revocation.retention_secs),
        ));
    }
    if revocation.max_entries == 0 {
        errors.push(ConfigError::at("revocation.max_entries", "must be at least 1"));
    }
}

/// Whether `url` is a Redis URL the store can use: `redis://[user:password@]host[:port][/db]`.
fn check_redis_url(url: &str) -> Result<(), String> {
    let rest = if let Some(rest) = url.strip_prefix("redis://") {
        rest
    } else if url.starts_with("rediss://") {
        return Err("TLS to Redis is not supported; use redis:// on a private network, or a local TLS tunnel \
                    (stunnel, a service mesh sidecar) to reach Redis over TLS"
            .to_owned());
    } else {
        return Err("must be a redis:// URL: redis://[user:password@]host[:port][/db]".to_owned());
    };
    let (authority, db) = match rest.split_once('/') {
        Some((authority, db)) => (authority, Some(db)),
        None => (rest, None),
    };
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, rest)) => (host, rest.strip_prefix(':')),
            None => return Err("an IPv6 host must be closed with ']'".to_owned()),
        },
        None => match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control() || "/?#".contains(c)) {
        return Err("must name a host: redis://host[:port][/db]".to_owned());
    }
    if let Some(port) = port
        && port.parse::<u16>().map_or(true, |port| port == 0)
    {
        return Err(format!("{port:?} is not a port (1 to 65535)"));
    }
    if let Some(db) = db
        && !db.is_empty()
        && db.parse::<u32>().is_err()
    {
        return Err(format!("{db:?} is not a database number (redis://host:port/0)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_redis_url;

    #[test]
    fn redis_urls_are_redis_scheme_with_a_host() {
        for good in ["redis://127.0.0.1:6379/0", "redis://h", "redis://u:p@h:1/", "redis://[::1]:6379"] {
            assert_eq!(check_redis_url(good), Ok(()), "{good}");
        }
        for (bad, says) in [
            ("rediss://h:6380", "TLS to Redis is not supported"),
            ("http://h:6379", "must be a redis:// URL"),
            ("redis://:6379", "must name a host"),
            ("redis://h:0", "is not a port"),
            ("redis://h:x", "is not a port"),
            ("redis://h:6379/x", "not a database number"),
            ("redis://[::1:6379", "closed with"),
        ] {
            let error = check_redis_url(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }
}

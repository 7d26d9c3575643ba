//! What the store calls things in Redis, and how it names them in logs without giving values away.

use portcullis::store::ReplayKey;

/// The keys and the channel of one deployment, all under its prefix.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    prefix: String,
    /// The sorted set of revocations (member: an entry's JSON, score: its `expires_at`).
    pub(crate) revocations: String,
    /// The channel that carries one entry's JSON per message.
    pub(crate) channel: String,
}

impl Names {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            revocations: format!("{prefix}revocations"),
            channel: format!("{prefix}revocations"),
        }
    }

    /// `<prefix>replay:<64 hex>`.
    pub(crate) fn replay(&self, key: ReplayKey) -> String {
        format!("{}replay:{key}", self.prefix)
    }
}

/// The first 12 hex digits of the SHA-256 of `value`: enough to tell entries apart in logs, nothing to learn the
/// value from.
pub(crate) fn fingerprint(value: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.as_bytes());
    digest.as_ref()[..6].iter().map(|byte| format!("{byte:02x}")).collect()
}

/// `url` with the password (the whole user information when it holds one) replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else { return url.to_owned() };
    let userinfo = match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        // redis-rs reads a lone user information as the user name; keep it out of logs all the same.
        None => "***".to_owned(),
    };
    format!("{scheme}://{userinfo}@{host}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(redact("redis://127.0.0.1:6379/0"), "redis://127.0.0.1:6379/0");
        assert_eq!(redact("redis://:s3cret@redis:6379"), "redis://:***@redis:6379");
        assert_eq!(redact("redis://app:s3cret@redis/2"), "redis://app:***@redis/2");
        assert_eq!(redact("rediss://token@redis?protocol=resp3"), "rediss://***@redis?protocol=resp3");
        assert_eq!(redact("redis://a:p@ss@redis"), "redis://a:***@redis");
    }

    #[test]
    fn keys_carry_the_prefix() {
        let names = Names::new("app1:");
        assert_eq!(names.revocations, "app1:revocations");
        assert_eq!(names.channel, "app1:revocations");
        let key = ReplayKey::for_proof("https://api.example.com/", "j1");
        assert_eq!(names.replay(key), format!("app1:replay:{key}"));
        assert_eq!(fingerprint("x").len(), 12);
        assert_ne!(fingerprint("x"), fingerprint("y"));
        // Entries that differ only after a second dot are told apart.
        assert_ne!(fingerprint(r#"{"sub":"a.b.c"}"#), fingerprint(r#"{"sub":"a.b.d"}"#));
    }
}

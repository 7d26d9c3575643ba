//! A local JWKS file (`jwks_uri = "file:///path/jwks.json"`, as Envoy's `local_jwks`) for setups without a
//! network path to the issuer. The file is read when a configuration is built — at start and on every reload —
//! and its keys never change in between: no fetch, no refresh. A missing, oversized or invalid file, or one
//! without a usable key, is a configuration error.

use portcullis::source::KeyFuture;
use portcullis::{KeySet, KeySource};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The scheme of a local key file.
const SCHEME: &str = "file://";

/// The path a `file://` URI names, `None` for any other URI. Only absolute paths on this machine: `file:///p`
/// or `file://localhost/p`.
pub(crate) fn path_of(uri: &str) -> Option<Result<PathBuf, String>> {
    let rest = uri.strip_prefix(SCHEME)?;
    let path = rest.strip_prefix("localhost").unwrap_or(rest);
    if !path.starts_with('/') {
        return Some(Err(format!(
            "{uri:?}: a local key file is named by its absolute path, as file:///etc/portcullis/jwks.json"
        )));
    }
    if path.contains(['?', '#', '%']) {
        return Some(Err(format!("{uri:?}: write the path as it is, without a query, fragment or %-escapes")));
    }
    Some(Ok(PathBuf::from(path)))
}

/// Keys read from a local file.
#[derive(Debug, Clone)]
pub(crate) struct LocalKeys {
    /// The `file://` URI as configured (status page, metrics).
    pub uri: String,
    pub keys: Arc<KeySet>,
    /// When the file was read (Unix seconds).
    loaded_at: f64,
}

impl LocalKeys {
    /// Reads and checks the key file at `path`, bounded by the JWKS limits.
    pub(crate) fn load(uri: &str, path: &Path, max_bytes: usize, max_keys: usize) -> Result<Self, String> {
        let shown = path.display();
        let unreadable = |e: std::io::Error| format!("cannot read the key file {shown}: {e}");
        let metadata = std::fs::metadata(path).map_err(unreadable)?;
        // A device or a pipe (`/dev/zero`, a FIFO) would be read without end, or block the start and reloads.
        if !metadata.is_file() {
            return Err(format!("the key file {shown} is not a regular file"));
        }
        // Bounded while reading too: the file may grow after its size was read.
        let mut json = Vec::new();
        let file = std::fs::File::open(path).map_err(unreadable)?;
        std::io::Read::read_to_end(&mut std::io::Read::take(file, max_bytes as u64 + 1), &mut json)
            .map_err(unreadable)?;
        if json.len() > max_bytes {
            return Err(format!("the key file {shown} has more than limits.max_jwks_bytes = {max_bytes} bytes"));
        }
        let keys = KeySet::from_jwks_json_bounded(&json, max_keys)
            .map_err(|e| format!("the key file {shown} is not a usable JWK Set: {e}"))?;
        if keys.is_empty() {
            return Err(format!("the key file {shown} has no usable key"));
        }
        let loaded_at =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        Ok(Self { uri: uri.to_owned(), keys: Arc::new(keys), loaded_at })
    }

    /// Reports the loaded set as a key set's gauges do: keys held, and when they were loaded. Idempotent, so it
    /// can be repeated once a metrics recorder is installed.
    pub(crate) fn report(&self) {
        metrics::gauge!("portcullis_jwks_keys", "source" => self.uri.clone()).set(self.keys.len() as f64);
        metrics::gauge!("portcullis_jwks_last_success_timestamp_seconds", "source" => self.uri.clone())
            .set(self.loaded_at);
    }
}

impl KeySource for LocalKeys {
    fn current(&self) -> Option<Arc<KeySet>> {
        Some(Arc::clone(&self.keys))
    }

    fn resolve<'a>(&'a self, kid: Option<&'a str>) -> KeyFuture<'a> {
        Box::pin(std::future::ready(self.keys.select(kid).cloned()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_absolute_local_paths() {
        assert_eq!(path_of("https://x/jwks.json"), None);
        assert_eq!(path_of("file:///etc/jwks.json"), Some(Ok(PathBuf::from("/etc/jwks.json"))));
        assert_eq!(path_of("file://localhost/etc/jwks.json"), Some(Ok(PathBuf::from("/etc/jwks.json"))));
        for bad in ["file://jwks.json", "file://host/etc/jwks.json", "file:///etc/jwks%20a.json"] {
            assert!(path_of(bad).unwrap().is_err(), "{bad}");
        }
    }
}

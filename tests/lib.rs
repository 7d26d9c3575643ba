//! Tests that span the portcullis workspace rather than one crate: every test that `docs/threat-model.md` names
//! exists (`threat_model.rs`), and no crate logs a token, signature, client secret or private key at any level
//! (`secrets.rs`). This library only locates the workspace for them.

use std::path::Path;

/// The workspace's root directory (where `Cargo.toml`, `crates/` and `docs/` are).
pub fn workspace_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

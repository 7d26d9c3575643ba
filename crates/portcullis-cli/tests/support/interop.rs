//! What the interoperability tests with npm clients share: the directory `.ci/run` installs the pinned packages
//! into, the check that they are there, the demo API's verifier, and the blocks of docs/issuer.md they run.

use portcullis::remote::{KeyLocation, RemoteKeySet, RemoteOptions};
use portcullis::{SystemClock, Verifier};
use portcullis_issuer::DEMO_AUDIENCE;
use portcullis_testkit::{markdown, probe};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;

/// `PORTCULLIS_INTEROP_DIR`, or `~/.cache/portcullis-interop`: where `.ci/run` installs the npm packages.
pub fn interop_dir() -> PathBuf {
    std::env::var_os("PORTCULLIS_INTEROP_DIR").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/portcullis-interop")
    })
}

/// The installed version of the npm package `name` in the interop directory.
fn installed_version(name: &str) -> Result<String, String> {
    let manifest = interop_dir().join("node_modules").join(name).join("package.json");
    let text = std::fs::read_to_string(&manifest).map_err(|e| format!("{}: {e}", manifest.display()))?;
    let parsed: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", manifest.display()))?;
    parsed["version"].as_str().map(str::to_owned).ok_or_else(|| format!("{}: no version", manifest.display()))
}

/// Whether Node.js runs and every `name@version` of `pinned` is installed at exactly that version (the docs name
/// them as the ones tested); otherwise `test` skips with the reason, or fails under `CI=true`.
pub fn require_npm_packages(test: &str, pinned: &[&str]) -> bool {
    let found = probe::runs("node", &["--version"]).and_then(|()| {
        pinned.iter().try_for_each(|spec| {
            let (name, wanted) = spec.rsplit_once('@').expect("name@version");
            match installed_version(name)? {
                version if version == wanted => Ok(()),
                version => Err(format!("{name} {version} installed, {wanted} wanted")),
            }
        })
    });
    let install = pinned.join(" ");
    let dir = interop_dir();
    probe::require(
        &format!("{test}: npm packages {}", pinned.join(", ")),
        found.map_err(|why| format!("{why}; run .ci/run, or npm install {install} into {}", dir.display())),
    )
}

/// A verifier of the demo audience trusting `issuer`, its keys found through discovery and loaded.
pub async fn demo_verifier(issuer: &str) -> Verifier {
    let location = KeyLocation::Discovery { issuer: issuer.to_owned() };
    let keys = RemoteKeySet::new(location, RemoteOptions::default(), Arc::new(SystemClock)).unwrap();
    keys.refresh().await.unwrap();
    Verifier::builder().issuer(issuer).audience(DEMO_AUDIENCE).key_source(Arc::new(keys)).build().unwrap()
}

/// Where the app of docs/issuer.md runs; tests replace it by their own address.
pub const DOCUMENTED_APP: &str = "http://127.0.0.1:3000";

/// docs/issuer.md.
pub fn issuer_page() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/issuer.md")).unwrap()
}

/// The block of docs/issuer.md in `language` marked `<!-- MARKER -->`.
pub fn documented(language: &str, marker: &str) -> String {
    markdown::fenced_blocks(&issuer_page(), &[language])
        .into_iter()
        .find(|block| block.marker.as_deref() == Some(marker))
        .unwrap_or_else(|| panic!("docs/issuer.md has a {language} block marked <!-- {marker} -->"))
        .text
}

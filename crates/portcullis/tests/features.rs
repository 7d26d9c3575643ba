//! The verifier's centre does no I/O: without default features, portcullis depends on no async runtime, HTTP
//! client or cache.

use std::process::Command;

#[test]
fn without_default_features_there_is_no_tokio_reqwest_or_moka() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["tree", "-p", "portcullis", "--no-default-features", "-e", "normal", "--prefix", "none"])
        .args(["--manifest-path", concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")])
        .output()
        .expect("cargo tree runs");
    assert!(output.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&output.stderr));
    let tree = String::from_utf8(output.stdout).expect("cargo tree prints UTF-8");
    let crates: Vec<&str> = tree.lines().filter_map(|line| line.split_whitespace().next()).collect();
    assert!(crates.contains(&"portcullis"), "{tree}");
    assert!(crates.contains(&"aws-lc-rs"), "{tree}");
    for heavy in ["tokio", "reqwest", "moka", "hyper"] {
        assert!(!crates.contains(&heavy), "{heavy} is a dependency without default features:\n{tree}");
    }
}

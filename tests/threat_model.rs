//! docs/threat-model.md names a test for every defence, and every test it names exists.
#![allow(clippy::unwrap_used)]

use portcullis_workspace_tests::workspace_root as workspace;

const SECTIONS_WITH_TESTS: [&str; 3] =
    ["## RFC 8725", "## Known vulnerability classes", "## The gateway's own surface"];

/// The test references in `cell`: `crate/tests/file.rs::name` (or `tests/file.rs::name` for the workspace's own
/// tests), and `::name` for another test of the same file.
fn references(cell: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut file = String::new();
    for quoted in cell.split('`').skip(1).step_by(2) {
        let Some((path, name)) = quoted.rsplit_once("::") else { continue };
        if !path.is_empty() {
            file = path.to_owned();
        }
        if !file.is_empty() {
            found.push((file.clone(), name.to_owned()));
        }
    }
    found
}

#[test]
fn every_defence_names_a_test_that_exists() {
    let text = std::fs::read_to_string(workspace().join("docs/threat-model.md")).unwrap();
    let mut section = "";
    let mut rows = 0;
    for line in text.lines() {
        if line.starts_with("## ") {
            section = line;
            continue;
        }
        let in_scope = SECTIONS_WITH_TESTS.iter().any(|s| section.starts_with(s));
        if !in_scope
            || !line.starts_with("| ")
            || line.starts_with("| §")
            || line.starts_with("| class")
            || line.starts_with("| threat")
        {
            continue;
        }
        rows += 1;
        let tests_cell = line.trim_end_matches('|').rsplit('|').next().unwrap();
        let named = references(tests_cell);
        assert!(!named.is_empty(), "{section}: a row names no test: {line}");
        for (file, name) in named {
            let source = match file.strip_prefix("tests/") {
                Some(workspace_test) => workspace().join("tests").join(workspace_test),
                None => {
                    let (krate, path) = file.split_once('/').unwrap();
                    workspace().join("crates").join(krate).join(path)
                }
            };
            let code = std::fs::read_to_string(&source).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
            assert!(
                code.contains(&format!("fn {name}(")),
                "docs/threat-model.md names {file}::{name}, which does not exist"
            );
        }
    }
    assert!(rows >= 35, "only {rows} rows were checked");
}

//! The configuration reference (docs/configuration.md) and the embedded template stay in step with `Config`.
#![allow(clippy::unwrap_used)]

use portcullis_gateway::Config;
use portcullis_gateway::config::TEMPLATE;
use serde_json::Value;
use std::collections::BTreeSet;

/// The `[table]` sections of settings whose keys are documented one by one.
const TABLES: [&str; 5] = ["limits", "dpop", "store", "revocation", "resource_metadata"];

fn reference() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md")).unwrap()
}

/// Every key of `Config` as the reference names it: `listen`, `issuers[].audiences`, … (maps and rules as one key).
fn config_keys() -> BTreeSet<String> {
    let mut config = Config::from_toml(TEMPLATE).unwrap();
    config.admin_listen = Some("127.0.0.1:9090".parse().unwrap());
    config.forward_auth = Some(portcullis_gateway::FrontProxy::Nginx);
    config.routes[0].claim_headers = Some([("sub".to_owned(), "X-User".to_owned())].into());
    config.public_url = Some("https://api.example.com".to_owned());
    config.resource_metadata =
        Some(serde_json::from_value(serde_json::json!({"resource": "https://api.example.com/"})).unwrap());
    config.revocation = Some(
        serde_json::from_value(serde_json::json!({"issuer": "https://tenant.example.com/", "audience": "admin"}))
            .unwrap(),
    );
    let value = serde_json::to_value(&config).unwrap();
    let mut keys = BTreeSet::new();
    for (key, value) in value.as_object().unwrap() {
        match value {
            Value::Array(items) if items.first().is_some_and(Value::is_object) => {
                for field in items.iter().flat_map(|item| item.as_object().unwrap().keys()) {
                    keys.insert(format!("{key}[].{field}"));
                }
            }
            // Tables of settings (not maps of the user's own names, like claim_headers).
            Value::Object(fields) if TABLES.contains(&key.as_str()) => {
                for field in fields.keys() {
                    keys.insert(format!("{key}.{field}"));
                }
            }
            _ => {
                keys.insert(key.clone());
            }
        }
    }
    keys
}

#[test]
fn the_reference_table_lists_exactly_the_keys_of_config() {
    let documented: BTreeSet<String> = reference()
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(key, _)| key.to_owned())
        .filter(|key| !key.starts_with("--"))
        .collect();
    let keys = config_keys();
    assert!(keys.len() >= 21, "{keys:?}");
    assert_eq!(documented, keys, "docs/configuration.md's key table and Config differ");
}

#[test]
fn the_template_shows_every_key_and_the_reference_shows_the_template() {
    for key in config_keys() {
        let (table, leaf) = match (key.split_once("[]."), key.split_once('.')) {
            (Some((table, leaf)), _) => (Some(format!("[[{table}]]\n")), leaf),
            (None, Some((table, leaf))) => (Some(format!("[{table}]\n")), leaf),
            (None, None) => (None, key.as_str()),
        };
        if let Some(table) = table {
            assert!(TEMPLATE.contains(&table), "template lacks {table}");
        }
        let shown = TEMPLATE.lines().any(|line| {
            let line = line.trim_start_matches(['#', ' ']);
            line.starts_with(&format!("{leaf} = ")) || line == format!("[{leaf}]")
        });
        assert!(shown, "the template does not show {key}");
    }
    assert!(reference().contains(&format!("```toml\n{TEMPLATE}```")), "docs/configuration.md must embed the template");
}

#[test]
fn the_template_is_the_defaults() {
    let template = Config::from_toml(TEMPLATE).unwrap();
    let defaults = Config::defaults();
    assert_eq!(template.listen, defaults.listen);
    assert_eq!(template.admin_listen, defaults.admin_listen);
    assert_eq!(template.forward_auth, defaults.forward_auth);
    assert_eq!(template.trusted_proxies, defaults.trusted_proxies);
    assert_eq!(template.upstream_timeout_secs, defaults.upstream_timeout_secs);
    assert_eq!(template.realm, defaults.realm);
    assert_eq!(template.log_format, defaults.log_format);
    assert_eq!(template.claim_headers, defaults.claim_headers);
    assert_eq!(template.unmatched, defaults.unmatched);
    assert_eq!(template.workers, defaults.workers);
    assert_eq!(template.limits, defaults.limits);
    assert_eq!(template.dpop, defaults.dpop);
    assert_eq!(template.public_url, defaults.public_url);
    assert_eq!(template.resource_metadata, defaults.resource_metadata);
    assert_eq!(template.store, defaults.store);
    assert_eq!(template.revocation, defaults.revocation);
}

//! Rendering a verification [`Report`] for people and for scripts.

use portcullis::Report;
use serde_json::{Map, Value, json};
use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

/// The single JSON object `--json` prints.
pub(crate) fn json_verdict(report: &Report) -> Value {
    match &report.verdict {
        Ok(token) => json!({
            "valid": true,
            "header": Value::Object(token.header().raw().clone()),
            "claims": Value::Object(token.claims().clone()),
        }),
        Err(err) => json!({
            "valid": false,
            "reason": err.reason().code(),
            "description": err.description(),
        }),
    }
}

/// The readable explanation: decoded header and claims, each check with its outcome, hints, verdict.
pub(crate) fn readable(report: &Report) -> String {
    let mut out = String::new();
    let verified = report.verdict.is_ok();
    section(&mut out, "Header", report.header.as_ref());
    let title = if verified { "Claims" } else { "Claims (not trusted: the token is invalid)" };
    section(&mut out, title, report.claims.as_ref());
    if let Some(claims) = &report.claims {
        times(&mut out, claims);
    }
    out.push_str("\nChecks\n");
    for step in &report.steps {
        match &step.outcome {
            Ok(detail) => {
                let _ = writeln!(out, "  [ok]   {:<16}{detail}", step.check.label());
            }
            Err(err) => {
                let _ = writeln!(out, "  [FAIL] {:<16}{}: {}", step.check.label(), err.reason(), err.description());
                if let Some(hint) = &step.hint {
                    let _ = writeln!(out, "         {:<16}hint: {hint}", "");
                }
            }
        }
    }
    out.push('\n');
    match &report.verdict {
        Ok(_) => out.push_str("VALID\n"),
        Err(err) => {
            let _ = writeln!(out, "INVALID ({}): {}", err.reason(), err.description());
        }
    }
    out
}

pub(crate) fn section(out: &mut String, title: &str, value: Option<&Map<String, Value>>) {
    let _ = writeln!(out, "{title}");
    match value {
        Some(map) => {
            let pretty = serde_json::to_string_pretty(map).unwrap_or_default();
            for line in pretty.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
        None => out.push_str("  (cannot be decoded)\n"),
    }
}

/// Shows the NumericDate claims as UTC times.
pub(crate) fn times(out: &mut String, claims: &Map<String, Value>) {
    for name in ["iat", "nbf", "exp"] {
        let Some(secs) = claims.get(name).and_then(Value::as_f64) else {
            continue;
        };
        if !(0.0..1e11).contains(&secs) {
            continue;
        }
        let when = UNIX_EPOCH + Duration::from_secs_f64(secs);
        let _ = writeln!(out, "  {name} = {}", humantime::format_rfc3339_seconds(when));
    }
}

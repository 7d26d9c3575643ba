//! `Config::parse_toml` and `Config::check`: every error of a file at once, each with its line, column and key
//! path, and the refusals that keep a checked configuration from failing when the gateway is built.
#![allow(clippy::unwrap_used)]

use portcullis_gateway::{Config, Gateway};

/// The errors of `text`, rendered as `check-config` prints them.
fn errors(text: &str) -> Vec<String> {
    match Config::from_toml(text) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.errors().iter().map(|e| e.render("f.toml")).collect(),
    }
}

const HEAD: &str =
    "upstream = \"http://127.0.0.1:3000\"\n[[issuers]]\nissuer = \"https://tenant.example/\"\naudiences = [\"api\"]\n";

#[test]
fn every_type_error_and_unknown_key_of_a_file_at_once() {
    let text = "listen = 8080\nworkers = \"two\"\nupstrem = \"http://x\"\n[[issuers]]\nissuer = 7\naudience = [\"a\"]\n\
                [[routes]]\npath = \"/a\"\nmethods = \"GET\"\nrequire = { any = [] }\nupstream = \"http://x\"\n\
                [[routes]]\npath = 3\n[limits]\nmax_headrs = 3\nworkers = 1\n";
    let note = "is a top-level key, but TOML puts every key after a";
    assert_eq!(
        errors(text),
        [
            "f.toml:1:10: listen: invalid type: integer `8080`, expected socket address".to_owned(),
            "f.toml:2:11: workers: invalid type: string \"two\", expected usize".into(),
            "f.toml:3:1: unknown field `upstrem`; did you mean `upstream`?".into(),
            "f.toml:5:10: issuers[0].issuer: invalid type: integer `7`, expected a string".into(),
            "f.toml:6:1: issuers[0]: unknown field `audience`; did you mean `audiences`?".into(),
            "f.toml:9:11: routes[0].methods: invalid type: string \"GET\", expected a sequence".into(),
            "f.toml:10:11: routes[0].require: an empty `any` is never met and would refuse every token; list at least \
             one rule"
                .into(),
            format!(
                "f.toml:11:1: routes[0]: unknown field `upstream`; note: `upstream` {note} [[routes]] header into that \
                 table: move it above the first table header (line 4)"
            ),
            "f.toml:13:8: routes[1].path: invalid type: integer `3`, expected a string".into(),
            "f.toml:15:1: limits: unknown field `max_headrs`; did you mean `max_headers`?".into(),
            format!(
                "f.toml:16:1: limits: unknown field `workers`; note: `workers` {note} [limits] header into that table: \
                 move it above the first table header (line 4)"
            ),
        ]
    );
    // Not a table where one is expected, and a syntax error (which stops the reading).
    assert_eq!(
        errors("routes = 3\nissuers = [1]"),
        [
            "f.toml:1:10: routes: invalid type: integer `3`, expected a sequence",
            "f.toml:2:12: issuers[0]: invalid type: integer `1`, expected struct IssuerConfig",
        ]
    );
    assert_eq!(errors("x = ["), ["f.toml:1:6: unclosed array, expected `]`"]);
}

/// Unknown keys are left out and the rest is checked, so a misspelled key and what it leads to come together;
/// a value of the wrong type stops before the checks.
#[test]
fn unknown_keys_and_check_errors_together() {
    let text = format!(
        "upstrem = \"http://127.0.0.1:3000\"\n{}[[routes]]\npath = \"/a\"\nrequire = {{ all = [{{ scope = \"a\" }}] }}\nmethod = [\"GET\"]\n[[routes]]\npath = \"/A\"\n",
        &HEAD[HEAD.find('[').unwrap()..]
    );
    assert_eq!(
        errors(&text),
        [
            "f.toml:1:1: unknown field `upstrem`; did you mean `upstream`?",
            "f.toml:8:1: routes[0]: unknown field `method`; did you mean `methods`?",
            "f.toml:10:8: routes[1].path: \"/A\" can never be reached: routes[0] (\"/a\") comes first and has the same \
             path and takes every method it does; remove it or move it above",
            "f.toml: upstream: proxy mode needs an upstream (--upstream or upstream = \"http://…\")",
        ]
    );
    // A value of the wrong type: reported alone, the shadowed route is not looked at yet.
    let typed = format!("upstream_timeout_secs = \"5\"\n{HEAD}[[routes]]\npath = \"/a\"\n[[routes]]\npath = \"/a\"\n");
    assert_eq!(errors(&typed), ["f.toml:1:25: upstream_timeout_secs: invalid type: string \"5\", expected u64"]);
}

#[test]
fn every_check_error_at_once() {
    let text = format!(
        "{HEAD}jwks_uri = \"http://idp.example/jwks\"\n[[issuers]]\nissuer = \"http://idp.example/\"\n\
         audiences = [\"\"]\n[claim_headers]\nsub = \"Transfer-Encoding\"\nupstream = \"http://x\"\n\
         [[routes]]\npath = \"/api/*\"\nmethods = [\"GET\"]\n[[routes]]\npath = \"/api/x\"\nmethods = [\"POST\"]\n\
         claim_headers = {{ sub = \"x_forwarded_for\", iss = \"Content-Length\" }}\n"
    );
    assert_eq!(
        errors(&text),
        [
            "f.toml:5:12: issuers[0].jwks_uri: refusing http://idp.example/jwks: plain HTTP is only allowed for \
             loopback addresses; use https",
            "f.toml:7:10: issuers[1].issuer: refusing http://idp.example/.well-known/openid-configuration: plain \
             HTTP is only allowed for loopback addresses; use https (the keys are found by discovery at the issuer; \
             give jwks_uri to fetch them elsewhere)",
            "f.toml:8:14: issuers[1].audiences[0]: an audience cannot be empty",
            "f.toml:10:7: claim_headers.sub: \"Transfer-Encoding\" frames the message body: a claim cannot be sent in \
             it; choose another name, e.g. X-Auth-…",
            "f.toml:11:12: claim_headers.upstream: \"http://x\" is not a valid header name; note: `upstream` is a \
             top-level key, but TOML puts every key after a [claim_headers] header into that table: move it above \
             the first table header",
            "f.toml:16:8: routes[1].path: \"/api/x\" can never be reached: routes[0] (\"/api/*\") comes first and \
             matches every path it does (a method never falls through to a later route); remove it or move it above",
            "f.toml:18:25: routes[1].claim_headers.sub: \"x_forwarded_for\" routes the request: a claim cannot be sent \
             in it; choose another name, e.g. X-Auth-…",
            "f.toml:18:50: routes[1].claim_headers.iss: \"Content-Length\" frames the message body: a claim cannot be \
             sent in it; choose another name, e.g. X-Auth-…",
        ]
    );
}

#[test]
fn framing_routing_and_hop_by_hop_headers_carry_no_claim_in_any_spelling() {
    for header in [
        "Transfer-Encoding",
        "transfer_encoding",
        "CONTENT-LENGTH",
        "Host",
        "Connection",
        "Keep-Alive",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Upgrade",
        "Expect",
        "Cookie",
        "Set-Cookie",
        "Authorization",
        "Proxy-Authorization",
        "Forwarded",
        "X-Forwarded-For",
        "x_forwarded_host",
        "X-Real-IP",
        "Content-Type",
        "Content-Encoding",
        "X-Original-URL",
        "X-HTTP-Method-Override",
        "X-Request-Id",
    ] {
        let global = errors(&format!("{HEAD}[claim_headers]\nsub = \"{header}\"\n[[routes]]\npath = \"/a\"\n"));
        assert_eq!(global.len(), 1, "{header}: {global:?}");
        assert!(global[0].starts_with("f.toml:6:7: claim_headers.sub: "), "{header}: {global:?}");
        assert!(global[0].contains("a claim cannot be sent in it"), "{header}: {global:?}");
        let routed = errors(&format!("{HEAD}[[routes]]\npath = \"/a\"\nclaim_headers = {{ sub = \"{header}\" }}\n"));
        assert_eq!(routed.len(), 1, "{header}: {routed:?}");
        assert!(routed[0].starts_with("f.toml:7:25: routes[0].claim_headers.sub: "), "{header}: {routed:?}");
    }
    for fine in ["X-Auth-Subject", "X-User", "X-Forwarded", "X-Auth-Host", "Content-Language"] {
        assert_eq!(errors(&format!("{HEAD}[claim_headers]\nsub = \"{fine}\"\n[[routes]]\npath = \"/a\"\n")), [""; 0]);
    }
}

#[test]
fn empty_any_and_all_are_refused_at_any_depth() {
    for (rule, at, which) in [
        ("{ all = [] }", "f.toml:7:11: routes[0].require: ", "an empty `all` is always met"),
        ("{ any = [] }", "f.toml:7:11: routes[0].require: ", "an empty `any` is never met"),
        ("{ not = { any = [] } }", "f.toml:7:11: routes[0].require: ", "an empty `any` is never met"),
        ("{ all = [{ scope = \"a\" }, { any = [] }] }", "f.toml:7:19: routes[0].require.all: ", "an empty `any`"),
    ] {
        let said = errors(&format!("{HEAD}[[routes]]\npath = \"/a\"\nrequire = {rule}\n"));
        assert_eq!(said.len(), 1, "{rule}: {said:?}");
        assert!(said[0].starts_with(at), "{rule}: {said:?}");
        assert!(said[0].contains(which), "{rule}: {said:?}");
    }
    assert_eq!(
        errors(&format!("{HEAD}[[routes]]\npath = \"/a\"\nrequire = {{ any = [{{ scope = \"a\" }}] }}\n")),
        [""; 0]
    );
}

#[test]
fn shadowed_routes_name_both_routes() {
    let said = errors(&format!(
        "{HEAD}[[routes]]\npath = \"/users/{{id}}\"\n[[routes]]\npath = \"/users/me\"\nstrict_match = true\n\
         [[routes]]\npath = \"/docs\"\nmethods = [\"GET\", \"PUT\"]\n[[routes]]\npath = \"/Docs/\"\nmethods = [\"HEAD\"]\n\
         [[routes]]\npath = \"/docs\"\nmethods = [\"DELETE\"]\n"
    ));
    assert_eq!(
        said,
        [
            "f.toml:8:8: routes[1].path: \"/users/me\" can never be reached: routes[0] (\"/users/{id}\") comes first \
             and matches every path it does (a method never falls through to a later route); remove it or move it \
             above",
            "f.toml:14:8: routes[3].path: \"/Docs/\" can never be reached: routes[2] (\"/docs\") comes first and has \
             the same path and takes every method it does; remove it or move it above",
        ]
    );
}

#[test]
fn issuers_without_routes_get_a_warning_naming_what_unmatched_requests_get() {
    let deny = Config::from_toml(HEAD).unwrap();
    let warnings: Vec<String> = deny.warnings().iter().map(|w| w.render("f.toml")).collect();
    assert_eq!(
        warnings,
        ["f.toml: routes: no [[routes]]: every request is answered 404 (unmatched = \"deny\"); add routes, or set \
          unmatched to say what you mean"]
    );
    let open = Config::from_toml(&format!("unmatched = \"authenticated\"\n{HEAD}")).unwrap();
    assert!(open.warnings()[0].message.contains("every request with a valid token from a trusted issuer passes"));
    let routed = Config::from_toml(&format!("{HEAD}[[routes]]\npath = \"/a\"\n")).unwrap();
    assert!(routed.warnings().is_empty());
}

/// What the check passes, the gateway builds: the key set URLs are held to the key sets' own rules.
#[tokio::test]
async fn a_checked_configuration_builds_a_gateway() {
    for extra in ["jwks_uri = \"http://127.0.0.1:9/jwks\"\n", "jwks_uri = \"https://idp.example/jwks\"\n", ""] {
        let config = Config::from_toml(&format!("{HEAD}{extra}")).unwrap();
        assert!(Gateway::new(config).is_ok(), "{extra}");
    }
    let mut unchecked = Config::from_toml(HEAD).unwrap();
    unchecked.issuers[0] = unchecked.issuers[0].clone().with_jwks_uri(Some("http://idp.example/jwks".into()));
    let refused = Gateway::new(unchecked).err().unwrap().to_string();
    assert!(refused.contains("issuers[0].jwks_uri: refusing http://idp.example/jwks"), "{refused}");
}

#[test]
fn a_wrong_type_in_a_route_still_leaves_every_other_check_to_run() {
    // routes[0] has a value of the wrong type; the claim header, the key URL and routes[2]'s method are wrong too.
    let text = "upstream = \"http://127.0.0.1:3000\"\n[[issuers]]\nissuer = \"https://tenant.example/\"\n\
                audiences = [\"api\"]\njwks_uri = \"http://keys.example/jwks.json\"\n\
                [claim_headers]\nsub = \"Transfer-Encoding\"\n\
                [[routes]]\npath = \"/a/*\"\nmethods = \"GET\"\n\
                [[routes]]\npath = \"/a/b\"\n\
                [[routes]]\npath = \"/c\"\nmethods = [\"G T\"]\n";
    let found = errors(text);
    let expected = [
        "f.toml:5:12: issuers[0].jwks_uri: ",
        "f.toml:7:7: claim_headers.sub: ",
        "f.toml:10:11: routes[0].methods: invalid type",
        "f.toml:15:12: routes[2].methods[0]: ",
    ];
    assert_eq!(found.len(), expected.len(), "{found:#?}");
    for (line, start) in found.iter().zip(expected) {
        assert!(line.starts_with(start), "{line:?} should start with {start:?}; all: {found:#?}");
    }
    // routes[1] is not called shadowed by routes[0], whose methods could not be read.
    assert!(!found.iter().any(|line| line.contains("routes[1]")), "{found:#?}");
}

#[test]
fn every_wrong_option_of_one_issuer_and_one_route_is_reported() {
    let text = "upstream = \"http://127.0.0.1:3000\"\n[[issuers]]\nissuer = \"https://tenant.example/\"\n\
                audiences = [\"api\"]\ntyp = \"jose\"\nalgorithms = [\"RS257\", \"none\"]\nmax_token_age_secs = 0\n\
                [[routes]]\npath = \"/a\"\ntyp = \"text\"\ntoken_from = { cookie = \"a b\" }\npreflight = \"answer\"\n";
    let found = errors(text);
    let expected = [
        "f.toml:5:7: issuers[0].typ: ",
        "f.toml:6:15: issuers[0].algorithms[0]: ",
        "f.toml:6:24: issuers[0].algorithms[1]: ",
        "f.toml:7:22: issuers[0].max_token_age_secs: ",
        "f.toml:10:7: routes[0].typ: ",
        "f.toml:11:25: routes[0].token_from.cookie: ",
        "f.toml:12:13: routes[0].preflight: ",
    ];
    let mut sorted = found.clone();
    sorted.sort_by_key(|line| {
        let mut parts = line.split(':').skip(1).map(|n| n.parse::<usize>().unwrap_or(0));
        (parts.next(), parts.next())
    });
    assert_eq!(sorted.len(), expected.len(), "{found:#?}");
    for (line, start) in sorted.iter().zip(expected) {
        assert!(line.starts_with(start), "{line:?} should start with {start:?}; all: {found:#?}");
    }
}

//! `portcullis check-config` gives `serve`'s verdict: the same files, flags and `PORTCULLIS_*` variables are fed to
//! both binaries' commands, and both refuse with the same error lines or both accept (`serve` on a loopback port,
//! stopped once it announces it is listening). Every gateway file and tenant file in the repository is checked.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// Every variable the gateway flags read; the tests set them explicitly or not at all.
const VARIABLES: [&str; 15] = [
    "PORTCULLIS_CONFIG",
    "PORTCULLIS_LISTEN",
    "PORTCULLIS_UPSTREAM",
    "PORTCULLIS_ISSUER",
    "PORTCULLIS_AUDIENCE",
    "PORTCULLIS_JWKS_URI",
    "PORTCULLIS_FORWARD_AUTH",
    "PORTCULLIS_ENVOY_PATH_PREFIX",
    "PORTCULLIS_EXT_AUTHZ_GRPC",
    "PORTCULLIS_ADMIN_LISTEN",
    "PORTCULLIS_LOG_FORMAT",
    "PORTCULLIS_WORKERS",
    "PORTCULLIS_PUBLIC_URL",
    "PORTCULLIS_DPOP_MODE",
    "PORTCULLIS_DPOP_NONCE_SECRET_FILE",
];

/// How a command ended: its exit code (0 for a `serve` that started listening), and its stderr.
#[derive(Debug)]
struct Verdict {
    code: i32,
    stderr: String,
}

impl Verdict {
    /// The error and warning lines about `file`, without the command's own prefix.
    fn lines_about(&self, file: &str) -> Vec<String> {
        self.stderr
            .lines()
            .filter_map(|line| {
                let line = line.strip_prefix("portcullis serve: ").unwrap_or(line);
                let at = line.find(file)?;
                Some(line[at..].trim_end().to_owned())
            })
            .collect()
    }
}

fn command(args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(BIN);
    command.args(args).env("RUST_LOG", "warn").kill_on_drop(true);
    for variable in VARIABLES {
        command.env_remove(variable);
    }
    command.envs(env.iter().copied());
    command
}

async fn check_config(args: &[&str], env: &[(&str, &str)]) -> Verdict {
    let output = command(&[&["check-config"][..], args].concat(), env).output().await.unwrap();
    Verdict { code: output.status.code().unwrap(), stderr: String::from_utf8_lossy(&output.stderr).into_owned() }
}

/// Runs `serve` until it prints its listening line (then stops it: code 0) or exits on its own.
async fn serve(args: &[&str], env: &[(&str, &str)]) -> Verdict {
    let mut child = command(&[&["serve", "--listen", "127.0.0.1:0"][..], args].concat(), env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut err = child.stderr.take().unwrap();
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text).await;
        text
    });
    let listening = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = out.next_line().await {
            if line.contains("portcullis gateway listening on") {
                return true;
            }
        }
        false
    })
    .await
    .expect("serve neither listened nor exited within a minute");
    let code = if listening {
        child.kill().await.unwrap();
        0
    } else {
        child.wait().await.unwrap().code().unwrap()
    };
    Verdict { code, stderr: stderr.await.unwrap() }
}

const ISSUER: &str = "[[issuers]]\nissuer = \"https://tenant.example/\"\naudiences = [\"api\"]\n\
                      jwks_uri = \"http://127.0.0.1:9/jwks.json\"\n";
const UPSTREAM: &str = "upstream = \"http://127.0.0.1:9\"\n";
const ROUTE: &str = "[[routes]]\npath = \"/api/*\"\n";

struct Case {
    name: &'static str,
    file: Option<String>,
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
    /// The exit code both commands end with.
    code: i32,
    /// Lines both print, about the file (a part of each is enough).
    said: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    let file = |text: String| Some(text);
    vec![
        Case {
            name: "a jwks_uri the key set refuses",
            file: file(format!(
                "{UPSTREAM}[[issuers]]\nissuer = \"https://tenant.example/\"\naudiences = [\"api\"]\n\
                 jwks_uri = \"http://idp.example/jwks.json\"\n{ROUTE}"
            )),
            args: &[],
            env: &[],
            code: 3,
            said: &[":5:12: issuers[0].jwks_uri: refusing http://idp.example/jwks.json: plain HTTP is only allowed"],
        },
        Case {
            name: "several type errors and unknown keys",
            file: file(format!(
                "listen = 8080\n{UPSTREAM}{ISSUER}audience = [\"a\"]\n[[routes]]\npath = 3\nmethods = \"GET\"\n\
                 upstream_timeout_secs = 5\n"
            )),
            args: &[],
            env: &[],
            code: 3,
            said: &[
                ":1:10: listen: invalid type: integer `8080`, expected socket address",
                ":7:1: issuers[0]: unknown field `audience`; did you mean `audiences`?",
                ":9:8: routes[0].path: invalid type: integer `3`, expected a string",
                ":10:11: routes[0].methods: invalid type: string \"GET\", expected a sequence",
                ":11:1: routes[0]: unknown field `upstream_timeout_secs`; note: `upstream_timeout_secs` is a top-level \
                 key, but TOML puts every key after a [[routes]] header into that table: move it above the first \
                 table header (line 3)",
            ],
        },
        Case {
            name: "a misspelled key and what it leads to, with a refused claim header",
            file: file(format!(
                "upstrem = \"http://127.0.0.1:9\"\n{ISSUER}{ROUTE}claim_headers = {{ sub = \"Host\" }}\n"
            )),
            args: &[],
            env: &[],
            code: 3,
            said: &[
                ":1:1: unknown field `upstrem`; did you mean `upstream`?",
                ":8:25: routes[0].claim_headers.sub: \"Host\" routes the request",
                ": upstream: proxy mode needs an upstream",
            ],
        },
        Case {
            name: "a claim mapped to Transfer-Encoding",
            file: file(format!("{UPSTREAM}{ISSUER}[claim_headers]\nsub = \"Transfer-Encoding\"\n{ROUTE}")),
            args: &[],
            env: &[],
            code: 3,
            said: &[":7:7: claim_headers.sub: \"Transfer-Encoding\" frames the message body"],
        },
        Case {
            name: "a route's claim mapped to a forwarding header spelled with underscores",
            file: file(format!("{UPSTREAM}{ISSUER}{ROUTE}claim_headers = {{ sub = \"x_forwarded_for\" }}\n")),
            args: &[],
            env: &[],
            code: 3,
            said: &[":8:25: routes[0].claim_headers.sub: \"x_forwarded_for\" routes the request"],
        },
        Case {
            name: "an empty any",
            file: file(format!("{UPSTREAM}{ISSUER}{ROUTE}require = {{ any = [] }}\n")),
            args: &[],
            env: &[],
            code: 3,
            said: &[":8:11: routes[0].require: an empty `any` is never met"],
        },
        Case {
            name: "a shadowed route",
            file: file(format!("{UPSTREAM}{ISSUER}{ROUTE}[[routes]]\npath = \"/api/admin\"\npublic = true\n")),
            args: &[],
            env: &[],
            code: 3,
            said: &[":9:8: routes[1].path: \"/api/admin\" can never be reached: routes[0] (\"/api/*\") comes first"],
        },
        Case {
            name: "no issuer in the file nor the flags",
            file: file(format!("{UPSTREAM}{ROUTE}")),
            args: &[],
            env: &[],
            code: 3,
            said: &[": issuers: at least one [[issuers]] entry (or --issuer and --audience) is required"],
        },
        Case {
            name: "the issuer and upstream from flags",
            file: file(ROUTE.to_owned()),
            args: &["--upstream", "http://127.0.0.1:9", "--issuer", "https://t.example/", "--audience", "api"],
            env: &[],
            code: 0,
            said: &[],
        },
        Case {
            name: "the issuer from variables, the mode from a flag",
            file: file(ROUTE.to_owned()),
            args: &["--forward-auth", "nginx"],
            env: &[
                ("PORTCULLIS_ISSUER", "https://t.example/"),
                ("PORTCULLIS_AUDIENCE", "api,other"),
                ("PORTCULLIS_JWKS_URI", "http://127.0.0.1:9/jwks.json"),
            ],
            code: 0,
            said: &[],
        },
        Case {
            name: "a jwks_uri from a variable that the key set refuses",
            file: file(format!("{UPSTREAM}{ROUTE}")),
            args: &[],
            env: &[
                ("PORTCULLIS_ISSUER", "https://t.example/"),
                ("PORTCULLIS_AUDIENCE", "api"),
                ("PORTCULLIS_JWKS_URI", "http://idp.example/jwks.json"),
            ],
            code: 3,
            said: &[": issuers[0].jwks_uri: refusing http://idp.example/jwks.json"],
        },
        Case {
            name: "flags only, an issuer served over plain HTTP",
            file: None,
            args: &["--upstream", "http://127.0.0.1:9", "--issuer", "http://idp.example/", "--audience", "api"],
            env: &[],
            code: 2,
            said: &[],
        },
        Case {
            name: "flags only from the environment",
            file: None,
            args: &[],
            env: &[
                ("PORTCULLIS_UPSTREAM", "http://127.0.0.1:9"),
                ("PORTCULLIS_ISSUER", "https://t.example/"),
                ("PORTCULLIS_AUDIENCE", "api"),
                ("PORTCULLIS_JWKS_URI", "http://127.0.0.1:9/jwks.json"),
            ],
            code: 0,
            said: &[],
        },
        Case {
            name: "an ext_authz_grpc that is not an address",
            file: file(format!("ext_authz_grpc = \"localhost:9001\"\n{UPSTREAM}{ISSUER}{ROUTE}")),
            args: &[],
            env: &[],
            code: 3,
            said: &[":1:18: ext_authz_grpc: invalid socket address syntax"],
        },
        Case {
            name: "only the gRPC ext_authz service, without an upstream",
            file: file(format!("ext_authz_grpc = \"127.0.0.1:0\"\n{ISSUER}{ROUTE}")),
            args: &[],
            env: &[],
            code: 0,
            said: &[],
        },
        Case {
            name: "DPoP turned on by a flag without a public URL",
            file: file(format!("{UPSTREAM}{ISSUER}{ROUTE}")),
            args: &["--dpop-mode", "allowed"],
            env: &[],
            code: 3,
            said: &[": dpop.mode: DPoP needs public_url"],
        },
        Case {
            name: "a DPoP nonce secret file that cannot be read, from the environment",
            file: file(format!("{UPSTREAM}{ISSUER}{ROUTE}")),
            args: &[],
            env: &[
                ("PORTCULLIS_PUBLIC_URL", "https://api.example.com"),
                ("PORTCULLIS_DPOP_NONCE_SECRET_FILE", "/nonexistent/portcullis/dpop.secret"),
            ],
            code: 3,
            said: &[": dpop.nonce_secret_file: /nonexistent/portcullis/dpop.secret cannot be read"],
        },
        Case {
            name: "DPoP required from the environment, with the file's public URL and metadata",
            file: file(format!(
                "public_url = \"https://api.example.com\"\n{UPSTREAM}{ISSUER}[resource_metadata]\n\
                 resource = \"https://api.example.com/\"\n{ROUTE}"
            )),
            args: &[],
            env: &[("PORTCULLIS_DPOP_MODE", "required")],
            code: 0,
            said: &[],
        },
        Case {
            name: "a public URL with a query, from a flag",
            file: file(format!("{UPSTREAM}{ISSUER}{ROUTE}")),
            args: &["--public-url", "https://api.example.com/?x=1"],
            env: &[],
            code: 3,
            said: &[": public_url: \"https://api.example.com/?x=1\" has a query"],
        },
        Case {
            name: "an envoy_path_prefix without Envoy's HTTP mode",
            file: file(format!("envoy_path_prefix = \"/ext-authz\"\n{UPSTREAM}{ISSUER}{ROUTE}")),
            args: &[],
            env: &[],
            code: 3,
            said: &[": envoy_path_prefix: is used only with forward_auth = \"envoy\""],
        },
        Case {
            name: "issuers without routes: valid, with a warning",
            file: file(format!("{UPSTREAM}{ISSUER}")),
            args: &[],
            env: &[],
            code: 0,
            said: &[": warning: routes: no [[routes]]: every request is answered 404 (unmatched = \"deny\")"],
        },
    ]
}

#[tokio::test]
async fn check_config_and_serve_give_the_same_verdict() {
    let dir = tempfile::tempdir().unwrap();
    for (i, case) in cases().into_iter().enumerate() {
        let path = dir.path().join(format!("case{i}.toml"));
        let mut args: Vec<&str> = case.args.to_vec();
        let shown = path.display().to_string();
        let (checked, served) = match &case.file {
            Some(text) => {
                std::fs::write(&path, text).unwrap();
                let checked = check_config(&[&[shown.as_str()][..], &args].concat(), case.env).await;
                args.splice(0..0, ["--config", shown.as_str()]);
                (checked, serve(&args, case.env).await)
            }
            None => (check_config(&args, case.env).await, serve(&args, case.env).await),
        };
        let name = case.name;
        assert_eq!(checked.code, case.code, "{name}: check-config\n{}", checked.stderr);
        assert_eq!(served.code, case.code, "{name}: serve\n{}", served.stderr);
        let (checked_lines, served_lines) = (checked.lines_about(&shown), served.lines_about(&shown));
        assert_eq!(checked_lines.len(), case.said.len(), "{name}: {checked_lines:#?}");
        for (line, expected) in checked_lines.iter().zip(case.said) {
            assert!(line.starts_with(&shown) && line.contains(expected), "{name}: {line}\nwanted {expected}");
        }
        if case.code == 0 {
            // Warnings reach serve's log with the same text.
            for line in &checked_lines {
                assert!(served.stderr.contains(line.as_str()), "{name}: serve did not warn {line}:\n{}", served.stderr);
            }
        } else if case.file.is_some() {
            assert_eq!(served_lines, checked_lines, "{name}");
        } else {
            // Flags only: the same message, as a usage error of each command.
            let message =
                |stderr: &str| stderr.lines().last().unwrap_or_default().rsplit(": ").next().map(str::to_owned);
            assert!(checked.stderr.contains("issuers[0].issuer: refusing http://idp.example/"), "{}", checked.stderr);
            assert_eq!(message(&checked.stderr), message(&served.stderr), "{name}");
        }
    }
}

#[test]
fn check_config_reports_every_error_of_a_file_one_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let text = "upstream = \"http://127.0.0.1:9\"\n[[issuers]]\nissuer = \"https://t.example/\"\naudiences = [\"api\"]\n\
                upstream_timeout_secs = 5\n[[routes]]\npath = \"/api/*\"\nmethod = [\"GET\"]\n\
                require = { all = [] }\n[[routes]]\npath = \"/api/x\"\n";
    std::fs::write(&path, text).unwrap();
    let output = std::process::Command::new(BIN).args(["check-config", path.to_str().unwrap()]).output().unwrap();
    assert_eq!(output.status.code(), Some(3));
    let file = path.display().to_string();
    let said = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(
        lines,
        [
            format!(
                "{file}:5:1: issuers[0]: unknown field `upstream_timeout_secs`; note: `upstream_timeout_secs` is a \
                 top-level key, but TOML puts every key after a [[issuers]] header into that table: move it above \
                 the first table header (line 2)"
            ),
            format!("{file}:8:1: routes[0]: unknown field `method`; did you mean `methods`?"),
            format!(
                "{file}:9:11: routes[0].require: an empty `all` is always met and would let every token through; \
                 list at least one rule"
            ),
        ]
    );
}

/// A gateway file in the repository and the flags its own comments say it is run with.
const COMPLETED_BY_FLAGS: [(&str, &[&str]); 1] = [(
    "examples/express-behind-gateway/portcullis.toml",
    &[
        "--upstream",
        "http://127.0.0.1:3000",
        "--issuer",
        "https://YOUR_TENANT.auth0.com/",
        "--audience",
        "https://api.example.com",
    ],
)];

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Markdown and TOML files of the repository, outside build output, dependencies and crate manifests.
fn files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') && !["target", "node_modules", "vectors", "fuzz"].contains(&name.as_str()) {
                files(&path, found);
            }
        } else if name.ends_with(".md") || (name.ends_with(".toml") && !is_tooling(&name)) {
            found.push(path);
        }
    }
}

fn is_tooling(name: &str) -> bool {
    ["Cargo.toml", "deny.toml", "rustfmt.toml", "clippy.toml", "rust-toolchain.toml", "config.toml"].contains(&name)
}

/// A tenant file of the dev issuer rather than a gateway file.
fn is_tenant(text: &str) -> bool {
    ["[[clients]]", "[[users]]", "[[apis]]", "token_lifetime"].iter().any(|marker| text.contains(marker))
}

#[test]
fn every_configuration_in_the_repository_is_valid() {
    let root = repository();
    let mut found = Vec::new();
    files(&root, &mut found);
    let dir = tempfile::tempdir().unwrap();
    let (mut gateways, mut tenants, mut failures) = (0, 0, Vec::new());
    let mut check = |name: String, text: &str, flags: &[&str]| {
        if is_tenant(text) {
            tenants += 1;
            if let Err(error) = portcullis_issuer::Tenant::from_toml(text) {
                failures.push(format!("{name}: tenant: {error}"));
            }
            return;
        }
        gateways += 1;
        let file = dir.path().join(format!("{gateways}.toml"));
        std::fs::write(&file, text).unwrap();
        let output = std::process::Command::new(BIN)
            .arg("check-config")
            .arg(&file)
            .args(flags)
            .env_remove("PORTCULLIS_CONFIG")
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            failures.push(format!("{name}: {said}"));
        } else if !said.is_empty() {
            println!("{name}: {said}");
        }
    };
    let mut skipped = Vec::new();
    for path in &found {
        let relative = path.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/");
        let text = std::fs::read_to_string(path).unwrap();
        if relative.ends_with(".toml") {
            let flags = COMPLETED_BY_FLAGS.iter().find(|(known, _)| *known == relative).map_or(&[][..], |(_, f)| f);
            check(relative, &text, flags);
            continue;
        }
        for block in portcullis_testkit::markdown::fenced_blocks(&text, &["toml"]) {
            let (line, snippet) = (block.line, block.text);
            // `<!-- check-config: skip, REASON -->` or `<!-- check-config: tenant -->` above a block.
            let marker = block.marker.as_deref().and_then(|m| m.strip_prefix("check-config:")).map(str::trim);
            match marker {
                Some(skip) if skip.starts_with("skip") => {
                    assert!(skip.len() > "skip, ".len(), "{relative}:{line}: a skipped snippet says why");
                    skipped.push(format!("{relative}:{line}"));
                }
                _ => check(format!("{relative}:{line}"), &snippet, &[]),
            }
        }
    }
    assert!(failures.is_empty(), "invalid configurations in the repository:\n{}", failures.join("\n"));
    for (known, _) in COMPLETED_BY_FLAGS {
        assert!(root.join(known).exists(), "{known} is gone: update the list");
    }
    // The template, the README's and the reference's snippets, the example: all seen.
    let template = root.join("crates/portcullis-gateway/src/template.toml");
    assert!(found.contains(&template), "{found:?}");
    assert!(gateways >= 4 && tenants >= 1, "{gateways} gateway and {tenants} tenant configurations checked");
    println!("checked {gateways} gateway and {tenants} tenant configurations; skipped {skipped:?}");
}

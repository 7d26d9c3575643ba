//! Real upstream applications, each routing requests the way its kind of server does, and each saying what it
//! did: the response header `X-Served-Resource` names the resource served (absent when nothing was: 404, 405,
//! redirects), and the request headers it received are echoed — as a JSON body, and for `HEAD` hex-encoded in the
//! `X-Echo` header (`X-Echo-<name>` headers for nginx, which can only echo chosen headers).
//!
//! The resources, by name: `public` (`/public/…`), `private` (`/api/private`), `scoped` (`/api/scoped`), `admin`
//! (`/admin/…`), `docs-internal` (`/docs/internal`, GET and HEAD only), `docs` (`/docs/…`), `a-only`
//! (`/a-only/…`).
//!
//! - [`Upstream::express`]: Express 5 with its default routing (case-insensitive, a trailing slash ignored, `GET`
//!   routes answer `HEAD`), and a server that switches protocols whenever asked (as an h2c-capable or lenient
//!   WebSocket server would).
//! - [`Upstream::wsgi`]: a Python `wsgiref.simple_server` application routing on `PATH_INFO`, which wsgiref
//!   percent-decodes, exact or by prefix and case-sensitively, and which sees headers as CGI `HTTP_*` keys (so
//!   `X_Auth_Subject` and `X-Auth-Subject` are both `HTTP_X_AUTH_SUBJECT`).
//! - [`Upstream::nginx_files`]: nginx serving files (it decodes `%XX`, merges slashes and resolves dot-segments
//!   before choosing a location), one location per resource.

use crate::process::{Running, free_port};
use serde_json::Value;
use std::path::Path;
use tokio::process::Command;

/// Which upstream application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UpstreamKind {
    /// Express 5 on Node.
    Express,
    /// nginx serving files.
    NginxFiles,
    /// Python's `wsgiref.simple_server`.
    Wsgi,
}

impl UpstreamKind {
    /// Every kind.
    pub const ALL: [UpstreamKind; 3] = [UpstreamKind::Express, UpstreamKind::NginxFiles, UpstreamKind::Wsgi];

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            UpstreamKind::Express => "express",
            UpstreamKind::NginxFiles => "nginx-files",
            UpstreamKind::Wsgi => "wsgi",
        }
    }
}

/// The headers the nginx file server echoes (it cannot echo all): claim headers and the forwarding family.
pub const NGINX_ECHOED: [&str; 7] = [
    "X-Auth-Subject",
    "X-Auth-Scope",
    "X-Auth-Permissions",
    "Forwarded",
    "X-Forwarded-Host",
    "X-Forwarded-For",
    "X-Real-IP",
];

/// A running upstream.
pub struct Upstream {
    /// Which application it is.
    pub kind: UpstreamKind,
    /// `127.0.0.1:PORT`.
    pub address: String,
    /// The process, killed when dropped.
    pub process: Running,
}

/// The Express application: `PORTCULLIS_EXPRESS` names the `express` package directory, `PORT` the port.
const EXPRESS_APP: &str = r#"'use strict';
const express = require(process.env.PORTCULLIS_EXPRESS);
const app = express();
function answer(resource) {
  return (req, res) => {
    const headers = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2) headers.push([req.rawHeaders[i], req.rawHeaders[i + 1]]);
    const echo = JSON.stringify({ resource, method: req.method, target: req.originalUrl, headers });
    if (resource) res.set('X-Served-Resource', resource);
    if (req.method === 'HEAD') res.set('X-Echo', Buffer.from(echo, 'utf8').toString('hex'));
    res.status(resource ? 200 : 404).type('application/json').send(echo);
  };
}
app.get('/docs/internal', answer('docs-internal'));
app.all('/public{/*rest}', answer('public'));
app.all('/api/private', answer('private'));
app.all('/api/scoped', answer('scoped'));
app.all('/admin{/*rest}', answer('admin'));
app.all('/docs{/*rest}', answer('docs'));
app.all('/a-only{/*rest}', answer('a-only'));
app.use(answer(null));
const server = app.listen(Number(process.env.PORT), '127.0.0.1');
// Switches to whatever protocol is asked for, as an h2c-capable server (or a lenient WebSocket server) does.
server.on('upgrade', (req, socket) => {
  const protocol = String(req.headers.upgrade || '').replace(/[^\x21-\x7e]/g, '');
  socket.end('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ' + protocol + '\r\n\r\n');
});
"#;

/// The WSGI application, served by `wsgiref.simple_server` (threaded) on the port given as argument.
const WSGI_APP: &str = r#"import json
import sys
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

EXACT = {"/api/private": "private", "/api/scoped": "scoped"}
PREFIXES = [("/public", "public"), ("/admin", "admin"), ("/docs", "docs"), ("/a-only", "a-only")]


def resource(method, path):
    # A typical small app: PATH_INFO (already percent-decoded by the server), one trailing slash ignored.
    if path != "/" and path.endswith("/"):
        path = path[:-1]
    if path == "/docs/internal" and method in ("GET", "HEAD"):
        return "docs-internal"
    if path in EXACT:
        return EXACT[path]
    for prefix, name in PREFIXES:
        if path == prefix or path.startswith(prefix + "/"):
            return name
    return None


def app(environ, start_response):
    method = environ["REQUEST_METHOD"]
    name = resource(method, environ.get("PATH_INFO", ""))
    headers = [[key, value] for key, value in sorted(environ.items()) if key.startswith("HTTP_")]
    echo = json.dumps({"resource": name, "method": method, "target": environ.get("PATH_INFO", ""),
                       "headers": headers}).encode()
    out = [("Content-Type", "application/json")]
    if name:
        out.append(("X-Served-Resource", name))
    if method == "HEAD":
        out.append(("X-Echo", echo.hex()))
        echo = b""
    out.append(("Content-Length", str(len(echo))))
    start_response("200 OK" if name else "404 Not Found", out)
    return [echo]


class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


make_server("127.0.0.1", int(sys.argv[1]), app, server_class=Server, handler_class=Quiet).serve_forever()
"#;

impl Upstream {
    /// Starts the Express application, with the `express` package from `node_modules` (a directory holding
    /// `express/`).
    pub async fn express(node_modules: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("app.js");
        std::fs::write(&script, EXPRESS_APP).unwrap();
        let port = free_port();
        let mut command = Command::new("node");
        command.arg(&script).env("PORT", port.to_string()).env("PORTCULLIS_EXPRESS", node_modules.join("express"));
        let mut process = Running::spawn("express upstream", command, dir);
        process.until_listening(port).await;
        Self { kind: UpstreamKind::Express, address: format!("127.0.0.1:{port}"), process }
    }

    /// Starts the WSGI application with `python3`.
    pub async fn wsgi() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("app.py");
        std::fs::write(&script, WSGI_APP).unwrap();
        let port = free_port();
        let mut command = Command::new("python3");
        command.arg(&script).arg(port.to_string());
        let mut process = Running::spawn("wsgi upstream", command, dir);
        process.until_listening(port).await;
        Self { kind: UpstreamKind::Wsgi, address: format!("127.0.0.1:{port}"), process }
    }

    /// Starts nginx serving files, one location per resource.
    pub async fn nginx_files() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("www");
        for (file, name) in [
            ("public/x", "public"),
            ("public/index.html", "public"),
            ("api/private", "private"),
            ("api/scoped", "scoped"),
            ("admin/x", "admin"),
            ("admin/index.html", "admin"),
            ("docs/internal", "docs-internal"),
            ("docs/x", "docs"),
            ("docs/index.html", "docs"),
            ("a-only/x", "a-only"),
            ("a-only/index.html", "a-only"),
        ] {
            let path = root.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, format!("{{\"resource\":\"{name}\"}}\n")).unwrap();
        }
        let port = free_port();
        let prefix = dir.path().to_str().unwrap().to_owned();
        std::fs::write(dir.path().join("nginx.conf"), nginx_files_config(&prefix, port)).unwrap();
        let mut command = Command::new("nginx");
        command.args(["-c", &format!("{prefix}/nginx.conf"), "-p", &prefix, "-e", &format!("{prefix}/error.log")]);
        let mut process = Running::spawn("nginx-files upstream", command, dir);
        process.until_listening(port).await;
        Self { kind: UpstreamKind::NginxFiles, address: format!("127.0.0.1:{port}"), process }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }
}

/// nginx serving `dir/www`: each resource's location adds `X-Served-Resource` (on success only) and echoes the
/// [`NGINX_ECHOED`] headers as `X-Echo-<name>`.
fn nginx_files_config(dir: &str, port: u16) -> String {
    let echo: String = NGINX_ECHOED
        .iter()
        .map(|name| {
            let variable = name.to_ascii_lowercase().replace('-', "_");
            format!("            add_header X-Echo-{name} \"$http_{variable}\";\n")
        })
        .collect();
    let location = |matcher: &str, name: &str| {
        format!(
            "        location {matcher} {{\n            default_type application/json;\n            \
             add_header X-Served-Resource {name};\n{echo}        }}\n"
        )
    };
    let locations: String = [
        ("/public/", "public"),
        ("= /api/private", "private"),
        ("= /api/scoped", "scoped"),
        ("/admin/", "admin"),
        ("= /docs/internal", "docs-internal"),
        ("/docs/", "docs"),
        ("/a-only/", "a-only"),
    ]
    .iter()
    .map(|(matcher, name)| location(matcher, name))
    .collect();
    let prelude = crate::process::nginx_prelude(dir);
    format!(
        r#"{prelude}    server {{
        listen 127.0.0.1:{port};
        root {dir}/www;
        location / {{
            return 404;
        }}
{locations}    }}
}}
"#
    )
}

/// What an upstream answered: the resource it served (2xx with `X-Served-Resource`), and the request headers it
/// echoed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Served {
    /// The resource, when one was served.
    pub resource: Option<String>,
    /// Echoed request headers (name as the upstream saw it, value), when the answer came from the upstream.
    pub headers: Vec<(String, String)>,
}

/// Reads [`Served`] from a response that passed through any front.
pub fn served(response: &crate::raw::RawResponse) -> Served {
    let resource = if (200..300).contains(&response.status) {
        response.header_text("x-served-resource").map(|r| r.trim().to_owned()).filter(|r| !r.is_empty())
    } else {
        None
    };
    let mut headers = Vec::new();
    let echo: Option<Value> = match response.header("x-echo").and_then(unhex) {
        Some(bytes) => serde_json::from_slice(&bytes).ok(),
        None => serde_json::from_slice(&response.body).ok(),
    };
    if let Some(list) = echo.as_ref().and_then(|e| e.get("headers")).and_then(Value::as_array) {
        for pair in list {
            if let (Some(name), Some(value)) =
                (pair.get(0).and_then(Value::as_str), pair.get(1).and_then(Value::as_str))
            {
                headers.push((name.to_owned(), value.to_owned()));
            }
        }
    }
    for (name, value) in &response.headers {
        if let Some(echoed) = name.strip_prefix("X-Echo-").or_else(|| name.strip_prefix("x-echo-")) {
            headers.push((echoed.to_owned(), String::from_utf8_lossy(value).into_owned()));
        }
    }
    Served { resource, headers }
}

/// Hex text to bytes.
fn unhex(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks(2).map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()).collect()
}

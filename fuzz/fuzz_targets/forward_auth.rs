//! Forward-auth header interpretation: a request as a proxy forwards it (first line the path, then `name: value`
//! lines), decided by the gateway's router in forward-auth mode. The issuer's key set is unreachable, so the
//! decision paths up to key lookup are what is explored.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_fuzz::RouterFixture;
use portcullis_gateway::{Config, Gateway};
use std::sync::OnceLock;

fn fixture() -> &'static RouterFixture {
    static FIXTURE: OnceLock<RouterFixture> = OnceLock::new();
    RouterFixture::get_or_init(&FIXTURE, || {
        let config = Config::from_toml(
            "forward_auth = \"nginx\"\n[[issuers]]\nissuer = \"https://issuer.example/\"\n\
             audiences = [\"https://api.example\"]\njwks_uri = \"http://127.0.0.1:9/jwks.json\"\n\
             [[routes]]\npath = \"/public/*\"\npublic = true\n[[routes]]\npath = \"/users/{id}\"\n\
             methods = [\"GET\"]\n[[routes]]\npath = \"/api/*\"\nrequire = { scope = \"read\" }\n",
        )
        .unwrap();
        portcullis_gateway::router(Gateway::new(config).unwrap())
    })
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let path = lines.next().unwrap_or("/");
    let mut request = http::Request::builder().uri(path);
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            request = request.header(name.trim(), value.trim());
        }
    }
    let Ok(request) = request.body(axum::body::Body::empty()) else { return };
    let response = fixture.call(request);
    assert!(matches!(response.status().as_u16(), 200 | 401 | 403), "{}", response.status());
});

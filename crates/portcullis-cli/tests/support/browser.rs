//! Headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`): the availability check,
//! a browser on a fresh profile, page screenshots, and waiting for elements.

use super::{drain, line_with, spawn};
use fantoccini::{Client, ClientBuilder, Locator};
use portcullis_testkit::probe;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::Child;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// One browser at a time: each test drives its own Chromium, and two cores do not run several well.
pub static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Whether Chromium and ChromeDriver are installed; without them the test is skipped, unless `CI=true`.
pub fn browser_available(test: &str) -> bool {
    let check = probe::files_exist(&[CHROMIUM, CHROMEDRIVER])
        .map_err(|missing| format!("{missing}: apt-get install chromium chromium-driver"));
    probe::require(test, check)
}

/// ChromeDriver on a free port with a headless Chromium session on a fresh profile.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    _driver: Child,
    _profile: tempfile::TempDir,
}

/// Starts ChromeDriver and a headless Chromium session on a fresh profile.
pub async fn browser() -> Browser {
    let (driver, mut out) = spawn(CHROMEDRIVER, &["--port=0"]);
    let started = line_with(&mut out, "started successfully on port").await;
    let port = started.trim_end_matches('.').rsplit(' ').next().unwrap().to_owned();
    drain(out);
    let profile = tempfile::tempdir().unwrap();
    let args = [
        "--headless=new".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--window-size=1280,900".to_owned(),
        format!("--user-data-dir={}", profile.path().display()),
    ];
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
    });
    let Value::Object(capabilities) = capabilities else { unreachable!() };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .unwrap();
    Browser { client, _driver: driver, _profile: profile }
}

impl Browser {
    /// Ends the WebDriver session, which makes ChromeDriver quit Chromium, and waits (bounded) until no process of
    /// this session's profile is left: killing ChromeDriver alone would leave Chromium running.
    pub async fn quit(self) {
        self.client.close().await.unwrap();
        let profile = self._profile.path().to_string_lossy().into_owned();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = chromium_processes_of(&profile);
            if left.is_empty() {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "Chromium processes outlived the session: {left:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The process ids whose command line names the profile directory `profile`.
fn chromium_processes_of(profile: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|line| String::from_utf8_lossy(&line).contains(profile))
        })
        .collect()
}

/// Saves the whole page as `name.png` in `target/screenshots/` (or `$PORTCULLIS_SCREENSHOTS`): the window grows to
/// the page's height for the picture, then shrinks back.
pub async fn screenshot(client: &Client, name: &str) {
    let folder = std::env::var_os("PORTCULLIS_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("../screenshots"));
    std::fs::create_dir_all(&folder).unwrap();
    let (width, height) = client.get_window_size().await.unwrap();
    let extra = client
        .execute("return document.documentElement.scrollHeight - window.innerHeight;", vec![])
        .await
        .unwrap()
        .as_u64()
        .unwrap_or(0)
        .min(4000);
    client.set_window_size(width as u32, (height + extra) as u32).await.unwrap();
    let png = client.screenshot().await.unwrap();
    client.set_window_size(width as u32, height as u32).await.unwrap();
    std::fs::write(folder.join(format!("{name}.png")), png).unwrap();
}

/// The text of the first element matching `css`.
pub async fn text_of(client: &Client, css: &str) -> String {
    client.find(Locator::Css(css)).await.unwrap().text().await.unwrap()
}

/// Waits until an element matching `css` exists (the page polled, no fixed sleep).
pub async fn wait_for(client: &Client, css: &str) -> fantoccini::elements::Element {
    client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} never appeared: {e}"))
}

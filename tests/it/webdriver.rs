//! A small W3C WebDriver client for the browser tests: starts `chromedriver` on a free loopback
//! port and drives headless Chromium sessions over JSON/HTTP. Skips cleanly when no browser exists.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tempfile::TempDir;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
pub const ENTER: &str = "\u{E007}";
pub const TAB: &str = "\u{E004}";

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// The chromedriver and browser to use, or `None` (with a printed reason) when this machine has
/// none. In CI (`CI` set, as `.ci/run` does) a missing browser fails the test instead.
pub fn find_browser() -> Option<(PathBuf, PathBuf)> {
    let given = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_file())
    };
    let driver = given("CHROMEDRIVER").or_else(|| which("chromedriver"));
    let browser = given("CHROME")
        .or_else(|| which("chromium"))
        .or_else(|| which("chromium-browser"))
        .or_else(|| which("google-chrome"));
    match (driver, browser) {
        (Some(d), Some(b)) => Some((d, b)),
        _ => {
            let msg = "browser tests need `chromium` and `chromedriver` \
                       (apt-get install chromium chromium-driver)";
            if crate::support::in_ci() {
                panic!("running in CI (CI is set) and {msg}: not found");
            }
            // Straight to stderr, past the test harness's capture, so `cargo test` shows it.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: {msg}; not found on this machine"
            );
            None
        }
    }
}

pub struct Driver {
    child: Child,
    base: String,
    http: HttpClient<HttpConnector, Full<Bytes>>,
    browser: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    pub async fn start(driver: &Path, browser: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let d = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: HttpClient::builder(TokioExecutor::new()).build_http(),
            browser: browser.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = d.call(Method::GET, "/status", None).await;
            if ready.is_ok_and(|v| v["ready"] == true) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        d
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, Value> {
        let body = body
            .map(|b| serde_json::to_vec(&b).unwrap())
            .unwrap_or_default();
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(Full::from(body))
            .unwrap();
        let res = self
            .http
            .request(req)
            .await
            .map_err(|e| json!(e.to_string()))?;
        let ok = res.status().is_success();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| json!(e.to_string()))?;
        if ok {
            Ok(v["value"].clone())
        } else {
            Err(v["value"].clone())
        }
    }

    /// A fresh headless browser with its own temporary profile that trusts exactly the server
    /// key with this SPKI hash (no blanket certificate override).
    pub async fn session(&self, spki_sha256_b64: &str) -> Session<'_> {
        self.session_with(spki_sha256_b64, &[]).await
    }

    /// `session` with more browser flags (e.g. `MOUSE`).
    pub async fn session_with(&self, spki_sha256_b64: &str, extra: &[&str]) -> Session<'_> {
        let profile = TempDir::new().unwrap();
        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            format!("--user-data-dir={}", profile.path().display()),
            format!("--ignore-certificate-errors-spki-list={spki_sha256_b64}"),
            "--window-size=1280,800".into(),
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-background-timer-throttling".into(),
            "--disable-renderer-backgrounding".into(),
            "--disable-backgrounding-occluded-windows".into(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": self.browser, "args": args},
            "goog:loggingPrefs": {"performance": "ALL", "browser": "ALL"},
        }}});
        let v = self
            .call(Method::POST, "/session", Some(caps))
            .await
            .unwrap_or_else(|e| panic!("new browser session: {e}"));
        let s = Session {
            driver: self,
            id: v["sessionId"].as_str().unwrap().to_string(),
            _profile: profile,
        };
        // Screenshots and layout at the true 1280×800, not the window minus the browser's chrome.
        s.set_size(1280, 800).await;
        s
    }
}

/// A desktop with a mouse: headless Chromium reports `hover: none` and `pointer: none`, and
/// DevTools' `Emulation.setEmulatedMedia` does not emulate those two features, so Blink's own
/// settings say the primary pointer is fine (4) and hovers (2).
pub const MOUSE: &str = "--blink-settings=primaryPointerType=4,availablePointerTypes=4,primaryHoverType=2,availableHoverTypes=2";

pub struct Session<'a> {
    driver: &'a Driver,
    pub id: String,
    _profile: TempDir,
}

impl Session<'_> {
    async fn cmd(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, Value> {
        self.driver
            .call(method, &format!("/session/{}{path}", self.id), body)
            .await
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        self.cmd(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("webdriver {path}: {e}"))
    }

    pub async fn goto(&self, url: &str) {
        self.ok(Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// Sets the page's true viewport (CSS px, scale 1) through the DevTools viewport override, so
    /// layout, media queries and screenshots are exactly `width`×`height`; the window size would
    /// include the browser's own chrome. Widths up to 720 px are emulated as a touch phone
    /// (`pointer: coarse`, `hover: none`).
    pub async fn set_size(&self, width: u32, height: u32) {
        let phone = width <= 720;
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": phone}),
        )
        .await;
        self.cdp(
            "Emulation.setTouchEmulationEnabled",
            json!({"enabled": phone, "maxTouchPoints": if phone { 5 } else { 1 }}),
        )
        .await;
    }

    /// One DevTools command through chromedriver's `goog/cdp/execute`; returns its result.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.ok(
            Method::POST,
            "/goog/cdp/execute",
            Some(json!({"cmd": cmd, "params": params})),
        )
        .await
    }

    /// Runs an async script (its body; the last argument is the callback) and returns its value.
    pub async fn js_async(&self, script: &str, args: Value) -> Value {
        self.ok(
            Method::POST,
            "/execute/async",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// The browser console since the last call: `[level, message]` pairs.
    pub async fn console_log(&self) -> Vec<(String, String)> {
        let v = self
            .ok(Method::POST, "/se/log", Some(json!({"type": "browser"})))
            .await;
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e["level"].as_str().unwrap_or("").to_string(),
                            e["message"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Runs a script in the page (its body, with `arguments`) and returns its value.
    pub async fn js(&self, script: &str, args: Value) -> Value {
        self.ok(
            Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Polls a script until it returns something truthy, up to a deadline.
    pub async fn wait_for(&self, what: &str, script: &str, args: Value) -> Value {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let v = self.js(script, args.clone()).await;
            let truthy =
                !matches!(&v, Value::Null | Value::Bool(false)) && v != json!("") && v != json!(0);
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for an element matching the selector and returns its WebDriver reference.
    pub async fn find(&self, css: &str) -> String {
        self.wait_for(
            css,
            "return !!document.querySelector(arguments[0])",
            json!([css]),
        )
        .await;
        let v = self
            .ok(
                Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("find {css}: {v}"))
            .to_string()
    }

    /// Clicks the element `script` returns, as soon as it returns one. A re-render (a receipt, a
    /// reaction) may replace the element between the script and the click; the click then fails
    /// as stale and the script runs again. A marker attribute set by one script and found by a
    /// second request would be lost with the replaced element.
    pub async fn click_found(&self, what: &str, script: &str, args: Value) {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let v = self.wait_for(what, script, args.clone()).await;
            let el = v[ELEMENT]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: the script returned {v}, not an element"));
            let clicked = self
                .cmd(
                    Method::POST,
                    &format!("/element/{el}/click"),
                    Some(json!({})),
                )
                .await;
            match clicked {
                Ok(_) => return,
                Err(e) if Instant::now() > deadline => panic!("could not click {what}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    pub async fn click(&self, css: &str) {
        let el = self.find(css).await;
        self.ok(
            Method::POST,
            &format!("/element/{el}/click"),
            Some(json!({})),
        )
        .await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.ok(
            Method::POST,
            &format!("/element/{el}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// The text of an open alert dialog, if any.
    pub async fn alert_text(&self) -> Option<String> {
        self.cmd(Method::GET, "/alert/text", None)
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
    }

    /// Accepts an open `confirm()` dialog.
    pub async fn accept_alert(&self) {
        self.ok(Method::POST, "/alert/accept", Some(json!({})))
            .await;
    }

    pub async fn screenshot(&self, path: &Path) {
        let v = self.ok(Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// Chromium's performance log since the last call (DevTools events as JSON strings).
    pub async fn performance_log(&self) -> Vec<Value> {
        let v = self
            .ok(
                Method::POST,
                "/se/log",
                Some(json!({"type": "performance"})),
            )
            .await;
        v.as_array()
            .unwrap()
            .iter()
            .filter_map(|e| serde_json::from_str(e["message"].as_str()?).ok())
            .collect()
    }

    pub async fn quit(self) {
        let _ = self.cmd(Method::DELETE, "", None).await;
    }
}

//! The admin dashboard in a real browser: Debian's Chromium, headless, driven through its
//! chromedriver with plain WebDriver calls. The word count example runs in local mode on a file
//! that keeps growing; the page must draw every step of its topology with its plugins' versions,
//! show numbers that move, load nothing from elsewhere, reload a plugin with the token typed
//! into it, and show a swap in its history and drawing. A screenshot
//! goes to `target/dashboard.png` (the README's `docs/dashboard.png` is a copy of one).
//!
//! chromedriver comes from `WASP_CHROMEDRIVER` (set by `make test`), else `chromedriver` on
//! `PATH`; `make setup` installs it (Debian's `chromium` and `chromium-driver`).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::admin::admin_address;
use crate::broker::{Broker, Process};
use crate::common::{Scratch, cache_dir, repo};

const TIMEOUT: Duration = Duration::from_secs(60);
const TOKEN: &str = "dashb0ard";

/// The chromedriver binary, or a failure that says how to get one.
fn chromedriver() -> PathBuf {
    if let Some(p) = std::env::var_os("WASP_CHROMEDRIVER").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "WASP_CHROMEDRIVER={} is not a file", p.display());
        return p;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("chromedriver");
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "the dashboard test needs Chromium and its chromedriver, and none was found (tried WASP_CHROMEDRIVER, \
         `chromedriver` on PATH). Install them with `make setup` (Debian: `apt-get install chromium \
         chromium-driver`), or point WASP_CHROMEDRIVER at the binary."
    );
}

/// A WebDriver session of a headless Chromium; the session and the driver end on drop.
struct Browser {
    base: String,
    session: String,
    _driver: Process,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(TIMEOUT)).build().into()
}

/// A WebDriver command: its `value`, or a failure with the driver's error.
fn webdriver(method: &str, url: &str, body: Option<Value>) -> Value {
    let a = agent();
    let response = match (method, body) {
        ("GET", _) => a.get(url).call(),
        ("DELETE", _) => a.delete(url).call(),
        (_, body) => a.post(url).send_json(body.unwrap_or_else(|| json!({}))),
    };
    let mut response = response.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {url}: {e}: {text}"));
    assert!(status == 200, "{method} {url}: {status}: {text}");
    v["value"].clone()
}

impl Browser {
    fn start() -> Browser {
        let port = Broker::free_port();
        let mut c = Command::new(chromedriver());
        c.arg(format!("--port={port}"));
        let driver = Process::spawn("chromedriver", c);
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let ready = agent()
                .get(&format!("{base}/status"))
                .call()
                .ok()
                .and_then(|mut r| serde_json::from_str::<Value>(&r.body_mut().read_to_string().ok()?).ok());
            if ready.is_some_and(|v| v["value"]["ready"] == true) {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start within {TIMEOUT:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut options = json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1500", "--hide-scrollbars"],
        });
        if let Some(binary) = std::env::var_os("WASP_CHROMIUM").filter(|p| !p.is_empty()) {
            options["binary"] = json!(binary.to_string_lossy());
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}});
        let session = webdriver("POST", &format!("{base}/session"), Some(caps));
        let session = session["sessionId"].as_str().expect("a session id").to_owned();
        Browser { base, session, _driver: driver }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/session/{}{path}", self.base, self.session)
    }

    fn go(&self, url: &str) {
        webdriver("POST", &self.url("/url"), Some(json!({"url": url})));
    }

    /// Runs `script` (a function body) in the page and returns what it returns.
    fn eval(&self, script: &str) -> Value {
        webdriver("POST", &self.url("/execute/sync"), Some(json!({"script": script, "args": []})))
    }

    /// Waits until `script` returns something truthy, and returns it.
    fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let v = self.eval(script);
            if !(v.is_null() || v == false || v == "" || v == 0) {
                return v;
            }
            assert!(Instant::now() < deadline, "{what}: not within {TIMEOUT:?} (last: {v})");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn element(&self, css: &str) -> String {
        let e = webdriver("POST", &self.url("/element"), Some(json!({"using": "css selector", "value": css})));
        // The W3C WebDriver element reference key.
        e["element-6066-11e4-a52e-4f735466cecf"].as_str().unwrap_or_else(|| panic!("no element {css}: {e}")).to_owned()
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        webdriver("POST", &self.url(&format!("/element/{id}/value")), Some(json!({"text": text})));
    }

    fn click(&self, css: &str) {
        let id = self.element(css);
        webdriver("POST", &self.url(&format!("/element/{id}/click")), None);
    }

    fn screenshot(&self) -> Vec<u8> {
        let png = webdriver("GET", &self.url("/screenshot"), None);
        base64::engine::general_purpose::STANDARD.decode(png.as_str().expect("base64")).expect("a PNG in base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = agent().delete(&self.url("")).call();
    }
}

/// Appends lines of words to `path` until `stop`, a few hundred a second.
fn keep_writing(path: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut file = std::fs::OpenOptions::new().append(true).open(&path).expect("open the input");
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for _ in 0..10 {
                let _ = writeln!(file, "the quick fox {} jumps over the lazy dog {}", i % 50, i % 7);
                i += 1;
            }
            let _ = file.flush();
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

#[test]
fn the_dashboard_draws_the_topology_and_shows_live_numbers_in_a_browser() {
    let manifest = repo().join("pipelines/wordcount/pipeline.toml");
    let (_, topology) = wasp_host::app::plan(&manifest).expect("the word count plans");
    let sc = Scratch::new();
    let input = sc.write("lines.txt", "hello wasp\n");
    let mut c = Command::new(env!("CARGO_BIN_EXE_wasp"));
    c.arg("run")
        .arg(&manifest)
        .arg("--follow")
        .arg("--admin")
        .arg("127.0.0.1:0")
        .arg("--no-watch")
        .arg("--input")
        .arg(format!("streams-plaintext-input={}", input.display()))
        .arg("--output")
        .arg(format!("streams-wordcount-output={}", sc.path("counts.jsonl").display()))
        .arg("--state-dir")
        .arg(sc.path("state"))
        .env("WASP_CACHE_DIR", cache_dir())
        .env("WASP_ADMIN_TOKEN", TOKEN);
    let mut wasp = Process::spawn("wasp-dashboard", c);
    let admin = format!("http://{}", admin_address(&mut wasp));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = keep_writing(input, stop.clone());

    let browser = Browser::start();
    browser.go(&format!("{admin}/"));
    // Every node of the topology is drawn, as a group named after it with its name in text.
    let drawn = browser.wait_for(
        "the drawing",
        "return Array.from(document.querySelectorAll('#topology svg g.node[data-node]'))\
         .map(g => [g.dataset.node, g.textContent]);",
    );
    let drawn: Vec<(String, String)> = serde_json::from_value(drawn).expect("pairs of strings");
    for n in &topology.nodes {
        assert!(
            drawn.iter().any(|(name, text)| name == &n.name && text.contains(&n.name)),
            "node `{}` is not in the page's drawing: {drawn:?}",
            n.name
        );
    }
    // The drawing shows the running versions.
    let versions = browser.eval(
        "return Array.from(document.querySelectorAll('#topology tspan.version'))\
         .map(v => v.dataset.plugin + v.textContent);",
    );
    let plugins: Value = serde_json::from_str(&crate::admin::http("GET", &format!("{admin}/plugins"), None, None).1)
        .expect("/plugins is JSON");
    for p in plugins.as_array().expect("a list") {
        let shown =
            format!("{}@{}", p["name"].as_str().expect("a name"), &p["digest"].as_str().expect("a digest")[..12]);
        assert!(versions.as_array().is_some_and(|v| v.iter().any(|s| s == &json!(shown))), "{shown}: {versions}");
    }

    // The numbers move: the total read grows between two readings, and a rate shows.
    let read_total = "return Number(document.getElementById('read-total').textContent);";
    let first = browser.wait_for("records read", read_total).as_f64().expect("a number");
    std::thread::sleep(Duration::from_millis(1500));
    let second = browser.wait_for("records read", read_total).as_f64().expect("a number");
    assert!(second > first, "the total read did not move: {first} then {second}");
    let rate = browser.wait_for(
        "a rate of records read",
        "const t = document.getElementById('read-rate').textContent; return t !== '–' && t;",
    );
    let steps = browser.eval("return document.querySelectorAll('#steps tbody tr').length;");
    assert!(steps.as_u64().is_some_and(|n| n >= 4), "steps table rows: {steps}");
    let graphs = browser.eval("return document.querySelectorAll('#read-graph polyline, #steps polyline').length;");
    assert!(graphs.as_u64().is_some_and(|n| n >= 2), "rate graphs drawn: {graphs}");

    // A reload from the page, with the token typed into it: the same file, so `unchanged`.
    browser.type_into("#token", TOKEN);
    browser.click("button.reload[data-plugin='word-key']");
    let message = browser.wait_for(
        "the reload's answer",
        "const m = document.getElementById('reload-message').textContent; return m.includes(':') && m;",
    );
    assert!(message.as_str().is_some_and(|m| m.contains("word-key: unchanged")), "{message}");

    // A new version of word-key (the same code, another digest), swapped in through the
    // endpoint: the page's swap history shows it active, and the drawing its digest.
    let v2 = crate::swap::same_component(&sc.path("word-key-v2.wasm"), "word-key");
    let body = json!({"path": v2}).to_string();
    let (status, answer) =
        crate::admin::http("POST", &format!("{admin}/plugins/word-key/reload"), Some(TOKEN), Some(&body));
    assert_eq!(status, 200, "{answer}");
    let digest = wasp_host::wasm::digest(&std::fs::read(&v2).expect("v2"));
    browser.wait_for(
        "the swap in the history",
        "return Array.from(document.querySelectorAll('#history tbody tr'))         .some(r => r.textContent.includes('word-key') && r.querySelector('.result.active'));",
    );
    let shown = browser.eval(
        "return Array.from(document.querySelectorAll('#topology tspan.version'))         .filter(v => v.dataset.plugin === 'word-key').map(v => v.textContent);",
    );
    assert_eq!(shown, json!([format!("@{}", &digest[..12])]), "the drawing's version of word-key");
    // A few seconds of graph.
    browser.wait_for(
        "a graph of the rate",
        "const p = document.querySelector('#read-graph polyline');\
         return p && p.getAttribute('points').split(' ').length >= 4;",
    );

    // Nothing came from another origin.
    let loaded = browser.eval("return performance.getEntriesByType('resource').map(e => e.name);");
    for url in loaded.as_array().expect("a list") {
        assert!(url.as_str().is_some_and(|u| u.starts_with(&admin)), "the page loaded {url}");
    }

    browser.eval("window.scrollTo(0, 0); return true;");
    let png = browser.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
    let out = repo().join("target/dashboard.png");
    std::fs::create_dir_all(out.parent().expect("target/")).expect("target/");
    std::fs::write(&out, &png).expect("writing the screenshot");
    eprintln!("dashboard: {rate} records read per second; screenshot in {}", out.display());

    drop(browser);
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("the writer");
    wasp.terminate();
    assert!(wasp.wait_exit(TIMEOUT).success());
}

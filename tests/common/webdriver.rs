//! A small WebDriver client: Debian's headless Chromium driven through chromedriver over
//! WebDriver's plain HTTP+JSON (W3C WebDriver), for the dashboard's test. No browser
//! automation crate: a session, navigation, scripts, and screenshots are all it needs.

use super::{Reaped, free_port};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

/// Where Debian's `chromium` package puts the browser (the binary itself first: the
/// launcher script in /usr/bin works too).
const CHROMIUM: [&str; 3] = [
    "/usr/lib/chromium/chromium",
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
];
/// Where Debian's `chromium-driver` package puts chromedriver.
const CHROMEDRIVER: [&str; 2] = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"];

/// The flags that work here (no sandbox, GPU or network of its own), and a window large
/// enough for a readable screenshot.
const FLAGS: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1100,900",
];

/// The longest a WebDriver command may take (a navigation waits for the page's load).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Debian's browser and its driver, found on this machine.
#[derive(Debug, Clone)]
pub struct Browser {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
}

fn first_present(paths: &[&str]) -> Option<PathBuf> {
    paths.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// The browser, or `None` (with a message saying so) when it is not installed; in CI
/// (`$CI` set), where `scripts/deps.sh` installs it, a missing one fails the test instead.
pub fn browser_or_skip(test: &str) -> Option<Browser> {
    let chromium = first_present(&CHROMIUM);
    let chromedriver = first_present(&CHROMEDRIVER);
    if let (Some(chromium), Some(chromedriver)) = (chromium.clone(), chromedriver.clone()) {
        return Some(Browser {
            chromium,
            chromedriver,
        });
    }
    let mut missing = Vec::new();
    if chromium.is_none() {
        missing.push("chromium");
    }
    if chromedriver.is_none() {
        missing.push("chromium-driver");
    }
    let message = format!(
        "{test}: needs Debian's {} (run scripts/deps.sh, or apt-get install -y chromium chromium-driver)",
        missing.join(" and ")
    );
    if std::env::var_os("CI").is_some() {
        panic!("{message}");
    }
    eprintln!("SKIPPED {message}");
    None
}

/// Where test artifacts go: `target/test-artifacts/` (next to cargo's `target/tmp`).
pub fn artifacts_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap_or(tmp).join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An HTTP/1.1 exchange with chromedriver: `method path` with a JSON body, the answer's
/// status and JSON. The body is read by its `Content-Length`: chromedriver answers
/// `Connection: close` but keeps the connection open a while.
async fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<(u16, Value)> {
    let mut stream = TcpStream::connect(addr).await?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {line:?}")))?;
    let mut length = 0usize;
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            break;
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut raw = vec![0u8; length];
    reader.read_exact(&mut raw).await?;
    let value = if raw.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&raw).map_err(std::io::Error::other)?
    };
    Ok((status, value))
}

/// A chromedriver process with one browser session, a fresh profile of its own. Dropping it
/// ends the session (the browser quits) and the driver.
pub struct Driver {
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
    _process: Reaped,
}

impl Driver {
    /// Starts chromedriver on a free loopback port and a headless browser session.
    pub async fn start(browser: &Browser) -> Driver {
        let port = free_port();
        let child = Command::new(&browser.chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", browser.chromedriver.display()));
        let process = Reaped(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let started = tokio::time::Instant::now();
        loop {
            if let Ok((200, v)) = exchange(addr, "GET", "/status", None).await
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not answer on {addr} within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = FLAGS.iter().map(|f| f.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": browser.chromium, "args": args},
        }}});
        let (status, answer) = tokio::time::timeout(
            COMMAND_TIMEOUT,
            exchange(addr, "POST", "/session", Some(&capabilities)),
        )
        .await
        .expect("a browser session within 60 s")
        .expect("chromedriver answers");
        assert_eq!(status, 200, "no browser session: {answer}");
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id: {answer}"))
            .to_string();
        Driver {
            addr,
            session,
            _profile: profile,
            _process: process,
        }
    }

    /// A command of this session: its `value`; a WebDriver error fails the test.
    async fn command(&self, method: &str, what: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{what}", self.session);
        let (status, answer) = tokio::time::timeout(
            COMMAND_TIMEOUT,
            exchange(self.addr, method, &path, body.as_ref()),
        )
        .await
        .unwrap_or_else(|_| panic!("WebDriver {method} {what}: no answer within 60 s"))
        .unwrap_or_else(|e| panic!("WebDriver {method} {what}: {e}"));
        assert_eq!(status, 200, "WebDriver {method} {what}: {answer}");
        answer["value"].clone()
    }

    /// Opens `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(json!({"url": url})))
            .await;
    }

    /// Runs `script` (a function body: `return ...;`) in the page with `args`.
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Runs `script` every 100 ms until it returns something other than `null` or `false`,
    /// and returns that. After `within`, keeps a screenshot and fails with the page's text
    /// and what the script returned last.
    pub async fn wait_for(&self, what: &str, script: &str, within: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let v = self.execute(script, json!([])).await;
            if !v.is_null() && v != Value::Bool(false) {
                return v;
            }
            if tokio::time::Instant::now() >= deadline {
                let text = self
                    .execute("return document.body.innerText;", json!([]))
                    .await;
                let shot = self.screenshot("failure").await;
                panic!(
                    "the page did not show {what} within {within:?} (last: {v}); screenshot {}; page text:\n{}",
                    shot.display(),
                    text.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a screenshot of the page as `target/test-artifacts/dashboard-{name}.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let data = self.command("GET", "/screenshot", None).await;
        let png = STANDARD
            .decode(data.as_str().expect("a base64 PNG"))
            .expect("the screenshot is base64");
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        let path = artifacts_dir().join(format!("dashboard-{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Driver {
    /// Ends the session, so the browser quits before chromedriver is killed (a killed
    /// chromedriver leaves its browser running). Blocking, briefly: no runtime is needed.
    fn drop(&mut self) {
        let Ok(mut stream) =
            std::net::TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))
        else {
            return;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let request = format!(
            "DELETE /session/{} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\n\r\n",
            self.session, self.addr
        );
        if stream.write_all(request.as_bytes()).is_ok() {
            // The answer comes once the browser has quit.
            let _ = stream.read(&mut [0u8; 1024]);
        }
    }
}

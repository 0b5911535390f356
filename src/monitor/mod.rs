//! `zello-gateway monitor`: the gateway's state live in a terminal, for an operator on SSH.
//!
//! It is a client of the status API ([`crate::api`]): by default the local one the
//! configuration's `[api]` names, with its read token; or `--url` and `--token-file`. On a
//! terminal it redraws the screen (at most five times a second); otherwise (a pipe, a log) it
//! prints one line per change. `--levels RADIO` is the level setup aid. When the API cannot
//! be reached at the start, or refuses the token, it exits with a message saying what to do;
//! a connection lost later is tried again.

pub mod view;

use crate::config::{Config, DEFAULT_LISTEN};
use crate::secret::Secret;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{Message, http};
use tokio_util::sync::CancellationToken;
use view::Board;

/// `monitor`'s options.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct MonitorArgs {
    /// The API's address, like http://127.0.0.1:8780 [default: the config's [api] listen].
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// A file holding the API's read token [default: the config's [api] token_file].
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Show one radio's levels as a setup aid: the receive level with the squelch closed
    /// (the noise floor) and open, peaks and clipped samples.
    #[arg(long, value_name = "RADIO")]
    pub levels: Option<String>,
}

/// Why `monitor` stopped.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error(
        "the status API is off ([api] enabled = false in {0}): set enabled = true and restart the gateway, or give --url"
    )]
    ApiOff(PathBuf),
    #[error(
        "cannot read the configuration {path} to find the API ({error}); give --url http://HOST:PORT"
    )]
    Config { path: PathBuf, error: String },
    #[error("--url {0:?}: write it like http://127.0.0.1:8780")]
    BadUrl(String),
    #[error(
        "cannot read the token file {path}: {source} (it is readable by root and the gateway's user: run with sudo, or give --token-file)"
    )]
    TokenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot reach the status API at {url}: {error}; is the gateway running (systemctl status zello-gateway) with its [api] on?"
    )]
    Unreachable { url: String, error: String },
    #[error("the status API at {url} refused the token ({status}): {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    #[error("the status API at {url} answered {status}: {message}")]
    Failed {
        url: String,
        status: u16,
        message: String,
    },
    #[error("no radio {0:?} in the gateway; the radios are: {1}")]
    UnknownRadio(String, String),
}

/// Where to connect and with which token.
#[derive(Debug)]
struct Target {
    /// `ws://HOST:PORT/api/v1/ws`.
    ws_url: String,
    /// `http://HOST:PORT`, for messages.
    base: String,
    token: Option<Secret>,
}

/// The API's address and token from `args`, else from the configuration at `config`.
fn target(args: &MonitorArgs, config: &Path) -> Result<Target, MonitorError> {
    let loaded = if args.url.is_none() || args.token_file.is_none() {
        match Config::load(config) {
            Ok(c) => Some(c),
            Err(_) if args.url.is_some() => None,
            Err(e) => {
                return Err(MonitorError::Config {
                    path: config.to_path_buf(),
                    error: e.to_string(),
                });
            }
        }
    } else {
        None
    };
    let base = match (&args.url, &loaded) {
        (Some(url), _) => url.trim_end_matches('/').to_string(),
        (None, Some(c)) => {
            if !c.api.enabled {
                return Err(MonitorError::ApiOff(config.to_path_buf()));
            }
            let listen = c.api.listen_addr().map_or_else(
                |_| DEFAULT_LISTEN.to_string(),
                |a| {
                    // The API listening everywhere is reached here on loopback.
                    if a.ip().is_unspecified() {
                        let local = if a.is_ipv4() { "127.0.0.1" } else { "[::1]" };
                        format!("{local}:{}", a.port())
                    } else {
                        a.to_string()
                    }
                },
            );
            format!("http://{listen}")
        }
        (None, None) => format!("http://{DEFAULT_LISTEN}"),
    };
    let rest = base
        .strip_prefix("http://")
        .ok_or_else(|| MonitorError::BadUrl(base.clone()))?;
    if rest.is_empty() || rest.contains('/') {
        return Err(MonitorError::BadUrl(base));
    }
    let token_file = args.token_file.clone().or_else(|| {
        let c = loaded.as_ref()?;
        let file = c.api.token_file.as_ref()?;
        Some(c.resolve(file))
    });
    let token = match token_file {
        Some(path) => Some(Secret::new(
            std::fs::read_to_string(&path)
                .map_err(|source| MonitorError::TokenFile { path, source })?
                .trim(),
        )),
        None => None,
    };
    Ok(Target {
        ws_url: format!("ws://{rest}/api/v1/ws"),
        base,
        token,
    })
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the WebSocket with the token and subscribes.
async fn connect(t: &Target, focus: Option<&str>) -> Result<Socket, MonitorError> {
    let mut req = t
        .ws_url
        .as_str()
        .into_client_request()
        .map_err(|_| MonitorError::BadUrl(t.base.clone()))?;
    if let Some(token) = &t.token
        && let Ok(v) = http::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
    {
        req.headers_mut().insert(http::header::AUTHORIZATION, v);
    }
    let connected = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .map_err(|_| MonitorError::Unreachable {
        url: t.base.clone(),
        error: "no answer within 10 s".into(),
    })?;
    let mut ws = match connected {
        Ok((ws, _)) => ws,
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            let status = r.status().as_u16();
            let body: Value = r
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or_default();
            let message = body["message"]
                .as_str()
                .unwrap_or("no reason given")
                .to_string();
            return Err(if status == 401 || status == 403 {
                MonitorError::Refused {
                    url: t.base.clone(),
                    status,
                    message,
                }
            } else {
                MonitorError::Failed {
                    url: t.base.clone(),
                    status,
                    message,
                }
            });
        }
        Err(e) => {
            return Err(MonitorError::Unreachable {
                url: t.base.clone(),
                error: e.to_string(),
            });
        }
    };
    let rooms = match focus {
        Some(radio) => json!([format!("radio:{radio}"), format!("levels:{radio}")]),
        None => json!(["gateway", "radio:*", "channel:*", "levels:*"]),
    };
    let subscribe = json!({"op": "SUBSCRIBE", "rooms": rooms, "id": 1});
    ws.send(Message::Text(subscribe.to_string().into()))
        .await
        .map_err(|e| MonitorError::Unreachable {
            url: t.base.clone(),
            error: e.to_string(),
        })?;
    Ok(ws)
}

/// The last messages (`GET /api/v1/history`), oldest first, as `MESSAGE_STOP`s the board
/// takes in; none when the API cannot give them (the list then fills as messages end).
async fn history(t: &Target, focus: Option<&str>) -> Vec<Value> {
    let Ok(tls) = crate::net::tls::client_config(None) else {
        return Vec::new();
    };
    let Ok(http) = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(5))
        .build()
    else {
        return Vec::new();
    };
    let mut url = format!("{}/api/v1/history?limit={}", t.base, view::HEARD);
    if let Some(radio) = focus {
        url.push_str(&format!("&room=radio:{radio}"));
    }
    let mut req = http.get(url);
    if let Some(token) = &t.token {
        req = req.bearer_auth(token.expose());
    }
    let Ok(answer) = req.send().await else {
        return Vec::new();
    };
    let Ok(bytes) = answer.bytes().await else {
        return Vec::new();
    };
    let Ok(body) = serde_json::from_slice::<Value>(&bytes) else {
        return Vec::new();
    };
    let mut entries: Vec<Value> = body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            json!({"type": "MESSAGE_STOP", "room": format!("radio:{}", m["radio"].as_str().unwrap_or_default()),
                "ts": crate::api::protocol::event::rfc3339(m["ended_ms"].as_u64().unwrap_or(0)),
                "data": m})
        })
        .collect();
    entries.reverse();
    entries
}

fn now_ms() -> u64 {
    crate::state::unix_ms(SystemTime::now())
}

/// How the screen is written.
struct Screen {
    terminal: bool,
    /// What plain mode printed last, to print changes only.
    last: Vec<String>,
}

impl Screen {
    fn draw(&mut self, board: &Board) {
        let lines = board.render(now_ms());
        let mut out = std::io::stdout().lock();
        if self.terminal {
            // Home, clear, then the screen.
            let _ = writeln!(out, "\x1b[H\x1b[2J{}", lines.join("\n"));
        } else {
            // Plain: the radio lines that changed (without timers), and new heard entries.
            let mut now: Vec<String> = Vec::new();
            match &board.focus {
                Some(_) => now.extend(lines.iter().skip(1).take(1).cloned()),
                None => {
                    for (name, r) in &board.radios {
                        now.push(board.radio_line(name, r, None));
                    }
                    for h in board.heard.iter().rev() {
                        now.push(format!(
                            "heard {} ({:.1} s, {})",
                            h.what,
                            h.duration_ms as f64 / 1000.0,
                            h.outcome
                        ));
                    }
                }
            }
            for line in &now {
                if !self.last.contains(line) {
                    let _ = writeln!(out, "{line}");
                }
            }
            self.last = now;
        }
        let _ = out.flush();
    }
}

/// Runs the monitor until Ctrl-C (`stop`).
pub async fn run(
    args: &MonitorArgs,
    config: &Path,
    stop: CancellationToken,
) -> Result<(), MonitorError> {
    let target = target(args, config)?;
    let focus = args.levels.as_deref();
    let mut ws = connect(&target, focus).await?;
    let mut board = Board::new(args.levels.clone());
    for m in history(&target, focus).await {
        board.take(&m);
    }
    let mut screen = Screen {
        terminal: std::io::stdout().is_terminal(),
        last: Vec::new(),
    };
    let mut redraw = tokio::time::interval(Duration::from_millis(200));
    let mut dirty = true;
    let mut last_draw = Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    let Ok(v) = serde_json::from_str::<Value>(&t) else { continue };
                    if v["type"] == "ERROR"
                        && v["code"] == "unknown_room"
                        && let Some(radio) = focus
                    {
                        let names = board.radios.keys().cloned().collect::<Vec<_>>().join(", ");
                        return Err(MonitorError::UnknownRadio(radio.to_string(), names));
                    }
                    if v["type"] == "READY" {
                        // The rooms that exist, for a clear error on a wrong --levels.
                        for room in v["data"]["rooms"].as_array().into_iter().flatten() {
                            if let Some(name) = room.as_str().and_then(|r| r.strip_prefix("radio:")) {
                                board.radios.entry(name.to_string()).or_default();
                            }
                        }
                    }
                    dirty |= board.take(&v);
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    eprintln!("the connection to the status API closed (the gateway stopped or restarted?); trying again");
                    let Some(again) = reconnect(&target, focus, &stop).await? else {
                        return Ok(());
                    };
                    ws = again;
                    board = Board::new(args.levels.clone());
                    dirty = true;
                }
            },
            _ = redraw.tick() => {
                // Timers tick on a terminal: redraw each second even without news.
                if screen.terminal && last_draw.elapsed() >= Duration::from_secs(1) {
                    dirty = true;
                }
            }
        }
        if dirty && last_draw.elapsed() >= Duration::from_millis(200) {
            screen.draw(&board);
            last_draw = Instant::now();
            dirty = false;
        }
    }
}

/// Connects again every two seconds until it works (`Some`) or Ctrl-C (`None`).
async fn reconnect(
    t: &Target,
    focus: Option<&str>,
    stop: &CancellationToken,
) -> Result<Option<Socket>, MonitorError> {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(None),
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        match connect(t, focus).await {
            Ok(ws) => return Ok(Some(ws)),
            Err(e @ MonitorError::Refused { .. }) => return Err(e),
            Err(_) => {}
        }
    }
}

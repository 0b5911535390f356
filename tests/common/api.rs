//! The status API in tests: a gateway on the emulator with its API on a free loopback port,
//! a raw HTTP/1.1 client (so each test sets `Host`, `Origin` and `Authorization` itself),
//! and a WebSocket client that reads JSON messages.

use super::emulator::{Gateway, speaking_radio};
use super::{CHANNEL, Client, config, server};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{Message, http};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use zello_gateway::api::levels::LevelTap;
use zello_gateway::api::metrics::Metrics;
use zello_gateway::api::protocol::{Catalogue, Codec};
use zello_gateway::api::ws::Timings;
use zello_gateway::api::{Setup, start};
use zello_gateway::config::{ApiConfig, ApiTokens, CodecConfig};
use zello_gateway::gateway::{Controls, Meters, RunOptions};
use zello_gateway::radio::sim::{FlagCarrier, SimPtt};
use zello_gateway::secret::Secret;
use zello_gateway::state::{GatewayState, StateHub};
use zello_gateway::zello::sim::{SimConfig, SimHandle};

pub const RADIO: &str = "vhf1";
/// A read token and a control token, long enough for the API's rules.
pub const READ_TOKEN: &str = "read-token-0123456789abcdef";
pub const CONTROL_TOKEN: &str = "control-token-0123456789abcdef";

/// Timings short enough for tests: pings every 300 ms, dead after 1.5 s, a stall after 1 s.
pub fn quick() -> Timings {
    Timings {
        header: Duration::from_secs(1),
        auth: Duration::from_millis(700),
        ping_every: Duration::from_millis(300),
        dead_after: Duration::from_millis(1500),
        stall: Duration::from_secs(1),
        level_every: Duration::from_millis(200),
        level_slack: Duration::from_millis(100),
    }
}

/// The API's tokens: none, the read one, or both.
pub fn tokens(read: bool, control: bool) -> ApiTokens {
    ApiTokens {
        read: read.then(|| Secret::new(READ_TOKEN)),
        control: control.then(|| Secret::new(CONTROL_TOKEN)),
    }
}

/// The API of `hub` (radio [`RADIO`] on [`CHANNEL`]) on a free loopback port.
pub async fn api_on(
    hub: &StateHub,
    tokens: &ApiTokens,
    timings: Timings,
    shutdown: &CancellationToken,
) -> SocketAddr {
    api_with(hub, tokens, timings, shutdown, LevelTap::default(), None).await
}

/// [`api_on`] with the radios' meters and the gateway's controls.
pub async fn api_with(
    hub: &StateHub,
    tokens: &ApiTokens,
    timings: Timings,
    shutdown: &CancellationToken,
    levels: LevelTap,
    control: Option<Controls>,
) -> SocketAddr {
    let config = ApiConfig {
        listen: "127.0.0.1:0".into(),
        ..ApiConfig::default()
    };
    let codec = Codec::from(&CodecConfig::default());
    let setup = Setup {
        metrics: std::sync::Arc::new(Metrics::new([(RADIO, CHANNEL)], 1_700_000_000_000)),
        catalogue: Catalogue::new(&hub.snapshot()).with_codec(RADIO, codec),
        levels,
        control,
        timings,
    };
    start(&config, tokens, hub.clone(), setup, shutdown.clone())
        .await
        .expect("the API starts")
        .addr
}

/// A gateway with radio [`RADIO`] on the emulator, its API, and a dispatcher's app on the
/// channel.
pub struct Rig {
    pub sim: SimHandle,
    pub hub: StateHub,
    pub gateway: Gateway,
    pub carrier: FlagCarrier,
    pub ptt: SimPtt,
    pub api: SocketAddr,
    pub shutdown: CancellationToken,
    pub app: Client,
    pub controls: Controls,
    pub meters: Meters,
}

impl Rig {
    /// Everything started and the channel online, the radio's input `seconds` of speech.
    pub async fn start(tokens: &ApiTokens, timings: Timings, seconds: f32) -> Rig {
        let sim = server(SimConfig::default()).await;
        let hub = StateHub::new(GatewayState::new([(
            RADIO.to_string(),
            CHANNEL.to_string(),
        )]));
        let shutdown = CancellationToken::new();
        let controls = Controls::new([RADIO]);
        let meters = Meters::new();
        let levels = LevelTap::from_meters(&meters, [RADIO]);
        let api = api_with(
            &hub,
            tokens,
            timings,
            &shutdown,
            levels,
            Some(controls.clone()),
        )
        .await;
        let carrier = FlagCarrier::new();
        let ptt = SimPtt::new();
        let (parts, _) = speaking_radio(RADIO, seconds, 4, &carrier, &ptt);
        let options = RunOptions {
            controls: Some(controls.clone()),
            meters: meters.clone(),
            ..RunOptions::default()
        };
        let gateway =
            Gateway::start_with(config(&sim, "gateway1"), vec![parts], hub.clone(), options);
        let app = Client::ready(config(&sim, "dispatcher")).await;
        let mut watch = hub.watch();
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if watch
                    .borrow_and_update()
                    .channel(CHANNEL)
                    .is_some_and(|c| c.online)
                {
                    break;
                }
                watch.changed().await.unwrap();
            }
        })
        .await
        .expect("the gateway's channel is online within 10 s");
        Rig {
            sim,
            hub,
            gateway,
            carrier,
            ptt,
            api,
            shutdown,
            app,
            controls,
            meters,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.app.shutdown().await;
        self.gateway.stop().await;
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `data` of a success answer (asserting it is one, with 200).
    pub fn data(&self) -> Value {
        assert_eq!(self.status, 200, "{}", self.body);
        let v = self.json();
        assert_eq!(v["status"], "success", "{v}");
        v["data"].clone()
    }

    /// The `error` code of an error answer with `status`.
    pub fn error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{}", self.body);
        let v = self.json();
        assert_eq!(v["status"], "error", "{v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        v["error"].as_str().unwrap().to_string()
    }
}

/// Sends `method path` to `addr` with `headers` (a `Host` naming `addr` unless one is given)
/// and `body`, and reads the whole answer.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut text = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        text.push_str(&format!("Host: {addr}\r\n"));
    }
    for (n, v) in headers {
        text.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() {
        text.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    text.push_str("\r\n");
    text.push_str(body);
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    parse_answer(&String::from_utf8_lossy(&raw))
}

fn parse_answer(raw: &str) -> Answer {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {raw:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// `GET path` with no other header.
pub async fn get(addr: SocketAddr, path: &str) -> Answer {
    request(addr, "GET", path, &[], "").await
}

/// `GET path` with `Authorization: Bearer token`.
pub async fn get_with(addr: SocketAddr, path: &str, token: &str) -> Answer {
    let bearer = format!("Bearer {token}");
    request(addr, "GET", path, &[("Authorization", &bearer)], "").await
}

/// A WebSocket client of the API.
#[derive(Debug)]
pub struct Ws {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// Opens `path` on `addr` with `headers`; the handshake's HTTP error otherwise (status and
/// body).
pub async fn try_ws(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Ws, (u16, String)> {
    let mut req = format!("ws://{addr}{path}").into_client_request().unwrap();
    for (n, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(Ws { ws }),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err((
            r.status().as_u16(),
            String::from_utf8_lossy(r.body().as_deref().unwrap_or_default()).into_owned(),
        )),
        // Closed before any answer (the connection limit).
        Err(_) => Err((0, String::new())),
    }
}

/// Opens the API's WebSocket over a connection whose receive buffer is small, so that a
/// client that stops reading is found out after a few kilobytes; reads its `READY`.
pub async fn ws_small_buffer(addr: SocketAddr) -> Ws {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let req = format!("ws://{addr}/api/v1/ws")
        .into_client_request()
        .unwrap();
    let (ws, _) = tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(stream))
        .await
        .unwrap();
    let mut ws = Ws { ws };
    let ready = ws.next_json(Duration::from_secs(5)).await;
    assert_eq!(ready["type"], "READY", "{ready}");
    ws
}

/// Opens the API's WebSocket and reads its `READY`.
pub async fn ws(addr: SocketAddr) -> (Ws, Value) {
    let mut ws = try_ws(addr, "/api/v1/ws", &[]).await.expect("handshake");
    let ready = ws.next_json(Duration::from_secs(5)).await;
    assert_eq!(ready["type"], "READY", "{ready}");
    (ws, ready)
}

/// How a socket ended.
#[derive(Debug, PartialEq)]
pub enum Closed {
    /// A close frame with this code.
    Code(u16),
    /// The connection ended without one.
    Dropped,
}

impl Ws {
    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    pub async fn send_text(&mut self, text: String) {
        self.ws.send(Message::Text(text.into())).await.unwrap();
    }

    /// The next JSON message within `within` (pings and pongs skipped).
    pub async fn next_json(&mut self, within: Duration) -> Value {
        match self.try_next_json(within).await {
            Some(v) => v,
            None => panic!("no message within {within:?}"),
        }
    }

    /// The next JSON message, or `None` after `within` or when the socket ends.
    pub async fn try_next_json(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??;
            match next {
                Ok(Message::Text(t)) => {
                    return Some(serde_json::from_str(&t).unwrap_or_else(|e| {
                        panic!("not JSON ({e}): {t}");
                    }));
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Messages until one of type `kind` (returned last), within `within`.
    pub async fn until(&mut self, kind: &str, within: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(v) = self.try_next_json(left).await else {
                panic!("no {kind} within {within:?}; seen: {seen:#?}");
            };
            let done = v["type"] == kind;
            seen.push(v);
            if done {
                return seen;
            }
        }
    }

    /// Reads until the socket ends: its close code, if it sent one.
    pub async fn closed(&mut self, within: Duration) -> Closed {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => panic!("the socket is still open after {within:?}"),
                Ok(None) | Ok(Some(Err(_))) => return Closed::Dropped,
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return frame.map_or(Closed::Dropped, |f| Closed::Code(f.code.into()));
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}

//! The emulator's HTTP side (axum): decodes requests, applies faults, holds media polls
//! while "converting", and serves media files.

use super::state::{ApiFailure, Request, WRITES, WorkData, WorkState};
use crate::sync::lock;
use crate::work::wire::{ParsedForm, percent_decode};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// How the emulator behaves.
#[derive(Debug, Clone)]
pub struct WorkSimConfig {
    /// What the network holds at the start.
    pub data: WorkData,
    /// Answers of `history/getmedia` saying "Waiting"/"Working" before a key is ready.
    pub media_steps: u32,
    /// How long each of those answers is held back (the real server holds up to 20 s).
    pub media_hold: Duration,
}

impl WorkSimConfig {
    /// `data`, with media ready at the first poll.
    pub fn new(data: WorkData) -> WorkSimConfig {
        WorkSimConfig {
            data,
            media_steps: 0,
            media_hold: Duration::ZERO,
        }
    }
}

/// Something to do instead of (or besides) answering normally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkFault {
    /// Answer with this error code, changing nothing.
    Code(u16),
    /// Carry the request out, then break the connection before the answer is complete.
    Break,
    /// Wait this long before answering.
    Hang(Duration),
}

/// One request the emulator answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkCall {
    /// The method, like `user/save` (or `media` for a download).
    pub method: String,
    /// The code answered (200 for success).
    pub code: u16,
}

impl WorkCall {
    /// Whether it was a write that succeeded.
    pub fn changed(&self) -> bool {
        self.code == 200 && WRITES.contains(&self.method.as_str())
    }
}

struct Shared {
    state: Mutex<WorkState>,
    faults: Mutex<Vec<(String, WorkFault, u32)>>,
    calls: Mutex<Vec<WorkCall>>,
    media_hold: Duration,
}

impl Shared {
    fn take_fault(&self, method: &str) -> Option<WorkFault> {
        let mut faults = lock(&self.faults);
        let i = faults.iter().position(|(m, _, _)| m == method)?;
        let fault = faults[i].1.clone();
        faults[i].2 -= 1;
        if faults[i].2 == 0 {
            faults.remove(i);
        }
        Some(fault)
    }

    fn record(&self, method: &str, code: u16) {
        tracing::debug!(method, code, "Zello Work emulator answered");
        lock(&self.calls).push(WorkCall {
            method: method.to_string(),
            code,
        });
    }
}

/// The Zello Work API emulator.
#[derive(Debug)]
pub struct WorkSim;

/// A running emulator.
pub struct WorkSimHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl WorkSim {
    /// Binds `addr` (port 0 picks a free one) and serves on the current runtime until
    /// [`WorkSimHandle::shutdown`].
    pub async fn start(addr: SocketAddr, config: WorkSimConfig) -> std::io::Result<WorkSimHandle> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let mut state = WorkState::new(config.data, config.media_steps);
        state.media_base = format!("http://{addr}");
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            faults: Mutex::new(Vec::new()),
            calls: Mutex::new(Vec::new()),
            media_hold: config.media_hold,
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::warn!("Zello Work emulator stopped: {e}");
            }
        });
        Ok(WorkSimHandle {
            addr,
            shared,
            cancel,
            task,
        })
    }
}

impl WorkSimHandle {
    /// The base URL, like `http://127.0.0.1:8801`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A copy of what the network holds now.
    pub fn data(&self) -> WorkData {
        lock(&self.shared.state).data.clone()
    }

    /// Changes what the network holds.
    pub fn with_data<R>(&self, f: impl FnOnce(&mut WorkData) -> R) -> R {
        f(&mut lock(&self.shared.state).data)
    }

    /// The next `times` calls of `method` (like `user/save`, or `media` for downloads)
    /// meet `fault`.
    pub fn fail(&self, method: &str, fault: WorkFault, times: u32) {
        if times > 0 {
            lock(&self.shared.faults).push((method.to_string(), fault, times));
        }
    }

    /// Every request answered so far.
    pub fn calls(&self) -> Vec<WorkCall> {
        lock(&self.shared.calls).clone()
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        lock(&self.shared.calls).clear();
    }

    /// Stops serving; waits up to `within` for the server task.
    pub async fn shutdown(self, within: Duration) {
        self.cancel.cancel();
        let _ = tokio::time::timeout(within, self.task).await;
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn json_response(value: Value) -> Response {
    let mut r = Response::new(Body::from(value.to_string()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn failure(code: ApiFailure) -> Value {
    json!({ "status": code.status(), "code": code.0.to_string() })
}

/// A response whose body breaks off: the client sees the connection fail mid-answer.
fn broken() -> Response {
    let parts: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::from_static(b"{\"status\":")),
        Err(std::io::Error::other("connection broken on purpose")),
    ];
    Response::new(Body::from_stream(futures_util::stream::iter(parts)))
}

async fn handle(State(sh): State<Arc<Shared>>, uri: Uri, body: Bytes) -> Response {
    let segments: Vec<String> = uri
        .path()
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    if segments.first().map(String::as_str) == Some("media") {
        return media_file(&sh, &segments).await;
    }
    let req = Request {
        segments,
        query: ParsedForm::parse(uri.query().unwrap_or_default().as_bytes()),
        body: ParsedForm::parse(&body),
    };
    let method = req.method();
    let fault = sh.take_fault(&method);
    match &fault {
        Some(WorkFault::Code(code)) => {
            sh.record(&method, *code);
            return json_response(failure(ApiFailure(*code)));
        }
        Some(WorkFault::Hang(d)) => tokio::time::sleep(*d).await,
        _ => {}
    }
    let answer = lock(&sh.state).handle(&req, now());
    let value = match answer {
        Ok(mut fields) => {
            let converting = fields.contains_key("status");
            fields.entry("status").or_insert_with(|| Value::from("OK"));
            fields.insert("code".into(), Value::from("200"));
            sh.record(&method, 200);
            if converting && !sh.media_hold.is_zero() {
                tokio::time::sleep(sh.media_hold).await;
            }
            Value::Object(fields)
        }
        Err(code) => {
            sh.record(&method, code.0);
            failure(code)
        }
    };
    if fault == Some(WorkFault::Break) {
        return broken();
    }
    json_response(value)
}

async fn media_file(sh: &Shared, segments: &[String]) -> Response {
    match sh.take_fault("media") {
        Some(WorkFault::Break) => return broken(),
        Some(WorkFault::Code(c)) => {
            return StatusCode::from_u16(c)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
                .into_response();
        }
        Some(WorkFault::Hang(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let file = segments.get(1).map(String::as_str).unwrap_or_default();
    let found = {
        let state = lock(&sh.state);
        state
            .media_file(file)
            .map(|(m, content_type)| (m.bytes.clone(), content_type))
    };
    match found {
        Some((bytes, content_type)) => {
            sh.record("media", 200);
            let mut r = Response::new(Body::from(bytes));
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            r
        }
        None => {
            sh.record("media", 404);
            StatusCode::NOT_FOUND.into_response()
        }
    }
}

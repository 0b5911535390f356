//! The REST endpoints: health, metrics, the state, discovery (bindings, sockets), history
//! and control. Every JSON answer is `{"status":"success","data":...}` or
//! `{"status":"error","error":CODE,"message":...}` with the matching HTTP status.

use super::guard::Refusal;
use super::protocol::Bindings;
use super::server::Api;
use crate::state::GatewayState;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

/// The dashboard, one page embedded in the binary.
pub const DASHBOARD: &str = include_str!("dashboard.html");

/// The routes, given the server's shared parts.
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status))
        .route("/api/v1/radios", get(radios))
        .route("/api/v1/radios/{name}", get(radio))
        .route("/api/v1/channels", get(channels))
        .route("/api/v1/channels/{name}", get(channel))
        .route("/api/v1/bindings", get(bindings))
        .route("/api/v1/sockets", get(sockets))
        .route("/api/v1/sockets/{id}", get(socket))
        .route("/api/v1/history", get(history))
        .route("/api/v1/ws", get(super::server::websocket))
        .route("/api/ws", get(super::server::websocket))
        .merge(super::control::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(api)
}

/// A success answer carrying `data`.
pub fn success<T: Serialize>(data: T) -> Response {
    json_answer(StatusCode::OK, &json!({"status": "success", "data": data}))
}

/// An error answer: `status`, a short `code` for programs and a `message` for people.
pub fn failure(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response {
    json_answer(
        status,
        &json!({"status": "error", "error": code, "message": message.to_string()}),
    )
}

/// The answer to a refused request, with its `WWW-Authenticate` challenge when a token is
/// missing or wrong.
pub fn refused(refusal: &Refusal) -> Response {
    let mut response = failure(refusal.status(), refusal.code(), refusal);
    if let Some(challenge) = refusal.www_authenticate() {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge);
    }
    response
}

fn json_answer(status: StatusCode, value: &serde_json::Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn dashboard() -> Response {
    let mut response = DASHBOARD.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The page's own scripts and the API, nothing from elsewhere.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

async fn livez() -> Response {
    success(json!({"live": true}))
}

/// One readiness check, as `/readyz?verbose` lists it.
#[derive(Debug, Serialize)]
struct Check {
    name: String,
    ok: bool,
    /// Whether readiness depends on it (as systemd's `READY=1` does) or it is only shown.
    required: bool,
    detail: Option<String>,
}

/// The checks of `/readyz`: the one systemd's readiness asks (the gateway started: every
/// radio started or waiting for its hardware, the Zello session running), then what is
/// only shown (Zello logged on, each channel online, each radio's hardware).
fn checks(state: &GatewayState) -> Vec<Check> {
    let mut checks = vec![Check {
        name: "gateway started".into(),
        ok: state.gateway.started,
        required: true,
        detail: None,
    }];
    let link = &state.gateway.link;
    checks.push(Check {
        name: "zello logged on".into(),
        ok: matches!(link, crate::state::Link::LoggedOn),
        required: false,
        detail: serde_json::to_value(link)
            .ok()
            .and_then(|v| v.get("state").and_then(|s| s.as_str()).map(String::from)),
    });
    for (name, c) in &state.channels {
        checks.push(Check {
            name: format!("channel {name} online"),
            ok: c.online,
            required: false,
            detail: None,
        });
    }
    for (name, r) in &state.radios {
        let h = &r.health;
        let fault = h
            .waiting_for_hardware
            .clone()
            .or_else(|| h.audio.fault().map(|e| format!("audio: {e}")))
            .or_else(|| h.ptt.fault().map(|e| format!("ptt: {e}")))
            .or_else(|| h.carrier.fault().map(|e| format!("carrier detect: {e}")));
        checks.push(Check {
            name: format!("radio {name} hardware"),
            ok: fault.is_none(),
            required: false,
            detail: fault,
        });
    }
    checks
}

async fn readyz(
    State(api): State<Arc<Api>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let state = api.feed.hub().snapshot();
    let ready = state.gateway.started;
    if query.contains_key("verbose") {
        let data = json!({"ready": ready, "checks": checks(&state)});
        if ready {
            return success(data);
        }
        return json_answer(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "error", "error": "not_ready",
                "message": "the gateway is still starting", "data": data}),
        );
    }
    if ready {
        success(json!({"ready": true}))
    } else {
        failure(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the gateway is still starting",
        )
    }
}

async fn metrics(State(api): State<Arc<Api>>) -> Response {
    let metrics = api.feed.metrics();
    metrics.set_from(&api.feed.hub().snapshot());
    match metrics.render() {
        Ok(text) => {
            let mut response = text.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(super::metrics::CONTENT_TYPE),
            );
            response
        }
        Err(e) => failure(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
    }
}

async fn status(State(api): State<Arc<Api>>) -> Response {
    success(api.feed.hub().snapshot())
}

/// A radio or channel with its name, as the lists show them.
#[derive(Serialize)]
struct Named<'a, T> {
    name: &'a str,
    #[serde(flatten)]
    state: &'a T,
}

async fn radios(State(api): State<Arc<Api>>) -> Response {
    let state = api.feed.hub().snapshot();
    let list: Vec<_> = state
        .radios
        .iter()
        .map(|(name, state)| Named { name, state })
        .collect();
    success(list)
}

async fn radio(State(api): State<Arc<Api>>, Path(name): Path<String>) -> Response {
    let state = api.feed.hub().snapshot();
    match state.radio(&name) {
        Some(r) => success(Named {
            name: &name,
            state: r,
        }),
        None => unknown_radio(&state),
    }
}

/// 404 for a radio the configuration does not name.
pub fn unknown_radio(state: &GatewayState) -> Response {
    let names: Vec<&str> = state.radios.keys().map(String::as_str).collect();
    failure(
        StatusCode::NOT_FOUND,
        "unknown_radio",
        format!("no such radio; the radios are: {}", names.join(", ")),
    )
}

async fn channels(State(api): State<Arc<Api>>) -> Response {
    let state = api.feed.hub().snapshot();
    let list: Vec<_> = state
        .channels
        .iter()
        .map(|(name, state)| Named { name, state })
        .collect();
    success(list)
}

async fn channel(State(api): State<Arc<Api>>, Path(name): Path<String>) -> Response {
    let state = api.feed.hub().snapshot();
    match state.channel(&name) {
        Some(c) => success(Named {
            name: &name,
            state: c,
        }),
        None => {
            let names: Vec<&str> = state.channels.keys().map(String::as_str).collect();
            failure(
                StatusCode::NOT_FOUND,
                "unknown_channel",
                format!("no such channel; the channels are: {}", names.join(", ")),
            )
        }
    }
}

async fn bindings(State(api): State<Arc<Api>>) -> Response {
    success(Bindings::new(&api.feed.hub().snapshot()))
}

async fn sockets(State(api): State<Arc<Api>>) -> Response {
    success(api.sockets.list())
}

async fn socket(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    match api.sockets.get(&id) {
        Some(info) => success(info),
        None => failure(
            StatusCode::NOT_FOUND,
            "unknown_socket",
            "no such socket (it may have closed); GET /api/v1/sockets lists the open ones",
        ),
    }
}

/// How many messages `GET /api/v1/history` lists unless `limit` says otherwise.
pub const HISTORY_DEFAULT: usize = 20;

/// `GET /api/v1/history`'s query: `room=radio:NAME` (every radio when left out) and
/// `limit` (at most what the state keeps per radio).
#[derive(Debug, Deserialize)]
struct HistoryQuery {
    room: Option<String>,
    limit: Option<String>,
}

/// One message of the history, newest first.
#[derive(Debug, Serialize)]
struct HistoryEntry<'a> {
    radio: &'a str,
    direction: crate::state::Direction,
    /// Who talked (messages from the channel).
    from: Option<&'a str>,
    channel: Option<&'a str>,
    stream_id: Option<u32>,
    start: String,
    started_ms: u64,
    ended_ms: u64,
    duration_ms: u64,
    packets: u64,
    concealed: u64,
    dropped: u64,
    peak_dbfs: Option<f32>,
    rms_dbfs: Option<f32>,
    outcome: Option<super::protocol::event::Outcome>,
}

async fn history(State(api): State<Arc<Api>>, Query(query): Query<HistoryQuery>) -> Response {
    let state = api.feed.hub().snapshot();
    let limit = match query.limit.as_deref().map(str::parse::<usize>) {
        None => HISTORY_DEFAULT,
        Some(Ok(n)) => n.min(crate::state::HISTORY_LEN),
        Some(Err(_)) => {
            return failure(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!(
                    "limit must be a whole number (at most {})",
                    crate::state::HISTORY_LEN
                ),
            );
        }
    };
    let radios: Vec<&String> = match query.room.as_deref() {
        None => state.radios.keys().collect(),
        Some(room) => match room.strip_prefix("radio:") {
            Some(name) if state.radio(name).is_some() => {
                state.radios.keys().filter(|n| *n == name).collect()
            }
            Some(_) => return unknown_radio(&state),
            None => {
                return failure(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "room must be a radio's room, like room=radio:vhf1",
                );
            }
        },
    };
    let mut entries: Vec<HistoryEntry> = radios
        .into_iter()
        .filter_map(|name| state.radio(name).map(|r| (name, r)))
        .flat_map(|(name, r)| {
            r.history().iter().map(move |m| {
                let from_channel = m.direction == crate::state::Direction::FromChannel;
                HistoryEntry {
                    radio: name,
                    direction: m.direction,
                    from: if from_channel {
                        m.peer.as_deref()
                    } else {
                        None
                    },
                    channel: m.channel.as_deref(),
                    stream_id: m.stream_id,
                    start: super::protocol::event::rfc3339(m.started_ms),
                    started_ms: m.started_ms,
                    ended_ms: m.ended_ms,
                    duration_ms: m.duration_ms,
                    packets: m.packets,
                    concealed: m.concealed,
                    dropped: m.dropped,
                    peak_dbfs: m.peak_dbfs,
                    rms_dbfs: m.rms_dbfs,
                    outcome: m.outcome.map(Into::into),
                }
            })
        })
        .collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.ended_ms));
    entries.truncate(limit);
    success(entries)
}

async fn not_found() -> Response {
    failure(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; GET /api/v1/bindings lists the rooms, README the endpoints",
    )
}

async fn method_not_allowed() -> Response {
    failure(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method",
    )
}

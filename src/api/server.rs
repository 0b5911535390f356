//! The API's listener: binds `[api] listen`, serves HTTP/1.1 connections (each request
//! checked by the [`Guard`] first), upgrades `GET /api/v1/ws` to a WebSocket session, and
//! stops with the gateway.
//!
//! Nothing here can slow the gateway: the API has its own tasks, reads the state through
//! the hub's watch (never locked for long) and its events through a bounded feed; a client
//! that does not read is cut off, one that does not finish its request headers in
//! the header time limit ([`Timings::header`]) too, and at most [`MAX_CONNECTIONS`] connections are served at once.

use super::feed::Feed;
use super::guard::Guard;
use super::http::{failure, refused, router};
use super::levels::{LevelFeed, LevelTap};
use super::metrics::Metrics;
use super::protocol::Catalogue;
use super::sockets::Sockets;
use super::ws::{self, Timings};
use crate::config::{ApiConfig, ApiConfigError, ApiTokens};
use crate::state::StateHub;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_util::sync::CancellationToken;
use tower::Service as _;
use tracing::{Instrument as _, debug, info, warn};

/// HTTP connections served at once at most; more are closed as they come.
pub const MAX_CONNECTIONS: usize = 64;

/// The kernel's send buffer for each API connection: a client that stops reading is found
/// out after this much is queued (the stall limit then applies), and costs no more memory.
pub const SEND_BUFFER_BYTES: usize = 64 * 1024;

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Config(#[from] ApiConfigError),
    #[error(
        "the status API cannot listen on {addr}: {source}; another program may use the port: set another [api] listen, or enabled = false"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What the routes and sessions share.
pub struct Api {
    pub feed: Arc<Feed>,
    pub guard: Arc<Guard>,
    pub sockets: Arc<Sockets>,
    pub ws: Arc<ws::Context>,
    /// TX inhibit and unkey, when the gateway offers them.
    pub control: Option<crate::gateway::Controls>,
    pub shutdown: CancellationToken,
}

/// What the API serves, besides the state.
pub struct Setup {
    /// The metrics, made for the configured radios.
    pub metrics: Arc<Metrics>,
    /// The catalogue, with each radio's codec set.
    pub catalogue: Catalogue,
    /// Each radio's level meter.
    pub levels: LevelTap,
    /// TX inhibit and unkey, when the gateway offers them.
    pub control: Option<crate::gateway::Controls>,
    /// The WebSocket timings (the defaults but in tests).
    pub timings: Timings,
}

/// One radio as the API knows it: its name, its channel and the codec of its messages.
#[derive(Debug, Clone)]
pub struct ApiRadio {
    pub name: String,
    pub channel: String,
    pub codec: super::protocol::Codec,
}

impl Setup {
    /// What the API of these radios serves: metrics with every label combination at 0,
    /// the catalogue with each radio's codec, the radios' meters from `meters`, `control`,
    /// the default timings.
    pub fn for_radios(
        radios: &[ApiRadio],
        meters: &crate::gateway::Meters,
        control: Option<crate::gateway::Controls>,
    ) -> Setup {
        let pairs = || radios.iter().map(|r| (r.name.clone(), r.channel.clone()));
        let mut catalogue = Catalogue::new(&crate::state::GatewayState::new(pairs()));
        for r in radios {
            catalogue = catalogue.with_codec(&r.name, r.codec);
        }
        Setup {
            metrics: Arc::new(Metrics::new(
                pairs(),
                crate::state::unix_ms(std::time::SystemTime::now()),
            )),
            catalogue,
            levels: LevelTap::from_meters(meters, radios.iter().map(|r| &r.name)),
            control,
            timings: Timings::default(),
        }
    }
}

/// A running API.
pub struct Running {
    /// The address it listens on (the port the system chose when `listen` had port 0).
    pub addr: SocketAddr,
    /// Ends when the API has stopped.
    pub task: tokio::task::JoinHandle<()>,
}

/// Binds `config.listen` and serves the API of `hub` until `shutdown`.
pub async fn start(
    config: &ApiConfig,
    tokens: &ApiTokens,
    hub: StateHub,
    setup: Setup,
    shutdown: CancellationToken,
) -> Result<Running, ApiError> {
    let addr = config.listen_addr()?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ApiError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ApiError::Bind { addr, source })?;
    let guard = Arc::new(Guard::new(bound, config, tokens)?);
    let events = hub.subscribe_stamped();
    let levels = LevelFeed::new(
        setup.levels,
        hub.clone(),
        setup.timings.level_every,
        setup.timings.level_slack,
    );
    tokio::spawn(levels.clone().run(shutdown.clone()));
    let feed = Feed::new(hub, setup.metrics);
    tokio::spawn(feed.clone().run(events, setup.catalogue, shutdown.clone()));
    let api = Arc::new(Api {
        ws: Arc::new(ws::Context {
            feed: feed.clone(),
            guard: guard.clone(),
            levels,
            timings: setup.timings,
        }),
        feed,
        guard,
        sockets: Arc::new(Sockets::default()),
        control: setup.control,
        shutdown: shutdown.clone(),
    });
    info!(
        address = %bound,
        token = api.guard.needs_token(),
        control = api.guard.control_enabled(),
        "status API and dashboard: http://{bound}/"
    );
    let header = setup.timings.header;
    let task = tokio::spawn(accept(listener, api, header, shutdown));
    Ok(Running { addr: bound, task })
}

async fn accept(
    listener: TcpListener,
    api: Arc<Api>,
    header_timeout: Duration,
    shutdown: CancellationToken,
) {
    let app = router(api.clone());
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut full_logged = false;
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: wait a little rather than spin.
                    warn!(error = %e, "status API: cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if !full_logged {
                warn!(
                    limit = MAX_CONNECTIONS,
                    "status API: too many connections; new ones are closed until some end"
                );
                full_logged = true;
            }
            drop(stream);
            continue;
        };
        full_logged = false;
        let _ = stream.set_nodelay(true);
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER_BYTES);
        let api = api.clone();
        let app = app.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(
            async move {
                let service = hyper::service::service_fn(
                    move |mut req: hyper::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(ConnectInfo(peer));
                        let api = api.clone();
                        let mut app = app.clone();
                        async move {
                            if let Some(refusal) = refuse(&api, &req) {
                                return Ok::<_, std::convert::Infallible>(refusal);
                            }
                            app.call(req.map(Body::new)).await
                        }
                    },
                );
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades();
                tokio::pin!(connection);
                tokio::select! {
                    r = connection.as_mut() => if let Err(e) = r {
                        debug!(peer = %peer, error = %e, "status API connection ended");
                    },
                    _ = shutdown.cancelled() => connection.as_mut().graceful_shutdown(),
                }
                drop(slot);
            }
            .in_current_span(),
        );
    }
}

/// The guard's answer for every request but a WebSocket handshake (which is decided with
/// its own rules in [`websocket`]): `Some` refusal, or `None` to go on.
fn refuse<B>(api: &Api, req: &hyper::Request<B>) -> Option<Response> {
    let path = req.uri().path();
    if req.method() == Method::GET && is_websocket_path(path) {
        return None;
    }
    match api.guard.check(req.method(), req.uri(), req.headers()) {
        Ok(_) => None,
        Err(refusal) => {
            debug!(path, code = refusal.code(), "status API request refused");
            Some(refused(&refusal))
        }
    }
}

fn is_websocket_path(path: &str) -> bool {
    path == "/api/v1/ws" || path == "/api/ws"
}

/// `GET /api/v1/ws`: the handshake's checks (a WebSocket upgrade, Host, Origin, token,
/// a free seat), then `101 Switching Protocols` and the session on the upgraded connection.
pub async fn websocket(
    State(api): State<Arc<Api>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
) -> Response {
    let headers = req.headers();
    let Some(key) = websocket_key(headers) else {
        let mut r = failure(
            StatusCode::UPGRADE_REQUIRED,
            "websocket_required",
            "this endpoint takes a WebSocket (Upgrade: websocket, Sec-WebSocket-Version: 13)",
        );
        r.headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return r;
    };
    let auth = match api.guard.check_websocket(req.uri(), headers) {
        Ok(auth) => auth,
        Err(refusal) => return refused(&refusal),
    };
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(200).collect());
    let seat = match api
        .sockets
        .join(peer, user_agent, super::feed::Feed::now_ms())
    {
        Ok(seat) => seat,
        Err(full) => return failure(StatusCode::SERVICE_UNAVAILABLE, "too_many_sockets", full),
    };
    let accept = derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(&mut req);
    let ctx = api.ws.clone();
    let shutdown = api.shutdown.clone();
    tokio::spawn(
        async move {
            match upgrade.await {
                Ok(upgraded) => ws::run(TokioIo::new(upgraded), ctx, seat, auth, shutdown).await,
                Err(e) => debug!(error = %e, "status API: the WebSocket upgrade failed"),
            }
        }
        .in_current_span(),
    );
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    response
}

/// The handshake's `Sec-WebSocket-Key`, when the request is a WebSocket upgrade of version
/// 13.
fn websocket_key(headers: &HeaderMap) -> Option<String> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return None;
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok())
        != Some("13")
    {
        return None;
    }
    headers
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

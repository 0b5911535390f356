//! The Zello emulator on a loopback port, sessions logged on to it, and the gateway's
//! events.

use bytes::Bytes;
use std::path::Path;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use zello_gateway::audio::file::{FileInput, MemoryOutput, MessagesHandle};
use zello_gateway::audio::opus::{EncoderSettings, OpusEncoder};
use zello_gateway::audio::{CODEC_RATE, speech};
use zello_gateway::config::Config;
use zello_gateway::gateway::{self, GatewayError, GatewayEvent, RadioParts, RunOptions};
use zello_gateway::radio::sim::{FlagCarrier, SimPtt};
use zello_gateway::secret::Secret;
use zello_gateway::zello::protocol::{CodecHeader, TextMessage};
use zello_gateway::zello::session::{
    self, OutgoingMessage, SessionConfig, SessionEvent, SessionHandle,
};
use zello_gateway::zello::sim::{SimConfig, SimHandle, SimServer};

pub const CHANNEL: &str = "Dispatch";

/// Starts an emulator on 127.0.0.1 with a free port.
pub async fn server(config: SimConfig) -> SimHandle {
    SimServer::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("emulator starts")
}

/// [`server`] with the echo user, who plays every message back to its sender.
pub async fn echo_server() -> SimHandle {
    server(SimConfig {
        echo: true,
        ..SimConfig::default()
    })
    .await
}

/// An emulator with the gateway's session (`gateway1`) ready on `CHANNEL`.
pub async fn with_gateway() -> (SimHandle, Client) {
    let sim = server(SimConfig::default()).await;
    let gw = Client::ready(config(&sim, "gateway1")).await;
    (sim, gw)
}

/// [`with_gateway`], and `user` (an app) ready on `CHANNEL` after it.
pub async fn with_gateway_and(user: &str) -> (SimHandle, Client, Client) {
    let (sim, gw) = with_gateway().await;
    let app = Client::ready(config(&sim, user)).await;
    (sim, gw, app)
}

/// Session settings for `user` on `CHANNEL` of `server`.
pub fn config(server: &SimHandle, user: &str) -> SessionConfig {
    SessionConfig {
        server: server.url(),
        username: user.into(),
        password: Secret::new("pw"),
        channels: vec![CHANNEL.into()],
        ..SessionConfig::default()
    }
}

/// A running session and its events.
pub struct Client {
    pub handle: SessionHandle,
    pub events: mpsc::Receiver<SessionEvent>,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

impl Client {
    pub fn start(config: SessionConfig) -> Client {
        let stop = CancellationToken::new();
        let (handle, events, task) = session::spawn(config, stop.clone()).expect("session starts");
        Client {
            handle,
            events,
            stop,
            task,
        }
    }

    /// Starts and waits until `CHANNEL` is ready.
    pub async fn ready(config: SessionConfig) -> Client {
        let mut c = Client::start(config);
        c.expect(Duration::from_secs(10), |e| {
            matches!(e, SessionEvent::Channel { ready: true, .. })
        })
        .await;
        c
    }

    /// Starts a message on `CHANNEL` with the default codec header.
    pub async fn start_message(&self) -> OutgoingMessage {
        let header = CodecHeader::default();
        let started = self.handle.start_message(CHANNEL, header, None).await;
        started.expect("the message starts")
    }

    /// Waits for an event matching `pred`, skipping others; panics with what was seen if
    /// none comes in time.
    pub async fn expect(
        &mut self,
        within: Duration,
        pred: impl Fn(&SessionEvent) -> bool,
    ) -> SessionEvent {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(e)) if pred(&e) => return e,
                Ok(Some(e)) => seen.push(format!("{e:?}")),
                Ok(None) => panic!("session ended; saw {seen:#?}"),
                Err(_) => panic!("no matching event within {within:?}; saw {seen:#?}"),
            }
        }
    }

    /// Waits for the logon, with or without the refresh token as `with_refresh_token` says.
    pub async fn logged_on(&mut self, within: Duration, with_refresh_token: bool) {
        self.expect(within, |e| {
            matches!(e, SessionEvent::LoggedOn { with_refresh_token: w } if *w == with_refresh_token)
        })
        .await;
    }

    /// Collects every event for `within`, failing if `pred` accepts any of them.
    pub async fn expect_none(
        &mut self,
        within: Duration,
        pred: impl Fn(&SessionEvent) -> bool,
    ) -> Vec<SessionEvent> {
        let seen = self.collect(within).await;
        assert!(!seen.iter().any(pred), "{seen:?}");
        seen
    }

    /// Waits for the next text message.
    pub async fn expect_text(&mut self, within: Duration) -> TextMessage {
        match self
            .expect(within, |e| matches!(e, SessionEvent::Text(_)))
            .await
        {
            SessionEvent::Text(t) => t,
            other => unreachable!("{other:?}"),
        }
    }

    /// Collects every event for `within`.
    pub async fn collect(&mut self, within: Duration) -> Vec<SessionEvent> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        while let Ok(Some(e)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            out.push(e);
        }
        out
    }

    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

/// Waits, as [`Client::expect`], for the first of `client`'s session events that `pattern`
/// matches, and binds the pattern's names: `expect_event!(app, S, SessionEvent::Location(l));`
#[macro_export]
macro_rules! expect_event {
    ($client:expr, $within:expr, $pattern:pat) => {
        #[allow(unused_variables)]
        let matching = |e: &zello_gateway::zello::session::SessionEvent| matches!(e, $pattern);
        let $pattern = $client.expect($within, matching).await else {
            unreachable!()
        };
    };
}

/// Waits for the first gateway event `pred` accepts (a lag is skipped, not fatal).
pub async fn wait_for(
    rx: &mut tokio::sync::broadcast::Receiver<zello_gateway::gateway::GatewayEvent>,
    within: Duration,
    pred: impl Fn(&zello_gateway::gateway::GatewayEvent) -> bool,
) -> zello_gateway::gateway::GatewayEvent {
    tokio::time::timeout(within, async {
        loop {
            match rx.recv().await {
                Ok(e) if pred(&e) => return e,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("observer closed: {e}"),
            }
        }
    })
    .await
    .expect("event in time")
}

/// Waits until the gateway says its channel is online.
pub async fn channel_online(rx: &mut broadcast::Receiver<GatewayEvent>) {
    wait_for(rx, Duration::from_secs(5), |e| {
        matches!(e, GatewayEvent::ChannelStatus { online: true, .. })
    })
    .await;
}

/// Waits (up to 10 s) until `users` users are online on `CHANNEL` of `sim`.
pub async fn until_online(sim: &SimHandle, users: usize) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while sim.online_users(CHANNEL).len() < users {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{users} users online on {CHANNEL} within 10 s"));
}

/// Writes a gateway configuration for the emulator `sim` (the `[zello]` table of user
/// `gateway1`, then `radios`) as `gateway.toml` in `dir`, and loads it.
pub fn gateway_config(sim: &SimHandle, dir: &Path, radios: &str) -> Config {
    let path = dir.join("gateway.toml");
    std::fs::write(&path, super::cli::zello_section(&sim.url()) + radios).unwrap();
    Config::load(&path).unwrap()
}

/// Sends `pcm` (at the codec rate) from `client` as one message on `CHANNEL`, one 60 ms
/// packet every 60 ms of real time.
pub async fn talk_pcm(client: &Client, pcm: &[i16]) {
    let mut enc = OpusEncoder::new(&EncoderSettings::default()).unwrap();
    let msg = client.start_message().await;
    let mut tick = tokio::time::interval(Duration::from_millis(60));
    let mut buf = Vec::new();
    for chunk in pcm.chunks_exact(960) {
        tick.tick().await;
        enc.encode_packet(chunk, &mut buf).unwrap();
        msg.send(Bytes::copy_from_slice(&buf));
    }
    msg.finish().await;
}

/// A radio `name` on `CHANNEL` whose input is `seconds` of speech-like sound (made from
/// `seed`), heard while `carrier` is up and keyed by `ptt`; and the messages it plays.
pub fn speaking_radio(
    name: &str,
    seconds: f32,
    seed: u64,
    carrier: &FlagCarrier,
    ptt: &SimPtt,
) -> (RadioParts, MessagesHandle) {
    let out = MemoryOutput::new(CODEC_RATE);
    let played = out.messages();
    let parts = RadioParts::new(
        name,
        CHANNEL,
        Box::new(FileInput::from_samples(
            speech::speech_like(CODEC_RATE, seconds, seed),
            CODEC_RATE,
        )),
        Box::new(out),
        Box::new(carrier.clone()),
        Box::new(ptt.clone()),
    );
    (parts, played)
}

/// The whole gateway running as a task, until [`Gateway::stop`].
pub struct Gateway {
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), GatewayError>>,
}

impl Gateway {
    /// Starts the gateway with `radios` as `session`'s user, telling `observer` what
    /// happens.
    pub fn start(
        session: SessionConfig,
        radios: Vec<RadioParts>,
        observer: zello_gateway::state::StateHub,
    ) -> Gateway {
        Gateway::start_with(session, radios, observer, RunOptions::default())
    }

    /// [`Gateway::start`] with the radios and session `config` describes.
    pub fn from_config(config: &Config, observer: zello_gateway::state::StateHub) -> Gateway {
        let radios = zello_gateway::parts::build(config).unwrap();
        Gateway::start(config.session_config().unwrap(), radios, observer)
    }

    /// [`Gateway::start`] with `options`.
    pub fn start_with(
        session: SessionConfig,
        radios: Vec<RadioParts>,
        observer: zello_gateway::state::StateHub,
        options: RunOptions,
    ) -> Gateway {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(gateway::run_with(
            session,
            radios,
            shutdown.clone(),
            observer,
            options,
        ));
        Gateway { shutdown, task }
    }

    /// Stops the gateway and asserts it ended without an error.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }

    /// [`Gateway::stop`], failing unless it has stopped within `within`.
    pub async fn stop_within(self, within: Duration) {
        self.shutdown.cancel();
        tokio::time::timeout(within, self.task)
            .await
            .unwrap_or_else(|_| panic!("gateway stops within {within:?}"))
            .unwrap()
            .unwrap();
    }
}

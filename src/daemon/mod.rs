//! `zello-gateway run`: the gateway as a long-running service.
//!
//! Around [`gateway::run_with`] it adds what systemd's unit expects (see
//! `systemd/zello-gateway.service`):
//!
//! - `READY=1` once the gateway runs: the configuration loaded, every radio started or
//!   waiting for its hardware, the Zello session started, connected or not (a Pi that boots
//!   without network must still finish booting); then a `STATUS=` line with the connection,
//!   each channel and each radio, sent when it changes but at most once a second
//!   ([`Supervisor`], [`status::StatusBoard`]);
//! - the watchdog, run only when systemd asks for one (`WatchdogSec=`), fed while every
//!   radio's codec thread and the Zello session make progress;
//! - SIGHUP (`systemctl reload`): the configuration file is reread and checked, and what
//!   changed is logged ([`reload`]), between `RELOADING=1` and `READY=1`;
//! - SIGTERM and SIGINT: `STOPPING=1`, then the gateway stops (messages ended, PTT released,
//!   Zello left) within [`STOP_LIMIT`].
//!
//! Outside systemd (`$NOTIFY_SOCKET` unset) nothing is sent; the rest works the same.

pub mod reload;
pub mod status;

use crate::gateway::{self, GatewayError};
use crate::parts;
use crate::service::{Liveness, Notifier, NotifyError, Watchdog};
use crate::state::{GatewayState, StateHub};
use reload::Reloader;
use status::StatusBoard;
use std::future::Future;
use std::path::Path;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// How long the gateway may take to stop after SIGTERM: end the messages, release PTT, leave
/// Zello, stop the codec threads. Well inside the unit's `TimeoutStopSec=5`.
pub const STOP_LIMIT: Duration = Duration::from_secs(2);

/// The least time between two `STATUS=` messages: a chattering squelch must not flood
/// systemd.
pub const STATUS_GAP: Duration = Duration::from_secs(1);

/// The shortest `WatchdogSec=` the gateway can honour: the watchdog checks every half
/// interval, and the Zello session beats only every 10 s while idle.
pub const MIN_WATCHDOG: Duration = Duration::from_secs(25);

/// Why the gateway stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Parts(#[from] crate::parts::PartsError),
    #[error(transparent)]
    Notify(#[from] NotifyError),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error(transparent)]
    Mqtt(#[from] crate::mqtt::MqttError),
    #[error(
        "the gateway did not finish stopping within {0:?}; exiting anyway (systemd's ExecStopPost=zello-gateway ptt-off forces every PTT line off)"
    )]
    StopTimedOut(Duration),
    #[error("cannot install the signal handlers: {0}")]
    Signals(#[source] std::io::Error),
}

/// Runs the gateway on the configuration file at `config_path` until SIGTERM or SIGINT.
pub async fn run(config_path: &Path) -> Result<(), DaemonError> {
    let shutdown = CancellationToken::new();
    // Handlers first: SIGHUP's default action would end the process.
    let hup = signals(shutdown.clone()).map_err(DaemonError::Signals)?;
    stop_on_panic(shutdown.clone());

    let (config, running) = reload::load(config_path)?;
    for w in config
        .secret_file_warnings()
        .into_iter()
        .chain(config.shared_device_warnings())
    {
        warn!("{w}");
    }
    let mut session = config.session_config()?;
    session.refresh_token_file = refresh_token_file();
    // A radio whose hardware is not there yet waits for it; only settings errors stop here.
    let (radios, waiting) = parts::build_or_wait(&config)?;
    // The configuration started: these PTT lines are the ones `ptt-off` forces off should
    // the file become unreadable.
    if let Some(path) = parts::saved_ptt_lines_file()
        && let Err(e) = parts::save_ptt_lines(&running, &path)
    {
        warn!(file = %path.display(), error = %e, "cannot keep the PTT settings for ptt-off (the state directory is not writable?)");
    }
    let notifier = Notifier::from_env()?;
    let liveness = Liveness::new();
    let watchdog = notifier.as_ref().and_then(|n| {
        let interval = n.watchdog_interval()?;
        if interval < MIN_WATCHDOG {
            warn!(
                "systemd's WatchdogSec={}s is shorter than the gateway needs ({} s): an idle Zello session may be taken for a stuck one",
                interval.as_secs_f32(),
                MIN_WATCHDOG.as_secs()
            );
        }
        let watchdog = Watchdog::new(n.clone(), liveness.clone(), interval);
        info!(
            period_s = watchdog.period().as_secs_f32(),
            "feeding systemd's watchdog while every radio's codec thread and the Zello session make progress"
        );
        Some(tokio::spawn(watchdog.run(shutdown.clone())))
    });

    // The status and the alarms read the state, whose latest value no burst of events can
    // make them miss.
    let hub = StateHub::new(GatewayState::new(
        config
            .radios
            .iter()
            .map(|r| (r.name.clone(), r.channel.clone())),
    ));
    let controls = controls_for(&config);
    let meters = gateway::Meters::new();
    // Before the gateway starts, so the API and its metrics see every event.
    crate::api::service::spawn(
        &config,
        config.api_tokens()?,
        hub.clone(),
        meters.clone(),
        Some(controls.clone()),
        shutdown.clone(),
    )
    .await;
    let first_channel = config.radios.first().map(|r| r.channel.as_str());
    let (alarms_tx, alarms_rx) = tokio::sync::watch::channel(
        config
            .alarms
            .clone()
            .resolved(first_channel.unwrap_or_default()),
    );
    let supervisor = Supervisor::new(
        notifier,
        StatusBoard::for_config(&config),
        Reloader::new(config_path.to_path_buf(), running).with_alarms(alarms_tx),
    );
    let supervisor = tokio::spawn(supervisor.run(hub.watch(), hup, shutdown.clone()));
    // MQTT stops after the gateway, so the broker gets its last events, then `offline`.
    let mqtt_stop = CancellationToken::new();
    let mqtt = match config.mqtt_settings(&crate::config::hostname())? {
        Some(settings) => Some(crate::mqtt::start(
            &settings,
            hub.clone(),
            crate::mqtt::codecs(&config),
            mqtt_stop.clone(),
        )?),
        None => None,
    };
    let gateway = gateway::run_with(
        session,
        radios,
        shutdown.clone(),
        hub,
        gateway::RunOptions {
            liveness: liveness.clone(),
            on_session: Some(crate::alarms::on_session(alarms_rx)),
            waiting,
            controls: Some(controls),
            meters,
            ..Default::default()
        },
    );
    let result = stop_bounded(gateway, &shutdown, STOP_LIMIT).await;
    // Ends the supervisor (STOPPING=1) and the watchdog also when the gateway failed.
    shutdown.cancel();
    mqtt_stop.cancel();
    if let Some(mqtt) = mqtt {
        mqtt.stopped().await;
    }
    let _ = tokio::time::timeout(Duration::from_millis(200), supervisor).await;
    if let Some(w) = watchdog {
        let _ = tokio::time::timeout(Duration::from_millis(200), w).await;
    }
    result
}

/// The operator's controls over the configured radios, with the TX inhibits kept in the
/// state directory (`tx-inhibit.toml`) read back; none kept when run by hand. A damaged
/// file inhibits every radio, with an error line that says how to go on.
pub fn controls_for(config: &crate::config::Config) -> gateway::Controls {
    let radios = config.radios.iter().map(|r| r.name.clone());
    let Some(path) = gateway::control::inhibit_file() else {
        return gateway::Controls::new(radios);
    };
    let now_ms = crate::state::unix_ms(std::time::SystemTime::now());
    let (controls, error) = gateway::Controls::load(radios, path, now_ms);
    if let Some(e) = error {
        error!(event = "tx_inhibit_file_damaged", error = %e,
            "every radio starts with its transmitting inhibited: check the radios, then allow each through the status API (the file is rewritten then)");
    }
    controls
}

/// `$STATE_DIRECTORY/refresh-token`: under systemd (`StateDirectory=zello-gateway`) the
/// refresh token survives a restart there. The first folder when several are given.
fn refresh_token_file() -> Option<std::path::PathBuf> {
    crate::service::state_file("refresh-token")
}

/// Runs `gateway` until it ends by itself (an error while starting) or `shutdown` is
/// cancelled; then gives it `limit` to finish stopping.
pub async fn stop_bounded<F>(
    gateway: F,
    shutdown: &CancellationToken,
    limit: Duration,
) -> Result<(), DaemonError>
where
    F: Future<Output = Result<(), GatewayError>>,
{
    tokio::pin!(gateway);
    tokio::select! {
        result = &mut gateway => return result.map_err(DaemonError::from),
        _ = shutdown.cancelled() => {}
    }
    match tokio::time::timeout(limit, gateway).await {
        Ok(result) => result.map_err(DaemonError::from),
        Err(_) => Err(DaemonError::StopTimedOut(limit)),
    }
}

/// Cancels `shutdown` on SIGTERM or SIGINT; returns the SIGHUPs.
fn signals(shutdown: CancellationToken) -> std::io::Result<mpsc::Receiver<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => {
                    // Several SIGHUPs while one reload is pending make one more reload.
                    let _ = tx.try_send(());
                }
            }
        }
        info!("stopping");
        shutdown.cancel();
    });
    Ok(rx)
}

/// On a panic anywhere: log it and stop the gateway, so every bridge unkeys on its way out.
fn stop_on_panic(token: CancellationToken) {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(panic = %info, "internal error: stopping, transmitters released");
        token.cancel();
        default(info);
    }));
}

/// Tells systemd how the gateway is doing: `READY=1` once it runs, `STATUS=` on changes,
/// `RELOADING=1` / `READY=1` around a reload, `STOPPING=1` at the end. Without a notifier
/// (not under systemd) it still reloads and logs.
pub struct Supervisor {
    notifier: Option<Notifier>,
    board: StatusBoard,
    reloader: Reloader,
    ready_sent: bool,
    /// Whether "bridging" was logged: logged on, every channel online, every radio up.
    bridging_logged: bool,
    last_status: Option<String>,
    next_status: Instant,
    status_due: bool,
    send_failed: bool,
}

impl Supervisor {
    pub fn new(notifier: Option<Notifier>, board: StatusBoard, reloader: Reloader) -> Self {
        Supervisor {
            notifier,
            board,
            reloader,
            ready_sent: false,
            bridging_logged: false,
            last_status: None,
            next_status: Instant::now(),
            status_due: false,
            send_failed: false,
        }
    }

    /// Follows the gateway's `state` and the `reloads` (SIGHUP) until `shutdown`. However
    /// many changes come at once, the status shows the latest state.
    pub async fn run(
        mut self,
        mut state: watch::Receiver<GatewayState>,
        mut reloads: mpsc::Receiver<()>,
        shutdown: CancellationToken,
    ) {
        let mut state_open = true;
        let mut reloads_open = true;
        self.board.show(&state.borrow_and_update());
        self.changed();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = state.changed(), if state_open => match changed {
                    Ok(()) => {
                        self.board.show(&state.borrow_and_update());
                        self.changed();
                    }
                    Err(_) => state_open = false,
                },
                reload = reloads.recv(), if reloads_open => match reload {
                    Some(()) => self.reload(),
                    None => reloads_open = false,
                },
                _ = sleep_until(self.next_status), if self.status_due => self.send_status(),
            }
        }
        self.notify("STOPPING=1\nSTATUS=stopping");
    }

    /// The board changed: `READY=1` the first time it is ready, else a status update.
    fn changed(&mut self) {
        if !self.bridging_logged && self.board.bridging() {
            self.bridging_logged = true;
            info!(status = %self.board.text(), "ready: every radio bridged to its channel");
        }
        if !self.ready_sent && self.board.ready() {
            self.ready_sent = true;
            info!(status = %self.board.text(), "started: the Zello connection and each radio follow in the status");
            self.notify("READY=1");
            self.send_status();
            return;
        }
        if self.last_status.as_deref() != Some(self.board.text().as_str()) {
            self.status_due = true;
            if Instant::now() >= self.next_status {
                self.send_status();
            }
        }
    }

    /// Sends the status line if it differs from the last one sent.
    fn send_status(&mut self) {
        self.status_due = false;
        let text = self.board.text();
        if self.last_status.as_deref() == Some(text.as_str()) {
            return;
        }
        self.notify(&format!("STATUS={}", text.replace(['\r', '\n'], " ")));
        self.last_status = Some(text);
        self.next_status = Instant::now() + STATUS_GAP;
    }

    /// SIGHUP: reread the configuration. Under systemd and once ready, between
    /// `RELOADING=1` and `READY=1` (before that, READY=1 still waits for the gateway).
    fn reload(&mut self) {
        let around = self.ready_sent && self.notifier.is_some();
        if around && let Some(r) = self.notifier.as_ref().map(Notifier::reloading) {
            self.result(r);
        }
        self.reloader.reload_and_apply();
        if around {
            self.notify("READY=1");
        }
    }

    fn notify(&mut self, message: &str) {
        if let Some(n) = &self.notifier {
            let r = n.send(message);
            self.result(r);
        }
    }

    /// Logs the first of a run of failed sends.
    fn result(&mut self, r: Result<(), NotifyError>) {
        match r {
            Ok(()) => self.send_failed = false,
            Err(e) if !self.send_failed => {
                warn!(error = %e, "cannot tell systemd");
                self.send_failed = true;
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests;

//! The MQTT client: two tasks around rumqttc.
//!
//! - The **publisher** reads the [`StateHub`] (its event stream and its state) and hands the
//!   [`Outbox`]'s messages to rumqttc's bounded request queue with `try_publish`: it never
//!   waits for the broker, so a broker that is slow, gone or stalled costs the gateway
//!   nothing but the messages it drops (counted).
//! - The **connection** task drives rumqttc's event loop: it connects, reconnects with the
//!   project's [`Backoff`] after a failure, and tells the publisher of each new connection
//!   (then `online` and every state are published again). An outage gives one log line when
//!   it starts and one when the broker is back.
//!
//! On a clean stop the last states and `offline` go out, then a DISCONNECT (a broker drops
//! the last will on a clean DISCONNECT, so `offline` is published first); when the process
//! dies instead, the broker publishes the last will, `offline`.

use super::outbox::{Message, Outbox, Queue};
use super::topics::{OFFLINE, Topics};
use crate::api::protocol::Codec;
use crate::config::MqttSettings;
use crate::net::Backoff;
use crate::net::tls::TlsError;
use crate::state::StateHub;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, LastWill, MqttOptions,
    NetworkOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// How many messages rumqttc's request queue holds while the broker is slow or away; past
/// that, events are dropped (and counted) and states wait.
pub const QUEUE: usize = 256;

/// How often the client pings an otherwise quiet broker; a broker that stops answering is
/// taken for gone within two of these.
pub const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// How long a connection attempt (TCP, TLS, CONNECT and its CONNACK) or a write may take:
/// a broker that accepts and never answers is given up after this.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The first wait before reconnecting; it doubles after each failure up to
/// [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);

/// The longest wait between two connection attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// How long the last states and `offline` may take to go out once the gateway has stopped.
pub const STOP_GRACE: Duration = Duration::from_secs(1);

/// The largest message the gateway sends (a state, or an event with a long text).
const MAX_OUTGOING: usize = 256 * 1024;

/// The largest message accepted from the broker (the gateway subscribes to nothing).
const MAX_INCOMING: usize = 16 * 1024;

/// The MQTT client could not be set up: fix the `[mqtt]` section.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// The certificates of `mqtt.ca_file` cannot be used.
    #[error("mqtt.{0}")]
    Tls(#[from] TlsError),
}

/// What the client has done so far, for the status API and the metrics.
#[derive(Debug, Default)]
pub struct MqttStats {
    connected: AtomicBool,
    connections: AtomicU64,
    events: AtomicU64,
    dropped: AtomicU64,
    /// Dropped since the connection was last made (said in the line when it is back).
    dropped_in_outage: AtomicU64,
}

impl MqttStats {
    /// Whether the client is connected to the broker now.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// How many connections were made (the first, then one after each outage).
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Events handed to the client's queue (one per topic).
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Events dropped: the queue was full (the broker slow or away), or the publisher fell
    /// behind the gateway.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn add_dropped(&self, n: u64) {
        if n > 0 {
            self.dropped.fetch_add(n, Ordering::Relaxed);
            self.dropped_in_outage.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// The running client: its task and its figures.
pub struct Mqtt {
    task: JoinHandle<()>,
    stats: Arc<MqttStats>,
}

impl Mqtt {
    /// What the client has done so far.
    pub fn stats(&self) -> Arc<MqttStats> {
        self.stats.clone()
    }

    /// Waits for the client to finish after its stop token was cancelled: at most
    /// [`STOP_GRACE`] and a little, whatever the broker does.
    pub async fn stopped(self) {
        let mut task = self.task;
        if tokio::time::timeout(STOP_GRACE + Duration::from_millis(200), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

/// rumqttc's options for `settings`: the broker, client id and credentials, TLS through the
/// project's rustls set-up (web PKI roots and `ca_file`), a clean session, and `offline` as
/// the last will on `topics`' status topic.
pub fn options(settings: &MqttSettings, topics: &Topics) -> Result<MqttOptions, MqttError> {
    let broker = &settings.broker;
    let mut options = MqttOptions::new(&settings.client_id, &broker.host, broker.port);
    options
        .set_keep_alive(KEEP_ALIVE)
        .set_clean_session(true)
        .set_max_packet_size(MAX_INCOMING, MAX_OUTGOING)
        .set_last_will(LastWill::new(
            topics.status(),
            OFFLINE,
            QoS::AtLeastOnce,
            true,
        ));
    if let Some(user) = &settings.username {
        let password = settings.password.as_ref().map_or("", |p| p.expose());
        options.set_credentials(user, password);
    }
    if broker.tls {
        let config = crate::net::tls::client_config(settings.ca_file.as_deref())?;
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(config),
        )));
    }
    Ok(options)
}

/// Starts the client for `settings`, publishing what `hub` tells; `codecs` are the radios'
/// codecs to the channel (for `MESSAGE_START`). It subscribes to the hub before returning,
/// so nothing published after this call is missed. Cancel `stop` once the gateway has
/// stopped, then await [`Mqtt::stopped`]: the last states and `offline` go out.
pub fn start(
    settings: &MqttSettings,
    hub: StateHub,
    codecs: Vec<(String, Codec)>,
    stop: CancellationToken,
) -> Result<Mqtt, MqttError> {
    let topics = Topics::new(settings.topic_prefix.clone());
    let options = options(settings, &topics)?;
    let (client, mut eventloop) = AsyncClient::new(options, QUEUE);
    let mut network = NetworkOptions::new();
    network.set_connection_timeout(CONNECT_TIMEOUT.as_secs());
    eventloop.set_network_options(network);
    let events = hub.subscribe_stamped();
    let state = hub.watch();
    let outbox = Outbox::new(topics, hub.snapshot(), codecs, Instant::now());
    let stats = Arc::new(MqttStats::default());
    let (up_tx, up_rx) = watch::channel(Link::default());
    let connection = tokio::spawn(drive(
        eventloop,
        up_tx,
        stop.clone(),
        settings.broker.to_string(),
        stats.clone(),
    ));
    let publisher = Publisher {
        client,
        hub,
        events,
        state,
        up: up_rx,
        outbox,
        stats: stats.clone(),
    };
    let task = tokio::spawn(publisher.run(stop, connection));
    Ok(Mqtt { task, stats })
}

/// rumqttc's request queue, as the outbox sees it.
struct ClientQueue<'a>(&'a AsyncClient);

impl Queue for ClientQueue<'_> {
    fn offer(&mut self, m: Message) -> bool {
        self.0
            .try_publish(m.topic, QoS::AtLeastOnce, m.retain, m.payload)
            .is_ok()
    }
}

struct Publisher {
    client: AsyncClient,
    hub: StateHub,
    events: broadcast::Receiver<crate::state::Stamped>,
    state: watch::Receiver<crate::state::GatewayState>,
    up: watch::Receiver<Link>,
    outbox: Outbox,
    stats: Arc<MqttStats>,
}

impl Publisher {
    async fn run(mut self, stop: CancellationToken, connection: JoinHandle<()>) {
        let (mut events_open, mut state_open, mut up_open) = (true, true, true);
        let mut connections = 0;
        loop {
            let due = self.outbox.next_due();
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                changed = self.up.changed(), if up_open => match changed {
                    Ok(()) => {
                        let link = *self.up.borrow_and_update();
                        if link.up && link.connections != connections {
                            connections = link.connections;
                            self.outbox.connected(Instant::now());
                        } else if !link.up {
                            self.outbox.disconnected();
                        }
                    }
                    Err(_) => up_open = false,
                },
                event = self.events.recv(), if events_open => match event {
                    Ok(stamped) => self.event(&stamped),
                    Err(broadcast::error::RecvError::Lagged(missed)) => self.lagged(missed),
                    Err(broadcast::error::RecvError::Closed) => events_open = false,
                },
                changed = self.state.changed(), if state_open => match changed {
                    // Copied at once: the gateway waits on this lock to publish.
                    Ok(()) => {
                        let state = self.state.borrow_and_update().clone();
                        self.outbox.state(state);
                    }
                    Err(_) => state_open = false,
                },
                _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {}
            }
            self.outbox
                .flush(Instant::now(), &mut ClientQueue(&self.client));
        }
        // The gateway has stopped: what it told on its way out, the last states, `offline`.
        loop {
            match self.events.try_recv() {
                Ok(stamped) => self.event(&stamped),
                Err(broadcast::error::TryRecvError::Lagged(missed)) => self.lagged(missed),
                Err(_) => break,
            }
        }
        let state = self.state.borrow().clone();
        self.outbox.state(state);
        let all = self
            .outbox
            .finish(Instant::now(), &mut ClientQueue(&self.client));
        if !all {
            debug!("MQTT: the broker's queue is full; the last states or offline are not sent");
        }
        let _ = self.client.try_disconnect();
        let mut connection = connection;
        if tokio::time::timeout(STOP_GRACE, &mut connection)
            .await
            .is_err()
        {
            connection.abort();
        }
    }

    fn event(&mut self, stamped: &crate::state::Stamped) {
        let before = self.outbox.counts().events;
        let dropped = self.outbox.event(stamped, &mut ClientQueue(&self.client));
        let sent = self.outbox.counts().events - before;
        self.stats.events.fetch_add(sent, Ordering::Relaxed);
        self.stats.add_dropped(dropped);
    }

    fn lagged(&mut self, missed: u64) {
        debug!(
            missed,
            "MQTT publisher fell behind the gateway; publishing every state again"
        );
        self.stats.add_dropped(missed);
        self.outbox.lagged(missed, self.hub.snapshot());
    }
}

/// The connection as the publisher follows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Link {
    /// Connections made so far: a new one means a new session.
    connections: u64,
    /// Connected now.
    up: bool,
}

/// Drives rumqttc's event loop until a clean DISCONNECT went out, the connection fails after
/// `stop`, or `stop` comes while not connected. `link` follows the connection.
async fn drive(
    mut eventloop: EventLoop,
    link: watch::Sender<Link>,
    stop: CancellationToken,
    broker: String,
    stats: Arc<MqttStats>,
) {
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    // Since when the broker is away, during an outage.
    let mut outage: Option<Instant> = None;
    loop {
        // While connected, the loop runs on after `stop` to send the last messages and the
        // DISCONNECT; connecting is given up at once.
        let polled = if eventloop.network.is_some() {
            eventloop.poll().await
        } else {
            tokio::select! {
                polled = eventloop.poll() => polled,
                _ = stop.cancelled() => return,
            }
        };
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff.reset();
                stats.connected.store(true, Ordering::Relaxed);
                stats.connections.fetch_add(1, Ordering::Relaxed);
                let dropped = stats.dropped_in_outage.swap(0, Ordering::Relaxed);
                match outage.take() {
                    Some(since) => info!(
                        broker = %broker,
                        away_s = since.elapsed().as_secs(),
                        dropped,
                        "MQTT broker back: online and every state published again"
                    ),
                    None => info!(broker = %broker, "MQTT connected: publishing events and state"),
                }
                link.send_modify(|l| {
                    l.connections += 1;
                    l.up = true;
                });
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                stats.connected.store(false, Ordering::Relaxed);
                return;
            }
            Ok(_) => {}
            Err(e) => {
                stats.connected.store(false, Ordering::Relaxed);
                link.send_if_modified(|l| std::mem::replace(&mut l.up, false));
                if stop.is_cancelled() {
                    return;
                }
                if outage.is_none() {
                    outage = Some(Instant::now());
                    warn!(
                        broker = %broker,
                        error = %e,
                        "MQTT broker unreachable: {}; retrying with backoff, events meanwhile dropped (audio, PTT and Zello carry on)",
                        advice(&e)
                    );
                } else {
                    debug!(broker = %broker, error = %e, "MQTT broker still unreachable");
                }
                let delay = backoff.next_delay(fastrand::f64());
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.cancelled() => return,
                }
            }
        }
    }
}

/// What to do about a connection error, in words.
fn advice(e: &ConnectionError) -> &'static str {
    match e {
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized,
        ) => {
            "the broker refused the user name or password: check mqtt.username and mqtt.password_file"
        }
        ConnectionError::ConnectionRefused(ConnectReturnCode::BadClientId) => {
            "the broker refused the client id: set another mqtt.client_id"
        }
        ConnectionError::ConnectionRefused(_) => "the broker refused the connection",
        ConnectionError::Tls(_) => {
            "the TLS handshake failed: check the broker's certificate and host name, or mqtt.ca_file for a private CA"
        }
        ConnectionError::NetworkTimeout | ConnectionError::FlushTimeout => {
            "the broker does not answer"
        }
        _ => "the broker cannot be reached or closed the connection",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Broker;

    fn settings(tls: bool) -> MqttSettings {
        MqttSettings {
            broker: Broker {
                host: "broker.example.net".into(),
                port: 8883,
                tls,
            },
            client_id: "gw-1".into(),
            username: Some("gw".into()),
            password: Some(crate::secret::Secret::new("pw")),
            topic_prefix: "fleet/gw-1".into(),
            ca_file: None,
        }
    }

    #[test]
    fn options_carry_the_will_the_credentials_and_tls() {
        let topics = Topics::new("fleet/gw-1");
        let o = options(&settings(true), &topics).unwrap();
        assert_eq!(o.client_id(), "gw-1");
        assert_eq!(o.broker_address(), ("broker.example.net".to_string(), 8883));
        assert!(o.clean_session());
        assert_eq!(o.keep_alive(), KEEP_ALIVE);
        let will = o.last_will().unwrap();
        assert_eq!(will.topic, "fleet/gw-1/status");
        assert_eq!(&will.message[..], b"offline");
        assert!(will.retain);
        let login = o.credentials().unwrap();
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("gw", "pw")
        );
        assert!(matches!(o.transport(), Transport::Tls(_)));
        let o = options(&settings(false), &topics).unwrap();
        assert!(matches!(o.transport(), Transport::Tcp));
        let mut s = settings(true);
        s.ca_file = Some("/nonexistent/ca.pem".into());
        let e = options(&s, &topics).err().unwrap().to_string();
        assert!(e.starts_with("mqtt.ca_file /nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn advice_names_what_to_fix() {
        let refused = ConnectionError::ConnectionRefused(ConnectReturnCode::BadUserNamePassword);
        assert!(advice(&refused).contains("mqtt.password_file"));
        assert!(advice(&ConnectionError::NetworkTimeout).contains("does not answer"));
    }
}

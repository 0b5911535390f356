//! `[mqtt]` against a real broker: Debian's `mosquitto`, started by each test on a loopback
//! port with a generated configuration. `zello-gateway run` bridges a radio (a WAV file and
//! a carrier schedule) to the Zello emulator's echo user, so messages go both ways, and a
//! subscriber in the test reads what reaches the broker: `online` and the last will, the
//! retained states, the events of each message in order. A broker that refuses the
//! password, goes away (killed, then started again on the same port) or stalls (accepts and
//! never answers) never disturbs the messages.
//!
//! Without `mosquitto` the tests say so and pass, unless `CI` is set: there it must be
//! installed (`scripts/deps.sh`).

mod common;

use common::cli::{Lines, Scratch, bin, silent_wav, start_sim_with, terminate, wait_exit};
use common::{Reaped, free_port};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A program of the `mosquitto` package, searched on `PATH` and in the sbin folders (the
/// broker is in /usr/sbin, which a user's `PATH` may lack).
fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Whether this is a CI run (`CI` set to anything but empty or `false`).
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A program of the `mosquitto` package, or `None` (the test is skipped, said on stderr)
/// when it is not installed outside CI. In CI a missing program fails the test.
fn tool(name: &str) -> Option<PathBuf> {
    let found = program(name);
    if found.is_none() {
        assert!(
            !in_ci(),
            "{name} is not installed, and CI must run the MQTT tests: install it with scripts/deps.sh (apt-get install mosquitto)"
        );
        eprintln!(
            "skipped: {name} is not installed (apt-get install mosquitto, or scripts/deps.sh)"
        );
    }
    found
}

/// The broker (see [`tool`]).
fn mosquitto() -> Option<PathBuf> {
    tool("mosquitto")
}

/// A `mosquitto` on a loopback port, killed when dropped.
struct Broker {
    program: PathBuf,
    port: u16,
    dir: Scratch,
    child: Option<Reaped>,
}

impl Broker {
    /// A broker on a free port; with `user`, only that user (name, password) may connect.
    fn start(name: &str, user: Option<(&str, &str)>) -> Option<Broker> {
        let program = mosquitto()?;
        let dir = Scratch::new(&format!("mqtt-{name}"));
        let mut conf = String::new();
        // Run as root (a CI container), mosquitto would switch to its own user and could
        // not read the password file in this folder.
        if is_root() {
            conf.push_str("user root\n");
        }
        let port = free_port();
        conf.push_str(&format!(
            "listener {port} 127.0.0.1\npersistence false\nlog_type error\nlog_type warning\n"
        ));
        match user {
            None => conf.push_str("allow_anonymous true\n"),
            Some((user, password)) => {
                let file = dir.join("passwords");
                let made = Command::new(tool("mosquitto_passwd")?)
                    .args(["-b", "-c"])
                    .arg(&file)
                    .args([user, password])
                    .status()
                    .expect("mosquitto_passwd runs");
                assert!(made.success(), "mosquitto_passwd failed");
                conf.push_str(&format!(
                    "allow_anonymous false\npassword_file {}\n",
                    file.display()
                ));
            }
        }
        std::fs::write(dir.join("mosquitto.conf"), conf).unwrap();
        let mut broker = Broker {
            program,
            port,
            dir,
            child: None,
        };
        broker.run();
        Some(broker)
    }

    /// Starts the broker (again) on its port and waits until it listens.
    fn run(&mut self) {
        let child = Command::new(&self.program)
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto starts");
        self.child = Some(Reaped(child));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the broker (SIGKILL): it disappears without a word.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A message the subscriber received.
#[derive(Debug, Clone)]
struct Msg {
    topic: String,
    payload: String,
    /// Delivered as a retained message (to a subscription made after it was published).
    retain: bool,
}

impl Msg {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.payload)
            .unwrap_or_else(|e| panic!("{}: {e}: {}", self.topic, self.payload))
    }
}

/// A subscriber to `FILTER` on the broker, on a thread; it subscribes again after each
/// reconnection (a restarted broker keeps nothing). Made once its first subscription holds.
struct Watcher {
    rx: mpsc::Receiver<Msg>,
    seen: Vec<Msg>,
    stop: Arc<AtomicBool>,
}

impl Watcher {
    fn new(port: u16, filter: &str, user: Option<(&str, &str)>) -> Watcher {
        let id = format!("watcher-{}-{}", std::process::id(), fastrand::u32(..));
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(5));
        options.set_max_packet_size(1 << 20, 1 << 20);
        if let Some((u, p)) = user {
            options.set_credentials(u, p);
        }
        let (client, mut connection) = Client::new(options, 16);
        let (tx, rx) = mpsc::channel();
        let (subscribed_tx, subscribed) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let filter = filter.to_string();
        std::thread::spawn(move || {
            for event in connection.iter() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = client.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let msg = Msg {
                            topic: p.topic.clone(),
                            payload: String::from_utf8_lossy(&p.payload).into_owned(),
                            retain: p.retain,
                        };
                        if tx.send(msg).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    // The broker is away: try again a little later.
                    Err(_) => std::thread::sleep(Duration::from_millis(200)),
                }
            }
        });
        subscribed
            .recv_timeout(Duration::from_secs(10))
            .expect("the subscriber subscribes");
        Watcher {
            rx,
            seen: Vec::new(),
            stop,
        }
    }

    /// Waits up to `within` for a message for which `pred` holds, and returns it.
    fn wait_for(&mut self, within: Duration, what: &str, pred: impl Fn(&Msg) -> bool) -> Msg {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(msg) => {
                    self.seen.push(msg.clone());
                    if pred(&msg) {
                        return msg;
                    }
                }
                Err(_) => panic!("no {what} within {within:?}; got {:#?}", self.seen),
            }
        }
    }

    /// Waits for the message on `topic` with `payload`.
    fn wait_payload(&mut self, topic: &str, payload: &str) -> Msg {
        self.wait_for(
            Duration::from_secs(20),
            &format!("{payload} on {topic}"),
            |m| m.topic == topic && m.payload == payload,
        )
    }

    /// Waits for the event `kind` on `topic`.
    fn wait_event(&mut self, topic: &str, kind: &str) -> Msg {
        self.wait_for(
            Duration::from_secs(20),
            &format!("{kind} on {topic}"),
            |m| m.topic == topic && m.json()["type"] == kind,
        )
    }

    /// Everything received on `topic` so far.
    fn on(&mut self, topic: &str) -> Vec<Msg> {
        self.seen.extend(self.rx.try_iter());
        self.seen
            .iter()
            .filter(|m| m.topic == topic)
            .cloned()
            .collect()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A radio message every 4 s for a minute: 1 s of carrier, which the echo user plays back.
fn every_4s() -> String {
    let spans: Vec<String> = (0..15)
        .map(|i| format!("[{}, {}]", 1 + 4 * i, 2 + 4 * i))
        .collect();
    format!("[{}]", spans.join(", "))
}

/// `zello-gateway run` for the emulator on `sim_port`, its radio `vhf1` on channel `Local`
/// with the carrier up during `spans`, and `[mqtt]` `mqtt` (without the section header).
/// The status API is off (tests run side by side).
fn gateway(dir: &Path, sim_port: u16, spans: &str, mqtt: &str) -> (Reaped, Lines) {
    silent_wav(&dir.join("rx.wav"), 1000);
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            "[zello]\nserver = \"ws://127.0.0.1:{sim_port}/ws\"\nusername = \"gateway1\"\npassword = \"pw\"\n\n\
             [api]\nenabled = false\n\n\
             [mqtt]\n{mqtt}\n\n\
             [[radio]]\nname = \"vhf1\"\nchannel = \"Local\"\n\
             audio = {{ backend = \"file\", input = \"rx.wav\", output = \"tx.wav\" }}\n\
             carrier = {{ type = \"schedule\", on = {spans} }}\n"
        ),
    )
    .unwrap();
    let mut child = Reaped(
        bin()
            .args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .env_remove("INVOCATION_ID")
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = Lines::of(&mut child);
    (child, lines)
}

/// Waits up to `within` for a log line with `needle` that was not seen before this call.
fn wait_line(lines: &mut Lines, needle: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let Some(line) = lines.drain().into_iter().find(|l| l.contains(needle)) {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no line with {needle:?} within {within:?}; got {:#?}",
            lines.seen
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How many lines so far contain `needle`.
fn count(lines: &mut Lines, needle: &str) -> usize {
    lines.drain();
    lines.seen.iter().filter(|l| l.contains(needle)).count()
}

/// One message each way: the radio's went out, the echo user's was played on the air.
fn a_message_each_way(lines: &mut Lines) {
    wait_line(
        lines,
        "radio -> zello: message sent",
        Duration::from_secs(20),
    );
    wait_line(
        lines,
        "zello -> radio: message played",
        Duration::from_secs(20),
    );
}

#[test]
fn events_in_order_retained_states_and_the_last_will_on_kill() {
    let Some(broker) = Broker::start("kill", None) else {
        return;
    };
    let prefix = "zg-test/kill";
    let mut watcher = Watcher::new(broker.port, &format!("{prefix}/#"), None);
    let (_sim, sim_port) = start_sim_with(&["--echo"]);
    let dir = Scratch::new("mqtt-kill-gw");
    let (mut gw, mut lines) = gateway(
        &dir,
        sim_port,
        "[[1.0, 2.5]]",
        &format!(
            "url = \"{}\"\nclient_id = \"zg-test-kill\"\ntopic_prefix = \"{prefix}\"",
            broker.url()
        ),
    );
    watcher.wait_payload(&format!("{prefix}/status"), "online");
    wait_line(&mut lines, "MQTT connected", Duration::from_secs(10));

    // One message each way, on the radio's event topic in the order.
    let radio = format!("{prefix}/radio/vhf1/event");
    watcher.wait_event(&radio, "PTT_OFF");
    let events: Vec<serde_json::Value> = watcher.on(&radio).iter().map(Msg::json).collect();
    let kinds: Vec<String> = events
        .iter()
        .map(|e| {
            let kind = e["type"].as_str().unwrap().to_string();
            match e["data"]["direction"].as_str() {
                Some(d) => format!("{kind} {d}"),
                None => kind,
            }
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "CARRIER_UP",
            "MESSAGE_START to_channel",
            "CARRIER_DOWN",
            "MESSAGE_STOP to_channel",
            "MESSAGE_START from_channel",
            "PTT_ON",
            "MESSAGE_STOP from_channel",
            "PTT_OFF",
        ],
        "{events:#?}"
    );
    // The WebSocket's envelope: room, increasing seq, time, data with the radio.
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    for e in &events {
        assert_eq!(e["room"], "radio:vhf1", "{e}");
        assert_eq!(e["data"]["radio"], "vhf1", "{e}");
        assert!(e["ts"].as_str().unwrap().ends_with('Z'), "{e}");
    }
    let sent = &events[3]["data"];
    assert_eq!(sent["outcome"], "completed", "{sent}");
    assert!(sent["packets"].as_u64().unwrap() > 0, "{sent}");
    assert_eq!(events[4]["data"]["from"], "echo");
    assert!(events[7]["data"]["keyed_ms"].as_u64().unwrap() > 0);
    // Mirrored on the channel's topic, the same messages.
    let channel: Vec<serde_json::Value> = watcher
        .on(&format!("{prefix}/channel/Local/event"))
        .iter()
        .map(Msg::json)
        .collect();
    let mirrored: Vec<(&str, u64)> = channel
        .iter()
        .filter(|e| e["type"].as_str().unwrap().starts_with("MESSAGE_"))
        .map(|e| (e["type"].as_str().unwrap(), e["seq"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        mirrored,
        [
            ("MESSAGE_START", seqs[1]),
            ("MESSAGE_STOP", seqs[3]),
            ("MESSAGE_START", seqs[4]),
            ("MESSAGE_STOP", seqs[6]),
        ]
    );
    assert!(channel.iter().all(|e| e["room"] == "channel:Local"));
    // The gateway's own room: logged on.
    let gateway: Vec<serde_json::Value> = watcher
        .on(&format!("{prefix}/gateway/event"))
        .iter()
        .map(Msg::json)
        .collect();
    assert_eq!(gateway[0]["type"], "LOGGED_ON", "{gateway:#?}");
    assert_eq!(gateway[0]["room"], "gateway");

    // A subscriber that comes later gets the retained status and states, as they are now
    // (the state follows within a quarter second).
    std::thread::sleep(Duration::from_millis(500));
    let mut late = Watcher::new(broker.port, &format!("{prefix}/#"), None);
    let status = late.wait_payload(&format!("{prefix}/status"), "online");
    assert!(status.retain);
    let state = |late: &mut Watcher, topic: &str| {
        let topic = format!("{prefix}/{topic}");
        let m = late.wait_for(Duration::from_secs(10), &topic, |m| m.topic == topic);
        assert!(m.retain, "{m:?}");
        m.json()
    };
    let g = state(&mut late, "gateway/state");
    assert_eq!(g["type"], "SNAPSHOT");
    assert_eq!(g["room"], "gateway");
    assert_eq!(g["data"]["link"]["state"], "logged_on", "{g}");
    let r = state(&mut late, "radio/vhf1/state");
    assert_eq!(r["room"], "radio:vhf1");
    assert_eq!(r["data"]["radio"], "vhf1");
    assert_eq!(r["data"]["ptt"], false, "{r}");
    assert_eq!(r["data"]["carrier"], false, "{r}");
    assert!(r["data"]["last_sent"].is_object(), "{r}");
    assert_eq!(r["data"]["last_played"]["peer"], "echo", "{r}");
    let c = state(&mut late, "channel/Local/state");
    assert_eq!(c["data"]["channel"], "Local");
    assert_eq!(c["data"]["online"], true, "{c}");
    // No levels room on MQTT.
    assert!(late.seen.iter().all(|m| !m.topic.contains("levels")));

    // Killed without a word: the broker publishes the last will.
    gw.kill().unwrap();
    gw.wait().unwrap();
    watcher.wait_payload(&format!("{prefix}/status"), "offline");
    let mut after = Watcher::new(broker.port, &format!("{prefix}/status"), None);
    let will = after.wait_payload(&format!("{prefix}/status"), "offline");
    assert!(will.retain);
    assert_eq!(
        count(&mut lines, "MQTT broker unreachable"),
        0,
        "{:#?}",
        lines.seen
    );
}

#[test]
fn the_broker_goes_away_and_comes_back_while_messages_flow() {
    let Some(mut broker) = Broker::start("outage", None) else {
        return;
    };
    let prefix = "zg-test/outage";
    let mut watcher = Watcher::new(broker.port, &format!("{prefix}/#"), None);
    let (_sim, sim_port) = start_sim_with(&["--echo"]);
    let dir = Scratch::new("mqtt-outage-gw");
    let (mut gw, mut lines) = gateway(
        &dir,
        sim_port,
        &every_4s(),
        &format!(
            "url = \"{}\"\nclient_id = \"zg-test-outage\"\ntopic_prefix = \"{prefix}\"",
            broker.url()
        ),
    );
    let radio = format!("{prefix}/radio/vhf1/event");
    watcher.wait_payload(&format!("{prefix}/status"), "online");
    watcher.wait_event(&radio, "PTT_OFF");

    // The broker dies: one line says so, and the messages go on both ways.
    broker.kill();
    let down = wait_line(
        &mut lines,
        "MQTT broker unreachable",
        Duration::from_secs(10),
    );
    assert!(down.contains("audio, PTT and Zello carry on"), "{down}");
    a_message_each_way(&mut lines);
    a_message_each_way(&mut lines);

    // Back on the same port: the gateway reconnects, says so once, and publishes online and
    // every state again (this broker kept nothing), then the events of the next messages.
    broker.run();
    let back = wait_line(&mut lines, "MQTT broker back", Duration::from_secs(40));
    assert!(back.contains("dropped="), "{back}");
    let status = format!("{prefix}/status");
    watcher.wait_payload(&status, "online");
    for topic in ["gateway/state", "radio/vhf1/state", "channel/Local/state"] {
        let topic = format!("{prefix}/{topic}");
        watcher.wait_for(Duration::from_secs(10), &topic, |m| m.topic == topic);
    }
    watcher.wait_event(&radio, "CARRIER_UP");
    watcher.wait_event(&radio, "PTT_OFF");
    assert_eq!(
        count(&mut lines, "MQTT broker unreachable"),
        1,
        "{:#?}",
        lines.seen
    );
    assert_eq!(
        count(&mut lines, "MQTT broker back"),
        1,
        "{:#?}",
        lines.seen
    );

    // A clean stop: the last states, then offline (no last will needed).
    terminate(&gw);
    let exit = wait_exit(&mut gw, Duration::from_secs(5));
    assert!(exit.success(), "{exit:?}; {:#?}", lines.seen);
    watcher.wait_payload(&status, "offline");
    let mut after = Watcher::new(broker.port, &format!("{prefix}/radio/vhf1/state"), None);
    let last = after.wait_for(Duration::from_secs(10), "the radio's state", |_| true);
    assert_eq!(last.json()["data"]["ptt"], false);
}

#[test]
fn a_broker_that_refuses_the_password_never_disturbs_the_messages() {
    let Some(broker) = Broker::start("auth", Some(("gw", "Right-mqtt-pass"))) else {
        return;
    };
    let prefix = "zg-test/auth";
    let user = Some(("gw", "Right-mqtt-pass"));
    let mut watcher = Watcher::new(broker.port, &format!("{prefix}/#"), user);
    let (_sim, sim_port) = start_sim_with(&["--echo"]);
    let dir = Scratch::new("mqtt-auth-gw");
    let secret = |text: &str| {
        use std::os::unix::fs::PermissionsExt as _;
        let file = dir.join("mqtt-password");
        std::fs::write(&file, format!("{text}\n")).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    let mqtt = format!(
        "url = \"{}\"\nclient_id = \"zg-test-auth\"\ntopic_prefix = \"{prefix}\"\nusername = \"gw\"\npassword_file = \"mqtt-password\"",
        broker.url()
    );

    // The wrong password: refused, said once with what to check, and the messages flow.
    secret("Wrong-mqtt-pass");
    let (mut gw, mut lines) = gateway(&dir, sim_port, &every_4s(), &mqtt);
    let refused = wait_line(
        &mut lines,
        "MQTT broker unreachable",
        Duration::from_secs(10),
    );
    assert!(refused.contains("mqtt.password_file"), "{refused}");
    a_message_each_way(&mut lines);
    a_message_each_way(&mut lines);
    assert_eq!(
        count(&mut lines, "MQTT broker unreachable"),
        1,
        "{:#?}",
        lines.seen
    );
    assert!(
        lines.seen.iter().all(|l| !l.contains("mqtt-pass")),
        "a password in the log: {:#?}",
        lines.seen
    );
    terminate(&gw);
    assert!(wait_exit(&mut gw, Duration::from_secs(5)).success());
    assert!(watcher.on(&format!("{prefix}/status")).is_empty());

    // The right one: online.
    secret("Right-mqtt-pass");
    let (mut gw, mut lines) = gateway(&dir, sim_port, "[[1.0, 2.0]]", &mqtt);
    watcher.wait_payload(&format!("{prefix}/status"), "online");
    wait_line(&mut lines, "MQTT connected", Duration::from_secs(10));
    terminate(&gw);
    assert!(wait_exit(&mut gw, Duration::from_secs(5)).success());
    watcher.wait_payload(&format!("{prefix}/status"), "offline");
}

#[test]
fn a_stalled_broker_never_disturbs_the_messages_nor_the_stop() {
    if mosquitto().is_none() {
        return;
    }
    // Accepts connections and never answers them.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let (_sim, sim_port) = start_sim_with(&["--echo"]);
    let dir = Scratch::new("mqtt-stall-gw");
    let (mut gw, mut lines) = gateway(
        &dir,
        sim_port,
        &every_4s(),
        &format!(
            "url = \"mqtt://127.0.0.1:{port}\"\nclient_id = \"zg-test-stall\"\ntopic_prefix = \"zg-test/stall\""
        ),
    );
    a_message_each_way(&mut lines);
    let stalled = wait_line(
        &mut lines,
        "MQTT broker unreachable",
        Duration::from_secs(15),
    );
    assert!(stalled.contains("does not answer"), "{stalled}");
    a_message_each_way(&mut lines);
    assert_eq!(
        count(&mut lines, "MQTT broker unreachable"),
        1,
        "{:#?}",
        lines.seen
    );
    // Stopping is not held up by the broker either (the unit allows 5 s).
    terminate(&gw);
    let exit = wait_exit(&mut gw, Duration::from_secs(5));
    assert!(exit.success(), "{exit:?}; {:#?}", lines.seen);
}

/// In the process: a burst of events while the broker accepts and never answers: the
/// client's bounded queue takes what it holds, every other event is dropped and counted
/// (refused by the full queue, or missed by a publisher that fell behind), none waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_while_the_broker_stalls_is_bounded_and_every_drop_counted() {
    use zello_gateway::config::{Broker, MqttSettings};
    use zello_gateway::state::{GatewayEvent, GatewayState, StateHub};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let settings = MqttSettings {
        broker: Broker {
            host: "127.0.0.1".into(),
            port,
            tls: false,
        },
        client_id: "zg-test-burst".into(),
        username: None,
        password: None,
        topic_prefix: "zg-test/burst".into(),
        ca_file: None,
    };
    let hub = StateHub::new(GatewayState::new([(
        "vhf1".to_string(),
        "Local".to_string(),
    )]));
    let stop = tokio_util::sync::CancellationToken::new();
    let mqtt =
        zello_gateway::mqtt::start(&settings, hub.clone(), Vec::new(), stop.clone()).unwrap();
    let stats = mqtt.stats();
    const N: u64 = 20_000;
    for i in 0..N {
        let radio = "vhf1".to_string();
        hub.publish(if i % 2 == 0 {
            GatewayEvent::CarrierUp { radio }
        } else {
            GatewayEvent::CarrierDown { radio }
        });
        if i % 1000 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while stats.events() + stats.dropped() < N {
        assert!(
            Instant::now() < deadline,
            "{} handed over, {} dropped of {N}",
            stats.events(),
            stats.dropped()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nothing was sent, so the queue took at most what it holds.
    assert!(stats.events() <= zello_gateway::mqtt::client::QUEUE as u64);
    assert_eq!(stats.events() + stats.dropped(), N);
    assert!(!stats.connected());
    assert_eq!(stats.connections(), 0);
    stop.cancel();
    mqtt.stopped().await;
}

//! What the gateway tells systemd about itself: whether it is ready, and a one-line status,
//! both derived from the gateway's [`GatewayEvent`]s.

use crate::gateway::GatewayEvent;

/// Where the Zello session stands.
#[derive(Debug, Clone, PartialEq)]
enum Link {
    Connecting,
    /// The server could not be reached: why, and when the next try is.
    Unreachable {
        error: String,
        retry_in: std::time::Duration,
    },
    LoggedOn,
    Refused(String),
    Disconnected(String),
}

/// A channel's last reported state.
#[derive(Debug, Clone, PartialEq)]
struct Channel {
    name: String,
    online: bool,
    users: u32,
}

/// A radio's state.
#[derive(Debug, Clone, PartialEq)]
struct Radio {
    name: String,
    carrier: bool,
    ptt: bool,
    /// Its hardware did not open at start; it starts once it does.
    waiting: bool,
    /// Why its audio device is lost, if it is.
    device_lost: Option<String>,
    carrier_fault: bool,
    ptt_fault: bool,
}

/// The state of the whole gateway as its events tell it, for `READY=1` and `STATUS=`.
#[derive(Debug, Clone)]
pub struct StatusBoard {
    /// The gateway runs: every radio started or waiting for its hardware.
    started: bool,
    /// The Zello server's address, for the status while not connected.
    server: Option<String>,
    link: Link,
    /// Why the gateway left Zello on purpose, while it stays away.
    held_offline: Option<String>,
    channels: Vec<Channel>,
    radios: Vec<Radio>,
}

impl StatusBoard {
    /// A board for these channels and radios (in the configuration's order), before the
    /// gateway has started.
    pub fn new(
        channels: impl IntoIterator<Item = String>,
        radios: impl IntoIterator<Item = String>,
    ) -> Self {
        let mut chans: Vec<Channel> = Vec::new();
        for name in channels {
            if !chans.iter().any(|c| c.name == name) {
                chans.push(Channel {
                    name,
                    online: false,
                    users: 0,
                });
            }
        }
        StatusBoard {
            started: false,
            server: None,
            link: Link::Connecting,
            held_offline: None,
            channels: chans,
            radios: radios
                .into_iter()
                .map(|name| Radio {
                    name,
                    carrier: false,
                    ptt: false,
                    waiting: false,
                    device_lost: None,
                    carrier_fault: false,
                    ptt_fault: false,
                })
                .collect(),
        }
    }

    /// The board for a configuration: the server, each radio's channel, and the radios.
    pub fn for_config(config: &crate::config::Config) -> Self {
        Self::new(
            config.radios.iter().map(|r| r.channel.clone()),
            config.radios.iter().map(|r| r.name.clone()),
        )
        .with_server(config.zello.server.clone())
    }

    /// Names the server in the status while it cannot be reached.
    pub fn with_server(mut self, server: impl Into<String>) -> Self {
        self.server = Some(server.into());
        self
    }

    fn radio(&mut self, name: &str) -> Option<&mut Radio> {
        self.radios.iter_mut().find(|r| r.name == name)
    }

    /// Takes in one event.
    pub fn apply(&mut self, event: &GatewayEvent) {
        match event {
            GatewayEvent::Started => self.started = true,
            GatewayEvent::ConnectFailed { error, retry_in } => {
                self.link = Link::Unreachable {
                    error: error.clone(),
                    retry_in: *retry_in,
                }
            }
            GatewayEvent::HardwareWaiting { radio, error } => {
                if let Some(r) = self.radio(radio) {
                    r.waiting = error.is_some();
                }
            }
            GatewayEvent::LoggedOn => self.link = Link::LoggedOn,
            GatewayEvent::LogonRefused(code) => self.link = Link::Refused(code.clone()),
            GatewayEvent::Disconnected(reason) => {
                self.link = Link::Disconnected(reason.clone());
                for c in &mut self.channels {
                    c.online = false;
                }
            }
            GatewayEvent::ChannelStatus {
                channel,
                online,
                users_online,
            } => {
                if let Some(c) = self.channels.iter_mut().find(|c| &c.name == channel) {
                    c.online = *online;
                    c.users = *users_online;
                }
            }
            GatewayEvent::CarrierUp { radio } => {
                if let Some(r) = self.radio(radio) {
                    r.carrier = true;
                }
            }
            GatewayEvent::CarrierDown { radio } => {
                if let Some(r) = self.radio(radio) {
                    r.carrier = false;
                }
            }
            GatewayEvent::PttOn { radio } => {
                if let Some(r) = self.radio(radio) {
                    r.ptt = true;
                }
            }
            GatewayEvent::PttOff { radio } => {
                if let Some(r) = self.radio(radio) {
                    r.ptt = false;
                }
            }
            GatewayEvent::DeviceLost { radio, error } => {
                if let Some(r) = self.radio(radio) {
                    r.device_lost = Some(error.clone());
                }
            }
            GatewayEvent::DeviceBack { radio } => {
                if let Some(r) = self.radio(radio) {
                    r.device_lost = None;
                }
            }
            GatewayEvent::CarrierFault { radio, error } => {
                if let Some(r) = self.radio(radio) {
                    r.carrier_fault = error.is_some();
                }
            }
            GatewayEvent::PttFault { radio, error } => {
                if let Some(r) = self.radio(radio) {
                    r.ptt_fault = error.is_some();
                }
            }
            GatewayEvent::HeldOffline { reason } => self.held_offline = reason.clone(),
            GatewayEvent::StreamStarted { .. }
            | GatewayEvent::Sent { .. }
            | GatewayEvent::Incoming { .. }
            | GatewayEvent::Playing { .. }
            | GatewayEvent::Played { .. }
            | GatewayEvent::TimeOut { .. }
            | GatewayEvent::Text { .. } => {}
        }
    }

    /// Ready for systemd: the gateway runs, every radio started or waiting for its
    /// hardware. Being connected to Zello is not asked: the gateway connects by itself, and
    /// the status tells how that goes.
    pub fn ready(&self) -> bool {
        self.started
    }

    /// Bridging every radio: logged on, every configured channel online and every radio's
    /// hardware there.
    pub fn bridging(&self) -> bool {
        self.link == Link::LoggedOn
            && self.channels.iter().all(|c| c.online)
            && self
                .radios
                .iter()
                .all(|r| r.device_lost.is_none() && !r.waiting)
    }

    /// One line for `systemctl status`: the connection while not logged on, each channel,
    /// each radio. `Dispatch: online, 3 users; radio vhf1 idle`.
    pub fn text(&self) -> String {
        let mut parts = Vec::new();
        match &self.link {
            _ if self.held_offline.is_some() => parts.push(format!(
                "offline on purpose for Zello Alarms ({})",
                self.held_offline.as_deref().unwrap_or_default()
            )),
            Link::LoggedOn => {}
            Link::Connecting => parts.push("connecting to Zello".to_string()),
            Link::Unreachable { error, retry_in } => parts.push(format!(
                "cannot connect to {} ({error}), next try in {} s",
                self.server.as_deref().unwrap_or("Zello"),
                retry_in.as_secs_f32().ceil()
            )),
            Link::Refused(code) => parts.push(format!("logon refused ({code}), retrying")),
            Link::Disconnected(reason) => {
                parts.push(format!("disconnected ({reason}), reconnecting"))
            }
        }
        for c in &self.channels {
            parts.push(match (c.online, c.users) {
                (false, _) => format!("{}: offline", c.name),
                (true, 1) => format!("{}: online, 1 user", c.name),
                (true, n) => format!("{}: online, {n} users", c.name),
            });
        }
        for r in &self.radios {
            let state = match (&r.device_lost, r.ptt, r.carrier) {
                _ if r.waiting => "waiting for its hardware",
                (Some(_), _, _) => "audio device lost",
                (None, true, _) => "transmitting",
                (None, false, true) => "receiving",
                (None, false, false) => "idle",
            };
            let mut faults = String::new();
            if r.ptt_fault {
                faults.push_str(", PTT interface failing");
            }
            if r.carrier_fault {
                faults.push_str(", carrier detect failing");
            }
            parts.push(format!("radio {} {state}{faults}", r.name));
        }
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board() -> StatusBoard {
        StatusBoard::new(
            ["Dispatch", "Ops", "Dispatch"].map(String::from),
            ["vhf1", "uhf1"].map(String::from),
        )
    }

    fn online(channel: &str, users: u32) -> GatewayEvent {
        GatewayEvent::ChannelStatus {
            channel: channel.into(),
            online: true,
            users_online: users,
        }
    }

    #[test]
    fn ready_once_started_whatever_zello_and_the_hardware_do() {
        let mut b = board().with_server("wss://zello.io/ws");
        assert!(!b.ready());
        b.apply(&GatewayEvent::HardwareWaiting {
            radio: "uhf1".into(),
            error: Some("radio[1] (uhf1).audio: no such device".into()),
        });
        b.apply(&GatewayEvent::ConnectFailed {
            error: "failed to lookup address information".into(),
            retry_in: std::time::Duration::from_secs(30),
        });
        b.apply(&GatewayEvent::Started);
        assert!(b.ready());
        assert!(!b.bridging());
        assert_eq!(
            b.text(),
            "cannot connect to wss://zello.io/ws (failed to lookup address information), next try in 30 s; \
             Dispatch: offline; Ops: offline; radio vhf1 idle; radio uhf1 waiting for its hardware"
        );
        b.apply(&GatewayEvent::LoggedOn);
        b.apply(&online("Dispatch", 1));
        b.apply(&online("Ops", 1));
        assert!(!b.bridging(), "uhf1 waits for its hardware");
        b.apply(&GatewayEvent::HardwareWaiting {
            radio: "uhf1".into(),
            error: None,
        });
        assert!(b.bridging());
        assert!(
            b.text().ends_with("radio vhf1 idle; radio uhf1 idle"),
            "{}",
            b.text()
        );
    }

    #[test]
    fn bridging_needs_the_logon_every_channel_and_every_device() {
        let mut b = board();
        assert!(!b.bridging());
        assert_eq!(
            b.text(),
            "connecting to Zello; Dispatch: offline; Ops: offline; radio vhf1 idle; radio uhf1 idle"
        );
        // A channel status can come before the logon reply.
        b.apply(&online("Dispatch", 3));
        b.apply(&GatewayEvent::LoggedOn);
        assert!(!b.bridging(), "Ops is not online yet");
        b.apply(&GatewayEvent::DeviceLost {
            radio: "uhf1".into(),
            error: "gone".into(),
        });
        b.apply(&online("Ops", 1));
        assert!(!b.bridging(), "uhf1's sound card is lost");
        assert_eq!(
            b.text(),
            "Dispatch: online, 3 users; Ops: online, 1 user; radio vhf1 idle; radio uhf1 audio device lost"
        );
        b.apply(&GatewayEvent::DeviceBack {
            radio: "uhf1".into(),
        });
        assert!(b.bridging());
        assert_eq!(
            b.text(),
            "Dispatch: online, 3 users; Ops: online, 1 user; radio vhf1 idle; radio uhf1 idle"
        );
    }

    #[test]
    fn radios_show_what_they_do() {
        let mut b = board();
        b.apply(&GatewayEvent::LoggedOn);
        let radio = || "vhf1".to_string();
        b.apply(&GatewayEvent::CarrierUp { radio: radio() });
        assert!(b.text().contains("radio vhf1 receiving;"), "{}", b.text());
        b.apply(&GatewayEvent::PttOn { radio: radio() });
        assert!(
            b.text().contains("radio vhf1 transmitting;"),
            "{}",
            b.text()
        );
        b.apply(&GatewayEvent::PttOff { radio: radio() });
        b.apply(&GatewayEvent::CarrierDown { radio: radio() });
        b.apply(&GatewayEvent::CarrierFault {
            radio: "uhf1".into(),
            error: Some("rigctld unreachable".into()),
        });
        assert!(
            b.text()
                .ends_with("radio vhf1 idle; radio uhf1 idle, carrier detect failing"),
            "{}",
            b.text()
        );
        b.apply(&GatewayEvent::PttFault {
            radio: "uhf1".into(),
            error: Some("rigctld unreachable".into()),
        });
        assert!(
            b.text()
                .ends_with("radio uhf1 idle, PTT interface failing, carrier detect failing"),
            "{}",
            b.text()
        );
        b.apply(&GatewayEvent::PttFault {
            radio: "uhf1".into(),
            error: None,
        });
        assert!(
            b.text()
                .ends_with("radio uhf1 idle, carrier detect failing"),
            "{}",
            b.text()
        );
        // Events of radios the board does not know change nothing.
        let before = b.text();
        b.apply(&GatewayEvent::PttOn {
            radio: "other".into(),
        });
        assert_eq!(b.text(), before);
    }

    #[test]
    fn the_connection_is_shown_until_logged_on_again() {
        let mut b = board();
        b.apply(&GatewayEvent::LogonRefused("not authorized".into()));
        assert!(
            b.text()
                .starts_with("logon refused (not authorized), retrying; Dispatch: offline")
        );
        b.apply(&GatewayEvent::LoggedOn);
        b.apply(&online("Dispatch", 2));
        b.apply(&online("Ops", 2));
        assert!(b.bridging());
        b.apply(&GatewayEvent::Disconnected("closed by the server".into()));
        assert!(!b.bridging());
        assert!(
            b.text().starts_with(
                "disconnected (closed by the server), reconnecting; Dispatch: offline; Ops: offline"
            ),
            "{}",
            b.text()
        );
    }

    #[test]
    fn leaving_on_purpose_is_shown_until_back() {
        let mut b = board();
        b.apply(&GatewayEvent::LoggedOn);
        b.apply(&GatewayEvent::HeldOffline {
            reason: Some("radio vhf1: PTT interface failing for 60 s".into()),
        });
        b.apply(&GatewayEvent::Disconnected("HeldOffline".into()));
        assert!(
            b.text().starts_with(
                "offline on purpose for Zello Alarms (radio vhf1: PTT interface failing for 60 s); Dispatch: offline"
            ),
            "{}",
            b.text()
        );
        b.apply(&GatewayEvent::HeldOffline { reason: None });
        assert!(b.text().starts_with("disconnected"), "{}", b.text());
        b.apply(&GatewayEvent::LoggedOn);
        assert!(b.text().starts_with("Dispatch: offline"), "{}", b.text());
    }
}

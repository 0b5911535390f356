//! What the gateway tells systemd about itself: whether it is ready, and a one-line status,
//! both rendered from the gateway's [`GatewayState`].

use crate::state::{GatewayEvent, GatewayState, Link, RadioState};

/// How `READY=1` and `STATUS=` show the gateway's state: the configured channels and radios
/// in the configuration's order, and the server named while it cannot be reached.
#[derive(Debug, Clone)]
pub struct StatusBoard {
    /// The Zello server's address, for the status while not connected.
    server: Option<String>,
    channels: Vec<String>,
    radios: Vec<String>,
    /// The state shown.
    state: GatewayState,
}

impl StatusBoard {
    /// A board for these channels and radios (in the configuration's order), before the
    /// gateway has started.
    pub fn new(
        channels: impl IntoIterator<Item = String>,
        radios: impl IntoIterator<Item = String>,
    ) -> Self {
        let mut chans: Vec<String> = Vec::new();
        for name in channels {
            if !chans.contains(&name) {
                chans.push(name);
            }
        }
        StatusBoard {
            server: None,
            channels: chans,
            radios: radios.into_iter().collect(),
            state: GatewayState::default(),
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

    /// Shows `state` from now on.
    pub fn show(&mut self, state: &GatewayState) {
        self.state.clone_from(state);
    }

    /// Takes in one event into the state shown (what the gateway's state does with it).
    pub fn apply(&mut self, event: &GatewayEvent) {
        self.state.apply(event, 0);
    }

    fn radio(&self, name: &str) -> Option<&RadioState> {
        self.state.radio(name)
    }

    fn channel_online(&self, name: &str) -> (bool, u32) {
        self.state
            .channel(name)
            .map_or((false, 0), |c| (c.online, c.users_online))
    }

    /// Ready for systemd: the gateway runs, every radio started or waiting for its
    /// hardware. Being connected to Zello is not asked: the gateway connects by itself, and
    /// the status tells how that goes.
    pub fn ready(&self) -> bool {
        self.state.gateway.started
    }

    /// Bridging every radio: logged on, every configured channel online and every radio's
    /// hardware there.
    pub fn bridging(&self) -> bool {
        self.state.gateway.link == Link::LoggedOn
            && self.channels.iter().all(|c| self.channel_online(c).0)
            && self.radios.iter().all(|r| {
                self.radio(r).is_none_or(|r| {
                    !r.health.audio.failing && r.health.waiting_for_hardware.is_none()
                })
            })
    }

    /// One line for `systemctl status`: the connection while not logged on, each channel,
    /// each radio. `Dispatch: online, 3 users; radio vhf1 idle`.
    pub fn text(&self) -> String {
        let mut parts = Vec::new();
        let gateway = &self.state.gateway;
        match &gateway.link {
            _ if gateway.held_offline.is_some() => parts.push(format!(
                "offline on purpose for Zello Alarms ({})",
                gateway.held_offline.as_deref().unwrap_or_default()
            )),
            Link::LoggedOn => {}
            Link::Connecting => parts.push("connecting to Zello".to_string()),
            Link::Unreachable { error, retry_in_ms } => parts.push(format!(
                "cannot connect to {} ({error}), next try in {} s",
                self.server.as_deref().unwrap_or("Zello"),
                retry_in_ms.div_ceil(1000)
            )),
            Link::Refused { code } => parts.push(format!("logon refused ({code}), retrying")),
            Link::Disconnected { detail, .. } => {
                parts.push(format!("disconnected ({detail}), reconnecting"))
            }
        }
        for c in &self.channels {
            parts.push(match self.channel_online(c) {
                (false, _) => format!("{c}: offline"),
                (true, 1) => format!("{c}: online, 1 user"),
                (true, n) => format!("{c}: online, {n} users"),
            });
        }
        let idle = RadioState::default();
        for name in &self.radios {
            let r = self.radio(name).unwrap_or(&idle);
            let state = match (r.health.audio.failing, r.ptt, r.carrier) {
                _ if r.health.waiting_for_hardware.is_some() => "waiting for its hardware",
                (true, _, _) => "audio device lost",
                (false, true, _) => "transmitting",
                (false, false, true) => "receiving",
                (false, false, false) => "idle",
            };
            let mut faults = String::new();
            match r.tx_inhibited.as_ref().map(|i| i.reason.as_deref()) {
                Some(Some(reason)) => faults.push_str(&format!(", TX inhibited ({reason})")),
                Some(None) => faults.push_str(", TX inhibited"),
                None => {}
            }
            if r.carrier_stuck {
                faults.push_str(", carrier stuck");
            }
            if r.health.ptt.failing {
                faults.push_str(", PTT interface failing");
            }
            if r.health.carrier.failing {
                faults.push_str(", carrier detect failing");
            }
            parts.push(format!("radio {name} {state}{faults}"));
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
            features: Default::default(),
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
        let unreachable = || Some("rigctld unreachable".to_string());
        for (event, end) in [
            (
                GatewayEvent::CarrierFault {
                    radio: "uhf1".into(),
                    error: unreachable(),
                },
                "radio vhf1 idle; radio uhf1 idle, carrier detect failing",
            ),
            (
                GatewayEvent::PttFault {
                    radio: "uhf1".into(),
                    error: unreachable(),
                },
                "radio uhf1 idle, PTT interface failing, carrier detect failing",
            ),
            (
                GatewayEvent::PttFault {
                    radio: "uhf1".into(),
                    error: None,
                },
                "radio uhf1 idle, carrier detect failing",
            ),
        ] {
            b.apply(&event);
            assert!(b.text().ends_with(end), "after {event:?}: {}", b.text());
        }
        b.apply(&GatewayEvent::TxInhibited {
            radio: "uhf1".into(),
            reason: Some("site work".into()),
        });
        assert!(
            b.text()
                .ends_with("radio uhf1 idle, TX inhibited (site work), carrier detect failing"),
            "{}",
            b.text()
        );
        b.apply(&GatewayEvent::TxInhibited {
            radio: "vhf1".into(),
            reason: None,
        });
        b.apply(&GatewayEvent::CarrierUp { radio: radio() });
        b.apply(&GatewayEvent::CarrierStuck { radio: radio() });
        assert!(
            b.text()
                .contains("radio vhf1 receiving, TX inhibited, carrier stuck;"),
            "{}",
            b.text()
        );
        b.apply(&GatewayEvent::TxAllowed { radio: radio() });
        b.apply(&GatewayEvent::CarrierDown { radio: radio() });
        assert!(b.text().contains("radio vhf1 idle;"), "{}", b.text());
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
        b.apply(&GatewayEvent::Disconnected {
            reason: crate::state::DisconnectReason::ServerClosed,
            detail: "closed by the server".into(),
        });
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
        b.apply(&GatewayEvent::Disconnected {
            reason: crate::state::DisconnectReason::HeldOffline,
            detail: "left Zello on purpose".into(),
        });
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

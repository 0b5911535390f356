//! When to leave Zello on purpose, and when to come back: pure logic on made-up instants.
//!
//! Each radio's parts (audio device, PTT interface, carrier detect) and its hardware missing
//! since the start show in the radio's health in the [`GatewayState`]. A failure that lasts
//! the grace period makes the gateway
//! leave (with [`AlarmsConfig::offline_on_hardware_fault`]) so Zello Alarms alerts the
//! dispatcher; once every part works again it comes back. Short blips never reach Zello.

use super::AlarmsConfig;
use crate::state::GatewayState;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// One part of one radio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    /// Whatever hardware did not open when the gateway started.
    Missing,
    AudioDevice,
    Ptt,
    CarrierDetect,
}

impl Part {
    fn label(self) -> &'static str {
        match self {
            Part::Missing => "hardware missing since the start",
            Part::AudioDevice => "audio device lost",
            Part::Ptt => "PTT interface failing",
            Part::CarrierDetect => "carrier detect failing",
        }
    }
}

/// What the driver is to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Leave Zello (the session stays away until [`Action::GoOnline`]).
    GoOffline { reason: String },
    /// Connect again.
    GoOnline,
    /// Send this text to the configured channel or user, once the channel is online.
    Text(String),
}

#[derive(Debug, Clone)]
struct Fault {
    since: Instant,
    error: String,
}

/// The decision state.
#[derive(Debug)]
pub struct Alarms {
    grace: Duration,
    go_offline: bool,
    texts: bool,
    faults: BTreeMap<(String, Part), Fault>,
    /// The fault was acted on (left Zello and/or texted): the recovery is announced.
    acted: bool,
    offline: bool,
}

impl Alarms {
    pub fn new(config: &AlarmsConfig) -> Self {
        Alarms {
            grace: config.grace(),
            go_offline: config.offline_on_hardware_fault,
            texts: config.text_channel.is_some(),
            faults: BTreeMap::new(),
            acted: false,
            offline: false,
        }
    }

    /// Takes new settings (`systemctl reload`): a changed grace applies to the failures
    /// already timed; with leaving switched off while away, the gateway comes back.
    pub fn set_config(&mut self, config: &AlarmsConfig) -> Vec<Action> {
        self.grace = config.grace();
        self.texts = config.text_channel.is_some();
        self.go_offline = config.offline_on_hardware_fault;
        if self.offline && !self.go_offline {
            self.offline = false;
            return vec![Action::GoOnline];
        }
        Vec::new()
    }

    /// Whether the gateway is away on purpose now.
    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// Takes in the gateway's state as it stands at `now`: a part failing that was not is
    /// timed from `now` (one still failing keeps its start), one that works is forgotten.
    pub fn observe(&mut self, now: Instant, state: &GatewayState) -> Vec<Action> {
        let mut failing: BTreeMap<(&str, Part), &str> = BTreeMap::new();
        for (radio, r) in &state.radios {
            let h = &r.health;
            if let Some(e) = &h.waiting_for_hardware {
                failing.insert((radio, Part::Missing), e);
            }
            for (part, health) in [
                (Part::AudioDevice, &h.audio),
                (Part::Ptt, &h.ptt),
                (Part::CarrierDetect, &h.carrier),
            ] {
                if let Some(e) = health.fault() {
                    failing.insert((radio, part), e);
                }
            }
        }
        self.faults
            .retain(|(radio, part), _| failing.contains_key(&(radio.as_str(), *part)));
        for ((radio, part), error) in failing {
            self.faults
                .entry((radio.to_string(), part))
                .or_insert_with(|| Fault {
                    since: now,
                    error: error.to_string(),
                });
        }
        self.decide(now)
    }

    /// When [`Alarms::on_timer`] is next due: the oldest fault's grace running out.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.acted {
            return None;
        }
        self.faults.values().map(|f| f.since + self.grace).min()
    }

    /// Called at [`Alarms::next_deadline`].
    pub fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        self.decide(now)
    }

    fn decide(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.faults.is_empty() {
            if self.acted {
                self.acted = false;
                if self.texts {
                    actions.push(Action::Text(
                        "zello-gateway: the radio hardware works again; the gateway is back".into(),
                    ));
                }
                if self.offline {
                    self.offline = false;
                    // Online first: the text can only go out once logged on again.
                    actions.insert(0, Action::GoOnline);
                }
            }
            return actions;
        }
        if self.acted {
            return actions;
        }
        let Some(((radio, part), fault)) = self
            .faults
            .iter()
            .filter(|(_, f)| now >= f.since + self.grace)
            .min_by_key(|(_, f)| f.since)
        else {
            return actions;
        };
        let lasted = now.duration_since(fault.since).as_secs();
        let reason = format!(
            "radio {radio}: {} for {lasted} s ({})",
            part.label(),
            fault.error
        );
        self.acted = true;
        if self.texts {
            let what = if self.go_offline {
                "leaving Zello until it works again"
            } else {
                "still online"
            };
            actions.push(Action::Text(format!("zello-gateway: {reason}; {what}")));
        }
        if self.go_offline {
            self.offline = true;
            actions.push(Action::GoOffline { reason });
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::GatewayEvent;

    const GRACE: Duration = Duration::from_secs(60);

    /// The decisions fed the way the driver feeds them: each event applied to the state,
    /// then the state observed.
    struct Fed {
        alarms: Alarms,
        state: GatewayState,
    }

    impl Fed {
        fn handle(&mut self, now: Instant, event: &GatewayEvent) -> Vec<Action> {
            self.state.apply(event, 0);
            self.alarms.observe(now, &self.state)
        }
    }

    impl std::ops::Deref for Fed {
        type Target = Alarms;
        fn deref(&self) -> &Alarms {
            &self.alarms
        }
    }

    impl std::ops::DerefMut for Fed {
        fn deref_mut(&mut self) -> &mut Alarms {
            &mut self.alarms
        }
    }

    fn alarms(offline: bool, texts: bool) -> Fed {
        Fed {
            alarms: Alarms::new(&AlarmsConfig {
                offline_on_hardware_fault: offline,
                hardware_grace_s: 60,
                text_channel: texts.then(|| "Dispatch".into()),
                text_user: None,
            }),
            state: GatewayState::default(),
        }
    }

    fn lost(radio: &str) -> GatewayEvent {
        GatewayEvent::DeviceLost {
            radio: radio.into(),
            error: "USB sound card gone".into(),
        }
    }

    fn back(radio: &str) -> GatewayEvent {
        GatewayEvent::DeviceBack {
            radio: radio.into(),
        }
    }

    fn ptt(radio: &str, error: Option<&str>) -> GatewayEvent {
        GatewayEvent::PttFault {
            radio: radio.into(),
            error: error.map(String::from),
        }
    }

    #[test]
    fn a_blip_shorter_than_the_grace_never_leaves() {
        let t0 = Instant::now();
        let mut a = alarms(true, true);
        assert!(a.handle(t0, &lost("vhf1")).is_empty());
        assert_eq!(a.next_deadline(), Some(t0 + GRACE));
        assert!(
            a.handle(t0 + GRACE - Duration::from_secs(1), &back("vhf1"))
                .is_empty()
        );
        assert_eq!(a.next_deadline(), None);
        assert!(a.on_timer(t0 + GRACE).is_empty());
        assert!(!a.is_offline());
    }

    #[test]
    fn a_lasting_fault_leaves_with_a_text_and_comes_back_with_another() {
        let t0 = Instant::now();
        let mut a = alarms(true, true);
        a.handle(t0, &ptt("vhf1", Some("serial /dev/ttyUSB0 gone")));
        assert!(a.on_timer(t0 + GRACE - Duration::from_millis(1)).is_empty());
        let actions = a.on_timer(t0 + GRACE);
        let reason = "radio vhf1: PTT interface failing for 60 s (serial /dev/ttyUSB0 gone)";
        assert_eq!(
            actions,
            [
                Action::Text(format!(
                    "zello-gateway: {reason}; leaving Zello until it works again"
                )),
                Action::GoOffline {
                    reason: reason.into()
                },
            ]
        );
        assert!(a.is_offline());
        // Acted on: no more deadlines, and further faults change nothing.
        assert_eq!(a.next_deadline(), None);
        assert!(a.handle(t0 + GRACE * 2, &lost("uhf1")).is_empty());
        // One part back is not enough.
        assert!(a.handle(t0 + GRACE * 3, &ptt("vhf1", None)).is_empty());
        assert!(a.is_offline());
        let actions = a.handle(t0 + GRACE * 4, &back("uhf1"));
        assert_eq!(
            actions,
            [
                Action::GoOnline,
                Action::Text(
                    "zello-gateway: the radio hardware works again; the gateway is back".into()
                ),
            ]
        );
        assert!(!a.is_offline());
        // A new fault starts a new grace period.
        a.handle(t0 + GRACE * 5, &lost("vhf1"));
        assert_eq!(a.next_deadline(), Some(t0 + GRACE * 6));
    }

    #[test]
    fn the_oldest_fault_counts_and_repeats_do_not_restart_it() {
        let t0 = Instant::now();
        let mut a = alarms(true, false);
        a.handle(t0, &lost("vhf1"));
        a.handle(t0 + Duration::from_secs(30), &lost("vhf1"));
        a.handle(
            t0 + Duration::from_secs(40),
            &ptt("uhf1", Some("rigctld unreachable")),
        );
        assert_eq!(a.next_deadline(), Some(t0 + GRACE));
        let actions = a.on_timer(t0 + GRACE);
        assert_eq!(
            actions,
            [Action::GoOffline {
                reason: "radio vhf1: audio device lost for 60 s (USB sound card gone)".into()
            }]
        );
    }

    #[test]
    fn carrier_detect_failures_count_and_other_events_do_not() {
        let t0 = Instant::now();
        let mut a = alarms(true, false);
        assert!(
            a.handle(
                t0,
                &GatewayEvent::CarrierUp {
                    radio: "vhf1".into()
                }
            )
            .is_empty()
        );
        assert_eq!(a.next_deadline(), None);
        a.handle(
            t0,
            &GatewayEvent::CarrierFault {
                radio: "vhf1".into(),
                error: Some("rigctld unreachable".into()),
            },
        );
        assert!(matches!(
            a.on_timer(t0 + GRACE).as_slice(),
            [Action::GoOffline { reason }] if reason.contains("carrier detect failing")
        ));
    }

    #[test]
    fn hardware_missing_since_the_start_counts_until_it_appears() {
        let t0 = Instant::now();
        let mut a = alarms(true, false);
        let waiting = |error: Option<&str>| GatewayEvent::HardwareWaiting {
            radio: "vhf1".into(),
            error: error.map(String::from),
        };
        assert!(a.handle(t0, &waiting(Some("rigctld refused"))).is_empty());
        assert_eq!(a.next_deadline(), Some(t0 + GRACE));
        assert_eq!(
            a.on_timer(t0 + GRACE),
            [Action::GoOffline {
                reason: "radio vhf1: hardware missing since the start for 60 s (rigctld refused)"
                    .into()
            }]
        );
        assert_eq!(a.handle(t0 + GRACE * 2, &waiting(None)), [Action::GoOnline]);
        assert!(!a.is_offline());
    }

    #[test]
    fn texts_only_when_staying_online() {
        let t0 = Instant::now();
        let mut a = alarms(false, true);
        a.handle(t0, &lost("vhf1"));
        assert_eq!(
            a.on_timer(t0 + GRACE),
            [Action::Text(
                "zello-gateway: radio vhf1: audio device lost for 60 s (USB sound card gone); still online"
                    .into()
            )]
        );
        assert!(!a.is_offline());
        assert_eq!(
            a.handle(t0 + GRACE * 2, &back("vhf1")),
            [Action::Text(
                "zello-gateway: the radio hardware works again; the gateway is back".into()
            )]
        );
    }

    #[test]
    fn neither_leaving_nor_texting_does_nothing() {
        let t0 = Instant::now();
        let mut a = alarms(false, false);
        a.handle(t0, &lost("vhf1"));
        assert!(a.on_timer(t0 + GRACE).is_empty());
        assert!(a.handle(t0 + GRACE * 2, &back("vhf1")).is_empty());
    }

    #[test]
    fn new_settings_apply_to_what_is_going_on() {
        let t0 = Instant::now();
        let mut a = alarms(true, false);
        a.handle(t0, &lost("vhf1"));
        let shorter = AlarmsConfig {
            hardware_grace_s: 10,
            ..AlarmsConfig::default()
        };
        assert!(a.set_config(&shorter).is_empty());
        assert_eq!(a.next_deadline(), Some(t0 + Duration::from_secs(10)));
        assert!(matches!(
            a.on_timer(t0 + Duration::from_secs(10)).as_slice(),
            [Action::GoOffline { .. }]
        ));
        // Leaving switched off while away: back at once.
        let stay = AlarmsConfig {
            offline_on_hardware_fault: false,
            ..shorter
        };
        assert_eq!(a.set_config(&stay), [Action::GoOnline]);
        assert!(!a.is_offline());
        // The fault's end is then quiet (nothing texted, nothing to come back from).
        assert!(a.handle(t0 + GRACE, &back("vhf1")).is_empty());
    }

    #[test]
    fn a_fault_gone_before_the_state_is_looked_at_is_never_timed() {
        let t0 = Instant::now();
        let mut a = Alarms::new(&AlarmsConfig::default());
        let mut state = GatewayState::default();
        state.apply(&lost("vhf1"), 0);
        state.apply(&back("vhf1"), 0);
        assert!(a.observe(t0, &state).is_empty());
        assert_eq!(a.next_deadline(), None);
        state.apply(
            &GatewayEvent::HardwareWaiting {
                radio: "uhf1".into(),
                error: Some("no such device".into()),
            },
            0,
        );
        assert!(a.observe(t0, &state).is_empty());
        assert_eq!(a.next_deadline(), Some(t0 + GRACE));
        // Looked at again later, still failing: timed from the first look.
        assert!(a.observe(t0 + GRACE / 2, &state).is_empty());
        assert_eq!(a.next_deadline(), Some(t0 + GRACE));
    }
}

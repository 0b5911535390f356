//! What `monitor` shows, built from the API's messages alone (pure: no I/O, no clock of its
//! own): each radio's state, who talks and for how long, level bars, the last-heard list;
//! and for `--levels RADIO` the level setup aid (receive level with the squelch closed and
//! open, the noise floor, clips).

use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};

/// How many finished messages the last-heard list shows.
pub const HEARD: usize = 10;

/// Width of a level bar, in characters, from -60 to 0 dBFS.
const BAR: usize = 30;

/// One direction's levels as the last `LEVEL` told them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Meter {
    pub rms_dbfs: f32,
    pub peak_dbfs: f32,
    pub open: bool,
    pub clips: u64,
}

/// What the level setup aid keeps of the receive levels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Setup {
    /// The noise floor: the average RMS while the squelch is closed (dBFS).
    pub floor_dbfs: Option<f32>,
    /// The average RMS while the squelch is open (dBFS).
    pub open_rms_dbfs: Option<f32>,
    /// The highest peak while open.
    pub open_peak_dbfs: Option<f32>,
    pub readings: u64,
}

/// One radio.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Radio {
    pub channel: Option<String>,
    pub carrier: bool,
    pub ptt: bool,
    /// Failing parts, in words.
    pub faults: BTreeMap<&'static str, String>,
    pub waiting: Option<String>,
    /// Why transmitting is inhibited, while it is.
    pub inhibited: Option<String>,
    /// Who talks (`dispatcher`, or `radio` for the radio's own message) and since when (ms).
    pub talk: Option<(String, u64)>,
    pub rx: Option<Meter>,
    pub tx: Option<Meter>,
    pub setup: Setup,
}

impl Radio {
    /// The radio's state in one word or two.
    pub fn state(&self) -> &'static str {
        if self.waiting.is_some() || !self.faults.is_empty() {
            "fault"
        } else if self.ptt {
            "transmitting"
        } else if self.carrier {
            "receiving"
        } else if self.inhibited.is_some() {
            "TX inhibited"
        } else {
            "idle"
        }
    }
}

/// One finished message.
#[derive(Debug, Clone, PartialEq)]
pub struct Heard {
    pub at_ms: u64,
    pub radio: String,
    /// `dispatcher → radio` or `radio → channel`.
    pub what: String,
    pub duration_ms: u64,
    pub outcome: String,
}

/// Everything shown.
#[derive(Debug, Clone, Default)]
pub struct Board {
    pub link: String,
    pub held_offline: Option<String>,
    pub channels: BTreeMap<String, (bool, u64)>,
    pub radios: BTreeMap<String, Radio>,
    pub heard: VecDeque<Heard>,
    /// The radio of `--levels`.
    pub focus: Option<String>,
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

fn f32_of(v: &Value) -> f32 {
    v.as_f64().map_or(f32::NAN, |x| x as f32)
}

/// The milliseconds of an RFC 3339 time (`ts`), 0 when unreadable.
fn ms_of(ts: &Value) -> u64 {
    ts.as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .and_then(|t| u64::try_from(t.as_millisecond()).ok())
        .unwrap_or(0)
}

impl Board {
    /// A board for `--levels RADIO` (`focus`) or every radio (`None`).
    pub fn new(focus: Option<String>) -> Self {
        Board {
            link: "connecting".into(),
            focus,
            ..Board::default()
        }
    }

    /// Takes in one message of the API (a `SNAPSHOT`, an event or a `LEVEL`); whether
    /// anything shown changed.
    pub fn take(&mut self, m: &Value) -> bool {
        let kind = m["type"].as_str().unwrap_or_default();
        let room = m["room"].as_str().unwrap_or_default();
        let data = &m["data"];
        // Replies to the client's ops name rooms (`radio:*`) but change nothing shown.
        if matches!(
            kind,
            "READY" | "SUBSCRIBED" | "UNSUBSCRIBED" | "PONG" | "ERROR" | "RESYNC" | ""
        ) {
            return false;
        }
        if kind == "SNAPSHOT" {
            self.snapshot(room, data);
            return true;
        }
        let at_ms = ms_of(&m["ts"]);
        match room.split_once(':') {
            None if room == "gateway" => self.gateway_event(kind, data),
            Some(("radio", name)) => self.radio_event(name, kind, data, at_ms),
            Some(("channel", name)) => self.channel_event(name, kind, data),
            Some(("levels", name)) => self.level(name, data),
            _ => false,
        }
    }

    fn snapshot(&mut self, room: &str, d: &Value) {
        match room.split_once(':') {
            None => {
                self.link = d["link"]["state"]
                    .as_str()
                    .unwrap_or("unknown")
                    .replace('_', " ");
                self.held_offline = text(&d["held_offline"]);
            }
            Some(("radio", name)) => {
                let r = self.radios.entry(name.to_string()).or_default();
                r.channel = text(&d["channel"]);
                r.carrier = d["carrier"].as_bool().unwrap_or(false);
                r.ptt = d["ptt"].as_bool().unwrap_or(false);
                r.waiting = text(&d["health"]["waiting_for_hardware"]);
                r.faults.clear();
                for part in ["audio", "ptt", "carrier"] {
                    let h = &d["health"][part];
                    if h["failing"].as_bool() == Some(true) {
                        let error = text(&h["last_error"]).unwrap_or_default();
                        r.faults.insert(part_name(part), error);
                    }
                }
                r.inhibited = match &d["tx_inhibited"] {
                    Value::Null => None,
                    v => Some(text(&v["reason"]).unwrap_or_default()),
                };
                r.talk = if r.ptt {
                    d["transmitting"].as_object().map(|t| {
                        let who = t.get("peer").and_then(Value::as_str).unwrap_or("channel");
                        (
                            who.to_string(),
                            t.get("since_ms").and_then(Value::as_u64).unwrap_or(0),
                        )
                    })
                } else if r.carrier {
                    d["receiving"].as_object().map(|t| {
                        (
                            "radio".to_string(),
                            t.get("since_ms").and_then(Value::as_u64).unwrap_or(0),
                        )
                    })
                } else {
                    None
                };
            }
            Some(("channel", name)) => {
                let online = d["online"].as_bool().unwrap_or(false);
                let users = d["users_online"].as_u64().unwrap_or(0);
                self.channels.insert(name.to_string(), (online, users));
            }
            _ => {}
        }
    }

    fn gateway_event(&mut self, kind: &str, d: &Value) -> bool {
        match kind {
            "LOGGED_ON" => self.link = "logged on".into(),
            "LOGON_REFUSED" => self.link = "logon refused".into(),
            "DISCONNECTED" | "KICKED" => {
                let reason = text(&d["reason"]).unwrap_or_default();
                self.link = format!("{} {reason}", kind.to_lowercase())
                    .trim()
                    .to_string();
            }
            "ALARM_OFFLINE" => self.held_offline = Some(text(&d["reason"]).unwrap_or_default()),
            "ALARM_ONLINE" => self.held_offline = None,
            _ => return false,
        }
        true
    }

    fn channel_event(&mut self, name: &str, kind: &str, d: &Value) -> bool {
        let entry = self.channels.entry(name.to_string()).or_default();
        match kind {
            "CHANNEL_ONLINE" => entry.0 = true,
            "CHANNEL_OFFLINE" => entry.0 = false,
            "USERS_ONLINE" => entry.1 = d["users_online"].as_u64().unwrap_or(entry.1),
            _ => return false,
        }
        if let Some(n) = d["users_online"].as_u64() {
            entry.1 = n;
        }
        true
    }

    fn radio_event(&mut self, name: &str, kind: &str, d: &Value, at_ms: u64) -> bool {
        let r = self.radios.entry(name.to_string()).or_default();
        match kind {
            "CARRIER_UP" => {
                r.carrier = true;
                r.talk = Some(("radio".into(), at_ms));
            }
            "CARRIER_DOWN" => {
                r.carrier = false;
                if !r.ptt {
                    r.talk = None;
                }
            }
            "PTT_ON" => r.ptt = true,
            "PTT_OFF" => {
                r.ptt = false;
                r.talk = None;
            }
            "MESSAGE_START" => {
                if d["direction"] == "from_channel" {
                    let from = text(&d["from"]).unwrap_or_else(|| "channel".into());
                    r.talk = Some((from, at_ms));
                }
            }
            "MESSAGE_STOP" => {
                let what = if d["direction"] == "from_channel" {
                    format!(
                        "{} → {name}",
                        text(&d["from"]).unwrap_or_else(|| "?".into())
                    )
                } else {
                    let channel = text(&d["channel"]).unwrap_or_else(|| "channel".into());
                    format!("{name} → {channel}")
                };
                self.heard.push_front(Heard {
                    at_ms,
                    radio: name.to_string(),
                    what,
                    duration_ms: d["duration_ms"].as_u64().unwrap_or(0),
                    outcome: text(&d["outcome"]).unwrap_or_default(),
                });
                self.heard.truncate(HEARD);
            }
            "TX_INHIBITED" => r.inhibited = Some(text(&d["reason"]).unwrap_or_default()),
            "TX_ALLOWED" => r.inhibited = None,
            "DEVICE_LOST" => {
                r.faults
                    .insert("audio", text(&d["error"]).unwrap_or_default());
            }
            "PTT_INTERFACE_FAILED" => {
                r.faults
                    .insert("ptt", text(&d["error"]).unwrap_or_default());
            }
            "CARRIER_DETECT_FAILED" => {
                r.faults
                    .insert("carrier detect", text(&d["error"]).unwrap_or_default());
            }
            "DEVICE_BACK" => {
                r.faults.remove("audio");
            }
            "PTT_INTERFACE_BACK" => {
                r.faults.remove("ptt");
            }
            "CARRIER_DETECT_BACK" => {
                r.faults.remove("carrier detect");
            }
            _ => return false,
        }
        true
    }

    fn level(&mut self, name: &str, d: &Value) -> bool {
        let meter = Meter {
            rms_dbfs: f32_of(&d["rms_dbfs"]),
            peak_dbfs: f32_of(&d["peak_dbfs"]),
            open: d["open"].as_bool().unwrap_or(false),
            clips: d["clips"].as_u64().unwrap_or(0),
        };
        let r = self.radios.entry(name.to_string()).or_default();
        if d["direction"] == "from_channel" {
            r.tx = Some(meter);
            return true;
        }
        r.rx = Some(meter);
        let s = &mut r.setup;
        s.readings += 1;
        // Averages in dB with a short memory (about two seconds at five readings a second).
        let mix = |old: Option<f32>, new: f32| Some(old.map_or(new, |o| o + (new - o) * 0.1));
        if meter.rms_dbfs.is_finite() {
            if meter.open {
                s.open_rms_dbfs = mix(s.open_rms_dbfs, meter.rms_dbfs);
                s.open_peak_dbfs = Some(
                    s.open_peak_dbfs
                        .map_or(meter.peak_dbfs, |p| p.max(meter.peak_dbfs)),
                );
            } else {
                s.floor_dbfs = mix(s.floor_dbfs, meter.rms_dbfs);
            }
        }
        true
    }

    /// Where a radio's state stands, one line: `vhf1  receiving  radio 0:04  Dispatch`; the
    /// talk's time only given `now_ms`.
    pub fn radio_line(&self, name: &str, r: &Radio, now_ms: Option<u64>) -> String {
        let mut line = format!("{name:<12} {:<13}", r.state());
        if let Some((who, since)) = &r.talk {
            line.push_str(&format!(" {who}"));
            if let Some(now) = now_ms {
                let secs = now.saturating_sub(*since) / 1000;
                line.push_str(&format!(" {}:{:02}", secs / 60, secs % 60));
            }
        }
        if let Some(c) = &r.channel {
            line.push_str(&format!("  [{c}]"));
        }
        if let Some(reason) = &r.inhibited {
            line.push_str(&format!("  TX inhibited: {reason}"));
        }
        for (part, error) in &r.faults {
            line.push_str(&format!("  {part}: {error}"));
        }
        if let Some(w) = &r.waiting {
            line.push_str(&format!("  waiting for hardware: {w}"));
        }
        line
    }

    /// The whole screen, as lines.
    pub fn render(&self, now_ms: u64) -> Vec<String> {
        if let Some(name) = &self.focus {
            return self.render_levels(name);
        }
        let mut out = Vec::new();
        let mut head = format!("Zello: {}", self.link);
        if let Some(reason) = &self.held_offline {
            head.push_str(&format!(
                "  (offline on purpose for Zello Alarms: {reason})"
            ));
        }
        out.push(head);
        for (name, (online, users)) in &self.channels {
            out.push(format!(
                "channel {name}: {}, {users} user{}",
                if *online { "online" } else { "offline" },
                if *users == 1 { "" } else { "s" }
            ));
        }
        out.push(String::new());
        for (name, r) in &self.radios {
            out.push(self.radio_line(name, r, Some(now_ms)));
            if let Some(m) = r.rx {
                out.push(format!("    rx {}", bar(m)));
            }
            if let Some(m) = r.tx {
                out.push(format!("    tx {}", bar(m)));
            }
        }
        out.push(String::new());
        out.push("Last heard:".into());
        if self.heard.is_empty() {
            out.push("  (nothing yet)".into());
        }
        for h in &self.heard {
            out.push(format!(
                "  {}  {:<28} {:>5.1} s  {}",
                clock(h.at_ms),
                h.what,
                h.duration_ms as f64 / 1000.0,
                h.outcome
            ));
        }
        out
    }

    fn render_levels(&self, name: &str) -> Vec<String> {
        let Some(r) = self.radios.get(name) else {
            return vec![format!("radio {name}: waiting for its levels")];
        };
        let db = |v: Option<f32>| v.map_or("  --  ".to_string(), |v| format!("{v:6.1}"));
        let mut out = vec![format!(
            "Levels of {name} (receive: what the radio's audio output gives the sound card)"
        )];
        match r.rx {
            Some(m) => {
                out.push(format!(
                    "  now      {}  squelch {}",
                    bar(m),
                    if m.open { "OPEN" } else { "closed" }
                ));
                out.push(format!(
                    "  noise floor (squelch closed)  rms {} dBFS",
                    db(r.setup.floor_dbfs)
                ));
                out.push(format!(
                    "  voice (squelch open)          rms {} dBFS   highest peak {} dBFS",
                    db(r.setup.open_rms_dbfs),
                    db(r.setup.open_peak_dbfs)
                ));
                out.push(format!(
                    "  clipped samples: {}{}",
                    m.clips,
                    if m.clips > 0 {
                        "  (lower the radio's audio or the card's capture level)"
                    } else {
                        ""
                    }
                ));
                out.push(advice(&r.setup));
            }
            None => out.push("  waiting for the first reading...".into()),
        }
        out
    }
}

/// What to do about the levels, in words.
fn advice(s: &Setup) -> String {
    match (s.floor_dbfs, s.open_rms_dbfs) {
        (Some(floor), Some(voice)) if voice - floor < 10.0 => format!(
            "  voice is only {:.0} dB above the noise: raise the radio's audio, or check the squelch",
            voice - floor
        ),
        (Some(floor), _) => format!(
            "  set the voice detector's open_dbfs between the noise floor ({floor:.0}) and the voice level, e.g. {:.0}",
            floor + 10.0
        ),
        _ => "  let the radio receive a signal and a quiet channel to see both levels".into(),
    }
}

fn part_name(part: &str) -> &'static str {
    match part {
        "audio" => "audio",
        "ptt" => "ptt",
        _ => "carrier detect",
    }
}

/// `[#########.......]  -23.4 dBFS rms  -12.0 peak` from -60 to 0 dBFS.
pub fn bar(m: Meter) -> String {
    let fill = |db: f32| {
        if db.is_finite() {
            (((db + 60.0) / 60.0).clamp(0.0, 1.0) * BAR as f32).round() as usize
        } else {
            0
        }
    };
    let rms = fill(m.rms_dbfs);
    let peak = fill(m.peak_dbfs).max(rms);
    let mut s = String::with_capacity(BAR + 40);
    s.push('[');
    for i in 0..BAR {
        s.push(if i < rms {
            '#'
        } else if i + 1 == peak {
            '|'
        } else {
            '.'
        });
    }
    s.push(']');
    s.push_str(&format!(
        " {:6.1} dBFS rms {:6.1} peak",
        m.rms_dbfs, m.peak_dbfs
    ));
    s
}

/// `HH:MM:SS` (UTC) of unix ms.
fn clock(ms: u64) -> String {
    let s = (ms / 1000) % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: &str, room: &str, data: Value) -> Value {
        json!({"type": kind, "room": room, "seq": 1, "ts": "2026-01-15T12:01:00.000Z", "data": data})
    }

    #[test]
    fn a_radio_goes_from_idle_to_receiving_to_transmitting_and_its_messages_are_heard() {
        let mut b = Board::new(None);
        b.take(&json!({"type": "SNAPSHOT", "room": "radio:vhf1", "seq": 3, "data": {
            "radio": "vhf1", "channel": "Dispatch", "carrier": false, "ptt": false,
            "health": {"audio": {"failing": false}, "ptt": {"failing": false}, "carrier": {"failing": false}},
            "tx_inhibited": null}}));
        b.take(
            &json!({"type": "SNAPSHOT", "room": "channel:Dispatch", "seq": 3,
            "data": {"channel": "Dispatch", "online": true, "users_online": 2}}),
        );
        assert_eq!(b.radios["vhf1"].state(), "idle");
        let t0 = 1_768_478_460_000; // 2026-01-15T12:01:00Z
        b.take(&event("CARRIER_UP", "radio:vhf1", json!({"radio": "vhf1"})));
        assert_eq!(b.radios["vhf1"].state(), "receiving");
        assert_eq!(
            b.radio_line("vhf1", &b.radios["vhf1"], Some(t0 + 4_000)),
            "vhf1         receiving     radio 0:04  [Dispatch]"
        );
        b.take(&event(
            "CARRIER_DOWN",
            "radio:vhf1",
            json!({"radio": "vhf1"}),
        ));
        b.take(&event(
            "MESSAGE_STOP",
            "radio:vhf1",
            json!({"radio": "vhf1", "direction": "to_channel",
            "channel": "Dispatch", "duration_ms": 2500, "outcome": "completed"}),
        ));
        b.take(&event(
            "MESSAGE_START",
            "radio:vhf1",
            json!({"radio": "vhf1", "direction": "from_channel", "from": "alice"}),
        ));
        b.take(&event("PTT_ON", "radio:vhf1", json!({"radio": "vhf1"})));
        assert_eq!(b.radios["vhf1"].state(), "transmitting");
        assert!(
            b.radio_line("vhf1", &b.radios["vhf1"], Some(t0))
                .contains("alice 0:00")
        );
        b.take(&event(
            "PTT_OFF",
            "radio:vhf1",
            json!({"radio": "vhf1", "keyed_ms": 900}),
        ));
        b.take(&event(
            "TX_INHIBITED",
            "radio:vhf1",
            json!({"radio": "vhf1", "reason": "repeater work"}),
        ));
        assert_eq!(b.radios["vhf1"].state(), "TX inhibited");
        let screen = b.render(t0).join("\n");
        assert!(
            screen.contains("channel Dispatch: online, 2 users"),
            "{screen}"
        );
        assert!(screen.contains("12:01:00  vhf1 → Dispatch"), "{screen}");
        assert!(screen.contains("TX inhibited: repeater work"), "{screen}");
        b.take(&event(
            "DEVICE_LOST",
            "radio:vhf1",
            json!({"radio": "vhf1", "error": "unplugged"}),
        ));
        assert_eq!(b.radios["vhf1"].state(), "fault");
        b.take(&event(
            "DEVICE_BACK",
            "radio:vhf1",
            json!({"radio": "vhf1"}),
        ));
        assert_eq!(b.radios["vhf1"].state(), "TX inhibited");
    }

    #[test]
    fn the_level_aid_learns_the_noise_floor_and_the_voice_level() {
        let mut b = Board::new(Some("vhf1".into()));
        assert!(b.render(0)[0].contains("waiting"));
        let level = |rms: f64, peak: f64, open: bool, clips: u64| {
            event(
                "LEVEL",
                "levels:vhf1",
                json!({"radio": "vhf1", "direction": "to_channel",
                "rms_dbfs": rms, "peak_dbfs": peak, "open": open, "clips": clips}),
            )
        };
        for _ in 0..50 {
            b.take(&level(-62.0, -55.0, false, 0));
        }
        for _ in 0..50 {
            b.take(&level(-18.0, -4.0, true, 3));
        }
        let s = &b.radios["vhf1"].setup;
        assert!((s.floor_dbfs.unwrap() + 62.0).abs() < 0.5, "{s:?}");
        assert!((s.open_rms_dbfs.unwrap() + 18.0).abs() < 0.5, "{s:?}");
        assert_eq!(s.open_peak_dbfs, Some(-4.0));
        let screen = b.render(0).join("\n");
        assert!(screen.contains("squelch OPEN"), "{screen}");
        assert!(screen.contains("clipped samples: 3"), "{screen}");
        assert!(
            screen.contains("open_dbfs between the noise floor (-62)"),
            "{screen}"
        );
    }

    #[test]
    fn bars_fill_from_minus_sixty_to_zero_and_survive_nonsense() {
        let m = |rms, peak| Meter {
            rms_dbfs: rms,
            peak_dbfs: peak,
            open: true,
            clips: 0,
        };
        assert!(bar(m(0.0, 0.0)).starts_with(&format!("[{}]", "#".repeat(BAR))));
        assert!(bar(m(-90.0, -90.0)).starts_with(&format!("[{}]", ".".repeat(BAR))));
        let half = bar(m(-30.0, -15.0));
        assert!(
            half.starts_with(&format!("[{}", "#".repeat(BAR / 2))),
            "{half}"
        );
        assert!(half.contains('|'), "{half}");
        assert!(bar(m(f32::NAN, f32::NAN)).starts_with('['));
        // Messages the board does not know change nothing.
        let mut b = Board::new(None);
        assert!(!b.take(&json!({"type": "PONG"})));
        assert!(!b.take(&json!("nonsense")));
        assert!(!b.take(&json!({"type": "SUBSCRIBED", "room": "radio:*", "id": 1})));
        assert!(b.radios.is_empty(), "{:?}", b.radios);
    }
}

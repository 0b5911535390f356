//! What an operator steers on a running gateway: a radio's transmitting inhibited or allowed
//! (kept across restarts), and the transmission under way ended now.
//!
//! [`Controls`] is a cheap handle the daemon makes before the gateway starts (with the
//! inhibits read back from the state directory) and hands to the gateway through
//! [`RunOptions::controls`](super::RunOptions::controls) and to whatever steers it (the
//! status API). Each radio's bridge follows its radio's part through watches: the latest
//! inhibit and the latest unkey request are never lost and never wait for the bridge.
//!
//! The file (`tx-inhibit.toml` in the state directory) is read with [`parse`] and written
//! with [`render`] (both pure), through a temporary file renamed over it. A file that
//! cannot be read or parsed inhibits every radio, with a warning that says so: an operator
//! who inhibited a transmitter did it for a reason (interference, a fault on the site), and
//! a gateway that lost track of that must not key it until someone has looked.

use crate::sync::lock;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The file in the state directory that keeps the inhibits across restarts.
pub const INHIBIT_FILE: &str = "tx-inhibit.toml";

/// A radio's transmitting inhibited by the operator.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inhibited {
    /// The operator's reason, if they gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it was inhibited (unix ms; 0: not known).
    #[serde(default)]
    pub since_ms: u64,
}

/// Why a control could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No radio of that name in the configuration.
    #[error("no radio named {0:?} in the configuration")]
    UnknownRadio(String),
    /// The radio is not running (waiting for its hardware, or the gateway stopped): there
    /// is no transmission to end.
    #[error("radio {0:?} is not running (waiting for its hardware, or the gateway stopped)")]
    NotRunning(String),
    /// The change is in effect now, but could not be written to the state directory: it
    /// is lost at the next restart.
    #[error(
        "the change is in effect, but cannot be kept across a restart: writing {path} failed ({source}); check the state directory's permissions and free space"
    )]
    Persist {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why the inhibit file could not be read back: every radio starts inhibited.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid TX-inhibit file: {message}")]
    Parse { path: PathBuf, message: String },
}

/// The inhibit file's contents: the inhibited radios by name.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct InhibitFile {
    #[serde(default)]
    inhibited: BTreeMap<String, Inhibited>,
}

/// The inhibited radios in the text of an inhibit file.
pub fn parse(text: &str) -> Result<BTreeMap<String, Inhibited>, String> {
    toml::from_str::<InhibitFile>(text)
        .map(|f| f.inhibited)
        .map_err(|e| e.to_string())
}

/// The text of an inhibit file listing `inhibited`.
pub fn render(inhibited: &BTreeMap<String, Inhibited>) -> String {
    let body = toml::to_string(&InhibitFile {
        inhibited: inhibited.clone(),
    })
    // A map of strings and numbers always serializes; an empty file reads as "none".
    .unwrap_or_default();
    format!(
        "# Radios whose transmitting the operator inhibited, kept across restarts by\n# zello-gateway. Written by the gateway; allow a radio through the status API.\n{body}"
    )
}

/// One radio's part of the handle.
struct RadioControl {
    inhibit: watch::Sender<Option<Inhibited>>,
    /// Bumped for every unkey request.
    unkey: watch::Sender<u64>,
}

struct Inner {
    radios: BTreeMap<String, RadioControl>,
    /// Where the inhibits are kept (`None`: not kept).
    path: Option<PathBuf>,
    /// What the file holds: the configured radios' inhibits, and entries for radios not in
    /// the configuration now (kept, so a radio renamed for a while finds its inhibit back).
    stored: Mutex<BTreeMap<String, Inhibited>>,
}

/// The operator's controls over every radio. Cheap to clone; every clone steers the same
/// radios.
#[derive(Clone)]
pub struct Controls {
    inner: Arc<Inner>,
}

/// What a radio's bridge follows.
pub(crate) struct RadioReceiver {
    pub inhibit: watch::Receiver<Option<Inhibited>>,
    pub unkey: watch::Receiver<u64>,
}

impl Controls {
    /// Controls for these radios, none inhibited, kept nowhere (tests, `demo`).
    pub fn new<S: Into<String>>(radios: impl IntoIterator<Item = S>) -> Self {
        Self::with(radios, None, BTreeMap::new())
    }

    /// Controls for these radios with `initial` inhibits, kept in `path` from now on.
    pub fn with<S: Into<String>>(
        radios: impl IntoIterator<Item = S>,
        path: Option<PathBuf>,
        initial: BTreeMap<String, Inhibited>,
    ) -> Self {
        let radios = radios
            .into_iter()
            .map(Into::into)
            .map(|name: String| {
                let control = RadioControl {
                    inhibit: watch::Sender::new(initial.get(&name).cloned()),
                    unkey: watch::Sender::new(0),
                };
                (name, control)
            })
            .collect();
        Controls {
            inner: Arc::new(Inner {
                radios,
                path,
                stored: Mutex::new(initial),
            }),
        }
    }

    /// Controls for these radios with the inhibits kept in `path`, read back now: a
    /// missing file means none. A file that cannot be read or parsed inhibits every radio
    /// (the error says why; log it): an inhibit is not lost by a damaged file. The file is
    /// rewritten at the first change.
    pub fn load<S: Into<String>>(
        radios: impl IntoIterator<Item = S>,
        path: PathBuf,
        now_ms: u64,
    ) -> (Self, Option<LoadError>) {
        let radios: Vec<String> = radios.into_iter().map(Into::into).collect();
        let (initial, error) = match std::fs::read_to_string(&path) {
            Ok(text) => match parse(&text) {
                Ok(map) => (map, None),
                Err(message) => (
                    BTreeMap::new(),
                    Some(LoadError::Parse {
                        path: path.clone(),
                        message,
                    }),
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (BTreeMap::new(), None),
            Err(source) => (
                BTreeMap::new(),
                Some(LoadError::Read {
                    path: path.clone(),
                    source,
                }),
            ),
        };
        let initial = match &error {
            None => initial,
            Some(e) => radios
                .iter()
                .map(|name| {
                    let held = Inhibited {
                        reason: Some(format!(
                            "the TX-inhibit file could not be read back ({e}); allow the radio once checked"
                        )),
                        since_ms: now_ms,
                    };
                    (name.clone(), held)
                })
                .collect(),
        };
        (Self::with(radios, Some(path), initial), error)
    }

    /// The radios' names, in order.
    pub fn radios(&self) -> impl Iterator<Item = &str> {
        self.inner.radios.keys().map(String::as_str)
    }

    /// The radios inhibited now.
    pub fn inhibits(&self) -> BTreeMap<String, Inhibited> {
        self.inner
            .radios
            .iter()
            .filter_map(|(name, c)| Some((name.clone(), c.inhibit.borrow().clone()?)))
            .collect()
    }

    /// Whether `radio` is inhibited now (`None`: no such radio).
    pub fn inhibited(&self, radio: &str) -> Option<Option<Inhibited>> {
        self.inner
            .radios
            .get(radio)
            .map(|c| c.inhibit.borrow().clone())
    }

    fn radio(&self, radio: &str) -> Result<&RadioControl, ControlError> {
        self.inner
            .radios
            .get(radio)
            .ok_or_else(|| ControlError::UnknownRadio(radio.to_string()))
    }

    /// Inhibits (`inhibit`, with the operator's `reason`) or allows `radio`'s transmitting.
    /// The change is in effect at once, a radio waiting for its hardware included (it
    /// starts inhibited), then written to the state directory; a failed write is returned
    /// as [`ControlError::Persist`] with the change still in effect. Inhibiting an
    /// inhibited radio again only changes its reason. Blocks on a small file write.
    pub fn tx_inhibit(
        &self,
        radio: &str,
        inhibit: bool,
        reason: Option<String>,
    ) -> Result<(), ControlError> {
        let control = self.radio(radio)?;
        // One change at a time, so the file follows the watches in order.
        let mut stored = lock(&self.inner.stored);
        let now_ms = crate::state::unix_ms(std::time::SystemTime::now());
        let next = inhibit.then(|| Inhibited {
            reason,
            since_ms: control
                .inhibit
                .borrow()
                .as_ref()
                .map_or(now_ms, |i| i.since_ms),
        });
        control.inhibit.send_replace(next.clone());
        match next {
            Some(i) => stored.insert(radio.to_string(), i),
            None => stored.remove(radio),
        };
        let Some(path) = &self.inner.path else {
            return Ok(());
        };
        crate::service::write_private_file(path, render(&stored).as_bytes()).map_err(|source| {
            ControlError::Persist {
                path: path.clone(),
                source,
            }
        })
    }

    /// Ends `radio`'s transmission under way now (nothing happens if it is not
    /// transmitting); messages waiting their turn still play.
    pub fn unkey(&self, radio: &str) -> Result<(), ControlError> {
        let control = self.radio(radio)?;
        if control.unkey.receiver_count() == 0 {
            return Err(ControlError::NotRunning(radio.to_string()));
        }
        control.unkey.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    /// What `radio`'s bridge follows (`None`: no such radio). The inhibit is marked
    /// changed, so the bridge applies it before anything else.
    pub(crate) fn subscribe(&self, radio: &str) -> Option<RadioReceiver> {
        let control = self.inner.radios.get(radio)?;
        let mut inhibit = control.inhibit.subscribe();
        inhibit.mark_changed();
        Some(RadioReceiver {
            inhibit,
            unkey: control.unkey.subscribe(),
        })
    }
}

/// The state directory's inhibit file, when the gateway runs as a service.
pub fn inhibit_file() -> Option<PathBuf> {
    crate::service::state_file(INHIBIT_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reasons(c: &Controls) -> Vec<(String, Option<String>)> {
        c.inhibits()
            .into_iter()
            .map(|(n, i)| (n, i.reason))
            .collect()
    }

    #[test]
    fn the_file_text_round_trips_and_bad_text_is_refused() {
        let mut map = BTreeMap::new();
        map.insert(
            "vhf1".to_string(),
            Inhibited {
                reason: Some("interference \"on\" 146.52".into()),
                since_ms: 1_700_000_000_000,
            },
        );
        map.insert("uhf 2".to_string(), Inhibited::default());
        let text = render(&map);
        assert!(text.starts_with("# Radios whose transmitting"));
        assert_eq!(parse(&text).unwrap(), map);
        assert_eq!(parse(&render(&BTreeMap::new())).unwrap(), BTreeMap::new());
        assert_eq!(parse("").unwrap(), BTreeMap::new());
        for bad in [
            "inhibited = 3",
            "[inhibited.vhf1]\nreason = 5",
            "[inhibited.vhf1]\nsince_ms = \"yesterday\"",
            "[other]\nx = 1",
            "[inhibited.vhf1\n",
            "\u{0}\u{1}garbage",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn inhibits_are_kept_in_the_file_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(INHIBIT_FILE);
        let (c, error) = Controls::load(["vhf1", "uhf1"], path.clone(), 5);
        assert!(error.is_none(), "a missing file is no error");
        assert!(c.inhibits().is_empty());
        c.tx_inhibit("vhf1", true, Some("site work".into()))
            .unwrap();
        let since = c.inhibits()["vhf1"].since_ms;
        assert!(since > 0);
        // Again with another reason: the first instant stays.
        c.tx_inhibit("vhf1", true, Some("still site work".into()))
            .unwrap();
        assert_eq!(c.inhibits()["vhf1"].since_ms, since);
        c.tx_inhibit("uhf1", true, None).unwrap();
        c.tx_inhibit("uhf1", false, None).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (back, error) = Controls::load(["vhf1", "uhf1"], path.clone(), 5);
        assert!(error.is_none());
        assert_eq!(
            reasons(&back),
            [("vhf1".to_string(), Some("still site work".to_string()))]
        );
        assert_eq!(back.inhibits()["vhf1"].since_ms, since);
        assert!(!path.with_extension("tmp").exists());
    }

    #[test]
    fn a_damaged_file_inhibits_every_radio_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(INHIBIT_FILE);
        std::fs::write(&path, "[inhibited.vhf1\nreason = ").unwrap();
        let (c, error) = Controls::load(["vhf1", "uhf1"], path.clone(), 77);
        let error = error.expect("the damage is reported");
        assert!(matches!(error, LoadError::Parse { .. }), "{error}");
        assert!(error.to_string().contains("tx-inhibit.toml"));
        let inhibits = c.inhibits();
        assert_eq!(inhibits.len(), 2);
        assert!(
            inhibits["uhf1"]
                .reason
                .as_deref()
                .unwrap()
                .contains("could not be read back")
        );
        assert_eq!(inhibits["uhf1"].since_ms, 77);
        // Allowing one rewrites a good file: the other stays inhibited after a restart.
        c.tx_inhibit("uhf1", false, None).unwrap();
        let (back, error) = Controls::load(["vhf1", "uhf1"], path, 78);
        assert!(error.is_none());
        assert_eq!(back.inhibits().keys().collect::<Vec<_>>(), ["vhf1"]);
        // A file that cannot be read at all (a directory here) does the same.
        let (c, error) = Controls::load(["vhf1"], dir.path().to_path_buf(), 1);
        assert!(matches!(error, Some(LoadError::Read { .. })));
        assert!(c.inhibited("vhf1").unwrap().is_some());
    }

    #[test]
    fn radios_not_configured_keep_their_entry_and_unknown_radios_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(INHIBIT_FILE);
        let mut map = BTreeMap::new();
        map.insert("old".to_string(), Inhibited::default());
        std::fs::write(&path, render(&map)).unwrap();
        let (c, error) = Controls::load(["vhf1"], path.clone(), 1);
        assert!(error.is_none());
        assert!(
            c.inhibits().is_empty(),
            "only configured radios are steered"
        );
        assert!(matches!(
            c.tx_inhibit("old", true, None),
            Err(ControlError::UnknownRadio(r)) if r == "old"
        ));
        assert!(matches!(
            c.unkey("nope"),
            Err(ControlError::UnknownRadio(_))
        ));
        c.tx_inhibit("vhf1", true, None).unwrap();
        let stored = parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(stored.keys().collect::<Vec<_>>(), ["old", "vhf1"]);
    }

    #[test]
    fn a_failed_write_is_reported_with_the_change_in_effect() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join(INHIBIT_FILE);
        let c = Controls::with(["vhf1"], Some(path), BTreeMap::new());
        let e = c.tx_inhibit("vhf1", true, None).unwrap_err();
        assert!(matches!(e, ControlError::Persist { .. }), "{e}");
        assert!(e.to_string().contains("in effect"));
        assert!(c.inhibited("vhf1").unwrap().is_some());
    }

    #[tokio::test]
    async fn the_bridge_side_sees_the_latest_inhibit_and_every_unkey() {
        let c = Controls::new(["vhf1"]);
        assert!(matches!(c.unkey("vhf1"), Err(ControlError::NotRunning(_))));
        let mut rx = c.subscribe("vhf1").unwrap();
        assert!(rx.inhibit.has_changed().unwrap(), "applied at the start");
        assert_eq!(*rx.inhibit.borrow_and_update(), None);
        c.tx_inhibit("vhf1", true, Some("a".into())).unwrap();
        c.tx_inhibit("vhf1", true, Some("b".into())).unwrap();
        rx.inhibit.changed().await.unwrap();
        assert_eq!(
            rx.inhibit
                .borrow_and_update()
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("b")
        );
        c.unkey("vhf1").unwrap();
        rx.unkey.changed().await.unwrap();
        assert_eq!(*rx.unkey.borrow_and_update(), 1);
        assert!(c.subscribe("uhf1").is_none());
    }
}

//! `systemctl reload` (SIGHUP): reread the configuration file, check it, and say what differs
//! from the configuration the gateway runs on. What can change while running is applied at
//! once ([`LIVE_TABLES`]: `[log]` and `[alarms]`); every other change is named in the log and takes
//! effect at the next restart. A file that no longer validates leaves the gateway running
//! as it is.

use crate::config::{Config, ConfigError};
use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// The tables a reload applies while the gateway runs: the log level and the Zello Alarms
/// settings.
pub const LIVE_TABLES: &[&str] = &["log", "alarms"];

/// What a reload found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The file cannot be used; every problem, each naming its key.
    Invalid(Vec<String>),
    /// The file validates; these keys differ from the running configuration
    /// (`zello.server`, `radio[0].timing`; empty when none does) and wait for a restart,
    /// these were applied (`log.level`), and these warnings apply.
    Valid {
        changed: Vec<String>,
        applied: Vec<String>,
        warnings: Vec<String>,
    },
}

/// Rereads one configuration file and compares it with the one the gateway started with.
#[derive(Debug, Clone)]
pub struct Reloader {
    path: PathBuf,
    running: Table,
    /// Where new `[alarms]` settings go (the running alarms task).
    alarms: Option<tokio::sync::watch::Sender<crate::alarms::AlarmsConfig>>,
}

/// Whether a changed key (`log.level`, `log (added)`, `alarms.hardware_grace_s`) is one
/// applied live.
fn is_live(key: &str) -> bool {
    let bare = key.split(" (").next().unwrap_or(key);
    let table = bare.split('.').next().unwrap_or(bare);
    LIVE_TABLES.contains(&table)
}

/// Reads, parses and validates the file at `path`: the configuration and its TOML table.
pub fn load(path: &Path) -> Result<(Config, Table), ConfigError> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: source.clone(),
        error,
    })?;
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let config = Config::parse(&text, &source, &base)?;
    let table = text.parse::<Table>().map_err(|e| ConfigError::Parse {
        path: source,
        message: e.to_string(),
    })?;
    Ok((config, table))
}

impl Reloader {
    /// For the file at `path`, whose contents the gateway runs on are `running`.
    pub fn new(path: PathBuf, running: Table) -> Self {
        Reloader {
            path,
            running,
            alarms: None,
        }
    }

    /// Sends changed `[alarms]` settings to the running alarms task.
    pub fn with_alarms(
        mut self,
        alarms: tokio::sync::watch::Sender<crate::alarms::AlarmsConfig>,
    ) -> Self {
        self.alarms = Some(alarms);
        self
    }

    /// Rereads and checks the file: its configuration, and what the session would make of
    /// it (password and key files).
    pub fn reload(&self) -> Outcome {
        self.read().0
    }

    /// [`Reloader::reload`], with the file's configuration and table when it is valid.
    fn read(&self) -> (Outcome, Option<(Config, Table)>) {
        let (config, table) = match load(&self.path) {
            Ok(loaded) => loaded,
            Err(ConfigError::Invalid { problems, .. }) => {
                return (Outcome::Invalid(problems), None);
            }
            Err(e) => return (Outcome::Invalid(vec![e.to_string()]), None),
        };
        if let Err(e) = config.session_config() {
            return (Outcome::Invalid(vec![e.to_string()]), None);
        }
        let (applied, changed): (Vec<String>, Vec<String>) = changed_keys(&self.running, &table)
            .into_iter()
            .partition(|k| is_live(k));
        let outcome = Outcome::Valid {
            changed,
            applied,
            warnings: config.secret_file_warnings(),
        };
        (outcome, Some((config, table)))
    }

    /// Rereads the file; when it is valid, applies what can change live (the log level,
    /// unless `RUST_LOG` is set, and the `[alarms]` settings) and takes it as running.
    pub fn reload_and_apply(&mut self) -> Outcome {
        let (outcome, loaded) = self.read();
        if let Outcome::Valid { applied, .. } = &outcome
            && !applied.is_empty()
            && let Some((config, table)) = loaded
        {
            if let Some(alarms) = &self.alarms {
                let first = config.radios.first().map(|r| r.channel.as_str());
                let new = config.alarms.clone().resolved(first.unwrap_or_default());
                alarms.send_if_modified(|running| {
                    let changed = *running != new;
                    *running = new;
                    changed
                });
            }
            let level_changed = applied.iter().any(|k| k.starts_with("log"));
            match level_changed
                .then(|| crate::service::logging::set_level(config.log.level.as_deref()))
            {
                None => {}
                Some(Ok(crate::service::logging::LevelChange::Applied(level))) => {
                    tracing::info!(level = %level, "log level now {level:?}");
                }
                Some(Ok(crate::service::logging::LevelChange::RustLogWins)) => {
                    tracing::info!(
                        "log.level changed, but RUST_LOG is set and wins; unset it in the unit to use the file's level"
                    );
                }
                Some(Err(e)) => tracing::error!(error = %e, "log level not changed"),
            }
            // What was applied now runs: a later reload compares with it.
            for name in LIVE_TABLES {
                match table.get(*name) {
                    Some(v) => {
                        self.running.insert(name.to_string(), v.clone());
                    }
                    None => {
                        self.running.remove(*name);
                    }
                }
            }
        }
        // Logged at the new level.
        self.log(&outcome);
        outcome
    }

    /// Rereads the file and logs the outcome: every problem, or one line naming what changed.
    pub fn reload_and_log(&self) -> Outcome {
        let outcome = self.reload();
        self.log(&outcome);
        outcome
    }

    /// Logs every problem, or one line naming what changed.
    fn log(&self, outcome: &Outcome) {
        let file = self.path.display();
        match outcome {
            // Each problem once, in the message alone (the log line already names this
            // module), then what it means.
            Outcome::Invalid(problems) => {
                for p in problems {
                    tracing::error!("{p}");
                }
                tracing::error!(
                    "configuration {file} not reloaded: {} problem(s); still running on the configuration it started with",
                    problems.len()
                );
            }
            Outcome::Valid {
                changed,
                applied,
                warnings,
            } => {
                for w in warnings {
                    tracing::warn!("{w}");
                }
                if !applied.is_empty() {
                    tracing::info!(
                        applied = %applied.join(", "),
                        "configuration {file} reloaded: {} applied now",
                        applied.join(", ")
                    );
                }
                if changed.is_empty() {
                    if applied.is_empty() {
                        tracing::info!(
                            "configuration {file} reloaded: no change from the running configuration"
                        );
                    }
                } else {
                    tracing::warn!(
                        changed = %changed.join(", "),
                        "configuration {file} reloaded: {} changed; each change takes effect after a restart (systemctl restart zello-gateway)",
                        changed.join(", ")
                    );
                }
            }
        }
    }
}

/// The keys whose values differ between two configuration files, two levels deep
/// (`zello.server`, `zello.token`, `radio[1].ptt`), a whole radio when one was added or
/// removed (`radio[2] (added)`), in the files' key order (sorted).
pub fn changed_keys(old: &Table, new: &Table) -> Vec<String> {
    let mut out = Vec::new();
    diff_tables("", old, new, 0, &mut out);
    out
}

/// Keys deeper than this are reported by their parent.
const DEPTH: usize = 2;

fn diff_tables(prefix: &str, old: &Table, new: &Table, depth: usize, out: &mut Vec<String>) {
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        diff_values(&path, old.get(key), new.get(key), depth + 1, out);
    }
}

fn diff_values(
    path: &str,
    old: Option<&Value>,
    new: Option<&Value>,
    depth: usize,
    out: &mut Vec<String>,
) {
    match (old, new) {
        (None, None) => {}
        (Some(_), None) => out.push(format!("{path} (removed)")),
        (None, Some(_)) => out.push(format!("{path} (added)")),
        (Some(a), Some(b)) if a == b => {}
        (Some(Value::Table(a)), Some(Value::Table(b))) if depth < DEPTH => {
            diff_tables(path, a, b, depth, out)
        }
        // An array of tables ([[radio]]): element by element, at the same depth.
        (Some(Value::Array(a)), Some(Value::Array(b)))
            if depth < DEPTH && a.iter().chain(b).all(Value::is_table) =>
        {
            for i in 0..a.len().max(b.len()) {
                let element = format!("{path}[{i}]");
                match (a.get(i), b.get(i)) {
                    (Some(Value::Table(x)), Some(Value::Table(y))) => {
                        diff_tables(&element, x, y, depth, out)
                    }
                    (x, y) => diff_values(&element, x, y, depth, out),
                }
            }
        }
        (Some(_), Some(_)) => out.push(path.to_string()),
    }
}

/// The service's test file: one radio, vhf1 on Dispatch, with the literal `$more` after its
/// radio table (more keys of vhf1, more radios).
#[cfg(test)]
macro_rules! one_radio_file {
    ($($more:literal)?) => {
        concat!(
            r#"
[zello]
server = "ws://127.0.0.1:8800/ws"
username = "gw"
password = "pw"

[[radio]]
name = "vhf1"
channel = "Dispatch"
audio = { backend = "file" }
"#,
            $($more)?
        )
    };
}
#[cfg(test)]
pub(super) use one_radio_file;

/// For the service's tests: `text` written as `gateway.toml` in a new temporary folder, and
/// loaded. Returns the folder (removed when dropped), the file, its configuration and a
/// reloader comparing with it.
#[cfg(test)]
pub(super) fn write_and_load(text: &str) -> (tempfile::TempDir, PathBuf, Config, Reloader) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    let (config, running) = load(&path).unwrap();
    let reloader = Reloader::new(path.clone(), running);
    (dir, path, config, reloader)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUNNING: &str = one_radio_file!(
        r#"timing = { tx_delay_ms = 200 }

[[radio]]
name = "uhf1"
channel = "Ops"
audio = { backend = "file" }
"#
    );

    fn table(text: &str) -> Table {
        text.parse().unwrap()
    }

    #[test]
    #[serial_test::serial(log_capture)] // one log capture at a time, whatever its callsites
    fn changed_keys_name_the_setting() {
        let old = table(RUNNING);
        assert!(changed_keys(&old, &old).is_empty());
        let new = RUNNING
            .replace("ws://127.0.0.1:8800/ws", "wss://zello.io/ws")
            .replace("tx_delay_ms = 200", "tx_delay_ms = 300")
            .replace("password = \"pw\"", "password = \"new\"");
        assert_eq!(
            changed_keys(&old, &table(&new)),
            ["radio[0].timing", "zello.password", "zello.server"]
        );
        // Formatting and comments are not changes.
        let reformatted = RUNNING.replace("username = \"gw\"", "username   =   \"gw\"  # me");
        assert!(changed_keys(&old, &table(&reformatted)).is_empty());
    }

    #[test]
    #[serial_test::serial(log_capture)] // one log capture at a time, whatever its callsites
    fn added_and_removed_keys_and_radios() {
        let old = table(RUNNING);
        let fewer = &RUNNING[..RUNNING.rfind("[[radio]]").unwrap()];
        assert_eq!(changed_keys(&old, &table(fewer)), ["radio[1] (removed)"]);
        let more = format!(
            "{RUNNING}\n[[radio]]\nname = \"hf1\"\nchannel = \"Net\"\n\n[log]\nlevel = \"debug\"\n"
        );
        assert_eq!(
            changed_keys(&old, &table(&more)),
            ["log (added)", "radio[2] (added)"]
        );
        let token = RUNNING.replace(
            "password = \"pw\"\n",
            "password = \"pw\"\nca_file = \"ca.pem\"\n[zello.token]\nissuer = \"x\"\nprivate_key_file = \"k.pem\"\n",
        );
        assert_eq!(
            changed_keys(&old, &table(&token)),
            ["zello.ca_file (added)", "zello.token (added)"]
        );
        let token2 = token.replace("issuer = \"x\"", "issuer = \"y\"");
        assert_eq!(
            changed_keys(&table(&token), &table(&token2)),
            ["zello.token"]
        );
    }

    #[test]
    #[serial_test::serial(log_capture)] // one log capture at a time, whatever its callsites
    fn a_file_that_no_longer_validates_lists_every_problem() {
        let (_dir, path, _, reloader) = write_and_load(RUNNING);
        assert_eq!(
            reloader.reload_and_log(),
            Outcome::Valid {
                changed: vec![],
                applied: vec![],
                warnings: vec![]
            }
        );

        std::fs::write(
            &path,
            RUNNING
                .replace("ws://127.0.0.1:8800/ws", "ws://203.0.113.9/ws")
                .replace("channel = \"Ops\"", "channel = \"\""),
        )
        .unwrap();
        let Outcome::Invalid(problems) = reloader.reload_and_log() else {
            panic!("accepted");
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("zello.server"), "{problems:?}");
        assert!(problems[1].starts_with("radio[1].channel"), "{problems:?}");

        std::fs::write(&path, "[zello\n").unwrap();
        assert!(matches!(reloader.reload(), Outcome::Invalid(p) if p.len() == 1));
        std::fs::remove_file(&path).unwrap();
        let Outcome::Invalid(p) = reloader.reload() else {
            panic!("accepted a missing file");
        };
        assert!(p[0].contains("gateway.toml"), "{p:?}");

        // Compared with what runs, not with the last file read.
        std::fs::write(&path, RUNNING.replace("name = \"uhf1\"", "name = \"uhf2\"")).unwrap();
        assert_eq!(
            reloader.reload(),
            Outcome::Valid {
                changed: vec!["radio[1].name".into()],
                applied: vec![],
                warnings: vec![]
            }
        );
    }

    /// What `f` logs, as the fmt layer writes it (with the target).
    fn logged(f: impl FnOnce()) -> String {
        let (buf, guard) = crate::testing::capture_logs(tracing::Level::TRACE);
        f();
        drop(guard);
        String::from_utf8(buf.lock().unwrap().clone()).unwrap()
    }

    #[test]
    #[serial_test::serial(log_capture)] // one log capture at a time, whatever its callsites
    fn a_failed_reload_is_logged_once_and_never_shows_a_secret() {
        let (_dir, path, _, reloader) = write_and_load(RUNNING);
        std::fs::write(
            &path,
            RUNNING.replace("password = \"pw\"", "password = \"Pw-S3cret-7f3a9c"),
        )
        .unwrap();
        let log = logged(|| {
            assert!(matches!(reloader.reload_and_log(), Outcome::Invalid(p) if p.len() == 1));
        });
        assert!(!log.contains("S3cret"), "{log}");
        assert!(log.contains("line 5"), "{log}");
        assert!(log.contains("zello.password"), "{log}");
        assert_eq!(log.matches("line 5").count(), 1, "{log}");
        assert!(log.contains("not reloaded"), "{log}");
        assert!(!log.contains("reload: reload:"), "{log}");
        assert!(!log.contains("problem="), "{log}");
    }

    #[test]
    #[serial_test::serial(log_capture)] // one log capture at a time, whatever its callsites
    fn the_log_level_is_applied_live_and_the_rest_waits_for_a_restart() {
        let (_dir, path, _, mut reloader) = write_and_load(RUNNING);
        let with_level = |level: &str| format!("{RUNNING}\n[log]\nlevel = \"{level}\"\n");
        std::fs::write(
            &path,
            with_level("debug").replace("tx_delay_ms = 200", "tx_delay_ms = 250"),
        )
        .unwrap();
        assert_eq!(
            reloader.reload_and_apply(),
            Outcome::Valid {
                changed: vec!["radio[0].timing".into()],
                applied: vec!["log (added)".into()],
                warnings: vec![]
            }
        );
        // Applied: the next reload compares with it; the timing still waits.
        assert_eq!(
            reloader.reload_and_apply(),
            Outcome::Valid {
                changed: vec!["radio[0].timing".into()],
                applied: vec![],
                warnings: vec![]
            }
        );
        std::fs::write(&path, with_level("warn")).unwrap();
        assert_eq!(
            reloader.reload_and_apply(),
            Outcome::Valid {
                changed: vec![],
                applied: vec!["log.level".into()],
                warnings: vec![]
            }
        );
        // [alarms] is applied too: the running alarms task gets the new settings.
        let (tx, rx) = tokio::sync::watch::channel(crate::alarms::AlarmsConfig::default());
        let mut reloader = reloader.with_alarms(tx);
        std::fs::write(
            &path,
            format!("{}\n[alarms]\nhardware_grace_s = 15\n", with_level("warn")),
        )
        .unwrap();
        assert_eq!(
            reloader.reload_and_apply(),
            Outcome::Valid {
                changed: vec![],
                applied: vec!["alarms (added)".into()],
                warnings: vec![]
            }
        );
        assert!(rx.has_changed().unwrap());
        assert_eq!(rx.borrow().hardware_grace_s, 15);
        // A level that is not one is a problem of the file, and nothing is applied.
        std::fs::write(&path, with_level("loud")).unwrap();
        let Outcome::Invalid(p) = reloader.reload_and_apply() else {
            panic!("accepted a bad level");
        };
        assert!(p[0].starts_with("log.level = \"loud\""), "{p:?}");
    }
}

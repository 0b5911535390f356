//! Where log lines go: journald with structured fields under systemd, readable lines on
//! stderr otherwise.
//!
//! # Under systemd
//!
//! When systemd started the process (`$JOURNAL_STREAM` or `$INVOCATION_ID` set), events go
//! straight to journald through its native protocol, so every field of an event and of its
//! enclosing spans becomes a journal field of its own. Field names are upper-cased with no
//! prefix (dots become underscores):
//!
//! | tracing field | journal field | example query |
//! |---|---|---|
//! | `radio` | `RADIO` | `journalctl -u zello-gateway RADIO=radio1` |
//! | `channel` | `CHANNEL` | `journalctl -u zello-gateway CHANNEL=Dispatch` |
//! | `stream_id` | `STREAM_ID` | `journalctl -u zello-gateway STREAM_ID=1234` |
//! | `event` | `EVENT` | `journalctl -u zello-gateway EVENT=device_lost` |
//! | `from`, `ptt`, `carrier`, `device`, `component`, `error` | `FROM`, `PTT`, `CARRIER`, `DEVICE`, `COMPONENT`, `ERROR` | |
//! | the message | `MESSAGE` | |
//! | the level | `PRIORITY` (error 3, warn 4, info 5, debug 6, trace 7) | `journalctl -u zello-gateway -p warning` |
//! | the module | `TARGET`, with `CODE_FILE` and `CODE_LINE` | |
//! | each enclosing span's name | `SPAN_NAME` | |
//!
//! `SYSLOG_IDENTIFIER` is `zello-gateway`. A field set on a span is attached to every event inside
//! it: each radio's bridge task, codec thread and PTT thread run in a `radio` span
//! (`gateway::radio_span`) and a message's lines in a `message` span
//! (`gateway::message_span`), so their lines carry `RADIO` and `STREAM_ID`. Field names must not be one of
//! journald's own (`MESSAGE`, `PRIORITY`, `SYSLOG_IDENTIFIER`, `CODE_FILE`, `CODE_LINE`,
//! `ERRNO`, ...): give such a value another name. `journalctl -u zello-gateway -o verbose`
//! shows every field of each entry.
//!
//! If journald cannot be reached, lines go to stderr without timestamps (journald adds its
//! own to whatever systemd captures from stderr).
//!
//! # Elsewhere
//!
//! Human-readable lines on stderr, with timestamps, coloured on a terminal.
//!
//! # Level
//!
//! `RUST_LOG` when set, else the level given to [`init`] (from the configuration), else
//! `info`. Either takes a level (`error`, `warn`, `info`, `debug`, `trace`, `off`) or
//! comma-separated `module=level` directives with an optional bare default level, such as
//! `warn,zello_gateway::zello=debug`. A word that is not a level is refused instead of being
//! read as a module name, which would silently hide every other line.
//!
//! A bare level is for the gateway: the libraries underneath (tungstenite, rustls, hyper,
//! mio, ...) stay at `info` at most, since their `debug` and `trace` lines come per frame,
//! read or poll. A directive naming one (`trace,tungstenite=debug`) turns it up, but never
//! to the level where it writes frame payloads: tungstenite's `trace` would write the logon
//! with the password, so it is held at `debug` and a line says so.

use std::ffi::OsStr;
use std::io::IsTerminal as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The level used when neither `RUST_LOG` nor the configuration gives one.
pub const DEFAULT_LEVEL: &str = "info";

/// The `SYSLOG_IDENTIFIER` of journal entries.
pub const SYSLOG_IDENTIFIER: &str = "zello-gateway";

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// A level setting could not be read.
    #[error(
        "{source_name} = {value:?}: {reason} (use error, warn, info, debug, trace or off, optionally with module=level directives such as \"warn,zello_gateway::zello=debug\")"
    )]
    BadLevel {
        /// `RUST_LOG` or the configuration key.
        source_name: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Logging was already set up in this process.
    #[error(
        "logging is already set up in this process (call service::logging::init once, at start)"
    )]
    AlreadySet,
    /// The running filter could not be replaced.
    #[error("cannot change the log level: {0}")]
    Reload(String),
}

/// Where the configured level came from, for messages: the configuration key.
pub const LEVEL_KEY: &str = "log.level";

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// journald's native protocol, with structured fields.
    Journald,
    /// Readable lines on stderr.
    Stderr {
        /// Prefix each line with the time (not under systemd, where journald adds it).
        timestamps: bool,
    },
}

/// The output for a process whose environment has these values of `$JOURNAL_STREAM` and
/// `$INVOCATION_ID`: journald when either is set (systemd started it), stderr otherwise.
pub fn choose_output(journal_stream: Option<&OsStr>, invocation_id: Option<&OsStr>) -> Output {
    let set = |v: Option<&OsStr>| v.is_some_and(|v| !v.is_empty());
    if set(journal_stream) || set(invocation_id) {
        Output::Journald
    } else {
        Output::Stderr { timestamps: true }
    }
}

/// The filter directives to use and where they came from: `RUST_LOG` (`rust_log`) when set
/// and not empty, else `configured`, else [`DEFAULT_LEVEL`]. Each is checked.
pub fn level_directives(
    configured: Option<&str>,
    rust_log: Option<&str>,
) -> Result<(String, &'static str), LoggingError> {
    let (value, source_name) = match (rust_log.map(str::trim), configured.map(str::trim)) {
        (Some(env), _) if !env.is_empty() => (env, "RUST_LOG"),
        (_, Some(conf)) if !conf.is_empty() => (conf, LEVEL_KEY),
        _ => (DEFAULT_LEVEL, "default"),
    };
    check_directives(value).map_err(|reason| LoggingError::BadLevel {
        source_name,
        value: value.to_string(),
        reason: reason.to_string(),
    })?;
    Ok((value.to_string(), source_name))
}

/// The filter for `configured` and `rust_log`, as [`level_directives`] picks them, with the
/// libraries underneath held back as [`effective_directives`] says.
pub fn filter(configured: Option<&str>, rust_log: Option<&str>) -> Result<EnvFilter, LoggingError> {
    let (directives, source_name) = level_directives(configured, rust_log)?;
    EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .parse(effective_directives(&directives).text)
        .map_err(|e| LoggingError::BadLevel {
            source_name,
            value: directives.clone(),
            reason: e.to_string(),
        })
}

/// Libraries underneath that log per frame, read or poll below `info`, and the most they
/// may log when asked for by name: tungstenite writes every WebSocket frame with its
/// payload at `trace` (the logon with the password among them), rustls its handshake
/// messages, reqwest every byte read and written; at `debug` they write one line per
/// connection step. The others dump nothing secret, only many lines.
const THIRD_PARTY: &[(&str, LevelFilter)] = &[
    ("tungstenite", LevelFilter::DEBUG),
    ("tokio_tungstenite", LevelFilter::TRACE),
    ("rustls", LevelFilter::DEBUG),
    ("tokio_rustls", LevelFilter::DEBUG),
    ("hyper", LevelFilter::TRACE),
    ("hyper_util", LevelFilter::TRACE),
    ("reqwest", LevelFilter::DEBUG),
    ("h2", LevelFilter::TRACE),
    ("mio", LevelFilter::TRACE),
    ("want", LevelFilter::TRACE),
    // One line per MQTT packet at `debug`; no credentials.
    ("rumqttc", LevelFilter::TRACE),
];

/// The directives actually applied, and which third-party targets were held below the
/// level asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    /// The directives for the filter.
    pub text: String,
    /// Each target asked for beyond what it may log, with the level it got instead.
    pub capped: Vec<(String, &'static str)>,
}

fn level_name(level: LevelFilter) -> &'static str {
    match level {
        LevelFilter::OFF => "off",
        LevelFilter::ERROR => "error",
        LevelFilter::WARN => "warn",
        LevelFilter::INFO => "info",
        LevelFilter::DEBUG => "debug",
        _ => "trace",
    }
}

/// The directives `value` (already checked) comes to: a bare level applies to the gateway,
/// while the libraries of [`THIRD_PARTY`] stay at `info` at most (their per-frame and
/// per-poll lines would flood the log) unless a directive names them; named, they get what
/// is asked up to their cap, below the level where frame payloads are written.
pub fn effective_directives(value: &str) -> Effective {
    let mut bare = LevelFilter::INFO;
    let mut named = Vec::new();
    let mut capped = Vec::new();
    let mut out: Vec<String> = Vec::new();
    for directive in value.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let Some((target, level)) = directive.rsplit_once('=') else {
            if let Ok(level) = directive.parse::<LevelFilter>() {
                bare = level;
            }
            out.push(directive.to_string());
            continue;
        };
        let module = target.split('[').next().unwrap_or("").trim();
        let library = THIRD_PARTY.iter().find(|(name, _)| {
            module == *name
                || module
                    .strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with("::"))
        });
        match (library, level.trim().parse::<LevelFilter>()) {
            (Some((name, cap)), Ok(asked)) => {
                named.push(*name);
                if asked > *cap {
                    capped.push((module.to_string(), level_name(*cap)));
                    out.push(format!("{target}={}", level_name(*cap)));
                } else {
                    out.push(directive.to_string());
                }
            }
            _ => out.push(directive.to_string()),
        }
    }
    let quiet = level_name(bare.min(LevelFilter::INFO));
    for (name, _) in THIRD_PARTY {
        if !named.contains(name) {
            out.push(format!("{name}={quiet}"));
        }
    }
    Effective {
        text: out.join(","),
        capped,
    }
}

/// Says once, after logging is set up, which libraries were held below what was asked.
fn note_capped(directives: &str) {
    for (target, level) in effective_directives(directives).capped {
        tracing::info!(
            library = %target,
            level,
            "{target} capped at {level}: its trace lines would write every WebSocket frame or TLS record, the logon with the password among them"
        );
    }
}

/// A directive of a log level that is not one.
#[derive(Debug, thiserror::Error)]
enum DirectiveError {
    #[error("{0:?} names no module before '='")]
    NoTarget(String),
    #[error("{0:?} is not a level")]
    NotALevel(String),
}

/// Checks that every directive is a level or `target=level` (or a span filter in brackets,
/// left to tracing-subscriber to judge), so that a mistyped level is not taken for a target.
fn check_directives(value: &str) -> Result<(), DirectiveError> {
    for directive in value.split(',').map(str::trim) {
        if directive.is_empty() || directive.contains('[') {
            continue;
        }
        let level = match directive.rsplit_once('=') {
            Some((target, level)) => {
                if target.trim().is_empty() {
                    return Err(DirectiveError::NoTarget(directive.to_string()));
                }
                level.trim()
            }
            None => directive,
        };
        if level.parse::<LevelFilter>().is_err() {
            return Err(DirectiveError::NotALevel(level.to_string()));
        }
    }
    Ok(())
}

/// Sets up logging for the whole process, once: journald under systemd, stderr otherwise
/// (see the module documentation), at the level from `RUST_LOG`, else `level` (from the
/// configuration), else `info`.
///
/// If journald is not reachable although systemd started the process, lines go to stderr
/// (which systemd also sends to the journal) and a warning says why.
pub fn init(level: Option<&str>) -> Result<(), LoggingError> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let (directives, _) = level_directives(level, rust_log.as_deref())?;
    let filter = filter(level, rust_log.as_deref())?;
    init_with(filter)?;
    note_capped(&directives);
    Ok(())
}

fn init_with(filter: EnvFilter) -> Result<(), LoggingError> {
    let output = choose_output(
        std::env::var_os("JOURNAL_STREAM").as_deref(),
        std::env::var_os("INVOCATION_ID").as_deref(),
    );
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let _ = LEVEL.set(handle);
    let registry = tracing_subscriber::registry().with(filter);
    match output {
        Output::Journald => match journald_layer() {
            Ok(layer) => registry
                .with(layer)
                .try_init()
                .map_err(|_| LoggingError::AlreadySet),
            Err(e) => {
                registry
                    .with(stderr_layer(false))
                    .try_init()
                    .map_err(|_| LoggingError::AlreadySet)?;
                tracing::warn!(
                    error = %e,
                    "journald is not reachable at /run/systemd/journal/socket: logging to stderr without structured fields"
                );
                Ok(())
            }
        },
        Output::Stderr { timestamps } => registry
            .with(stderr_layer(timestamps))
            .try_init()
            .map_err(|_| LoggingError::AlreadySet),
    }
}

/// The running filter, for [`set_level`].
static LEVEL: std::sync::OnceLock<
    tracing_subscriber::reload::Handle<EnvFilter, tracing_subscriber::Registry>,
> = std::sync::OnceLock::new();

/// What [`set_level`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LevelChange {
    /// The process logs at these directives from now on.
    Applied(String),
    /// `RUST_LOG` is set and wins over the configuration: nothing changed.
    RustLogWins,
}

/// Changes the running log level to the configured one (`systemctl reload` after editing
/// `[log] level`), unless `RUST_LOG` is set.
pub fn set_level(configured: Option<&str>) -> Result<LevelChange, LoggingError> {
    let rust_log = std::env::var("RUST_LOG").ok();
    if rust_log.as_deref().is_some_and(|v| !v.trim().is_empty()) {
        return Ok(LevelChange::RustLogWins);
    }
    let (directives, _) = level_directives(configured, None)?;
    let new = filter(configured, None)?;
    if let Some(handle) = LEVEL.get() {
        handle
            .reload(new)
            .map_err(|e| LoggingError::Reload(e.to_string()))?;
        note_capped(&directives);
    }
    Ok(LevelChange::Applied(directives))
}

/// The journald layer: fields without a prefix, under our `SYSLOG_IDENTIFIER`. The fields
/// of the spans an event is in (`radio`, `stream_id`) are written with the event's own, so
/// they become journal fields of each entry (`RADIO`, `STREAM_ID`). Fails when journald is
/// not listening.
fn journald_layer() -> std::io::Result<tracing_journald::Layer> {
    Ok(tracing_journald::layer()?
        .with_field_prefix(None)
        .with_syslog_identifier(SYSLOG_IDENTIFIER.to_string()))
}

/// Readable lines on stderr, with or without timestamps.
fn stderr_layer<S>(timestamps: bool) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(timestamps && std::io::stderr().is_terminal());
    if timestamps {
        Box::new(layer)
    } else {
        Box::new(layer.without_time())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_is_recognised_by_its_variables() {
        let v = |s: &'static str| Some(OsStr::new(s));
        assert_eq!(
            choose_output(None, None),
            Output::Stderr { timestamps: true }
        );
        assert_eq!(
            choose_output(v(""), v("")),
            Output::Stderr { timestamps: true }
        );
        assert_eq!(choose_output(v("8:12345"), None), Output::Journald);
        assert_eq!(
            choose_output(None, v("0f1e2d3c4b5a69788796a5b4c3d2e1f0")),
            Output::Journald
        );
        assert_eq!(choose_output(v("8:12345"), v("abc")), Output::Journald);
    }

    #[test]
    fn rust_log_wins_over_the_configuration() {
        assert_eq!(
            level_directives(Some("debug"), Some("warn")).unwrap(),
            ("warn".to_string(), "RUST_LOG")
        );
        assert_eq!(
            level_directives(Some("debug"), None).unwrap(),
            ("debug".to_string(), LEVEL_KEY)
        );
        assert_eq!(
            level_directives(Some("debug"), Some("  ")).unwrap(),
            ("debug".to_string(), LEVEL_KEY)
        );
        assert_eq!(
            level_directives(None, None).unwrap(),
            ("info".to_string(), "default")
        );
        assert_eq!(
            level_directives(Some(""), None).unwrap(),
            ("info".to_string(), "default")
        );
    }

    #[test]
    fn levels_and_directives_are_checked() {
        for good in [
            "info",
            "WARN",
            "off",
            "trace",
            "warn,zello_gateway::zello=debug",
            "zello_gateway=trace",
            "info,[session{channel=Dispatch}]=debug",
        ] {
            level_directives(Some(good), None).unwrap_or_else(|e| panic!("{good}: {e}"));
            filter(Some(good), None).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        let e = level_directives(Some("verbose"), None).unwrap_err();
        assert!(e.to_string().contains("log.level = \"verbose\""), "{e}");
        assert!(e.to_string().contains("\"verbose\" is not a level"), "{e}");
        let e = level_directives(None, Some("inf")).unwrap_err();
        assert!(e.to_string().starts_with("RUST_LOG = \"inf\""), "{e}");
        let e = level_directives(Some("warn,zello_gateway=loud"), None).unwrap_err();
        assert!(e.to_string().contains("\"loud\""), "{e}");
        assert!(level_directives(Some("=debug"), None).is_err());
        // A bad RUST_LOG is an error even when the configuration is fine: it wins.
        assert!(level_directives(Some("info"), Some("chatty")).is_err());
    }

    #[test]
    fn third_party_frame_dumps_stay_off_unless_asked_for_and_are_capped_then() {
        let d = |v: &str| effective_directives(v);
        // A bare level does not reach the libraries underneath beyond info.
        let trace = d("trace");
        assert!(trace.text.starts_with("trace,"), "{}", trace.text);
        for target in ["tungstenite", "tokio_tungstenite", "rustls", "hyper", "mio"] {
            assert!(
                trace.text.contains(&format!(",{target}=info")),
                "{target}: {}",
                trace.text
            );
        }
        assert!(trace.capped.is_empty());
        // Nor raise them above a quieter bare level.
        assert!(d("warn").text.contains(",tungstenite=warn"));
        assert!(d("zello_gateway=debug").text.contains(",tungstenite=info"));
        // A parent module does not count as asking.
        assert!(d("tokio=trace").text.contains(",tokio_tungstenite=info"));
        // Asked for by name: given, but never at the level that dumps frames.
        let asked = d("trace,tungstenite=trace");
        assert!(asked.text.contains("tungstenite=debug"), "{}", asked.text);
        assert!(!asked.text.contains("tungstenite=trace"), "{}", asked.text);
        assert!(!asked.text.contains(",tungstenite=info"), "{}", asked.text);
        assert_eq!(asked.capped, [("tungstenite".to_string(), "debug")]);
        let sub = d("tungstenite::protocol=trace");
        assert!(
            sub.text.contains("tungstenite::protocol=debug"),
            "{}",
            sub.text
        );
        assert_eq!(sub.capped.len(), 1);
        // Levels that dump nothing are left as given.
        let mio = d("info,mio=trace,tungstenite=debug");
        assert!(mio.text.contains("mio=trace"), "{}", mio.text);
        assert!(mio.capped.is_empty());
        // The filter built from them keeps tungstenite's frame dumps off.
        let f = filter(None, Some("trace,tungstenite=trace")).unwrap();
        assert_eq!(f.max_level_hint(), Some(LevelFilter::TRACE));
        assert!(f.to_string().contains("tungstenite=debug"), "{f}");
    }

    #[test]
    fn the_filter_has_the_chosen_level() {
        let max =
            |conf: Option<&str>, env: Option<&str>| filter(conf, env).unwrap().max_level_hint();
        assert_eq!(max(None, None), Some(LevelFilter::INFO));
        assert_eq!(max(Some("debug"), None), Some(LevelFilter::DEBUG));
        assert_eq!(max(Some("debug"), Some("error")), Some(LevelFilter::ERROR));
        assert_eq!(
            max(None, Some("warn,zello_gateway=trace")),
            Some(LevelFilter::TRACE)
        );
        assert_eq!(max(Some("off"), None), Some(LevelFilter::OFF));
    }

    /// The fields of one entry in journald's native protocol, as `NAME=value`: each is
    /// `NAME=value\n`, or `NAME\n`, the value's length (64-bit little-endian), the value
    /// and `\n`.
    fn native_fields(mut data: &[u8]) -> Vec<String> {
        let mut fields = Vec::new();
        while let Some(end) = data.iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&data[..end]).into_owned();
            data = &data[end + 1..];
            if line.contains('=') {
                fields.push(line);
                continue;
            }
            let len = u64::from_le_bytes(data[..8].try_into().unwrap()) as usize;
            let value = String::from_utf8_lossy(&data[8..8 + len]);
            fields.push(format!("{line}={value}"));
            data = &data[8 + len + 1..];
        }
        fields
    }

    /// Removes a file when dropped.
    struct Removed(&'static str);

    impl Drop for Removed {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }

    /// The fields of the spans a line is written in reach journald as fields of their own,
    /// beside the line's: the radio's name as `RADIO`, a message's stream id as
    /// `STREAM_ID`. Runs where it can stand in for journald at its socket (no journald
    /// running, and the rights to create the socket): a container or a CI machine.
    #[test]
    fn span_fields_reach_journald_as_fields_of_their_own() {
        use std::os::unix::net::UnixDatagram;
        const SOCKET: &str = "/run/systemd/journal/socket";
        if std::path::Path::new(SOCKET).exists() {
            eprintln!("journald listens at {SOCKET}: the stand-in cannot; not checked here");
            return;
        }
        let journal = match std::fs::create_dir_all("/run/systemd/journal")
            .and_then(|()| UnixDatagram::bind(SOCKET))
        {
            Ok(journal) => journal,
            Err(e) => {
                eprintln!("cannot stand in for journald at {SOCKET} ({e}): not checked here");
                return;
            }
        };
        let _removed = Removed(SOCKET);
        journal
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let subscriber = tracing_subscriber::registry().with(journald_layer().unwrap());
        tracing::subscriber::with_default(subscriber, || {
            // Call sites first met by another test's thread (no subscriber there) may
            // have been judged before this subscriber existed.
            tracing::callsite::rebuild_interest_cache();
            let _radio = crate::gateway::radio_span("radio1").entered();
            let _message = crate::gateway::message_span(42).entered();
            tracing::warn!(event = "ptt_lost", unkeyed_ms = 300u64, "span field check");
        });
        let fields = loop {
            let mut buf = vec![0u8; 65536];
            let n = journal.recv(&mut buf).expect("an entry for journald");
            let fields = native_fields(&buf[..n]);
            if fields.iter().any(|f| f == "MESSAGE=span field check") {
                break fields;
            }
        };
        let entry = fields.join("\n");
        for field in [
            "RADIO=radio1",
            "STREAM_ID=42",
            "EVENT=ptt_lost",
            "UNKEYED_MS=300",
            "PRIORITY=4",
            "SYSLOG_IDENTIFIER=zello-gateway",
        ] {
            assert!(
                fields.iter().any(|f| f == field),
                "{field} missing: {entry}"
            );
        }
        assert_eq!(
            fields.iter().filter(|f| f.starts_with("RADIO=")).count(),
            1,
            "{entry}"
        );
    }
}

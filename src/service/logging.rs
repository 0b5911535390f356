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
//! `SYSLOG_IDENTIFIER` is `zello-gateway`. A field set on a span (`info_span!("radio",
//! radio = %name)`) is attached to every event inside it. Field names must not be one of
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
        reason,
    })?;
    Ok((value.to_string(), source_name))
}

/// The filter for `configured` and `rust_log`, as [`level_directives`] picks them.
pub fn filter(configured: Option<&str>, rust_log: Option<&str>) -> Result<EnvFilter, LoggingError> {
    let (directives, source_name) = level_directives(configured, rust_log)?;
    EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .parse(&directives)
        .map_err(|e| LoggingError::BadLevel {
            source_name,
            value: directives.clone(),
            reason: e.to_string(),
        })
}

/// Checks that every directive is a level or `target=level` (or a span filter in brackets,
/// left to tracing-subscriber to judge), so that a mistyped level is not taken for a target.
fn check_directives(value: &str) -> Result<(), String> {
    for directive in value.split(',').map(str::trim) {
        if directive.is_empty() || directive.contains('[') {
            continue;
        }
        let level = match directive.rsplit_once('=') {
            Some((target, level)) => {
                if target.trim().is_empty() {
                    return Err(format!("{directive:?} names no module before '='"));
                }
                level.trim()
            }
            None => directive,
        };
        if level.parse::<LevelFilter>().is_err() {
            return Err(format!("{level:?} is not a level"));
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
    let filter = filter(level, rust_log.as_deref())?;
    let output = choose_output(
        std::env::var_os("JOURNAL_STREAM").as_deref(),
        std::env::var_os("INVOCATION_ID").as_deref(),
    );
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let _ = LEVEL.set(handle);
    let registry = tracing_subscriber::registry().with(filter);
    match output {
        Output::Journald => match tracing_journald::layer() {
            Ok(layer) => registry
                .with(
                    layer
                        .with_field_prefix(None)
                        .with_syslog_identifier(SYSLOG_IDENTIFIER.to_string()),
                )
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
    }
    Ok(LevelChange::Applied(directives))
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
}

//! The `zello-gateway` command.

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use zello_gateway::{bench, config::Config, daemon, demo, parts, ptt_test, service, sim, work};

/// Bridges a two-way radio to Zello push-to-talk channels.
#[derive(Parser, Debug)]
#[command(name = "zello-gateway", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Configuration file for `run`, the command when none is given
    /// [default: /etc/zello-gateway/gateway.toml].
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Where the configuration is read from when `--config` is not given.
const DEFAULT_CONFIG: &str = "/etc/zello-gateway/gateway.toml";

/// `--config FILE`, for each command that reads the gateway's configuration (flattened
/// into it; the commands that take none refuse the option).
#[derive(clap::Args, Debug, Clone, Default)]
struct ConfigArg {
    /// Configuration file [default: /etc/zello-gateway/gateway.toml].
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl Cli {
    /// The configuration file of the command: its own `--config`, or the one given before
    /// it (`zello-gateway --config FILE [run]`), or the default. An error for a command that
    /// reads no configuration but was given one.
    fn config_path(&self) -> Result<PathBuf, clap::Error> {
        let own = match &self.command {
            None => None,
            Some(Cmd::Run(a) | Cmd::PttOff(a)) => a.config.clone(),
            Some(
                Cmd::Check { config, .. }
                | Cmd::Provision { config, .. }
                | Cmd::History { config, .. }
                | Cmd::PttTest { config, .. }
                | Cmd::Monitor { config, .. },
            ) => config.config.clone(),
            Some(cmd @ (Cmd::Sim(_) | Cmd::Devices | Cmd::Demo(_) | Cmd::Bench(_))) => {
                if self.config.is_some() {
                    let name = match cmd {
                        Cmd::Sim(_) => "sim",
                        Cmd::Devices => "devices",
                        Cmd::Demo(_) => "demo",
                        _ => "bench",
                    };
                    return Err(Cli::command().error(
                        clap::error::ErrorKind::ArgumentConflict,
                        format!("`{name}` reads no configuration file: leave out --config"),
                    ));
                }
                None
            }
        };
        Ok(own
            .or_else(|| self.config.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG)))
    }
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the gateway (the default).
    ///
    /// Under systemd (Type=notify) it reports READY=1 once running (connected to Zello or
    /// not; radios whose hardware is missing wait for it), keeps a status line, feeds the
    /// watchdog, rereads the configuration on SIGHUP (systemctl reload) and stops within
    /// 2 s of SIGTERM with PTT released.
    ///
    /// Example: zello-gateway run --config /etc/zello-gateway/gateway.toml
    Run(ConfigArg),
    /// Check the configuration and every device it names, without transmitting.
    ///
    /// Lists every problem of the configuration file (each with its key), warns about secret
    /// files others can read, and opens each radio's devices as the gateway would: the sound
    /// card, the PTT line (set unkeyed) and the carrier detect, then closes them. For the
    /// `file` audio backend it only checks that the input can be read. Prints
    /// "configuration OK" and one line per radio, or every problem and exits 1.
    ///
    /// Run it while the gateway is stopped: devices the gateway holds show as busy, and a
    /// PTT line it has keyed would be set unkeyed.
    ///
    /// With --config-only, only the file and its secrets are checked and no device is
    /// opened: what systemd runs before each start (ExecStartPre), since the gateway waits
    /// for hardware that is not there yet (a USB sound card that enumerates late, a rigctld
    /// started after it).
    ///
    /// Example: zello-gateway check --config /etc/zello-gateway/gateway.toml
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Check the file and its secrets only; open no device.
        #[arg(long)]
        config_only: bool,
    },
    /// Run a local Zello-compatible server, for tests and for trying a radio offline.
    ///
    /// Example: zello-gateway sim --listen 127.0.0.1:8800 --echo
    Sim(sim::SimArgs),
    /// List the sound cards (with the names to put in the config) and, for CM108-family
    /// cards, the matching hidraw node.
    ///
    /// Example: zello-gateway devices
    Devices,
    /// Force every configured PTT line off (for systemd's ExecStopPost after a crash).
    ///
    /// Each radio's `ptt` is read on its own, so a mistake elsewhere in the file does not
    /// stop it. The PTT settings `run` kept in the state directory ($STATE_DIRECTORY) at its
    /// last start are forced off too (the file may have been edited since), and stand in for
    /// the file when it cannot be read or is not TOML at all.
    /// Exits 1 when a PTT line could not be forced off, or none could be identified.
    ///
    /// Example: zello-gateway ptt-off --config /etc/zello-gateway/gateway.toml
    PttOff(ConfigArg),
    /// Key one radio's transmitter for a few seconds with a test tone, for checking the PTT
    /// wiring and setting the transmit deviation.
    ///
    /// It TRANSMITS: make sure you are allowed to on the radio's frequency. It prints a
    /// warning first, then "PTT on" and "PTT off". The tone (default 1000 Hz at -10 dBFS,
    /// through the radio's tx_audio gain) plays on the radio's audio output: the sound card,
    /// or the end of the file backend's WAV file. The time (default 5 s) may not exceed the
    /// radio's timing.tot_s. PTT is released at the end, on Ctrl-C or SIGTERM and on any
    /// error. Run it while the gateway service is stopped (sudo systemctl stop
    /// zello-gateway): the gateway holds the sound card and the PTT line.
    ///
    /// Example: zello-gateway ptt-test radio1 --config /etc/zello-gateway/gateway.toml --seconds 10 --tone 1000
    PttTest {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        args: ptt_test::PttTestArgs,
    },
    /// Watch the gateway live in the terminal: each radio's state, who talks, level bars and
    /// the last-heard list, from the status API ([api] in the config, or --url).
    ///
    /// --levels RADIO is the level setup aid: the receive level with the squelch closed (the
    /// noise floor) and open, peaks and clipped samples, for setting the radio's audio and
    /// the voice detector's open_dbfs.
    ///
    /// Example: zello-gateway monitor --config /etc/zello-gateway/gateway.toml --levels vhf1
    Monitor {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        args: zello_gateway::monitor::MonitorArgs,
    },
    /// Run the self-contained demo: a local server, a gateway on a simulated radio and a
    /// simulated dispatcher talking to each other. No account, no hardware.
    ///
    /// Example: zello-gateway demo --out demo-out
    Demo(demo::DemoArgs),
    /// Measure what the gateway costs on this machine: CPU per second of audio beside bare
    /// Opus, the real-time factor, the latency each way and peak memory with 1 and 10
    /// radios. Everything runs locally (emulator on loopback, no sound card); takes about
    /// a minute.
    ///
    /// Example: zello-gateway bench --json
    Bench(bench::BenchArgs),
    /// Set the gateway up on a Zello Work network, as its administrator.
    ///
    /// Creates the configuration's account as a gateway account with the configured
    /// password (or makes an existing user a gateway), creates the configured channels that
    /// are missing (as group channels) and adds the account to every one, and with --role
    /// gives it that channel role. Only what is missing is done, so running it again
    /// changes nothing; --dry-run prints the plan alone. The administrator's username,
    /// password and API key come from --admin FILE or the environment (ZELLO_WORK_URL,
    /// ZELLO_ADMIN_USERNAME, ZELLO_ADMIN_PASSWORD, ZELLO_API_KEY), never the gateway's
    /// configuration.
    ///
    /// Example: zello-gateway provision --config /etc/zello-gateway/gateway.toml --admin /etc/zello-gateway/admin.toml --dry-run
    Provision {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        args: work::provision::ProvisionArgs,
    },
    /// List recent messages on the gateway's channels of a Zello Work network, and
    /// download their media.
    ///
    /// Lists the newest messages (voice, images, call alerts) sent through the
    /// configuration's channels, filtered by sender, channel, type and time; with
    /// --download DIR it fetches the media of each, showing the server's conversion and the
    /// download as a progress bar (plain lines when stderr is not a terminal). The admin's
    /// credentials come as for `provision`.
    ///
    /// Example: zello-gateway history --config /etc/zello-gateway/gateway.toml --admin /etc/zello-gateway/admin.toml --since 2h --type voice --download recordings
    History {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        args: work::history::HistoryArgs,
    },
}

/// Logging to journald under systemd, stderr otherwise, at `RUST_LOG` or `level`. A bad
/// `RUST_LOG` must not stop any command (least of all `ptt-off`): it is reported and `level`
/// used instead.
fn init_logging(level: &str) {
    if let Err(e) = service::logging::init(Some(level)) {
        // A bad level in the file is listed with the file's other problems later.
        let level = if service::logging::level_directives(Some(level), None).is_ok() {
            level
        } else {
            service::logging::DEFAULT_LEVEL
        };
        tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new(level))
            .with_writer(std::io::stderr)
            .init();
        tracing::warn!("{e}; logging at {level:?} instead");
    }
}

/// The error and its causes on one line, leaving out a cause its message already says (most
/// of the gateway's errors name their cause themselves).
fn describe(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !out.contains(&cause) {
            out.push_str(": ");
            out.push_str(&cause);
        }
    }
    out
}

/// Cancels the token on SIGINT or SIGTERM.
fn stop_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing a SIGTERM handler cannot fail on Linux");
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("stopping");
        token.cancel();
    });
}

/// `ptt-off`: forces off every PTT line it can identify, whatever else is wrong with the
/// file, and the lines the gateway last started with.
fn ptt_off(config_path: &std::path::Path) -> anyhow::Result<()> {
    let saved = parts::saved_ptt_lines_file();
    let found = parts::read_ptt_lines(config_path, saved.as_deref());
    if let Some(why) = &found.from_saved {
        eprintln!("warning: {why}");
    }
    for p in &found.problems {
        eprintln!("warning: {p}");
    }
    if found.lines.is_empty() {
        anyhow::bail!(
            "no PTT line could be identified in {}: nothing was forced off",
            config_path.display()
        );
    }
    let mut failed = 0;
    for (radio, result) in parts::force_off_lines(&found.lines) {
        match result {
            Ok(line) => println!("{radio}: PTT off ({line})"),
            Err(e) => {
                failed += 1;
                eprintln!("{radio}: could not force PTT off: {e}");
            }
        }
    }
    if failed > 0 || !found.problems.is_empty() {
        anyhow::bail!(
            "{} PTT line(s) could not be forced off",
            failed + found.problems.len()
        );
    }
    Ok(())
}

/// `check`: prints the report; fails when there is a problem.
fn check(config_path: &std::path::Path, config_only: bool) -> anyhow::Result<()> {
    let report = if config_only {
        zello_gateway::check::check_config_only(config_path)
    } else {
        zello_gateway::check::check(config_path)
    };
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if report.ok() {
        print!("{}", report.summary());
        Ok(())
    } else {
        eprint!("{}", report.summary());
        anyhow::bail!("the gateway cannot start with {}", report.source)
    }
}

/// `zello-gateway bench`: runs outside the daemon's runtime (it makes its own).
fn bench_command(args: &bench::BenchArgs) -> anyhow::Result<()> {
    if let Some(child) = args.child_options()? {
        let report = bench::rss_child(&child)?;
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    let exe = std::env::current_exe()
        .context("cannot find this program to measure peak memory (use --no-rss)")?;
    let report = bench::run(&args.options(Some(exe)))?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = cli.config_path().unwrap_or_else(|e| e.exit());
    if let Some(Cmd::Bench(args)) = &cli.command {
        init_logging("warn");
        return match bench_command(args) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {}", describe(&e));
                std::process::ExitCode::FAILURE
            }
        };
    }
    let level = match &cli.command {
        // The demo and the administration commands print what they do; the log is for trouble.
        Some(Cmd::Demo(_) | Cmd::Provision { .. } | Cmd::Monitor { .. }) => "warn".to_string(),
        // The gateway's own commands log at the file's [log] level.
        None | Some(Cmd::Run(_) | Cmd::Check { .. } | Cmd::PttOff(_)) => {
            Config::peek_log_level(&config).unwrap_or_else(|| "info".into())
        }
        _ => "info".to_string(),
    };
    init_logging(&level);
    let runtime = match service::runtime_builder().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            None | Some(Cmd::Run(_)) => daemon::run(&config).await.map_err(anyhow::Error::from),
            Some(Cmd::Check { config_only, .. }) => check(&config, config_only),
            Some(Cmd::Sim(args)) => {
                let shutdown = CancellationToken::new();
                stop_on_signals(shutdown.clone());
                sim::run(args, shutdown).await.map_err(anyhow::Error::from)
            }
            Some(Cmd::Demo(args)) => demo::run(args).await.map_err(anyhow::Error::from),
            // Their messages already hold their causes: print them once.
            Some(Cmd::Provision { args, .. }) => work::provision::run(&config, &args)
                .await
                .map_err(|e| anyhow::Error::msg(e.to_string())),
            Some(Cmd::History { args, .. }) => work::history::run(&config, &args)
                .await
                .map_err(|e| anyhow::Error::msg(e.to_string())),
            Some(Cmd::Bench(_)) => Ok(()), // handled above, outside this runtime
            Some(Cmd::PttOff(_)) => ptt_off(&config),
            Some(Cmd::PttTest { args, .. }) => {
                let stop = CancellationToken::new();
                stop_on_signals(stop.clone());
                ptt_test::run(&config, &args, stop)
                    .await
                    .map_err(anyhow::Error::from)
            }
            Some(Cmd::Monitor { args, .. }) => {
                let stop = CancellationToken::new();
                stop_on_signals(stop.clone());
                zello_gateway::monitor::run(&args, &config, stop)
                    .await
                    .map_err(anyhow::Error::from)
            }
            Some(Cmd::Devices) => {
                print!(
                    "{}",
                    zello_gateway::devices::describe(std::path::Path::new("/sys"))
                );
                Ok(())
            }
        }
    });
    // Tasks still running (a bridge that did not stop in time) are dropped, which unkeys
    // their PTT lines; blocking work is not waited for longer than this.
    runtime.shutdown_timeout(Duration::from_millis(500));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

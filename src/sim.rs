//! The `sim` command: the Zello emulator ([`crate::zello::sim`]) and, with
//! `--work-listen`, the Zello Work API emulator ([`crate::work::sim`]) beside it.

use crate::work::sim::{SeedError, WorkSeed, WorkSim, WorkSimConfig, WorkSimHandle};
use crate::zello::sim::{Accounts, SimConfig, SimError, SimServer, load_tls};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Why the `sim` command could not start, each saying what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum SimCommandError {
    /// The Zello emulator could not start.
    #[error(transparent)]
    Zello(#[from] SimError),
    /// The Zello Work seed file cannot be read or parsed.
    #[error("Zello Work seed: {0}")]
    WorkSeed(#[source] SeedError),
    /// The Zello Work network the seed describes does not hold together.
    #[error("Zello Work seed does not hold together: {0}")]
    WorkSeedInvalid(#[source] SeedError),
    /// The Zello Work API's socket could not be opened.
    #[error(
        "cannot listen on {addr} (--work-listen): {source}; pick another address or stop the program using that port"
    )]
    WorkBind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

/// Command-line options of the `sim` subcommand.
#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    /// Address and port to listen on.
    #[arg(long, default_value = "127.0.0.1:8800")]
    pub listen: SocketAddr,
    /// PEM certificate (chain) to serve wss:// with; needs --tls-key.
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the certificate; needs --tls-cert.
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// TOML accounts file; without one any username with a password may log on.
    #[arg(long)]
    pub accounts: Option<PathBuf>,
    /// Seconds between WebSocket pings (0 turns pings off).
    #[arg(long, default_value_t = 30)]
    pub ping_interval: u64,
    /// Put a user named "echo" in every channel that replays what it hears.
    #[arg(long)]
    pub echo: bool,
    /// Also serve the Zello Work administration API (for `provision` and `history`) on
    /// this address, like 127.0.0.1:8801. Its admin is "admin" (password "admin") and its
    /// API key "sim-api-key", unless --work-seed says otherwise.
    #[arg(long)]
    pub work_listen: Option<SocketAddr>,
    /// TOML file with the Zello Work network to start with (users, channels, roles,
    /// history, locations); a demo network when not given.
    #[arg(long, requires = "work_listen")]
    pub work_seed: Option<PathBuf>,
}

impl SimArgs {
    /// The configuration these options describe, reading the TLS and accounts files.
    pub fn to_config(&self) -> Result<SimConfig, SimError> {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(load_tls(cert, key)?),
            (None, None) => None,
            _ => return Err(SimError::TlsIncomplete),
        };
        let accounts = self.accounts.as_deref().map(Accounts::load).transpose()?;
        Ok(SimConfig {
            ping_interval: Duration::from_secs(self.ping_interval),
            accounts,
            echo: self.echo,
            tls,
            ..SimConfig::default()
        })
    }
}

/// Runs the emulator from the command line until `shutdown` is cancelled.
pub async fn run(args: SimArgs, shutdown: CancellationToken) -> Result<(), SimCommandError> {
    let config = args.to_config()?;
    let work = match args.work_listen {
        Some(addr) => Some(start_work(addr, args.work_seed.as_deref()).await?),
        None => None,
    };
    let users = config.accounts.as_ref().map(|a| a.len());
    let handle = SimServer::start(args.listen, config)
        .await
        .map_err(|source| SimError::Bind {
            addr: args.listen,
            source,
        })?;
    match users {
        Some(n) => tracing::info!(url = %handle.url(), accounts = n, "Zello emulator serving"),
        None => {
            tracing::info!(url = %handle.url(), "Zello emulator serving (open: any username and password)")
        }
    }
    shutdown.cancelled().await;
    tracing::info!("Zello emulator shutting down");
    handle.shutdown();
    handle.closed(Duration::from_secs(5)).await;
    if let Some(work) = work {
        work.shutdown(Duration::from_secs(2)).await;
    }
    Ok(())
}

/// Starts the Zello Work API emulator with the seed file's network, or the demo one.
async fn start_work(
    addr: SocketAddr,
    seed: Option<&std::path::Path>,
) -> Result<WorkSimHandle, SimCommandError> {
    let (seed, base) = match seed {
        Some(path) => WorkSeed::load(path).map_err(SimCommandError::WorkSeed)?,
        None => (WorkSeed::demo(), PathBuf::from(".")),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let data = seed
        .build(now, &base)
        .map_err(SimCommandError::WorkSeedInvalid)?;
    let (users, messages) = (data.users.len(), data.messages.len());
    // Media takes a few polls to "convert", as on the real server, so progress shows.
    let config = WorkSimConfig {
        data,
        media_steps: 3,
        media_hold: Duration::from_millis(500),
    };
    let handle = WorkSim::start(addr, config)
        .await
        .map_err(|source| SimCommandError::WorkBind { addr, source })?;
    tracing::info!(
        url = %handle.url(),
        users,
        messages,
        "Zello Work API emulator serving"
    );
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_args_parse_and_check_tls_pairs() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            sim: SimArgs,
        }
        let cli = Cli::try_parse_from(["sim"]).unwrap();
        assert_eq!(cli.sim.listen, "127.0.0.1:8800".parse().unwrap());
        assert_eq!(cli.sim.ping_interval, 30);
        assert!(!cli.sim.echo);
        let config = cli.sim.to_config().unwrap();
        assert_eq!(config.ping_interval, Duration::from_secs(30));
        assert!(config.tls.is_none() && config.accounts.is_none());

        let cli = Cli::try_parse_from([
            "sim",
            "--echo",
            "--ping-interval",
            "5",
            "--tls-cert",
            "c.pem",
        ])
        .unwrap();
        assert!(cli.sim.echo);
        assert!(matches!(cli.sim.to_config(), Err(SimError::TlsIncomplete)));
    }

    fn args(listen: SocketAddr) -> SimArgs {
        SimArgs {
            listen,
            tls_cert: None,
            tls_key: None,
            accounts: None,
            ping_interval: 30,
            echo: false,
            work_listen: None,
            work_seed: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn run_serves_until_cancelled() {
        let token = CancellationToken::new();
        let task = tokio::spawn(run(args("127.0.0.1:0".parse().unwrap()), token.clone()));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!task.is_finished());
        token.cancel();
        task.await.unwrap().unwrap();

        // A port in use is a clear error.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = run(args(taken.local_addr().unwrap()), CancellationToken::new())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("cannot listen"), "{err}");
    }
}

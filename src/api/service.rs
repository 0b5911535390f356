//! The API as the daemon runs it: built from the configuration, started before the gateway
//! so that it sees every event, and kept trying when its port is taken (the gateway bridges
//! meanwhile: the API is a window on it, not a part it needs).

use super::protocol::Codec;
use super::server::{ApiError, ApiRadio, Setup, start};
use crate::config::{ApiTokens, Config};
use crate::gateway::{Controls, Meters};
use crate::net::Backoff;
use crate::state::StateHub;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// The first wait before binding the API's port again.
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between two tries.
const RETRY_MAX: Duration = Duration::from_secs(60);

/// What the API serves beyond the state, built once from the configuration.
pub fn setup(config: &Config, meters: &Meters, control: Option<Controls>) -> Setup {
    let radios: Vec<ApiRadio> = config
        .radios
        .iter()
        .map(|r| ApiRadio {
            name: r.name.clone(),
            channel: r.channel.clone(),
            codec: Codec::from(&r.codec),
        })
        .collect();
    Setup::for_radios(&radios, meters, control)
}

/// Starts the API of `config` (unless `[api] enabled = false`) on `hub` until `shutdown`.
/// The first try is made before returning, so the API sees the gateway from its start; a
/// port in use is logged and tried again with backoff in the background. Returns the
/// address once listening.
pub async fn spawn(
    config: &Config,
    tokens: ApiTokens,
    hub: StateHub,
    meters: Meters,
    control: Option<Controls>,
    shutdown: CancellationToken,
) -> Option<std::net::SocketAddr> {
    if !config.api.enabled {
        info!("status API off ([api] enabled = false)");
        return None;
    }
    let api = config.api.clone();
    let first = start(
        &api,
        &tokens,
        hub.clone(),
        setup(config, &meters, control.clone()),
        shutdown.clone(),
    )
    .await;
    match first {
        Ok(running) => return Some(running.addr),
        Err(e) => {
            error!(error = %e, "status API not started; trying again in the background (the gateway runs meanwhile)")
        }
    }
    let config = config.clone();
    tokio::spawn(async move {
        let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
        loop {
            let delay = backoff.next_delay(fastrand::f64());
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            let setup = setup(&config, &meters, control.clone());
            match start(&api, &tokens, hub.clone(), setup, shutdown.clone()).await {
                Ok(running) => {
                    info!(address = %running.addr, "status API started after all");
                    return;
                }
                Err(ApiError::Bind { .. }) => {}
                Err(e) => {
                    error!(error = %e, "status API not started");
                    return;
                }
            }
        }
    });
    None
}

//! The Zello Work API emulator and clients logged on to it.

use std::time::Duration;
use zello_gateway::secret::Secret;
use zello_gateway::work::sim::{WorkSeed, WorkSim, WorkSimConfig, WorkSimHandle};
use zello_gateway::work::{ClientOptions, WorkClient};

/// The demo network's API key and admin.
pub const API_KEY: &str = "sim-api-key";
pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin";

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The demo network on a free loopback port; media ready after `media_steps` polls.
pub async fn sim(media_steps: u32) -> WorkSimHandle {
    let data = WorkSeed::demo()
        .build(now(), std::path::Path::new("."))
        .unwrap();
    let config = WorkSimConfig {
        media_steps,
        ..WorkSimConfig::new(data)
    };
    WorkSim::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("the Zello Work emulator starts")
}

/// Quick retries and polls for tests.
pub fn options() -> ClientOptions {
    ClientOptions {
        timeout: Duration::from_secs(10),
        media_poll_timeout: Duration::from_secs(10),
        media_poll_interval: Duration::from_millis(5),
        media_wait: Duration::from_secs(30),
        retries: 3,
        backoff_min: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
        ca_file: None,
    }
}

/// A client logged on as the demo network's admin.
pub async fn admin(sim: &WorkSimHandle) -> WorkClient {
    let mut c = WorkClient::new(&sim.url(), options()).unwrap();
    c.login(ADMIN, &Secret::new(ADMIN_PASSWORD), &Secret::new(API_KEY))
        .await
        .expect("the admin logs in");
    c
}

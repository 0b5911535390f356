//! Hamlib's rigctld as a real peer.

use super::{Reaped, free_port};
use std::time::Duration;

/// Hamlib's rigctld with its dummy rig (`-m 1 -P RIG`: it keys through CAT) on `port`, once
/// it answers; and its address.
pub fn start_rigctld_on(port: u16) -> (Reaped, String) {
    let child = std::process::Command::new("rigctld")
        .args(["-m", "1", "-P", "RIG", "-T", "127.0.0.1", "-t"])
        .arg(port.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start rigctld ({e}): run scripts/deps.sh (it installs libhamlib-utils)")
        });
    let rig = Reaped(child);
    let address = format!("127.0.0.1:{port}");
    let start = std::time::Instant::now();
    while zello_gateway::radio::rigctld::read_ptt(&address).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "rigctld did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (rig, address)
}

/// [`start_rigctld_on`] a free port.
pub fn start_rigctld() -> (Reaped, String) {
    start_rigctld_on(free_port())
}

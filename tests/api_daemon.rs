//! The status API of `zello-gateway run`, as systemd runs it: tokens from files, the control
//! token, and a TX inhibit kept across a restart in the state directory.

mod common;

use common::api::{CONTROL_TOKEN, READ_TOKEN, request};
use common::cli::{Lines, Scratch, bin, silent_wav, start_sim_with, terminate, wait_exit};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// `zello-gateway run` with its state directory in `dir/state`, its radio `vhf1` hearing a
/// carrier from 2 s to 3 s after the start (the echo user plays it back), its API on a port
/// it chooses with both tokens. Returns the process, its log and the API's address.
fn start(dir: &Path, sim_port: u16) -> (common::Reaped, Lines, SocketAddr) {
    silent_wav(&dir.join("rx.wav"), 1000);
    for (name, token) in [("api-token", READ_TOKEN), ("control-token", CONTROL_TOKEN)] {
        let path = dir.join(name);
        std::fs::write(&path, format!("{token}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            "[zello]\nserver = \"ws://127.0.0.1:{sim_port}/ws\"\nusername = \"gateway1\"\npassword = \"pw\"\n\n\
             [api]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"api-token\"\ncontrol_token_file = \"control-token\"\n\n\
             [[radio]]\nname = \"vhf1\"\nchannel = \"Local\"\n\
             audio = {{ backend = \"file\", input = \"rx.wav\", output = \"tx.wav\" }}\n\
             carrier = {{ type = \"schedule\", on = [[2, 3]] }}\n"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let mut child = common::Reaped(
        bin()
            .args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .env("STATE_DIRECTORY", dir.join("state"))
            .env_remove("INVOCATION_ID")
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = Lines::of(&mut child.0);
    let line = lines.wait_for("status API and dashboard: http://");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (child, lines, addr)
}

/// Waits up to 20 s for `check` to hold.
async fn eventually(what: &str, check: impl AsyncFn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "{what} within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get(addr: SocketAddr, path: &str) -> serde_json::Value {
    let bearer = format!("Bearer {READ_TOKEN}");
    request(addr, "GET", path, &[("Authorization", &bearer)], "")
        .await
        .data()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tx_inhibit_set_through_the_api_holds_across_a_restart() {
    let scratch = Scratch::new("api-restart");
    let (_sim, sim_port) = start_sim_with(&["--echo"]);

    let (mut gateway, mut lines, api) = tokio::task::block_in_place(|| start(&scratch, sim_port));
    eventually("ready", async || {
        request(api, "GET", "/readyz", &[], "").await.status == 200
    })
    .await;
    // The first run: a message each way (the echo user plays the radio's back).
    tokio::task::block_in_place(|| lines.wait_for("zello -> radio: message played"));
    let bearer = format!("Bearer {CONTROL_TOKEN}");
    let inhibited = request(
        api,
        "POST",
        "/api/v1/radios/vhf1/tx-inhibit",
        &[("Authorization", &bearer)],
        r#"{"inhibit": true, "reason": "site visit"}"#,
    )
    .await
    .data();
    assert_eq!(inhibited["inhibited"], true);
    terminate(&gateway.0);
    let status = tokio::task::block_in_place(|| wait_exit(&mut gateway.0, Duration::from_secs(5)));
    assert!(status.success(), "{status:?}");
    let kept = std::fs::read_to_string(scratch.join("state/tx-inhibit.toml")).unwrap();
    assert!(kept.contains("site visit"), "{kept}");

    // The second run starts inhibited: the echo of the radio's message is not transmitted.
    let (mut gateway, mut lines, api) = tokio::task::block_in_place(|| start(&scratch, sim_port));
    let radio = get(api, "/api/v1/radios/vhf1").await;
    assert_eq!(radio["tx_inhibited"]["reason"], "site visit");
    tokio::task::block_in_place(|| lines.wait_for("radio -> zello: message sent"));
    eventually("the echo dropped as inhibited", async || {
        let history = get(api, "/api/v1/history?room=radio:vhf1").await;
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["direction"] == "from_channel" && m["outcome"] == "inhibited")
    })
    .await;
    let radio = get(api, "/api/v1/radios/vhf1").await;
    assert_eq!(radio["counters"]["key_ups"], 0, "{radio}");
    let metrics = request(
        api,
        "GET",
        "/metrics",
        &[("Authorization", &format!("Bearer {READ_TOKEN}"))],
        "",
    )
    .await
    .body;
    assert!(
        metrics.contains("zello_gateway_radio_tx_inhibited{radio=\"vhf1\"} 1"),
        "{metrics}"
    );
    terminate(&gateway.0);
    tokio::task::block_in_place(|| wait_exit(&mut gateway.0, Duration::from_secs(5)));
    lines.drain();
    assert!(
        !lines
            .seen
            .iter()
            .any(|l| l.contains("zello -> radio: message played")),
        "played while inhibited: {:#?}",
        lines.seen
    );
    // No token in the log, at any point.
    assert!(
        !lines
            .seen
            .iter()
            .any(|l| l.contains(READ_TOKEN) || l.contains(CONTROL_TOKEN)),
        "a token in the log"
    );
}

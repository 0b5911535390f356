//! The `zello-gateway` binary as a user runs it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_zello-gateway"))
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("zg-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn version_and_help() {
    let out = bin().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    for sub in [
        &["--help"][..],
        &["run", "--help"],
        &["sim", "--help"],
        &["demo", "--help"],
        &["bench", "--help"],
    ] {
        let out = bin().args(sub).output().unwrap();
        assert!(out.status.success(), "{sub:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage"), "{sub:?}: {text}");
    }
    let out = bin().args(["sim", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("--echo"));
}

#[test]
fn a_missing_or_bad_config_is_a_clear_error() {
    let out = bin()
        .args(["run", "--config", "/nonexistent/gateway.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/gateway.toml"), "{err}");

    let dir = temp_dir("bad");
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        "[zello]\nserver = \"ws://203.0.113.9/ws\"\nplatform_name = \"Bridge\"\n",
    )
    .unwrap();
    let out = bin().args(["run", "--config"]).arg(&path).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "3 problem(s)",
        "zello.platform_name",
        "zello.server",
        "[[radio]]",
    ] {
        assert!(err.contains(needle), "{needle} missing in {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn terminate(child: &std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

fn wait_exit(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > within {
            let _ = child.kill();
            panic!("did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sim_and_run_talk_and_stop_on_sigterm() {
    let port = free_port();
    let mut sim = bin()
        .args(["sim", "--listen", &format!("127.0.0.1:{port}"), "--echo"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it listens.
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "sim did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let dir = temp_dir("run");
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            "[zello]\nserver = \"ws://127.0.0.1:{port}/ws\"\nusername = \"gateway1\"\npassword = \"pw\"\n\n\
             [[radio]]\nname = \"radio1\"\nchannel = \"Local\"\naudio = {{ backend = \"file\", output = \"tx.wav\" }}\n"
        ),
    )
    .unwrap();
    let mut gw = bin()
        .args(["run", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = gw.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut lines = Vec::new();
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no 'channel online' line; got {lines:#?}"));
        let online = line.contains("channel online");
        lines.push(line);
        if online {
            break;
        }
    }
    assert!(lines.iter().any(|l| l.contains("logged on")), "{lines:#?}");
    assert!(
        !lines.iter().any(|l| l.contains("pw")),
        "no secret in the log: {lines:#?}"
    );
    terminate(&gw);
    let status = wait_exit(&mut gw, Duration::from_secs(3));
    assert!(status.success(), "{status:?}");
    terminate(&sim);
    let status = wait_exit(&mut sim, Duration::from_secs(3));
    assert!(status.success(), "{status:?}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn ptt_off_forces_every_configured_line_off() {
    let dir = temp_dir("pttoff");
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        "[zello]\nserver = \"ws://127.0.0.1:9/ws\"\n\n\
         [[radio]]\nname = \"vhf1\"\nchannel = \"A\"\naudio = { backend = \"file\" }\nptt = { type = \"sim\" }\n\n\
         [[radio]]\nname = \"uhf1\"\nchannel = \"B\"\naudio = { backend = \"file\" }\nptt = { type = \"none\" }\n",
    )
    .unwrap();
    let out = bin()
        .args(["ptt-off", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("vhf1: PTT off (sim)"), "{text}");
    assert!(text.contains("uhf1: PTT off (none)"), "{text}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn devices_lists_sound_devices_and_hidraw_nodes() {
    let out = bin().arg("devices").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ALSA devices"), "{text}");
    assert!(text.contains("cm108"), "{text}");
}

#[test]
fn bench_prints_one_json_object_with_every_figure() {
    // A short run in the debug build; peak memory in the two child processes included.
    let out = bin()
        .args([
            "bench",
            "--json",
            "--seconds",
            "1",
            "--clicks",
            "2",
            "--speedup",
            "4",
            "--rss-seconds",
            "1",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    for key in [
        "floor_cpu_s_per_audio_s",
        "pipeline_cpu_s_per_audio_s",
        "ratio_to_floor",
        "realtime_factor",
        "latency_radio_to_zello_ms",
        "latency_zello_to_radio_ms",
        "peak_rss_mb_1_radio",
        "peak_rss_mb_10_radios",
    ] {
        let v = json[key].as_f64();
        assert!(v.is_some_and(|v| v.is_finite() && v > 0.0), "{key}: {json}");
    }
    assert_eq!(json["complexity"], 10);
    assert_eq!(json["frame_ms"], 60);

    let out = bin().args(["bench", "--seconds", "0"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--seconds"));
}

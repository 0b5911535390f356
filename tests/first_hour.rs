//! The operator's first hour, as the README and the scripts lead them through it: the
//! local-sim configuration does something, the demo installs only what it needs, and the
//! install script ends with commands that work for the user who runs them.

mod common;

use common::cli::{assert_success, bin, root, staged_install, wait_listening};
use common::{Reaped, free_port};

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The loudest sample of a 16-bit WAV file, or `None` while it is not a readable WAV.
fn peak(path: &Path) -> Option<(u32, i32)> {
    let mut reader = hound::WavReader::open(path).ok()?;
    let frames = reader.duration();
    let peak = reader
        .samples::<i16>()
        .map_while(Result::ok)
        .map(|s| i32::from(s).abs())
        .max()
        .unwrap_or(0);
    Some((frames, peak))
}

/// README: "Try a whole gateway against it with the file-backed radio in
/// config/local-sim.toml". The shipped file, unchanged but for the port and where it writes:
/// the radio's clip goes to the channel, the echo user sends it back, and the radio transmits
/// it.
#[test]
fn the_local_sim_configuration_sends_its_clip_and_transmits_the_echo() {
    let shipped = std::fs::read_to_string(root().join("config/local-sim.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let tx = dir.path().join("tx.wav");
    let text = shipped
        .replace("127.0.0.1:8800", &format!("127.0.0.1:{port}"))
        .replace("/tmp/zello-gateway-tx.wav", tx.to_str().unwrap());
    assert_ne!(text, shipped, "the port and output moved");
    let config = dir.path().join("local-sim.toml");
    std::fs::write(&config, text).unwrap();
    // The clip it names, beside it, as in config/.
    let clip: toml::Table = toml::from_str(&shipped).unwrap();
    let input = clip["radio"].as_array().unwrap()[0]["audio"]
        .get("input")
        .and_then(toml::Value::as_str)
        .expect("the radio receives a clip")
        .to_string();
    std::fs::copy(root().join("config").join(&input), dir.path().join(&input)).unwrap();

    let _sim = Reaped(
        bin()
            .args(["sim", "--listen", &format!("127.0.0.1:{port}"), "--echo"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening(port, Duration::from_secs(5), "the emulator did not start");
    let mut gateway = Reaped(
        bin()
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The clip is 3 s; its echo comes back as a message of about 3.5 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut heard = None;
    while Instant::now() < deadline {
        if let Some((frames, peak)) = peak(&tx)
            && frames >= 16_000 * 2
            && peak > 3000
        {
            heard = Some((frames, peak));
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = gateway.0.kill();
    let _ = gateway.0.wait();
    let mut log = String::new();
    let _ = gateway.0.stderr.take().unwrap().read_to_string(&mut log);
    let (frames, peak) = heard.unwrap_or_else(|| panic!("nothing transmitted:\n{log}"));
    assert!(frames >= 32_000 && peak > 3000, "{frames} {peak}");
    assert!(log.contains("message sent"), "{log}");
}

/// Stand-ins for the package tools, recording what they were asked to install.
fn fake_tools(dir: &Path) -> PathBuf {
    let record = dir.join("apt-get.log");
    for (name, body) in [
        // Every package is missing.
        ("dpkg-query", "exit 1".to_string()),
        (
            "apt-get",
            format!("echo \"$@\" >> {}\nexit 0", record.display()),
        ),
        ("sudo", "exec \"$@\"".to_string()),
        ("cargo", "exit 0".to_string()),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    record
}

/// The demo needs the build packages only; PulseAudio and Hamlib are for the tests.
#[test]
fn the_demo_script_installs_only_the_build_packages() {
    let dir = tempfile::tempdir().unwrap();
    let record = fake_tools(dir.path());
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap()
    );
    let out = Command::new(root().join("scripts/demo.sh"))
        .env("PATH", &path)
        .output()
        .unwrap();
    assert_success(&out, "scripts/demo.sh");
    let installed = std::fs::read_to_string(&record).unwrap();
    assert!(installed.contains("libopus-dev"), "{installed}");
    for test_only in ["pulseaudio", "libhamlib-utils", "libasound2-plugins"] {
        assert!(!installed.contains(test_only), "{test_only} in {installed}");
    }
    // The test script still installs them.
    std::fs::remove_file(&record).unwrap();
    let out = Command::new(root().join("scripts/deps.sh"))
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let installed = std::fs::read_to_string(&record).unwrap();
    assert!(
        installed.contains("pulseaudio") && installed.contains("libhamlib-utils"),
        "{installed}"
    );
}

/// The configuration is 0640 root:zello-gateway: the check the install script suggests must
/// run with the service's rights, not as the user who cannot read the file.
#[test]
fn the_install_script_ends_with_a_check_the_user_can_run() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = staged_install(dir.path(), &dir.path().join("stage"));
    assert!(ok, "{text}");
    assert!(
        text.contains(
            "sudo -u zello-gateway /usr/local/bin/zello-gateway check --config /etc/zello-gateway/gateway.toml"
        ),
        "{text}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.trim_start().starts_with("zello-gateway check")),
        "a bare check the user cannot run:\n{text}"
    );
}

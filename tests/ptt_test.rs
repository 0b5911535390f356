//! `zello-gateway ptt-test` as a user runs it: against Hamlib's real rigctld (dummy rig) and
//! the file backend; and `check`, which must never key.

mod common;

use common::cli::{bin, temp_dir, text};
use common::signal::goertzel;
use common::start_rigctld;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zello_gateway::radio::rigctld::read_ptt;

/// A process killed when dropped.
/// A configuration with one radio `hf1` (file backend, `audio` its options) keyed by `ptt`.
fn config(dir: &std::path::Path, audio: &str, ptt: &str, timing: &str) -> std::path::PathBuf {
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            "[zello]\nserver = \"ws://127.0.0.1:9/ws\"\nusername = \"gateway1\"\npassword = \"pw\"\n\n\
             [[radio]]\nname = \"hf1\"\nchannel = \"A\"\naudio = {{ backend = \"file\"{audio} }}\n\
             ptt = {ptt}\ncarrier = {{ type = \"none\" }}\ntiming = {{ {timing} }}\n\n\
             [[radio]]\nname = \"vhf2\"\nchannel = \"B\"\naudio = {{ backend = \"file\" }}\n\
             ptt = {{ type = \"sim\" }}\n"
        ),
    )
    .unwrap();
    path
}

/// The `ptt` setting of a radio keyed through rigctld at `address`.
fn rigctld_ptt(address: &str) -> String {
    format!("{{ type = \"rigctld\", address = \"{address}\" }}")
}

fn ptt_test(path: &std::path::Path, args: &[&str]) -> Command {
    let mut c = bin();
    c.arg("ptt-test").args(args).arg("--config").arg(path);
    c
}

#[test]
fn ptt_test_keys_a_real_rigctld_for_the_time_asked_then_releases() {
    let (_rig, address) = start_rigctld();
    let dir = temp_dir("rigctld");
    let path = config(&dir, "", &rigctld_ptt(&address), "tot_s = 30");
    let mut child = ptt_test(&path, &["hf1", "--seconds", "1.5", "--no-tone"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut keyed_seen = false;
    while child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(10), "did not end");
        if matches!(read_ptt(&address), Ok(true)) {
            keyed_seen = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(keyed_seen, "rigctld read `t` 1 during the test");
    assert!(!read_ptt(&address).unwrap(), "rigctld reads `t` 0 after");
    let warning = stdout.find("WARNING: this keys hf1's transmitter for 1.5 s");
    let on = stdout.find("PTT on");
    let off = stdout.find("PTT off");
    assert!(
        warning.is_some() && warning < on && on < off,
        "warning, PTT on, PTT off in order: {stdout}"
    );
    assert!(
        stdout.contains("make sure you are allowed to transmit"),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("rigctld {address}")), "{stdout}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn ptt_test_appends_the_test_tone_to_the_file_backends_wav() {
    let dir = temp_dir("file");
    let wav = dir.join("tx.wav");
    // What the gateway transmitted before: 0.5 s of silence, kept.
    common::cli::silent_wav(&wav, 500);
    let path = config(
        &dir,
        ", output = \"tx.wav\"",
        "{ type = \"sim\" }",
        "tot_s = 10",
    );
    let out = ptt_test(&path, &["hf1", "--seconds", "1.5", "--tone", "1200"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("1200 Hz test tone at -10 dBFS"), "{stdout}");
    let samples: Vec<i16> = hound::WavReader::open(&wav)
        .unwrap()
        .into_samples()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        samples.len(),
        8000 + 24_000,
        "0.5 s kept, 1.5 s of tone after"
    );
    assert!(samples[..8000].iter().all(|&s| s == 0));
    let tone = &samples[8000..];
    // 1200 Hz at -10 dBFS (10362 peak), nothing at 1000 Hz.
    let steady = &tone[800..tone.len() - 800];
    let at_1200 = goertzel(steady, 16000.0, 1200.0);
    assert!((at_1200 - 10362.0).abs() < 300.0, "{at_1200}");
    assert!(goertzel(steady, 16000.0, 1000.0) < 200.0);
    let crossings = tone.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    assert!(
        (3590..=3610).contains(&crossings),
        "2 x 1200 Hz x 1.5 s: {crossings}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sigint_or_sigterm_in_the_middle_releases_ptt() {
    let (_rig, address) = start_rigctld();
    let dir = temp_dir("sigint");
    let path = config(
        &dir,
        ", output = \"tx.wav\"",
        &rigctld_ptt(&address),
        "tot_s = 60",
    );
    for signal in ["-INT", "-TERM"] {
        let mut child = ptt_test(&path, &["hf1", "--seconds", "30"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let start = Instant::now();
        while !line.contains("PTT on") {
            line.clear();
            assert!(stdout.read_line(&mut line).unwrap() > 0, "ended early");
            assert!(start.elapsed() < Duration::from_secs(10));
        }
        assert!(read_ptt(&address).unwrap(), "keyed");
        let sent = Instant::now();
        Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        let status = child.wait().unwrap();
        // Well short of the 30 s asked for: the signal ended it.
        assert!(
            sent.elapsed() < Duration::from_secs(20),
            "{signal}: stopped by the signal"
        );
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(rest.contains("PTT off"), "{signal}: {rest}");
        assert!(!status.success(), "an interrupted test is not a success");
        assert!(stderr.contains("stopped by a signal"), "{signal}: {stderr}");
        assert!(!read_ptt(&address).unwrap(), "{signal}: released");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn longer_than_the_time_out_timer_is_refused_before_keying() {
    let (_rig, address) = start_rigctld();
    let dir = temp_dir("tot");
    let path = config(&dir, "", &rigctld_ptt(&address), "tot_s = 10");
    let out = ptt_test(&path, &["hf1", "--seconds", "11"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--seconds 11 is longer than radio \"hf1\"'s time-out timer (timing.tot_s = 10): use at most 10"),
        "{stderr}"
    );
    assert!(!stdout.contains("PTT on"), "{stdout}");
    assert!(!read_ptt(&address).unwrap());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_unknown_radio_lists_the_configured_ones() {
    let dir = temp_dir("unknown");
    let path = config(&dir, "", "{ type = \"sim\" }", "tot_s = 10");
    let out = ptt_test(&path, &["hf2"]).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no radio named \"hf2\"")
            && stderr.contains("configured: \"hf1\", \"vhf2\""),
        "{stderr}"
    );
    assert!(!stdout.contains("PTT on"), "{stdout}");
    let out = bin().args(["ptt-test", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--seconds",
        "--tone",
        "--no-tone",
        "gateway service is stopped",
        "TRANSMITS",
    ] {
        assert!(help.contains(needle), "{needle}: {help}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A stand-in for rigctld that answers everything and records the commands it gets.
fn recording_rigctld() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let commands = Arc::new(Mutex::new(Vec::new()));
    let seen = commands.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { return };
                    let answer = if line.starts_with('T') {
                        "RPRT 0\n"
                    } else {
                        "0\n"
                    };
                    seen.lock().unwrap().push(line);
                    let _ = writer.write_all(answer.as_bytes());
                }
            });
        }
    });
    (address, commands)
}

#[test]
fn check_never_keys() {
    let (address, commands) = recording_rigctld();
    let dir = temp_dir("check");
    let path = config(&dir, "", &rigctld_ptt(&address), "tot_s = 10");
    let out = bin()
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let commands = commands.lock().unwrap().clone();
    assert!(!commands.is_empty(), "check opened the PTT line");
    assert!(
        commands.iter().all(|c| c == "T 0" || c == "t"),
        "check only ever unkeys or reads: {commands:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

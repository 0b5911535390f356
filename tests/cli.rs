//! The `zello-gateway` binary as a user runs it.

mod common;

use common::cli::{
    Lines, Scratch, assert_contains_all, bin, hang_up, silent_wav, sim_url, start_sim,
    start_sim_on, start_sim_with, stop, terminate, text, wait_exit, with_config, write_config,
    zello_section,
};
use common::{NotifySocket, Reaped, free_port, start_rigctld_on};
use std::process::{Command, Stdio};
use std::time::Duration;

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
        &["check", "--help"],
        &["provision", "--help"],
        &["history", "--help"],
    ] {
        let out = bin().args(sub).output().unwrap();
        assert!(out.status.success(), "{sub:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage"), "{sub:?}: {text}");
    }
    let out = bin().args(["sim", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("--echo") && text.contains("--work-listen"),
        "{text}"
    );
    let out = bin().args(["provision", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_contains_all(&text, &["--admin", "--dry-run", "--role", "ZELLO_API_KEY"]);
}

#[test]
fn config_belongs_to_the_commands_that_read_one() {
    // Offered by the commands that read the configuration, and by none of the others.
    for sub in ["run", "check", "ptt-off", "provision", "history"] {
        let out = bin().args([sub, "--help"]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("--config <FILE>"), "{sub}: {text}");
    }
    for sub in ["sim", "devices", "demo", "bench"] {
        let out = bin().args([sub, "--help"]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains("--config"), "{sub}: {text}");
        // Given anyway, it is refused rather than ignored.
        let err = exits_with(
            bin().args([sub, "--config", "/etc/zello-gateway/gateway.toml"]),
            2,
        );
        assert!(err.contains("--config"), "{sub}: {err}");
        let err = exits_with(
            bin().args(["--config", "/etc/zello-gateway/gateway.toml", sub]),
            2,
        );
        assert!(
            err.contains(&format!("`{sub}` reads no configuration file")),
            "{err}"
        );
    }
    // Without a command it runs, on the file given before it or after `run`.
    for args in [
        &["--config", "/nonexistent/zg-a.toml"][..],
        &["run", "--config", "/nonexistent/zg-a.toml"],
        &["--config", "/nonexistent/zg-a.toml", "check"],
        &["check", "-c", "/nonexistent/zg-a.toml"],
    ] {
        let err = exits_with(bin().args(args), 1);
        assert!(err.contains("/nonexistent/zg-a.toml"), "{args:?}: {err}");
    }
}

/// Runs `cmd` to its end, asserting it exits with `code`: what it wrote to its standard
/// error.
fn exits_with(cmd: &mut Command, code: i32) -> String {
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(code), "{cmd:?}: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
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
    // The cause once, not repeated by the error chain.
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");

    let dir = Scratch::new("bad");
    let path = write_config(
        &dir,
        "[zello]\nserver = \"ws://203.0.113.9/ws\"\nplatform_name = \"Bridge\"\n",
    );
    let out = with_config("run", &path).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_contains_all(
        &err,
        &[
            "3 problem(s)",
            "zello.platform_name",
            "zello.server",
            "[[radio]]",
        ],
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_broken_password_line_is_located_but_never_printed() {
    let dir = Scratch::new("secretline");
    let path = write_config(
        &dir,
        "[zello]\nserver = \"ws://127.0.0.1:9/ws\"\nusername = \"gw\"\n\
         password = \"Pw-S3cret-7f3a9c\n\n\
         [[radio]]\nname = \"vhf1\"\nchannel = \"A\"\naudio = { backend = \"file\" }\n",
    );
    for command in ["check", "run"] {
        let out = with_config(command, &path)
            .env("RUST_LOG", "trace")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{command}: {out:?}");
        let (stdout, stderr) = text(&out);
        let all = stdout + &stderr;
        assert!(!all.contains("S3cret"), "{command}: {all}");
        assert!(all.contains("line 4"), "{command}: {all}");
        assert!(all.contains("zello.password"), "{command}: {all}");
    }
}

#[test]
fn sim_and_run_talk_and_stop_on_sigterm() {
    let (mut sim, port) = start_sim_with(&["--echo"]);
    let dir = Scratch::new("run");
    let path = write_config(
        &dir,
        &format!(
            "{}[[radio]]\nname = \"radio1\"\nchannel = \"Local\"\naudio = {{ backend = \"file\", output = \"tx.wav\" }}\n",
            zello_section(&sim_url(port))
        ),
    );
    let mut gw = with_config("run", &path)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Lines::of(&mut gw);
    lines.wait_for("channel online");
    let lines = lines.seen;
    assert!(lines.iter().any(|l| l.contains("logged on")), "{lines:#?}");
    assert!(
        !lines.iter().any(|l| l.contains("pw")),
        "no secret in the log: {lines:#?}"
    );
    stop(&mut gw, Duration::from_secs(3), &[]);
    terminate(&sim);
    let status = wait_exit(&mut sim, Duration::from_secs(3));
    assert!(status.success(), "{status:?}");
}

#[test]
fn ptt_off_forces_every_configured_line_off() {
    let dir = Scratch::new("pttoff");
    let path = write_config(
        &dir,
        "[zello]\nserver = \"ws://127.0.0.1:9/ws\"\n\n\
         [[radio]]\nname = \"vhf1\"\nchannel = \"A\"\naudio = { backend = \"file\" }\nptt = { type = \"sim\" }\n\n\
         [[radio]]\nname = \"uhf1\"\nchannel = \"B\"\naudio = { backend = \"file\" }\nptt = { type = \"none\" }\n",
    );
    let out = with_config("ptt-off", &path).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("vhf1: PTT off (sim)"), "{text}");
    assert!(text.contains("uhf1: PTT off (none)"), "{text}");
}

/// A `[[radio]]` keyed through a CM108 "node" that is a regular file, so that what
/// `ptt-off` writes to it can be read back.
fn cm108_radio(name: &str, node: &std::path::Path) -> String {
    format!(
        "[[radio]]\nname = \"{name}\"\nchannel = \"A\"\naudio = {{ backend = \"file\" }}\n\
         ptt = {{ type = \"cm108\", device = \"{}\", gpio = 3 }}\n\n",
        node.display()
    )
}

#[test]
fn ptt_off_forces_every_line_it_can_read_whatever_else_is_wrong() {
    let dir = Scratch::new("pttoff-lenient");
    let node = dir.join("hidraw0");
    std::fs::write(&node, b"").unwrap();
    let path = write_config(
        &dir,
        &format!(
            "[zello]\nserver = \"ws://127.0.0.1:9/ws\"\nusername = \"gw\"\npasword_file = \"pw\"\n\n{}",
            cm108_radio("vhf1", &node)
        ),
    );
    let out = with_config("ptt-off", &path)
        .env_remove("STATE_DIRECTORY")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("vhf1: PTT off (cm108"), "{text}");
    assert!(!std::fs::read(&node).unwrap().is_empty(), "nothing written");

    // A radio whose PTT cannot be read: the others are still forced off, and it fails.
    std::fs::write(&node, b"").unwrap();
    std::fs::write(
        &path,
        format!(
            "{}[[radio]]\nname = \"uhf1\"\nptt = {{ type = \"laser\" }}\n",
            cm108_radio("vhf1", &node)
        ),
    )
    .unwrap();
    let out = with_config("ptt-off", &path)
        .env_remove("STATE_DIRECTORY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(!std::fs::read(&node).unwrap().is_empty(), "nothing written");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("radio[1] (uhf1).ptt"), "{err}");
    assert!(err.contains("laser"), "{err}");
}

#[test]
fn ptt_off_uses_the_settings_kept_at_the_last_start_when_the_file_is_unusable() {
    let dir = Scratch::new("pttoff-saved");
    let node = dir.join("hidraw0");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let good = format!(
        "[zello]\nserver = \"ws://127.0.0.1:9/ws\"\nusername = \"gw\"\npassword = \"Pw-S3cret\"\n\n{}",
        cm108_radio("vhf1", &node)
    );
    zello_gateway::parts::save_ptt_lines(&good.parse().unwrap(), &state.join("ptt-lines.toml"))
        .unwrap();
    let kept = std::fs::read_to_string(state.join("ptt-lines.toml")).unwrap();
    assert!(!kept.contains("S3cret"), "{kept}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(state.join("ptt-lines.toml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let path = dir.join("gateway.toml");
    for broken in [Some("[zello\npassword = \"x"), None] {
        std::fs::write(&node, b"").unwrap();
        match broken {
            Some(text) => std::fs::write(&path, text).unwrap(),
            None => {
                let _ = std::fs::remove_file(&path);
            }
        }
        let out = with_config("ptt-off", &path)
            .env("STATE_DIRECTORY", &state)
            .output()
            .unwrap();
        assert!(out.status.success(), "{broken:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("kept in"), "{err}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("vhf1: PTT off (cm108"), "{text}");
        assert!(!std::fs::read(&node).unwrap().is_empty(), "nothing written");
    }
    // Nothing kept: nothing can be identified, which is a failure.
    let out = with_config("ptt-off", &path)
        .env("STATE_DIRECTORY", dir.join("empty"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no PTT line could be identified"), "{err}");
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
            "--idle-seconds",
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
        "paced_floor_cpu_s_per_audio_s",
        "pipeline_cpu_s_per_audio_s",
        "ratio_to_floor",
        "ratio_to_paced_floor",
        "realtime_factor",
        "latency_radio_to_zello_ms",
        "latency_zello_to_radio_ms",
        "peak_rss_mb_1_radio",
        "peak_rss_mb_10_radios",
        "peak_rss_mb_1_radio_no_api",
        "peak_rss_mb_10_radios_no_api",
        "api_pipeline_cpu_s_per_audio_s",
    ] {
        let v = json[key].as_f64();
        assert!(v.is_some_and(|v| v.is_finite() && v > 0.0), "{key}: {json}");
    }
    let idle = json["idle_cpu_percent_of_core"].as_f64();
    assert!(idle.is_some_and(|v| v.is_finite() && v >= 0.0), "{json}");
    let idle_api = json["idle_api_cpu_percent_of_core"].as_f64();
    assert!(
        idle_api.is_some_and(|v| v.is_finite() && v >= 0.0),
        "{json}"
    );
    // The dashboards of the runs with the status API got both gateways' messages.
    assert_eq!(json["api_dashboard_message_starts"], 4, "{json}");
    assert_eq!(json["complexity"], 10);
    assert_eq!(json["frame_ms"], 60);

    let out = bin().args(["bench", "--seconds", "0"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--seconds"));
}

#[test]
fn check_passes_a_good_config_and_lists_every_problem_of_a_bad_one() {
    let out = bin().args(["check", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("zello-gateway check --config /etc/zello-gateway/gateway.toml"),
        "{help}"
    );

    let dir = Scratch::new("check");
    silent_wav(&dir.join("rx.wav"), 100);
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        zello_section(&sim_url(8800))
            + "[[radio]]\nname = \"vhf1\"\nchannel = \"Dispatch\"\n\
         audio = { backend = \"file\", input = \"rx.wav\", output = \"tx.wav\" }\n\
         ptt = { type = \"sim\" }\ncarrier = { type = \"vox\" }\n\n\
         [[radio]]\nname = \"uhf1\"\nchannel = \"Ops\"\naudio = { backend = \"file\" }\n\
         ptt = { type = \"none\" }\ncarrier = { type = \"schedule\", on = [[1.0, 2.0]] }\n",
    )
    .unwrap();
    let out = with_config("check", &good).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines[0].starts_with("configuration OK"), "{stdout}");
    assert!(
        lines[1].contains("radio vhf1: channel \"Dispatch\""),
        "{stdout}"
    );
    assert!(lines[1].contains("ptt sim"), "{stdout}");
    assert!(lines[2].contains("radio uhf1: channel \"Ops\""), "{stdout}");
    assert!(!dir.join("tx.wav").exists(), "check writes nothing");

    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[zello]\nserver = \"ws://203.0.113.9/ws\"\nplatform_name = \"Bridge\"\n\n\
         [[radio]]\nname = \"vhf1\"\nchannel = \"\"\n\
         audio = { backend = \"file\", input = \"missing.wav\" }\n\
         ptt = { type = \"serial\", device = \"/dev/zg-no-such-tty\", lines = [\"RTS\"] }\n",
    )
    .unwrap();
    let out = with_config("check", &bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    // The configuration's problems and the devices' under their own headings.
    assert_contains_all(
        &err,
        &[
            "has 3 problem(s)",
            "devices: 2 problem(s)",
            "zello.platform_name",
            "zello.server",
            "radio[0].channel",
            "radio[0] (vhf1).audio.input",
            "radio[0] (vhf1).ptt",
        ],
    );
    assert!(!err.contains("configuration OK"), "{err}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[test]
fn run_under_systemd_reports_ready_status_watchdog_reload_and_stopping() {
    let (sim, port) = start_sim();
    let dir = Scratch::new("notify");
    let config = one_radio(port, "");
    let path = write_config(&dir, &config);
    let systemd = NotifySocket::new();
    // A short watchdog, so that a ping comes soon.
    let mut gw = run_notified(&path, &systemd, Some("info"), Some("4000000"));
    let mut log = Lines::of(&mut gw);
    let within = Duration::from_secs(15);

    let mut got = systemd.wait_for(within, |m| m == "READY=1");
    assert!(
        got.iter()
            .any(|m| m.starts_with("STATUS=") && m.contains("Local: offline")),
        "a status while starting: {got:#?}"
    );
    // Right after READY=1, the status it is ready with; the watchdog fed meanwhile.
    let online = "STATUS=Local: online, 1 user; radio vhf1 idle";
    for wanted in [online, "WATCHDOG=1"] {
        if !got.iter().any(|m| m == wanted) {
            got.extend(systemd.wait_for(within, |m| m == wanted));
        }
    }

    // systemctl reload with a changed file: logged, announced, still running.
    std::fs::write(
        &path,
        config.replace(
            "audio = { backend = \"file\" }",
            "audio = { backend = \"file\" }\ntiming = { tx_delay_ms = 300 }",
        ),
    )
    .unwrap();
    hang_up(&gw);
    let line = log.wait_for("reloaded");
    assert!(line.contains("radio[0].timing"), "{line}");
    assert!(line.contains("after a restart"), "{line}");
    let got = systemd.wait_for(within, |m| m == "READY=1");
    assert!(
        got.iter()
            .any(|m| m.starts_with("RELOADING=1\nMONOTONIC_USEC=")),
        "{got:#?}"
    );

    // A broken file: every problem logged, the old configuration kept.
    let broken = config.replace("gateway1", "");
    write_config(
        &dir,
        &broken.replace("channel = \"Local\"", "channel = \"\""),
    );
    hang_up(&gw);
    log.wait_for("radio[0].channel");
    log.wait_for("not reloaded");
    systemd.wait_for(within, |m| m == "READY=1");
    assert!(gw.try_wait().unwrap().is_none(), "a reload never stops it");

    terminate(&gw);
    systemd.wait_for(within, |m| m.starts_with("STOPPING=1"));
    let status = wait_exit(&mut gw, Duration::from_secs(10));
    assert!(status.success(), "{status:?}; {:#?}", log.seen);
    stop_sim(sim);
}

#[test]
fn without_notify_socket_run_sends_nothing_and_still_stops() {
    // The run test above covers stderr logging; here only that nothing needs systemd.
    let (sim, port) = start_sim();
    let dir = Scratch::new("plain");
    let path = write_config(&dir, &one_radio(port, ""));
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let mut gw = run_logged(&path, Some("info"), |run| {
        run.env("STATE_DIRECTORY", &state)
            .env_remove("NOTIFY_SOCKET")
    });
    let mut log = Lines::of(&mut gw);
    // State changes carry an event field (EVENT= in the journal).
    log.wait_for("event=\"logged_on\"");
    log.wait_for("event=\"channel_online\"");
    log.wait_for("daemon: ready");
    // Started: its PTT settings are kept for ptt-off, and nothing secret with them.
    let kept = std::fs::read_to_string(state.join("ptt-lines.toml")).unwrap();
    assert!(kept.contains("vhf1"), "{kept}");
    assert!(!kept.contains("pw"), "{kept}");
    // SIGHUP outside systemd: a reload, not the end of the process.
    hang_up(&gw);
    log.wait_for("no change from the running configuration");
    assert!(gw.try_wait().unwrap().is_none());
    stop(&mut gw, Duration::from_secs(10), &[]);
    stop_sim(sim);
}

#[test]
fn the_log_level_comes_from_the_file_and_a_reload_changes_it() {
    let (sim, port) = start_sim();
    let dir = Scratch::new("loglevel");
    let config = |level: &str| one_radio(port, &format!("\n[log]\nlevel = \"{level}\"\n"));
    let path = write_config(&dir, &config("warn"));
    let systemd = NotifySocket::new();
    let mut gw = run_notified(&path, &systemd, None, None);
    let mut log = Lines::of(&mut gw);
    systemd.wait_for(Duration::from_secs(15), |m| m == "READY=1");
    // At warn, the start's info lines (radio ready, logged on) are not written.
    std::thread::sleep(Duration::from_millis(300));
    let quiet = log.drain();
    assert!(
        !quiet.iter().any(|l| l.contains("INFO")),
        "info lines at level warn: {quiet:#?}"
    );

    // systemctl reload after setting info: applied at once, said at the new level.
    std::fs::write(&path, config("info")).unwrap();
    hang_up(&gw);
    let line = log.wait_for("log level now");
    assert!(line.contains("\"info\""), "{line}");
    let line = log.wait_for("applied now");
    assert!(line.contains("log.level"), "{line}");
    terminate(&gw);
    log.wait_for("stopping");
    let status = wait_exit(&mut gw, Duration::from_secs(10));
    assert!(status.success(), "{status:?}; {:#?}", log.seen);
    stop_sim(sim);
}

/// Stops `zello-gateway sim` (SIGTERM) and waits up to 10 s for it to exit.
fn stop_sim(mut sim: Reaped) {
    terminate(&sim);
    wait_exit(&mut sim, Duration::from_secs(10));
}

/// A configuration with the `[zello]` table for the sim on `port` and one radio `vhf1`
/// on channel `Local` (the file backend), then `more`.
fn one_radio(port: u16, more: &str) -> String {
    format!(
        "{}[[radio]]\nname = \"vhf1\"\nchannel = \"Local\"\naudio = {{ backend = \"file\" }}\n{more}",
        zello_section(&sim_url(port))
    )
}

/// The password of the gateways [`run_gateway`] starts: easy to spot in a log.
const PASSWORD: &str = "Zq7-unmistakable-pass";

/// A gateway on the echo emulator at `rust_log`, with a radio whose carrier is up during
/// `carrier_on` (`[[start_s, end_s], ...]`) of 4 s of received audio, so messages go both
/// ways. `during` gets its log lines once it is online and says when to stop it (SIGTERM).
/// Returns every line it wrote to stderr, after checking the password is in none.
fn run_gateway(
    name: &str,
    rust_log: &str,
    carrier_on: &str,
    during: impl FnOnce(&mut Lines),
) -> Vec<String> {
    let (sim, port) = start_sim_with(&["--echo"]);
    let dir = Scratch::new(name);
    let path = dir.join("gateway.toml");
    silent_wav(&dir.join("rx.wav"), 4000);
    std::fs::write(
        &path,
        format!(
            "[zello]\nserver = \"ws://127.0.0.1:{port}/ws\"\nusername = \"gateway1\"\npassword = \"{PASSWORD}\"\n\n\
             [api]\nlisten = \"127.0.0.1:0\"\n\n\
             [[radio]]\nname = \"radio1\"\nchannel = \"Local\"\n\
             audio = {{ backend = \"file\", input = \"rx.wav\", output = \"tx.wav\" }}\n\
             carrier = {{ type = \"schedule\", on = {carrier_on} }}\n"
        ),
    )
    .unwrap();
    let mut gw = run_logged(&path, Some(rust_log), |run| run);
    let mut log = Lines::of(&mut gw);
    log.wait_for("channel online");
    during(&mut log);
    terminate(&gw);
    let status = wait_exit(&mut gw, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(200));
    log.drain();
    assert!(status.success(), "{status:?}; {:#?}", log.seen);
    stop_sim(sim);
    let seen = std::mem::take(&mut log.seen);
    let leaks: Vec<&String> = seen.iter().filter(|l| l.contains(PASSWORD)).collect();
    assert!(leaks.is_empty(), "the password is in the log: {leaks:#?}");
    seen
}

/// [`run_gateway`] with one message each way: the radio's goes out, the echo user plays
/// it back to the radio.
fn run_a_few_seconds_at(name: &str, rust_log: &str) -> Vec<String> {
    run_gateway(name, rust_log, "[[0.5, 2.5]]", |log| {
        log.wait_for("radio -> zello");
        log.wait_for("zello -> radio");
        log.wait_for("PTT off");
    })
}

#[test]
fn rust_log_trace_writes_no_password_and_no_frame_flood() {
    let seen = run_a_few_seconds_at("trace", "trace");
    // What an operator debugging needs is there...
    for needle in ["connecting", "logged on", "stream_id"] {
        assert!(
            seen.iter().any(|l| l.contains(needle)),
            "no {needle:?} line: {seen:#?}"
        );
    }
    // ...and no dump of every frame, read and poll of the libraries underneath.
    assert!(
        !seen
            .iter()
            .any(|l| l.contains("tungstenite") || l.contains(" mio")),
        "third-party trace lines: {seen:#?}"
    );
    assert!(seen.len() < 300, "{} lines: {seen:#?}", seen.len());
}

#[test]
fn asking_for_tungstenite_trace_still_writes_no_password() {
    let seen = run_a_few_seconds_at("tungstenite", "trace,tungstenite=trace");
    assert!(
        seen.iter()
            .any(|l| l.contains("tungstenite") && l.contains("capped")),
        "the cap is said once: {seen:#?}"
    );
}

#[test]
fn carrier_and_ptt_changes_are_in_the_log_at_info() {
    let seen = run_a_few_seconds_at("changes", "info");
    let events = |event: &str| {
        seen.iter()
            .filter(|l| l.contains(&format!("event=\"{event}\"")))
            .count()
    };
    assert_eq!(events("carrier_up"), 1, "{seen:#?}");
    assert_eq!(events("carrier_down"), 1, "{seen:#?}");
    assert_eq!(events("ptt_on"), 1, "{seen:#?}");
    assert_eq!(events("ptt_off"), 1, "{seen:#?}");
    let line = seen.iter().find(|l| l.contains("carrier up")).unwrap();
    assert!(line.contains("radio=radio1"), "{line}");
}

#[test]
fn a_chattering_squelch_gives_a_bounded_number_of_lines() {
    // 30 openings of 50 ms, 50 ms apart: 60 changes in 3 s.
    let spans: Vec<String> = (0..30)
        .map(|i| {
            format!(
                "[{:.2}, {:.2}]",
                0.5 + i as f64 * 0.1,
                0.55 + i as f64 * 0.1
            )
        })
        .collect();
    let seen = run_gateway(
        "chatter",
        "info",
        &format!("[{}]", spans.join(", ")),
        |log| {
            log.wait_for("carrier flapping");
            std::thread::sleep(Duration::from_secs(3));
        },
    );
    let carrier = seen
        .iter()
        .filter(|l| l.contains("event=\"carrier_up\"") || l.contains("event=\"carrier_down\""))
        .count();
    assert!((2..=10).contains(&carrier), "{carrier} lines: {seen:#?}");
    let summaries: Vec<&String> = seen
        .iter()
        .filter(|l| l.contains("carrier flapping:"))
        .collect();
    assert_eq!(summaries.len(), 1, "{seen:#?}");
    assert!(
        summaries[0].contains("changes in the last 30s"),
        "{}",
        summaries[0]
    );
}

#[test]
fn a_transmission_cut_by_sigterm_is_logged() {
    // The echo user plays a 3 s message back: stop the gateway while it is on the air.
    let seen = run_gateway("cut", "info", "[[0.5, 3.5]]", |log| {
        log.wait_for("radio -> zello");
        log.wait_for("PTT on");
        std::thread::sleep(Duration::from_millis(1000));
    });
    let cut = seen
        .iter()
        .find(|l| l.contains("transmission cut"))
        .unwrap_or_else(|| panic!("no line about the cut transmission: {seen:#?}"));
    assert!(cut.contains("radio=radio1"), "{cut}");
    assert!(cut.contains("stream_id="), "{cut}");
    assert!(cut.contains("from=echo"), "{cut}");
}

/// `zello-gateway run` on `path` outside the journal (no INVOCATION_ID or JOURNAL_STREAM, so
/// it logs to its standard error, piped), with `RUST_LOG` at `rust_log` (none: the file's
/// level) and whatever else `more` sets.
fn run_logged(
    path: &std::path::Path,
    rust_log: Option<&str>,
    more: impl FnOnce(&mut Command) -> &mut Command,
) -> Reaped {
    let mut run = with_config("run", path);
    match rust_log {
        Some(level) => run.env("RUST_LOG", level),
        None => run.env_remove("RUST_LOG"),
    };
    more(&mut run)
        .env_remove("INVOCATION_ID")
        .env_remove("JOURNAL_STREAM")
        .stderr(Stdio::piped())
        .spawn()
        .map(Reaped)
        .unwrap()
}

/// [`run_logged`] under a stand-in for systemd's notify socket, with its watchdog every
/// `watchdog_usec` microseconds (none: no watchdog).
fn run_notified(
    path: &std::path::Path,
    systemd: &NotifySocket,
    rust_log: Option<&str>,
    watchdog_usec: Option<&str>,
) -> Reaped {
    run_logged(path, rust_log, |run| {
        match watchdog_usec {
            Some(usec) => run.env("WATCHDOG_USEC", usec),
            None => run.env_remove("WATCHDOG_USEC"),
        };
        run.env("NOTIFY_SOCKET", &systemd.path)
            .env_remove("WATCHDOG_PID")
    })
}

#[test]
fn run_without_network_is_ready_at_once_and_says_why_it_is_not_connected() {
    // A Pi that boots offline: nothing listens where the Zello server should be.
    let port = free_port();
    let dir = Scratch::new("offline");
    let path = write_config(&dir, &one_radio(port, ""));
    let systemd = NotifySocket::new();
    let mut gw = run_notified(&path, &systemd, Some("info"), None);
    let mut log = Lines::of(&mut gw);
    // The start job completes although the server cannot be reached.
    let within = Duration::from_secs(15);
    let mut got = systemd.wait_for(within, |m| m == "READY=1");
    let server = sim_url(port);
    let not_connected =
        |m: &str| m.starts_with("STATUS=") && m.contains(&format!("cannot connect to {server}"));
    if !got.iter().any(|m| not_connected(m)) {
        got.extend(systemd.wait_for(within, not_connected));
    }
    let status = got.iter().find(|m| not_connected(m)).unwrap();
    assert!(status.contains("refused"), "why: {status}");
    assert!(status.contains("next try in"), "{status}");
    assert!(
        status.ends_with("Local: offline; radio vhf1 idle"),
        "{status}"
    );
    assert!(gw.try_wait().unwrap().is_none(), "still running");

    // The network comes up: the status follows, READY=1 is not sent again.
    let sim = start_sim_on(port, &[]);
    let got = systemd.wait_for(Duration::from_secs(30), |m| {
        m == "STATUS=Local: online, 1 user; radio vhf1 idle"
    });
    assert!(!got.iter().any(|m| m == "READY=1"), "{got:#?}");
    log.wait_for("event=\"logged_on\"");

    stop(&mut gw, Duration::from_secs(10), &log.seen);
    stop_sim(sim);
}

#[test]
fn run_waits_for_a_rigctld_that_starts_later_and_then_starts_the_radio() {
    let (sim, port) = start_sim();
    let rig_port = free_port();
    let dir = Scratch::new("late-rig");
    let path = write_config(
        &dir,
        &one_radio(
            port,
            &format!(
                "ptt = {{ type = \"rigctld\", address = \"127.0.0.1:{rig_port}\" }}\n\n\
                 [[radio]]\nname = \"uhf1\"\nchannel = \"Local\"\naudio = {{ backend = \"file\" }}\n"
            ),
        ),
    );
    let systemd = NotifySocket::new();
    let mut gw = run_notified(&path, &systemd, Some("info"), None);
    let mut log = Lines::of(&mut gw);
    let within = Duration::from_secs(15);
    // Ready with the radio waiting for its rigctld; the other radio and Zello go on.
    systemd.wait_for(within, |m| m == "READY=1");
    let waiting =
        "STATUS=Local: online, 1 user; radio vhf1 waiting for its hardware; radio uhf1 idle";
    systemd.wait_for(within, |m| m == waiting);
    let line = log.wait_for("event=\"hardware_waiting\"");
    assert!(line.contains("vhf1"), "{line}");
    assert!(line.contains(&format!("127.0.0.1:{rig_port}")), "{line}");
    assert!(gw.try_wait().unwrap().is_none(), "still running");

    // rigctld starts (after the gateway, as it may at boot): the radio starts.
    let (_rig, _) = start_rigctld_on(rig_port);
    systemd.wait_for(Duration::from_secs(40), |m| {
        m == "STATUS=Local: online, 1 user; radio vhf1 idle; radio uhf1 idle"
    });
    log.wait_for("event=\"hardware_found\"");
    // One line when it started waiting, one when the hardware came: not one per try.
    let waits = log
        .seen
        .iter()
        .filter(|l| l.contains("event=\"hardware_waiting\""))
        .count();
    assert_eq!(waits, 1, "{:#?}", log.seen);

    stop(&mut gw, Duration::from_secs(10), &log.seen);
    stop_sim(sim);
}

#[test]
fn check_config_only_passes_with_a_missing_device_that_check_reports() {
    let dir = Scratch::new("config-only");
    let config = zello_section(&sim_url(8800))
        + "[[radio]]\nname = \"vhf1\"\nchannel = \"Dispatch\"\naudio = { backend = \"file\" }\n\
           ptt = { type = \"serial\", device = \"/dev/zg-no-such-tty\", lines = [\"RTS\"] }\n";
    let path = write_config(&dir, &config);
    // For people: every device is opened, and a missing one fails.
    let err = exits_with(&mut with_config("check", &path), 1);
    assert!(err.contains("radio[0] (vhf1).ptt"), "{err}");
    // For systemd's ExecStartPre: the file only; the gateway waits for the device.
    let out = bin()
        .args(["check", "--config-only", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("configuration OK"), "{stdout}");
    assert!(stdout.contains("devices not opened"), "{stdout}");
    // Configuration errors still fail it.
    std::fs::write(&path, config.replace("\"Dispatch\"", "\"\"")).unwrap();
    let err = exits_with(
        bin()
            .args(["check", "--config-only", "--config"])
            .arg(&path),
        1,
    );
    assert!(err.contains("radio[0].channel"), "{err}");
}

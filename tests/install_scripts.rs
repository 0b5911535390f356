//! The install, uninstall and unit-check scripts: they parse, their dry runs print every
//! action and change nothing, a staged install (DESTDIR) lays out the files with the right
//! modes and keeps an existing configuration, and the unit check catches a broken unit.
//! (shellcheck runs in scripts/check-scripts.sh, systemd-analyze on the real unit in
//! scripts/verify-unit.sh.)

mod common;

use common::cli::{assert_contains_all, fake_binary, root, run, staged_install};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn script(name: &str) -> PathBuf {
    root().join("scripts").join(name)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn every_script_parses() {
    let mut n = 0;
    for entry in std::fs::read_dir(root().join("scripts")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("sh") {
            continue;
        }
        let (ok, out) = run(Command::new("bash").arg("-n").arg(&path));
        assert!(ok, "{}: {out}", path.display());
        n += 1;
    }
    assert!(n >= 6, "found {n} scripts");
}

#[test]
fn install_dry_run_prints_every_action_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let binary = fake_binary(dir.path());
    let watched = [
        "/usr/local/bin/zello-gateway",
        "/etc/systemd/system/zello-gateway.service",
        "/etc/udev/rules.d/99-zello-gateway.rules",
        "/etc/zello-gateway",
    ];
    let before: Vec<bool> = watched.iter().map(|p| Path::new(p).exists()).collect();

    let (ok, out) = run(Command::new(script("install.sh"))
        .arg("--dry-run")
        .arg("--binary")
        .arg(&binary)
        .env_remove("DESTDIR"));
    assert!(ok, "{out}");
    assert_contains_all(
        &out,
        &[
            "Dry run: nothing is changed",
            "usermod --append --groups audio,gpio,dialout,plugdev zello-gateway",
            &format!(
                "install -m 0755 {} /usr/local/bin/zello-gateway",
                binary.display()
            ),
            "install -m 0644 systemd/zello-gateway.service /etc/systemd/system/zello-gateway.service",
            "install -m 0644 hw/99-zello-gateway.rules /etc/udev/rules.d/99-zello-gateway.rules",
            "systemctl daemon-reload",
            "systemctl enable zello-gateway",
            "Dry run complete: nothing was changed",
        ],
    );
    // The service user: created, or already there.
    assert!(
        out.contains("useradd --system --user-group") || !out.contains("useradd"),
        "{out}"
    );
    if !Path::new("/etc/zello-gateway/gateway.toml").exists() {
        // A fresh configuration is the example: enabled, not started.
        assert!(out.contains(
            "install -m 0640 config/gateway.example.toml /etc/zello-gateway/gateway.toml"
        ));
        assert!(out.contains("chown root:zello-gateway /etc/zello-gateway/gateway.toml"));
        assert!(!out.contains("enable --now"), "{out}");
        assert!(out.contains("then start the gateway"), "{out}");
    }
    // No build in a dry run with --binary, and nothing on the system changed.
    assert!(!out.contains("cargo build"), "{out}");
    let after: Vec<bool> = watched.iter().map(|p| Path::new(p).exists()).collect();
    assert_eq!(before, after, "a dry run changed the system");

    // Without --binary the build is printed, not run.
    let (ok, out) = run(Command::new(script("install.sh"))
        .args(["--dry-run", "--no-start"])
        .env_remove("DESTDIR"));
    assert!(ok, "{out}");
    assert!(out.contains("+ scripts/deps.sh --build-only"), "{out}");
    assert!(out.contains("+ cargo build --release --locked"), "{out}");
    assert!(!out.contains("enable --now"), "{out}");

    let (ok, out) = run(Command::new(script("install.sh")).arg("--bogus"));
    assert!(!ok);
    assert!(out.contains("unknown option --bogus"), "{out}");
    let (ok, out) = run(Command::new(script("install.sh")).arg("--help"));
    assert!(
        ok && out.contains("--no-start") && out.contains("--dry-run"),
        "{out}"
    );
}

#[test]
fn staged_install_lays_out_the_files_and_keeps_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("root");
    std::fs::create_dir(&dest).unwrap();
    let install = || staged_install(dir.path(), &dest);

    let (ok, out) = install();
    assert!(ok, "{out}");
    let at = |p: &str| dest.join(p.trim_start_matches('/'));
    assert_eq!(mode(&at("/usr/local/bin/zello-gateway")), 0o755);
    assert_eq!(
        std::fs::read(at("/etc/systemd/system/zello-gateway.service")).unwrap(),
        std::fs::read(root().join("systemd/zello-gateway.service")).unwrap()
    );
    assert_eq!(
        mode(&at("/etc/systemd/system/zello-gateway.service")),
        0o644
    );
    assert_eq!(mode(&at("/etc/udev/rules.d/99-zello-gateway.rules")), 0o644);
    let config = at("/etc/zello-gateway/gateway.toml");
    assert_eq!(mode(&config), 0o640);
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        std::fs::read_to_string(root().join("config/gateway.example.toml")).unwrap()
    );
    // The steps that change the running system are only shown.
    assert_contains_all(
        &out,
        &[
            "skipped (DESTDIR is set): usermod --append --groups audio,gpio,dialout,plugdev zello-gateway",
            "skipped (DESTDIR is set): chown root:zello-gateway /etc/zello-gateway/gateway.toml",
            "skipped (DESTDIR is set): systemctl enable zello-gateway",
            // The example names /etc/zello-gateway/password, which does not exist yet.
            "install -m 600 -o zello-gateway -g zello-gateway /dev/null /etc/zello-gateway/password",
        ],
    );

    // Run again with an edited configuration and a password file anyone can read: the
    // configuration is kept, the password file made 0600, and the service started.
    std::fs::write(&config, "# edited\npassword_file = \"password\"\n").unwrap();
    let password = at("/etc/zello-gateway/password");
    std::fs::write(&password, "hunter2\n").unwrap();
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, out) = install();
    assert!(ok, "{out}");
    assert!(out.contains("keeping the existing /etc/zello-gateway/gateway.toml"));
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        "# edited\npassword_file = \"password\"\n"
    );
    assert_eq!(mode(&password), 0o600);
    assert!(
        out.contains("skipped (DESTDIR is set): chown zello-gateway:zello-gateway /etc/zello-gateway/password"),
        "{out}"
    );
    assert!(
        out.contains("skipped (DESTDIR is set): systemctl enable --now --no-block zello-gateway"),
        "{out}"
    );

    // Uninstall keeps the configuration; --purge removes it.
    let uninstall = |args: &[&str]| {
        run(Command::new(script("uninstall.sh"))
            .args(args)
            .env("DESTDIR", &dest))
    };
    let (ok, out) = uninstall(&["--dry-run"]);
    assert!(ok, "{out}");
    assert!(out.contains("+ rm -f"), "{out}");
    assert!(
        at("/usr/local/bin/zello-gateway").exists(),
        "dry run removed a file"
    );
    let (ok, out) = uninstall(&[]);
    assert!(ok, "{out}");
    assert!(out.contains("skipped (DESTDIR is set): systemctl disable --now zello-gateway"));
    for gone in [
        "/usr/local/bin/zello-gateway",
        "/etc/systemd/system/zello-gateway.service",
        "/etc/udev/rules.d/99-zello-gateway.rules",
    ] {
        assert!(!at(gone).exists(), "{gone} is still there");
    }
    assert!(config.exists() && password.exists());
    assert!(out.contains("Kept: /etc/zello-gateway"), "{out}");
    let (ok, out) = uninstall(&["--purge"]);
    assert!(ok, "{out}");
    assert!(!at("/etc/zello-gateway").exists());
    assert!(
        out.contains("skipped (DESTDIR is set): userdel zello-gateway"),
        "{out}"
    );
}

#[test]
fn the_unit_check_catches_a_broken_unit() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        // scripts/deps.sh installs it: in CI a missing one is a failure, not a skip.
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "systemd-analyze is not installed: run scripts/deps.sh"
        );
        eprintln!("systemd-analyze is not installed: scripts/deps.sh installs it");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let binary = fake_binary(dir.path());
    let good = root().join("systemd/zello-gateway.service");
    let (ok, out) = run(Command::new(script("verify-unit.sh"))
        .arg(&binary)
        .arg(&good));
    assert!(ok, "{out}");
    assert!(out.contains("no problems"), "{out}");
    let rated = out;

    let text = std::fs::read_to_string(&good).unwrap();
    for (from, to, needle) in [
        ("WatchdogSec=30", "WatchdogSecs=30", "WatchdogSecs"),
        ("Type=notify", "Type=notifying", "notifying"),
        (
            "ExecReload=/bin/kill",
            "ExecReload=/bin/no-such-kill",
            "no-such-kill",
        ),
    ] {
        assert!(text.contains(from), "{from}");
        let broken = dir.path().join("zello-gateway.service");
        std::fs::write(&broken, text.replacen(from, to, 1)).unwrap();
        let (ok, out) = run(Command::new(script("verify-unit.sh"))
            .arg(&binary)
            .arg(&broken));
        assert!(!ok, "{to} passed:\n{out}");
        assert!(out.contains(needle), "{out}");
    }

    // The sandbox is rated by systemd-analyze security: without its hardening the unit is
    // too exposed.
    assert!(exposure_at_most_3_5(&rated), "{rated}");
    let loose: String = text
        .lines()
        .filter(|l| {
            ![
                "CapabilityBoundingSet=",
                "SystemCallFilter=",
                "ProtectProc=",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let broken = dir.path().join("zello-gateway.service");
    std::fs::write(&broken, loose).unwrap();
    let (ok, out) = run(Command::new(script("verify-unit.sh"))
        .arg(&binary)
        .arg(&broken));
    assert!(!ok, "a unit without its hardening passed:\n{out}");
    assert!(out.contains("at most 3.5 is allowed"), "{out}");
}

/// Whether scripts/verify-unit.sh's output rates the unit at most 3.5.
fn exposure_at_most_3_5(out: &str) -> bool {
    out.lines().any(|l| {
        l.starts_with("systemd-analyze security")
            && l.ends_with("(at most 3.5)")
            && l.split("exposure ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .and_then(|x| x.parse::<f32>().ok())
                .is_some_and(|x| x <= 3.5)
    })
}

#[test]
fn the_unit_has_what_the_service_needs() {
    let text = std::fs::read_to_string(root().join("systemd/zello-gateway.service")).unwrap();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let has = |l: &str| lines.contains(&l);
    for line in [
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=30",
        // The file only: hardware that is not there yet is waited for by the gateway.
        "ExecStartPre=/usr/local/bin/zello-gateway check --config-only --config /etc/zello-gateway/gateway.toml",
        "ExecStart=/usr/local/bin/zello-gateway run --config /etc/zello-gateway/gateway.toml",
        "ExecStopPost=/usr/local/bin/zello-gateway ptt-off --config /etc/zello-gateway/gateway.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "TimeoutStopSec=5",
        // READY=1 does not wait for Zello, so the start is bounded again.
        "TimeoutStartSec=90",
        "User=zello-gateway",
        "SupplementaryGroups=audio gpio dialout plugdev",
        "ProtectSystem=strict",
        "DevicePolicy=auto",
        "StartLimitIntervalSec=300",
        "StartLimitBurst=10",
        "CapabilityBoundingSet=",
        "ProtectProc=invisible",
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@privileged",
    ] {
        assert!(has(line), "{line} missing");
    }
    // A start that never completes holds back everything after multi-user.target.
    assert!(!has("TimeoutStartSec=infinity"));
    // Devices must stay reachable, and audio threads may ask for real-time scheduling.
    for absent in [
        "PrivateDevices=",
        "RestrictRealtime=",
        "ProtectClock=",
        "DeviceAllow=",
        // /proc/asound lists the sound cards.
        "ProcSubset=",
        // Unmaps the audio, gpio and dialout groups.
        "PrivateUsers=",
        // The gateway must reach Zello.
        "PrivateNetwork=",
        "IPAddressDeny=",
        // sched_setscheduler for real-time audio threads.
        "SystemCallFilter=~@resources",
    ] {
        assert!(
            !lines.iter().any(|l| l.starts_with(absent)),
            "{absent} would cut off the radio interfaces or Zello"
        );
    }
    // The start limits belong in [Unit], where systemd reads them.
    let unit_section = text.split("[Service]").next().unwrap();
    assert!(unit_section.contains("StartLimitBurst=10"));
}

#[test]
fn the_debian_package_ships_what_install_sh_installs() {
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(root().join("Cargo.toml")).unwrap()).unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    let assets = deb["assets"].as_array().unwrap();
    let mut sources = Vec::new();
    for asset in assets {
        let asset = asset.as_array().unwrap();
        let source = asset[0].as_str().unwrap();
        sources.push(source.to_string());
        if source.starts_with("target/") {
            continue;
        }
        if let Some(prefix) = source.strip_suffix("*.md") {
            let n = std::fs::read_dir(root().join(prefix))
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .path()
                        .extension()
                        .is_some_and(|x| x == "md")
                })
                .count();
            assert!(n >= 4, "{source}: {n} guides");
        } else {
            assert!(root().join(source).is_file(), "{source} is missing");
        }
    }
    for needed in [
        "target/release/zello-gateway",
        "hw/99-zello-gateway.rules",
        "config/gateway.example.toml",
        "systemd/deb-usr-bin.conf",
    ] {
        assert!(sources.iter().any(|s| s == needed), "{needed} not packaged");
    }
    // cargo-deb refuses to build without a maintainer.
    let maintainer = deb["maintainer"].as_str().unwrap();
    assert!(
        maintainer.contains('<') && maintainer.ends_with('>'),
        "{maintainer}"
    );
    let depends = deb["depends"].as_str().unwrap();
    for lib in ["libopus0", "libasound2"] {
        assert!(depends.contains(lib), "{depends}");
    }
    // The unit comes from systemd/ (cargo-deb's systemd-units), enabled but not started.
    let units = &deb["systemd-units"];
    assert_eq!(units["unit-scripts"].as_str(), Some("systemd"));
    assert_eq!(units["start"].as_bool(), Some(false));
    assert!(root().join("systemd/zello-gateway.service").is_file());
    // Maintainer scripts carry the token cargo-deb replaces, and postinst copies the
    // example from where the package puts it.
    let scripts = deb["maintainer-scripts"].as_str().unwrap();
    for name in ["postinst", "postrm"] {
        let text = std::fs::read_to_string(root().join(scripts).join(name)).unwrap();
        assert!(text.contains("#DEBHELPER#"), "{name}");
        let (ok, out) = run(Command::new("sh")
            .arg("-n")
            .arg(root().join(scripts).join(name)));
        assert!(ok, "{name}: {out}");
    }
    let postinst = std::fs::read_to_string(root().join(scripts).join("postinst")).unwrap();
    assert!(postinst.contains("/usr/share/zello-gateway/gateway.example.toml"));
    assert!(assets.iter().any(|a| a.as_array().unwrap()[1].as_str()
        == Some("usr/share/zello-gateway/gateway.example.toml")));
    // The drop-in moves every command of the unit to /usr/bin.
    let dropin = std::fs::read_to_string(root().join("systemd/deb-usr-bin.conf")).unwrap();
    let unit = std::fs::read_to_string(root().join("systemd/zello-gateway.service")).unwrap();
    for line in unit.lines().filter(|l| l.contains("/usr/local/bin/")) {
        let moved = line.replace("/usr/local/bin/", "/usr/bin/");
        assert!(dropin.lines().any(|l| l == moved), "{moved} missing");
        let key = line.split('=').next().unwrap();
        assert!(
            dropin.lines().any(|l| l == format!("{key}=")),
            "{key}= is not cleared"
        );
    }
}

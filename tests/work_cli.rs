//! `zello-gateway provision` and `history` as an administrator runs them, against
//! `zello-gateway sim --work-listen`.

mod common;

use common::cli::{assert_contains_all, spawn_sim, text};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zello-gateway"));
    for var in [
        "ZELLO_WORK_URL",
        "ZELLO_ADMIN_USERNAME",
        "ZELLO_ADMIN_PASSWORD",
        "ZELLO_API_KEY",
        "RUST_LOG",
    ] {
        c.env_remove(var);
    }
    c
}

/// `sim` with the Zello Work API, killed when dropped.
struct Sim {
    /// Killed when dropped.
    _child: common::Reaped,
    url: String,
}

impl Sim {
    /// The ports are the ones `sim` binds itself and reports: none another test can take
    /// in between.
    fn start(seed: Option<&Path>) -> Sim {
        let mut args = vec!["--work-listen", "127.0.0.1:0"];
        let seed_text = seed.map(|p| p.to_string_lossy().into_owned());
        if let Some(seed) = &seed_text {
            args.extend(["--work-seed", seed.as_str()]);
        }
        let (sim, urls) = spawn_sim(&args, &["Zello Work API emulator serving"]);
        Sim {
            _child: sim,
            url: urls[0].trim_end_matches('/').to_string(),
        }
    }
}

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        Files {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        path
    }

    fn gateway(&self, username: &str) -> PathBuf {
        self.write(
            &format!("{username}.toml"),
            &format!(
                "[zello]\nserver = \"ws://127.0.0.1:1/ws\"\nusername = \"{username}\"\npassword = \"gw-pass\"\n\n\
                 [[radio]]\nname = \"r1\"\nchannel = \"Dispatch\"\naudio = {{ backend = \"file\" }}\n\n\
                 [[radio]]\nname = \"r2\"\nchannel = \"Gate\"\naudio = {{ backend = \"file\" }}\n"
            ),
        )
    }

    fn admin(&self, url: &str, username: &str, password: &str) -> PathBuf {
        self.write("pw", &format!("{password}\n"));
        self.write(
            "admin.toml",
            &format!(
                "url = \"{url}\"\nusername = \"{username}\"\npassword_file = \"pw\"\napi_key = \"sim-api-key\"\n"
            ),
        )
    }
}

/// Runs `command` (provision, history) with a configuration and an admin file.
fn admin_command(command: &str, config: &Path, admin: &Path, extra: &[&str]) -> Output {
    bin()
        .arg(command)
        .arg("--config")
        .arg(config)
        .arg("--admin")
        .arg(admin)
        .args(extra)
        .output()
        .unwrap()
}

fn provision(config: &Path, admin: &Path, extra: &[&str]) -> Output {
    admin_command("provision", config, admin, extra)
}

/// The Work emulator with its usual data, and scratch files holding the configuration of a
/// gateway `gw1` (its path, last).
fn gw1_on_sim() -> (Sim, Files, PathBuf) {
    let sim = Sim::start(None);
    let files = Files::new();
    let config = files.gateway("gw1");
    (sim, files, config)
}

/// The error line of a failed run: one line, no panic.
fn one_line_error(out: &Output) -> String {
    assert!(!out.status.success(), "{out:?}");
    let (_, err) = text(out);
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    lines[0].to_string()
}

#[test]
fn provision_dry_run_then_twice() {
    let (sim, files, config) = gw1_on_sim();
    let admin = files.admin(&sim.url, "admin", "admin");

    let out = provision(&config, &admin, &["--dry-run"]);
    assert!(out.status.success(), "{out:?}");
    let (stdout, stderr) = text(&out);
    assert!(
        stdout.contains("Plan (dry run) for gateway \"gw1\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("1. create gateway account \"gw1\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("2. create group channel \"Gate\""),
        "{stdout}"
    );
    assert!(stdout.contains("dry run: nothing was changed"), "{stdout}");
    assert!(stderr.is_empty(), "{stderr}");

    let out = provision(&config, &admin, &[]);
    assert!(out.status.success(), "{out:?}");
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("done 3/3: add \"gw1\" to channels"),
        "{stdout}"
    );
    assert!(stdout.ends_with("\"gw1\" is set up\n"), "{stdout}");

    let out = provision(&config, &admin, &[]);
    assert!(out.status.success(), "{out:?}");
    let (stdout, _) = text(&out);
    assert!(stdout.starts_with("nothing to do: "), "{stdout}");
    assert!(!stdout.contains("gw-pass") && !stdout.contains("sim-api-key"));
}

#[test]
fn provision_bad_credentials_rights_and_admin_files() {
    let (sim, files, config) = gw1_on_sim();

    // A wrong password, and a wrong API key from the environment: 303.
    let admin = files.admin(&sim.url, "admin", "wrong");
    let line = one_line_error(&provision(&config, &admin, &[]));
    assert!(
        line.contains("invalid username, password or API key (code 303"),
        "{line}"
    );
    let admin = files.admin(&sim.url, "admin", "admin");
    let out = bin()
        .args(["provision", "--config"])
        .arg(&config)
        .arg("--admin")
        .arg(&admin)
        .env("ZELLO_API_KEY", "not-the-key")
        .output()
        .unwrap();
    assert!(one_line_error(&out).contains("code 303"));
    // A user without admin rights: 302.
    let admin = files.admin(&sim.url, "viewer", "viewer");
    let line = one_line_error(&provision(&config, &admin, &[]));
    assert!(line.contains("no admin rights (code 302"), "{line}");

    // Plain http to a host other than loopback is refused before any connection, and
    // every problem of the file is listed.
    let bad = files.write(
        "bad-admin.toml",
        "url = \"http://acme.zellowork.com\"\nusername = \"admin\"\n",
    );
    let out = provision(&config, &bad, &[]);
    assert!(!out.status.success());
    let (_, err) = text(&out);
    assert_contains_all(
        &err,
        &[
            "3 problem(s)",
            "url: URL \"http://acme.zellowork.com\": plain http:// is only allowed to loopback",
            "password: missing",
            "api_key: missing",
        ],
    );
    let unknown = files.write(
        "unknown.toml",
        "url = \"https://a.zellowork.com\"\nusr = \"x\"\n",
    );
    let (_, err) = text(&provision(&config, &unknown, &[]));
    assert!(err.contains("usr"), "{err}");

    // The environment alone will do, and overrides the file.
    let out = bin()
        .args(["provision", "--dry-run", "--config"])
        .arg(&config)
        .env("ZELLO_WORK_URL", &sim.url)
        .env("ZELLO_ADMIN_USERNAME", "admin")
        .env("ZELLO_ADMIN_PASSWORD", "admin")
        .env("ZELLO_API_KEY", "sim-api-key")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = bin()
        .args(["provision", "--dry-run", "--config"])
        .arg(&config)
        .arg("--admin")
        .arg(&bad)
        .env("ZELLO_WORK_URL", &sim.url)
        .env("ZELLO_ADMIN_PASSWORD", "admin")
        .env("ZELLO_API_KEY", "sim-api-key")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn provision_at_the_gateway_limit_says_so() {
    let files = Files::new();
    let seed = files.write(
        "seed.toml",
        "max_gateways = 1\n[[user]]\nname = \"admin\"\npassword = \"admin\"\nadmin = true\n\
         [[user]]\nname = \"old-gw\"\npassword = \"x\"\ngateway = true\n\
         [[channel]]\nname = \"Dispatch\"\n",
    );
    let sim = Sim::start(Some(&seed));
    let admin = files.admin(&sim.url, "admin", "admin");
    let line = one_line_error(&provision(&files.gateway("gw2"), &admin, &[]));
    assert!(line.contains("limits reached"), "{line}");
    assert!(line.contains("(at most 1) (code 407)"), "{line}");
}

fn history(config: &Path, admin: &Path, extra: &[&str]) -> Output {
    admin_command("history", config, admin, extra)
}

#[test]
fn history_lists_and_downloads_with_plain_progress_off_a_terminal() {
    let sim = Sim::start(None);
    let files = Files::new();
    let config = files.write(
        "gw.toml",
        "[zello]\nserver = \"ws://127.0.0.1:1/ws\"\nusername = \"gw1\"\npassword = \"p\"\n\
         [[radio]]\nname = \"r1\"\nchannel = \"Dispatch\"\naudio = { backend = \"file\" }\n\
         [[radio]]\nname = \"r2\"\nchannel = \"Yard\"\naudio = { backend = \"file\" }\n",
    );
    let admin = files.admin(&sim.url, "admin", "admin");

    let out = history(&config, &admin, &[]);
    assert!(out.status.success(), "{out:?}");
    let (stdout, _) = text(&out);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        "4 of 4 message(s) on \"Dispatch\", \"Yard\", newest first"
    );
    assert!(lines[1].contains("TIME (UTC)"), "{stdout}");
    assert_eq!(lines.len(), 6, "{stdout}");
    assert!(
        lines[3].contains("Dispatch") && lines[3].ends_with("image"),
        "{stdout}"
    );

    let out = history(
        &config,
        &admin,
        &["--channel", "Yard", "--type", "call_alert"],
    );
    let (stdout, _) = text(&out);
    assert_eq!(stdout, "0 of 0 message(s) on \"Yard\", newest first\n");

    let dir = files.dir.path().join("recordings");
    let out = history(
        &config,
        &admin,
        &[
            "--sender",
            "driver1",
            "--since",
            "2h",
            "--download",
            dir.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let (stdout, stderr) = text(&out);
    assert!(stdout.starts_with("1 of 1 message(s)"), "{stdout}");
    assert!(stdout.contains("saved "), "{stdout}");
    assert!(dir.join("2-driver1.wav").is_file());
    // The emulator converts in steps: the progress shows as lines, not a bar.
    assert_contains_all(
        &stderr,
        &[
            "2: waiting in the server's queue (0%)",
            "2: converting (",
            "2: downloading ",
        ],
    );
    assert!(!stderr.contains('\r'), "{stderr:?}");

    let line = one_line_error(&history(&config, &admin, &["--since", "yesterday"]));
    assert!(
        line.contains("--since \"yesterday\": use Unix seconds"),
        "{line}"
    );
    let line = one_line_error(&history(
        &config,
        &files.admin(&sim.url, "viewer", "viewer"),
        &[],
    ));
    assert!(line.contains("code 302"), "{line}");
}

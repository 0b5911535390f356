//! The `zello-gateway` binary and the scripts as a user runs them: the command, scratch
//! folders, configuration files, `zello-gateway sim` as a child process and what a child
//! writes.

use super::{Reaped, free_port};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The built `zello-gateway`.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_zello-gateway"))
}

/// The source tree (where `scripts/`, `docs/` and the README are).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh scratch folder `zg-NAME-PID` under the system's temporary folder (the process
/// id keeps test binaries running at once apart).
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zg-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A [`temp_dir`] that is removed, with all in it, when dropped: at the end of the test,
/// however it ends.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        Scratch(temp_dir(name))
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// Writes `text` as `gateway.toml` in `dir`, and returns its path.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `zello-gateway COMMAND --config PATH`.
pub fn with_config(command: &str, path: &Path) -> Command {
    let mut cmd = bin();
    cmd.args([command, "--config"]).arg(path);
    cmd
}

/// A stand-in for the built binary in `dir` that does nothing, so no release build is
/// needed to install it.
pub fn fake_binary(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join("zello-gateway");
    std::fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Runs `scripts/install.sh` staged into `dest` (`DESTDIR`), installing a [`fake_binary`]
/// written to `scratch`: whether it succeeded, and what it printed.
pub fn staged_install(scratch: &Path, dest: &Path) -> (bool, String) {
    let binary = fake_binary(scratch);
    run(Command::new(root().join("scripts/install.sh"))
        .arg("--binary")
        .arg(&binary)
        .env("DESTDIR", dest))
}

/// The `[zello]` table of a gateway configuration (user `gateway1`, password `pw`) for the
/// server at `url`, and an `[api]` table on a port the system chooses (tests run side by
/// side), then a blank line.
pub fn zello_section(url: &str) -> String {
    format!(
        "[zello]\nserver = \"{url}\"\nusername = \"gateway1\"\npassword = \"pw\"\n\n[api]\nlisten = \"127.0.0.1:0\"\n\n"
    )
}

/// The URL of `zello-gateway sim` listening on `port`.
pub fn sim_url(port: u16) -> String {
    format!("ws://127.0.0.1:{port}/ws")
}

/// A WAV file of `ms` milliseconds of silence at 16 kHz.
pub fn silent_wav(path: &Path, ms: u32) {
    let silence = vec![0i16; 16 * ms as usize];
    zello_gateway::audio::wav::write_wav_mono(path, 16_000, &silence).unwrap();
}

/// A command's standard output and error, as text.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `cmd` to its end: whether it succeeded, and its standard output then its error.
pub fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("the command runs");
    let (stdout, stderr) = text(&out);
    (out.status.success(), stdout + &stderr)
}

/// Asserts that `out` is a success, showing `what` and the command's error output if not.
pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts that `text` contains every one of `needles`, naming the first one missing.
pub fn assert_contains_all(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} missing in:\n{text}");
    }
}

/// Sends SIGTERM to `child`, as systemd does to stop it.
pub fn terminate(child: &Child) {
    signal(child, "-TERM");
}

/// Sends SIGHUP to `child`, as `systemctl reload` does.
pub fn hang_up(child: &Child) {
    signal(child, "-HUP");
}

fn signal(child: &Child, which: &str) {
    Command::new("kill")
        .args([which, &child.id().to_string()])
        .status()
        .expect("kill runs");
}

/// Waits for `child` to exit, killing it and failing after `within`.
pub fn wait_exit(child: &mut Child, within: Duration) -> ExitStatus {
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

/// Stops `child` with SIGTERM and asserts it exits cleanly within `within`, showing what
/// it logged (`seen`) if not.
pub fn stop(child: &mut Child, within: Duration, seen: &[String]) {
    terminate(child);
    let status = wait_exit(child, within);
    assert!(status.success(), "{status:?}; {seen:#?}");
}

/// Starts `zello-gateway sim` with `args` on `port` (chosen beforehand) and waits until it
/// listens.
pub fn start_sim_on(port: u16, args: &[&str]) -> Reaped {
    let sim = Reaped(
        bin()
            .args(["sim", "--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening(port, Duration::from_secs(10), "sim did not start");
    sim
}

/// Waits until something listens on loopback `port`, failing with `otherwise` after
/// `within`.
pub fn wait_listening(port: u16, within: Duration, otherwise: &str) {
    let deadline = Instant::now() + within;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{otherwise}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A file of the source tree, `path` relative to its top.
pub fn read_source(path: &str) -> String {
    let full = root().join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// Starts `zello-gateway sim` with `args` on a port it chooses itself (no other test can
/// take it in between), and returns it with the port it reports.
pub fn start_sim_with(args: &[&str]) -> (Reaped, u16) {
    let (sim, urls) = spawn_sim(args, &["Zello emulator serving"]);
    (sim, port_of(&urls[0]))
}

/// Starts `zello-gateway sim --listen 127.0.0.1:0` with `args` (add `--work-listen
/// 127.0.0.1:0` for the Work API) and waits for a log line with each of `serving` in turn:
/// the `url=` of each. Its log keeps being read (and dropped), so it never blocks on it.
pub fn spawn_sim(args: &[&str], serving: &[&str]) -> (Reaped, Vec<String>) {
    let mut sim = Reaped(
        bin()
            .args(["sim", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("JOURNAL_STREAM")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = Lines::of(&mut sim.0);
    let urls = serving
        .iter()
        .map(|needle| {
            let line = lines.wait_for(needle);
            let url = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("url="))
                .unwrap_or_else(|| panic!("no url= in {line:?}"));
            url.trim_matches('"').to_string()
        })
        .collect();
    (sim, urls)
}

/// The port of a URL like `ws://127.0.0.1:PORT/ws`.
pub fn port_of(url: &str) -> u16 {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {url:?}"))
}

/// [`start_sim_with`] no more arguments.
pub fn start_sim() -> (Reaped, u16) {
    start_sim_with(&[])
}

/// The lines a child writes to stderr, read on a thread.
pub struct Lines {
    rx: std::sync::mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Lines {
    pub fn of(child: &mut Child) -> Lines {
        Lines::read(child.stderr.take().unwrap())
    }

    /// The lines a child writes to stdout.
    pub fn of_stdout(child: &mut Child) -> Lines {
        Lines::read(child.stdout.take().unwrap())
    }

    fn read(stream: impl std::io::Read + Send + 'static) -> Lines {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// The lines written so far and not yet seen.
    pub fn drain(&mut self) -> Vec<String> {
        let new: Vec<String> = self.rx.try_iter().collect();
        self.seen.extend(new.iter().cloned());
        new
    }

    /// Waits for a line containing `needle`.
    pub fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let line = self
                .rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("no line with {needle:?}; got {:#?}", self.seen));
            self.seen.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }
}

//! `zello-gateway check`: everything that would stop the gateway from starting, found before
//! it starts (systemd runs it as `ExecStartPre=`).
//!
//! It validates the configuration, reads the secret files it names, and opens every radio's
//! devices without transmitting (see [`crate::parts::probe`]), then lists every
//! problem at once, each naming its key.

use crate::config::{Config, ConfigError};
use std::path::Path;

/// What `check` found.
#[derive(Debug, Default)]
pub struct Report {
    /// The configuration file, as given.
    pub source: String,
    /// What is wrong with the configuration itself (its file, its values, the secret files
    /// it names), each naming its key.
    pub problems: Vec<String>,
    /// Devices that cannot be opened or read (sound cards, PTT lines, carrier detects), each
    /// naming its key.
    pub device_problems: Vec<String>,
    /// Things to fix that do not stop it (secret files others can read).
    pub warnings: Vec<String>,
    /// One line per radio, each device as it opened.
    pub radios: Vec<String>,
}

impl Report {
    /// True when the gateway can start with this configuration.
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.device_problems.is_empty()
    }

    /// What to print: `configuration OK` and one line per radio, or every problem, those of
    /// the configuration and those of the devices each under their own heading.
    pub fn summary(&self) -> String {
        if self.ok() {
            let mut out = format!("configuration OK: {}\n", self.source);
            for line in &self.radios {
                out.push_str(&format!("  radio {line}\n"));
            }
            out
        } else {
            let mut out = String::new();
            if !self.problems.is_empty() {
                out.push_str(&format!(
                    "config file {} has {} problem(s):\n",
                    self.source,
                    self.problems.len()
                ));
                for p in &self.problems {
                    out.push_str(&format!("  - {p}\n"));
                }
            }
            if !self.device_problems.is_empty() {
                out.push_str(&format!(
                    "devices: {} problem(s):\n",
                    self.device_problems.len()
                ));
                for p in &self.device_problems {
                    out.push_str(&format!("  - {p}\n"));
                }
            }
            out
        }
    }
}

/// Checks the configuration file at `path` and the devices it names.
pub fn check(path: &Path) -> Report {
    inspect(path, true)
}

/// Checks the configuration file at `path` and its secrets without opening any device
/// (`check --config-only`, systemd's `ExecStartPre=`): a device that is not there yet is
/// waited for by the gateway, while a broken file never fixes itself.
pub fn check_config_only(path: &Path) -> Report {
    inspect(path, false)
}

fn inspect(path: &Path, open_devices: bool) -> Report {
    let mut report = Report {
        source: path.display().to_string(),
        ..Report::default()
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            report.problems.push(
                ConfigError::Read {
                    path: report.source.clone(),
                    error,
                }
                .to_string(),
            );
            return report;
        }
    };
    // Read here rather than with Config::parse so that the devices of a configuration with
    // other problems are still tried: every problem is listed in one go.
    let mut config = match Config::from_toml(&text, &report.source) {
        Ok(config) => config,
        Err(ConfigError::Invalid { problems, .. }) => {
            report.problems.extend(problems);
            return report;
        }
        Err(e) => {
            report.problems.push(e.to_string());
            return report;
        }
    };
    config.base_dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    config.source = report.source.clone();
    report.problems.extend(config.problems());

    let folders = config.secret_file_problems();
    let mut secrets_readable = folders.is_empty();
    report.problems.extend(folders);
    for (key, file) in config.secret_files() {
        if file.is_dir() {
            continue;
        }
        if let Err(e) = std::fs::File::open(&file) {
            secrets_readable = false;
            report
                .problems
                .push(format!("{key}: cannot read {}: {e}", file.display()));
        }
    }
    report.warnings.extend(config.secret_file_warnings());
    report.warnings.extend(config.shared_device_warnings());
    // The key and password as the session reads them (a key file that is not a usable key).
    if secrets_readable
        && report.problems.is_empty()
        && let Err(e) = config.session_config()
    {
        report.problems.push(e.to_string());
    }
    // The API's tokens as the daemon reads them (too short, spaces, the same token twice).
    if secrets_readable
        && report.problems.is_empty()
        && let Err(e) = config.api_tokens()
    {
        report.problems.push(e.to_string());
    }

    if !open_devices {
        report.radios.extend(config.radios.iter().map(|r| {
            format!(
                "{}: channel {:?}; devices not opened (--config-only)",
                r.name, r.channel
            )
        }));
        return report;
    }
    for probe in crate::parts::probe(&config) {
        report
            .device_problems
            .extend(probe.problems.iter().map(ToString::to_string));
        report
            .radios
            .push(format!("{}: {}", probe.name, probe.summary));
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn wav(path: &Path) {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for _ in 0..160 {
            w.write_sample(0i16).unwrap();
        }
        w.finalize().unwrap();
    }

    #[test]
    fn a_good_configuration_names_each_radio_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        wav(&dir.path().join("rx.wav"));
        let path = write(
            dir.path(),
            "gateway.toml",
            "[zello]\nserver = \"ws://127.0.0.1:8800/ws\"\nusername = \"gw\"\npassword = \"pw\"\n\n\
             [[radio]]\nname = \"vhf1\"\nchannel = \"Dispatch\"\n\
             audio = { backend = \"file\", input = \"rx.wav\", output = \"tx.wav\" }\n\
             ptt = { type = \"sim\" }\ncarrier = { type = \"always\" }\n\n\
             [[radio]]\nname = \"uhf1\"\nchannel = \"Ops\"\naudio = { backend = \"file\" }\n\
             ptt = { type = \"none\" }\n",
        );
        let report = check(&path);
        assert!(report.ok(), "{report:#?}");
        assert_eq!(report.radios.len(), 2);
        assert!(report.radios[0].starts_with("vhf1: channel \"Dispatch\""));
        assert!(report.radios[0].contains("ptt sim"), "{:?}", report.radios);
        assert!(report.radios[0].contains("carrier always"));
        assert!(report.radios[1].contains("ptt none"));
        assert!(report.radios[1].contains("carrier vox"));
        let text = report.summary();
        assert!(text.starts_with("configuration OK: "), "{text}");
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(
            !dir.path().join("tx.wav").exists(),
            "check must not create the output"
        );
    }

    #[test]
    fn every_problem_is_listed_configuration_secrets_and_devices() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("not-a.wav"), "hello").unwrap();
        let path = write(
            dir.path(),
            "gateway.toml",
            "[zello]\nserver = \"ws://203.0.113.9/ws\"\nusername = \"gw\"\n\
             password_file = \"missing-password\"\nplatform_name = \"Bridge\"\n\n\
             [[radio]]\nname = \"vhf1\"\nchannel = \"Dispatch\"\n\
             audio = { backend = \"file\", input = \"not-a.wav\", output = \"nowhere/tx.wav\" }\n\
             ptt = { type = \"serial\", device = \"/dev/zg-no-such-tty\", lines = [\"RTS\"] }\n",
        );
        let report = check(&path);
        assert!(!report.ok());
        let all = [&report.problems[..], &report.device_problems[..]]
            .concat()
            .join("\n");
        for needle in [
            "zello.platform_name",
            "zello.server",
            "zello.password_file: cannot read",
            "radio[0] (vhf1).audio.input",
            "not-a.wav",
            "radio[0] (vhf1).audio.output",
            "radio[0] (vhf1).ptt",
            "/dev/zg-no-such-tty",
        ] {
            assert!(all.contains(needle), "{needle:?} missing in:\n{all}");
        }
        let text = report.summary();
        assert!(
            text.starts_with(&format!(
                "config file {} has {} problem(s):",
                path.display(),
                report.problems.len()
            )),
            "{text}"
        );
        // The devices under their own heading.
        assert_eq!(report.problems.len(), 3, "{text}");
        assert_eq!(report.device_problems.len(), 3, "{text}");
        assert!(text.contains("\ndevices: 3 problem(s):\n"), "{text}");
        let (config_part, devices_part) = text.split_once("devices:").unwrap();
        assert!(!config_part.contains("(vhf1).ptt"), "{text}");
        assert!(devices_part.contains("(vhf1).ptt"), "{text}");
    }

    /// A closed TCP port on loopback.
    fn closed_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[cfg(unix)]
    #[test]
    fn a_folder_given_for_a_secret_file_is_said_to_be_one() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = write(
            dir.path(),
            "gateway.toml",
            "[zello]\nserver = \"ws://127.0.0.1:8800/ws\"\n\n\
             [zello.token]\nissuer = \"iss\"\nprivate_key_file = \"keys\"\n\n\
             [[radio]]\nname = \"vhf1\"\nchannel = \"Dispatch\"\naudio = { backend = \"file\" }\n",
        );
        let report = check(&path);
        assert!(report.warnings.is_empty(), "{report:#?}");
        assert_eq!(report.problems.len(), 1, "{report:#?}");
        let p = &report.problems[0];
        assert!(p.starts_with("zello.token.private_key_file: "), "{p}");
        assert!(p.contains("is a directory"), "{p}");
        assert!(p.contains("a file"), "{p}");
        assert!(!p.contains("chmod"), "{p}");
    }

    #[test]
    fn radios_sharing_a_ptt_line_are_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let port = closed_port();
        let radio = |name: &str| {
            format!(
                "[[radio]]\nname = \"{name}\"\nchannel = \"Dispatch\"\naudio = {{ backend = \"file\" }}\n\
                 ptt = {{ type = \"rigctld\", address = \"127.0.0.1:{port}\" }}\n\n"
            )
        };
        let path = write(
            dir.path(),
            "gateway.toml",
            &format!(
                "[zello]\nserver = \"ws://127.0.0.1:8800/ws\"\n\n{}{}",
                radio("vhf1"),
                radio("uhf1")
            ),
        );
        let report = check(&path);
        assert_eq!(report.warnings.len(), 1, "{report:#?}");
        assert!(
            report.warnings[0].starts_with("radio[0] (vhf1) and radio[1] (uhf1) share the rigctld"),
            "{report:#?}"
        );
    }

    #[test]
    fn a_carrier_detect_that_cannot_be_read_is_a_problem() {
        let dir = tempfile::tempdir().unwrap();
        // A regular file stands in for a hidraw node that opens but cannot be read.
        let node = write(dir.path(), "hidraw9", "");
        let radio = |carrier: &str| {
            format!(
                "[zello]\nserver = \"ws://127.0.0.1:8800/ws\"\n\n\
                 [[radio]]\nname = \"vhf1\"\nchannel = \"Dispatch\"\naudio = {{ backend = \"file\" }}\n\
                 ptt = {{ type = \"none\" }}\ncarrier = {carrier}\n"
            )
        };
        for (carrier, needle) in [
            (
                format!(
                    "{{ type = \"rigctld\", address = \"127.0.0.1:{}\" }}",
                    closed_port()
                ),
                "rigctld".to_string(),
            ),
            (
                format!(
                    "{{ type = \"cm108\", device = \"{}\", bit = \"VOL_DN\" }}",
                    node.display()
                ),
                node.display().to_string(),
            ),
        ] {
            let path = write(dir.path(), "gateway.toml", &radio(&carrier));
            let report = check(&path);
            assert!(!report.ok(), "{carrier}: {report:#?}");
            assert!(report.problems.is_empty(), "{report:#?}");
            assert_eq!(report.device_problems.len(), 1, "{report:#?}");
            let p = &report.device_problems[0];
            assert!(p.starts_with("radio[0] (vhf1).carrier: "), "{p}");
            assert!(p.contains(&needle), "{p}");
            let text = report.summary();
            assert!(text.starts_with("devices: 1 problem(s):"), "{text}");
            assert!(!text.contains("configuration OK"), "{text}");
        }
    }

    #[test]
    fn unreadable_and_unparsable_files_are_one_problem_each() {
        let dir = tempfile::tempdir().unwrap();
        let report = check(&dir.path().join("absent.toml"));
        assert_eq!(report.problems.len(), 1);
        assert!(report.problems[0].contains("absent.toml"));
        let path = write(dir.path(), "bad.toml", "[zello\n");
        let report = check(&path);
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        assert!(report.problems[0].contains("bad.toml"));
    }

    #[cfg(unix)]
    #[test]
    fn secret_files_others_can_read_are_warnings() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let secret = write(dir.path(), "password", "pw\n");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        let path = write(
            dir.path(),
            "gateway.toml",
            "[zello]\nserver = \"ws://127.0.0.1:8800/ws\"\nusername = \"gw\"\n\
             password_file = \"password\"\n\n\
             [[radio]]\nname = \"vhf1\"\nchannel = \"Dispatch\"\naudio = { backend = \"file\" }\n",
        );
        let report = check(&path);
        assert!(report.ok(), "{report:#?}");
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
        assert!(report.warnings[0].starts_with("zello.password_file: "));
        assert!(report.warnings[0].contains("chmod 600"));
    }

    #[test]
    fn api_tokens_are_read_as_the_daemon_reads_them_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "short", "abc123\n");
        let path = write(
            dir.path(),
            "gateway.toml",
            "[zello]\nserver = \"ws://127.0.0.1:8800/ws\"\nusername = \"gw\"\npassword = \"pw\"\n\n\
             [api]\ntoken_file = \"short\"\n\n\
             [[radio]]\nname = \"vhf1\"\nchannel = \"Dispatch\"\naudio = { backend = \"file\" }\n",
        );
        let report = check_config_only(&path);
        assert!(!report.ok(), "{report:#?}");
        let text = report.problems.join("\n");
        assert!(text.contains("api.token_file"), "{text}");
        assert!(!text.contains("abc123"), "{text}");
    }
}

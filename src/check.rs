//! `zello-gateway check`: everything that would stop the gateway from starting, found before
//! it starts (systemd runs it as `ExecStartPre=`).
//!
//! It validates the configuration, reads the secret files it names, and opens every radio's
//! devices without transmitting (see [`crate::gateway::parts::probe`]), then lists every
//! problem at once, each naming its key.

use crate::config::{Config, ConfigError};
use std::path::Path;

/// What `check` found.
#[derive(Debug, Default)]
pub struct Report {
    /// The configuration file, as given.
    pub source: String,
    /// Everything that stops the gateway from starting, each naming its key.
    pub problems: Vec<String>,
    /// Things to fix that do not stop it (secret files others can read).
    pub warnings: Vec<String>,
    /// One line per radio, each device as it opened.
    pub radios: Vec<String>,
}

impl Report {
    /// True when the gateway can start with this configuration.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// What to print: `configuration OK` and one line per radio, or every problem.
    pub fn summary(&self) -> String {
        if self.ok() {
            let mut out = format!("configuration OK: {}\n", self.source);
            for line in &self.radios {
                out.push_str(&format!("  radio {line}\n"));
            }
            out
        } else {
            let mut out = format!(
                "config file {} has {} problem(s):\n",
                self.source,
                self.problems.len()
            );
            for p in &self.problems {
                out.push_str(&format!("  - {p}\n"));
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
    // Parsed here rather than with Config::parse so that the devices of a configuration with
    // other problems are still tried: every problem is listed in one go.
    let mut config: Config = match toml::from_str(&text) {
        Ok(config) => config,
        Err(e) => {
            report.problems.push(
                ConfigError::Parse {
                    path: report.source.clone(),
                    message: e.to_string(),
                }
                .to_string(),
            );
            return report;
        }
    };
    config.base_dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    config.source = report.source.clone();
    report.problems.extend(config.problems());

    let mut secrets_readable = true;
    for (key, file) in config.secret_files() {
        if let Err(e) = std::fs::File::open(&file) {
            secrets_readable = false;
            report
                .problems
                .push(format!("{key}: cannot read {}: {e}", file.display()));
        }
    }
    report.warnings.extend(config.secret_file_warnings());
    // The key and password as the session reads them (a key file that is not a usable key).
    if secrets_readable
        && report.problems.is_empty()
        && let Err(e) = config.session_config()
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
    for probe in crate::gateway::parts::probe(&config) {
        report
            .problems
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
        let all = report.problems.join("\n");
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
}

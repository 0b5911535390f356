//! Reading a configuration file: parsing, defaults resolved, every value checked with its
//! key path.

use super::*;

impl Config {
    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.display().to_string(),
            error,
        })?;
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        Self::parse(&text, &path.display().to_string(), &base)
    }

    /// `[log] level` of the file at `path`, read before logging starts (and so before the
    /// file is validated, whose problems are logged): `None` when the file or the key cannot
    /// be read.
    pub fn peek_log_level(path: &Path) -> Option<String> {
        let text = std::fs::read_to_string(path).ok()?;
        let table: toml::Table = text.parse().ok()?;
        let level = table.get("log")?.as_table()?.get("level")?.as_str()?;
        Some(level.to_string())
    }

    /// Parses and validates text; `source` names it in messages, `base_dir` resolves relative
    /// paths.
    pub fn parse(text: &str, source: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let mut config = Self::from_toml(text, source)?;
        config.base_dir = base_dir.to_path_buf();
        config.source = source.to_string();
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: source.to_string(),
                problems,
            })
        }
    }

    /// The file's text as a configuration, not yet validated: a syntax error is
    /// [`ConfigError::Parse`] (its line, column and key; never the text of the line, which
    /// may hold a secret), and keys that are unknown or hold a value of the wrong kind are
    /// [`ConfigError::Invalid`], every one of them, each with its key path.
    pub fn from_toml(text: &str, source: &str) -> Result<Config, ConfigError> {
        let mut table: toml::Table = text.parse().map_err(|e| ConfigError::Parse {
            path: source.to_string(),
            message: syntax_problem(text, &e),
        })?;
        let mut problems = Vec::new();
        let radios = table.remove("radio");
        let config = deserialize_lenient::<Config>(table, "", &mut problems);
        let mut parsed = Vec::new();
        match radios {
            None => {}
            Some(toml::Value::Array(items)) => {
                for (i, item) in items.into_iter().enumerate() {
                    match item {
                        toml::Value::Table(t) => {
                            let prefix = match t.get("name").and_then(toml::Value::as_str) {
                                Some(name) => format!("radio[{i}] ({name})"),
                                None => format!("radio[{i}]"),
                            };
                            if let Some(r) = deserialize_lenient(t, &prefix, &mut problems) {
                                parsed.push(r);
                            }
                        }
                        _ => problems.push(format!(
                            "radio[{i}]: must be a table (write each radio as a [[radio]] section)"
                        )),
                    }
                }
            }
            Some(_) => problems
                .push("radio: must be tables (write each radio as a [[radio]] section)".into()),
        }
        match config {
            Some(mut config) if problems.is_empty() => {
                config.radios = parsed;
                Ok(config)
            }
            _ => Err(ConfigError::Invalid {
                path: source.to_string(),
                problems,
            }),
        }
    }

    /// Every problem found, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let z = &self.zello;
        if !z.platform_name.to_ascii_lowercase().contains("gateway") {
            p.push(format!(
                "zello.platform_name = {:?}: must contain \"Gateway\" so Zello Alarms tracks the gateway",
                z.platform_name
            ));
        }
        if let Err(e) =
            crate::zello::session::SessionConfig::check_server(&z.server, z.allow_insecure)
        {
            p.push(format!("zello.server: {e}"));
        }
        if z.password.is_some() && z.password_file.is_some() {
            p.push("zello: set password or password_file, not both".into());
        }
        if z.auth_token.is_some() && z.auth_token_file.is_some() {
            p.push("zello: set auth_token or auth_token_file, not both".into());
        }
        if let Some(t) = &z.token {
            if z.auth_token.is_some() || z.auth_token_file.is_some() {
                p.push(
                    "zello.token: set [zello.token] (tokens the gateway signs) or auth_token/auth_token_file (a given token), not both".into(),
                );
            }
            if t.issuer.trim().is_empty() {
                p.push(
                    "zello.token.issuer: must not be empty (the issuer shown with the key in the Zello developer console)".into(),
                );
            }
            if t.private_key_file.as_os_str().is_empty() {
                p.push("zello.token.private_key_file: must name the PEM private key file".into());
            }
        }
        if !z.username.is_empty() && z.password.is_none() && z.password_file.is_none() {
            p.push("zello.password: a username needs a password (or password_file)".into());
        }
        if self.radios.is_empty() {
            p.push("radio: at least one [[radio]] is needed".into());
        }
        if let Some(level) = &self.log.level
            && let Err(e) = crate::service::logging::level_directives(Some(level), None)
        {
            p.push(e.to_string());
        }
        let channels: Vec<&str> = self.radios.iter().map(|r| r.channel.as_str()).collect();
        p.extend(self.alarms.problems(&channels));
        p.extend(self.api.problems());
        if let Some(m) = &self.mqtt {
            p.extend(m.problems());
        }
        let mut names = std::collections::HashSet::new();
        for (i, r) in self.radios.iter().enumerate() {
            let key = format!("radio[{i}]");
            if r.name.trim().is_empty() {
                p.push(format!("{key}.name: must not be empty"));
            } else if !names.insert(r.name.clone()) {
                p.push(format!("{key}.name = {:?}: used by two radios", r.name));
            }
            if r.channel.trim().is_empty() {
                p.push(format!("{key}.channel: must not be empty"));
            }
            if let Err(e) = r.codec.header() {
                p.push(format!("{key}.codec: {e}"));
            } else if r.codec.frame_ms < 20 {
                p.push(format!(
                    "{key}.codec.frame_ms = {}: use 20, 40 or 60",
                    r.codec.frame_ms
                ));
            }
            if r.codec.complexity > 10 {
                p.push(format!(
                    "{key}.codec.complexity = {}: use 0 to 10",
                    r.codec.complexity
                ));
            }
            if let AudioConfig::Cpal(a) = &r.audio {
                let range = crate::audio::alsa_pcm::PERIOD_MS_RANGE;
                if !range.contains(&a.period_ms) {
                    p.push(format!(
                        "{key}.audio.period_ms = {}: use {} to {} (20 suits most cards)",
                        a.period_ms,
                        range.start(),
                        range.end()
                    ));
                }
            }
            if let CarrierConfig::Vox(v) = &r.carrier
                && let Err(e) = v.validate()
            {
                p.push(format!("{key}.carrier: {e}"));
            }
            r.timing_problems(&key, &mut p);
            if let Err(e) = r.rx_audio.validate() {
                p.push(format!("{key}.rx_audio.{e}"));
            }
            if let Err(e) = r.tx_audio.validate() {
                p.push(format!("{key}.tx_audio.{e}"));
            }
            if let Err(e) = r.playout.validate() {
                p.push(format!("{key}.playout.{e}"));
            }
            if let Some(b) = r.codec.bitrate
                && !(6000..=128_000).contains(&b)
            {
                p.push(format!("{key}.codec.bitrate = {b}: use 6000 to 128000"));
            }
            if let CarrierConfig::Schedule { on } = &r.carrier {
                for (j, [a, b]) in on.iter().enumerate() {
                    if !(a.is_finite() && b.is_finite() && *a >= 0.0 && a < b) {
                        p.push(format!(
                            "{key}.carrier.on[{j}] = [{a}, {b}]: needs 0 <= start < end (seconds)"
                        ));
                    }
                }
            }
        }
        p
    }

    /// Resolves a path from the file relative to the file's folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    /// The password, read from its file if configured that way.
    pub fn password(&self) -> Result<Secret, ConfigError> {
        if let Some(p) = &self.zello.password {
            return Ok(p.clone());
        }
        if let Some(f) = &self.zello.password_file {
            let path = self.resolve(f);
            let text = std::fs::read_to_string(&path).map_err(|error| ConfigError::Read {
                path: path.display().to_string(),
                error,
            })?;
            return Ok(Secret::new(text.trim_end_matches(['\n', '\r'])));
        }
        Ok(Secret::default())
    }

    /// The files holding secrets (`zello.password_file`, `zello.auth_token_file`,
    /// `zello.token.private_key_file`, `api.token_file`, `api.control_token_file`,
    /// `mqtt.password_file`), resolved, each with its key.
    pub fn secret_files(&self) -> Vec<(&'static str, PathBuf)> {
        let z = &self.zello;
        [
            ("zello.password_file", z.password_file.as_ref()),
            ("zello.auth_token_file", z.auth_token_file.as_ref()),
            (
                "zello.token.private_key_file",
                z.token.as_ref().map(|t| &t.private_key_file),
            ),
            ("api.token_file", self.api.token_file.as_ref()),
            (
                "api.control_token_file",
                self.api.control_token_file.as_ref(),
            ),
            (
                "mqtt.password_file",
                self.mqtt.as_ref().and_then(|m| m.password_file.as_ref()),
            ),
        ]
        .into_iter()
        .filter_map(|(key, path)| path.map(|p| (key, self.resolve(p))))
        .collect()
    }

    /// A problem for each secret file that is a directory: a file is needed (the advice to
    /// read or chmod it would not help).
    pub fn secret_file_problems(&self) -> Vec<String> {
        self.secret_files()
            .into_iter()
            .filter(|(_, path)| path.is_dir())
            .map(|(key, path)| {
                format!(
                    "{key}: {} is a directory, and a file is needed: give the path of the file itself",
                    path.display()
                )
            })
            .collect()
    }

    /// A warning for each secret file that its group or other users can read (see
    /// [`crate::secret::secret_file_warning`]), each naming its key. For the log at start
    /// and for `check`.
    pub fn secret_file_warnings(&self) -> Vec<String> {
        self.secret_files()
            .into_iter()
            .filter_map(|(key, path)| {
                crate::secret::secret_file_warning(&path).map(|w| format!("{key}: {w}"))
            })
            .collect()
    }

    /// A warning for each sound card or PTT line that two radios share (the same audio
    /// device name, serial device and line, GPIO pin, gpiochip line, hidraw node and pin, or
    /// rigctld address), naming both radios: one radio's audio or transmitter would be the
    /// other's. For the log at start and for `check`.
    pub fn shared_device_warnings(&self) -> Vec<String> {
        let mut seen: Vec<(String, usize)> = Vec::new();
        let mut out = Vec::new();
        for (i, r) in self.radios.iter().enumerate() {
            let mut uses: Vec<String> = Vec::new();
            if let AudioConfig::Cpal(s) = &r.audio {
                uses.push(format!("the sound device {:?}", s.input.trim()));
                uses.push(format!("the sound device {:?}", s.output.trim()));
            }
            match &r.ptt {
                PttConfig::Gpio(s) => uses.push(format!("the PTT line gpio {}", s.pin)),
                PttConfig::Gpiochip(s) => {
                    uses.push(format!("the PTT line {} line {}", s.chip.display(), s.line))
                }
                PttConfig::Serial(s) => {
                    for line in &s.lines {
                        let line = line.trim().trim_start_matches('!').to_ascii_uppercase();
                        uses.push(format!("the PTT line {} {line}", s.device.display()));
                    }
                }
                PttConfig::Cm108(s) => {
                    let device = s.device.trim();
                    let node = if device.eq_ignore_ascii_case("auto") {
                        let card = s.card.clone().or_else(|| match &r.audio {
                            AudioConfig::Cpal(a) => Some(a.input.clone()),
                            AudioConfig::File { .. } => None,
                        });
                        card.map(|c| format!("the hidraw node of card {c:?}"))
                    } else {
                        Some(format!("the hidraw node {device}"))
                    };
                    if let Some(node) = node {
                        uses.push(format!("{node} gpio {}", s.gpio));
                    }
                }
                PttConfig::Rigctld(s) => uses.push(format!("the rigctld at {}", s.address.trim())),
                PttConfig::Sim {} | PttConfig::None {} => {}
            }
            uses.sort();
            uses.dedup();
            for what in uses {
                match seen.iter().find(|(w, _)| *w == what) {
                    Some((_, j)) => {
                        let other = &self.radios[*j];
                        out.push(format!(
                            "radio[{j}] ({}) and radio[{i}] ({}) share {what}: one radio's audio or keying would be the other's",
                            other.name, r.name
                        ));
                    }
                    None => seen.push((what, i)),
                }
            }
        }
        out
    }

    /// The session settings for this configuration.
    pub fn session_config(&self) -> Result<SessionConfig, ConfigError> {
        let problems = self.secret_file_problems();
        if !problems.is_empty() {
            return Err(ConfigError::Invalid {
                path: self.source.clone(),
                problems,
            });
        }
        let z = &self.zello;
        let mut channels: Vec<String> = Vec::new();
        for r in &self.radios {
            if !channels.contains(&r.channel) {
                channels.push(r.channel.clone());
            }
        }
        let auth_token = match (&z.token, &z.auth_token, &z.auth_token_file) {
            (Some(t), _, _) => TokenSource::Signed(
                TokenSigner::new(
                    t.issuer.clone(),
                    PrivateKey::File(self.resolve(&t.private_key_file)),
                )
                .map_err(|source| ConfigError::Token {
                    path: self.source.clone(),
                    source,
                })?,
            ),
            (None, Some(t), _) => TokenSource::Static(t.clone()),
            (None, None, Some(f)) => TokenSource::File(self.resolve(f)),
            (None, None, None) => TokenSource::None,
        };
        Ok(SessionConfig {
            server: z.server.clone(),
            username: z.username.clone(),
            password: self.password()?,
            auth_token,
            channels,
            platform_name: z.platform_name.clone(),
            allow_insecure: z.allow_insecure,
            ca_file: z.ca_file.as_ref().map(|f| self.resolve(f)),
            ..SessionConfig::default()
        })
    }
}

//! `[mqtt]`: the broker a fleet of gateways is watched through, and how this gateway names
//! itself there.
//!
//! ```toml
//! [mqtt]
//! url = "mqtts://broker.example.net:8883"   # mqtt:// only to loopback unless allow_insecure
//! # client_id = "zello-gateway-HOSTNAME"     # the default
//! # username = "gateway1"
//! # password_file = "/etc/zello-gateway/mqtt-password"
//! # topic_prefix = "zello-gateway/HOSTNAME" # the default
//! # allow_insecure = false
//! # ca_file = "/etc/zello-gateway/mqtt-ca.pem"
//! ```

use super::{Config, ConfigError};
use crate::secret::Secret;
use serde::Deserialize;
use std::path::PathBuf;

/// The port of `mqtt://` when the URL names none.
pub const MQTT_PORT: u16 = 1883;

/// The port of `mqtts://` when the URL names none.
pub const MQTTS_PORT: u16 = 8883;

/// `[mqtt]`: publish the gateway's events and state to an MQTT broker. The section's presence
/// turns it on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// The broker: `mqtts://HOST[:PORT]` (TLS, port 8883 by default) or `mqtt://HOST[:PORT]`
    /// (plain, port 1883 by default; only to loopback unless `allow_insecure`).
    pub url: String,
    /// The client id the broker knows the gateway by (default `zello-gateway-<hostname>`);
    /// unique per broker, or two gateways keep pushing each other off.
    pub client_id: Option<String>,
    /// The user name to log on to the broker with.
    pub username: Option<String>,
    /// The file holding the broker password (keep it 0600); needs `username`.
    pub password_file: Option<PathBuf>,
    /// What every topic starts with (default `zello-gateway/<hostname>`).
    pub topic_prefix: Option<String>,
    /// Allow plain `mqtt://` to a host other than loopback: the password and everything
    /// published cross the network readable.
    #[serde(default)]
    pub allow_insecure: bool,
    /// Extra PEM certificates to trust for `mqtts://` (a private CA).
    pub ca_file: Option<PathBuf>,
}

/// Where the broker is, from `mqtt.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// Its host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// `mqtts://`: TLS.
    pub tls: bool,
}

impl std::fmt::Display for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// An `mqtt.url` the gateway will not use; each says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MqttUrlError {
    /// Not a URL.
    #[error("not a URL ({0}): write it like mqtts://broker.example.net:8883")]
    NotUrl(url::ParseError),
    /// A scheme other than mqtt:// and mqtts://.
    #[error(
        "the scheme {0}:// is not mqtts:// (TLS) or mqtt:// (plain, loopback only unless allow_insecure = true)"
    )]
    Scheme(String),
    /// No host.
    #[error("has no host: write it like mqtts://broker.example.net:8883")]
    NoHost,
    /// A user name or password in the URL, where logs and `check` would show it.
    #[error(
        "holds a user name or password: set mqtt.username and mqtt.password_file instead, so the password stays out of the configuration file"
    )]
    Credentials,
    /// A path, query or fragment, which an MQTT broker address has not.
    #[error("has a path, query or fragment: write only the scheme, host and port")]
    NotOnlyAddress,
    /// Plain MQTT to another machine without `allow_insecure`.
    #[error(
        "plain mqtt:// is only allowed to loopback: use mqtts:// (TLS), or set mqtt.allow_insecure = true to send the password and every message readable over the network"
    )]
    Insecure,
}

impl MqttConfig {
    /// The broker's address from `url`, with the scheme's rules (`mqtt://` only to loopback
    /// unless `allow_insecure`).
    pub fn broker(&self) -> Result<Broker, MqttUrlError> {
        let url = url::Url::parse(self.url.trim()).map_err(MqttUrlError::NotUrl)?;
        let tls = match url.scheme() {
            "mqtts" => true,
            "mqtt" => false,
            other => return Err(MqttUrlError::Scheme(other.to_string())),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(MqttUrlError::Credentials);
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(MqttUrlError::NotOnlyAddress);
        }
        let host = match url.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(host) => host.to_string(),
            None => return Err(MqttUrlError::NoHost),
        };
        if host.is_empty() {
            return Err(MqttUrlError::NoHost);
        }
        if !tls && !self.allow_insecure && !crate::net::tls::is_loopback(&host) {
            return Err(MqttUrlError::Insecure);
        }
        let port = url
            .port()
            .unwrap_or(if tls { MQTTS_PORT } else { MQTT_PORT });
        Ok(Broker { host, port, tls })
    }

    /// Every problem of the section, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if let Err(e) = self.broker() {
            p.push(self.url_problem(&e));
        }
        if let Some(id) = &self.client_id
            && let Some(problem) = client_id_problem(id)
        {
            p.push(format!("mqtt.client_id = {id:?}: {problem}"));
        }
        if let Some(prefix) = &self.topic_prefix
            && let Some(problem) = topic_prefix_problem(prefix)
        {
            p.push(format!("mqtt.topic_prefix = {prefix:?}: {problem}"));
        }
        match (&self.username, &self.password_file) {
            (Some(u), _) if u.trim().is_empty() => p.push(
                "mqtt.username: must not be empty (leave it out to connect without one)".into(),
            ),
            (None, Some(_)) => p.push(
                "mqtt.password_file: a password needs mqtt.username (MQTT sends no password without a user name)"
                    .into(),
            ),
            _ => {}
        }
        if self
            .password_file
            .as_ref()
            .is_some_and(|f| f.as_os_str().is_empty())
        {
            p.push("mqtt.password_file: must name the file holding the password".into());
        }
        if let Some(ca) = &self.ca_file {
            if ca.as_os_str().is_empty() {
                p.push("mqtt.ca_file: must name a PEM file".into());
            } else if self.broker().is_ok_and(|b| !b.tls) {
                p.push(
                    "mqtt.ca_file: certificates are only used with mqtts://; use mqtts:// or leave ca_file out"
                        .into(),
                );
            }
        }
        p
    }
}

impl MqttConfig {
    /// `e` about `url`, naming the key; the value is shown unless it may hold a password.
    fn url_problem(&self, e: &MqttUrlError) -> String {
        if self.url.contains('@') {
            format!("mqtt.url: {e}")
        } else {
            format!("mqtt.url = {:?}: {e}", self.url)
        }
    }
}

/// Why `id` cannot be a client id; `None` when it can.
fn client_id_problem(id: &str) -> Option<&'static str> {
    if id.trim().is_empty() {
        Some("must not be empty (leave it out for zello-gateway-<hostname>)")
    } else if id.chars().any(char::is_control) {
        Some("must not hold control characters")
    } else if id.len() > 256 {
        Some("is longer than 256 bytes")
    } else {
        None
    }
}

/// Why `prefix` cannot start every topic; `None` when it can.
fn topic_prefix_problem(prefix: &str) -> Option<&'static str> {
    if prefix.is_empty() {
        Some("must not be empty (leave it out for zello-gateway/<hostname>)")
    } else if prefix.contains(['+', '#']) {
        Some("must not hold the wildcards + or #, which subscribers use")
    } else if prefix.starts_with('$') {
        Some("must not start with $, which brokers keep for their own topics ($SYS)")
    } else if prefix.split('/').any(str::is_empty) {
        Some("has an empty level: no / at the start or end, and none doubled")
    } else if prefix.chars().any(char::is_control) {
        Some("must not hold control characters")
    } else {
        None
    }
}

/// `[mqtt]` ready to connect: the defaults filled in and the password read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttSettings {
    /// Where the broker is.
    pub broker: Broker,
    /// The client id.
    pub client_id: String,
    /// The user name, when one is set.
    pub username: Option<String>,
    /// The password, read from `password_file`. `Debug` shows `<redacted>`.
    pub password: Option<Secret>,
    /// What every topic starts with.
    pub topic_prefix: String,
    /// Extra certificates to trust, resolved from the configuration file's folder.
    pub ca_file: Option<PathBuf>,
}

/// This machine's host name (the kernel's), for the default client id and topic prefix;
/// `zello-gateway` when it cannot be read. Characters a topic level or client id should not
/// hold are replaced by `-`.
pub fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let name: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name.is_empty() {
        "zello-gateway".to_string()
    } else {
        name
    }
}

impl Config {
    /// `[mqtt]` ready to connect, `None` when the section is absent: the defaults filled in
    /// with `hostname` (`zello-gateway-<hostname>`, `zello-gateway/<hostname>`), the password
    /// read from `mqtt.password_file` (resolved from the configuration file's folder, the
    /// final newline dropped). A file that cannot be read is an error naming it, never the
    /// password.
    pub fn mqtt_settings(&self, hostname: &str) -> Result<Option<MqttSettings>, ConfigError> {
        let Some(m) = &self.mqtt else {
            return Ok(None);
        };
        let broker = m.broker().map_err(|e| ConfigError::Invalid {
            path: self.source.clone(),
            problems: vec![m.url_problem(&e)],
        })?;
        let password = match &m.password_file {
            Some(f) => {
                let path = self.resolve(f);
                if path.is_dir() {
                    return Err(ConfigError::Invalid {
                        path: self.source.clone(),
                        problems: vec![format!(
                            "mqtt.password_file: {} is a directory, and a file is needed: give the path of the file itself",
                            path.display()
                        )],
                    });
                }
                let text = std::fs::read_to_string(&path).map_err(|error| ConfigError::Read {
                    path: path.display().to_string(),
                    error,
                })?;
                Some(Secret::new(text.trim_end_matches(['\n', '\r'])))
            }
            None => None,
        };
        Ok(Some(MqttSettings {
            broker,
            client_id: m
                .client_id
                .clone()
                .unwrap_or_else(|| format!("zello-gateway-{hostname}")),
            username: m.username.clone(),
            password,
            topic_prefix: m
                .topic_prefix
                .clone()
                .unwrap_or_else(|| format!("zello-gateway/{hostname}")),
            ca_file: m.ca_file.as_ref().map(|f| self.resolve(f)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BASE: &str = r#"
[zello]
server = "ws://127.0.0.1:8800/ws"
platform_name = "Zello Radio Gateway"

[[radio]]
name = "radio1"
channel = "Dispatch"
audio = { backend = "file" }
"#;

    fn parse_in(mqtt: &str, dir: &Path) -> Result<Config, ConfigError> {
        Config::parse(&format!("{BASE}\n[mqtt]\n{mqtt}\n"), "gw.toml", dir)
    }

    fn parse(mqtt: &str) -> Result<Config, ConfigError> {
        parse_in(mqtt, Path::new("/cfg"))
    }

    /// The problems of `mqtt`, which must not parse.
    fn problems(mqtt: &str) -> Vec<String> {
        match parse(mqtt) {
            Err(ConfigError::Invalid { problems, .. }) => problems,
            other => panic!("{mqtt}: {other:?}"),
        }
    }

    fn broker(url: &str) -> Broker {
        parse(&format!("url = {url:?}"))
            .unwrap_or_else(|e| panic!("{url}: {e}"))
            .mqtt
            .unwrap()
            .broker()
            .unwrap()
    }

    #[test]
    fn absent_means_off_and_the_defaults_name_the_host() {
        let c = Config::parse(BASE, "gw.toml", Path::new("/cfg")).unwrap();
        assert!(c.mqtt.is_none());
        assert_eq!(c.mqtt_settings("pi4").unwrap(), None);
        let c = parse("url = \"mqtts://broker.example.net\"").unwrap();
        let s = c.mqtt_settings("pi4").unwrap().unwrap();
        assert_eq!(s.client_id, "zello-gateway-pi4");
        assert_eq!(s.topic_prefix, "zello-gateway/pi4");
        assert_eq!(
            s.broker,
            Broker {
                host: "broker.example.net".into(),
                port: 8883,
                tls: true
            }
        );
        assert_eq!(s.username, None);
        assert_eq!(s.password, None);
        assert_eq!(s.broker.to_string(), "mqtts://broker.example.net:8883");
    }

    #[test]
    fn urls_schemes_and_ports() {
        assert_eq!(broker("mqtts://b.example:18883").port, 18883);
        assert_eq!(broker("mqtt://127.0.0.1").port, 1883);
        assert!(!broker("mqtt://127.0.0.1:1884").tls);
        assert_eq!(broker("mqtt://localhost:1884/").host, "localhost");
        let v6 = broker("mqtt://[::1]:1884");
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.to_string(), "mqtt://[::1]:1884");
        // Plain MQTT elsewhere only when asked for.
        let c = parse("url = \"mqtt://10.0.0.5\"\nallow_insecure = true").unwrap();
        assert_eq!(c.mqtt.unwrap().broker().unwrap().host, "10.0.0.5");
    }

    #[test]
    fn plain_mqtt_to_another_machine_is_refused_naming_the_way_out() {
        for url in ["mqtt://10.0.0.5", "mqtt://broker.example.net:1883"] {
            let p = problems(&format!("url = {url:?}"));
            assert_eq!(p.len(), 1, "{p:?}");
            assert!(p[0].starts_with(&format!("mqtt.url = {url:?}: ")), "{p:?}");
            assert!(p[0].contains("use mqtts://"), "{p:?}");
            assert!(p[0].contains("allow_insecure = true"), "{p:?}");
        }
    }

    #[test]
    fn unusable_urls_are_named() {
        for (url, needle) in [
            ("broker:1883", "scheme broker://"),
            ("tcp://127.0.0.1:1883", "scheme tcp://"),
            ("http://127.0.0.1", "scheme http://"),
            ("mqtts://", "mqtts://broker.example.net:8883"),
            ("mqtts://user:S3cret@b.example", "mqtt.password_file"),
            ("mqtts://b.example/topic", "path, query or fragment"),
            ("mqtts://b.example?x=1", "path, query or fragment"),
            ("nonsense", "not a URL"),
            ("", "not a URL"),
        ] {
            let p = problems(&format!("url = {url:?}"));
            assert_eq!(p.len(), 1, "{url}: {p:?}");
            assert!(p[0].contains(needle), "{url}: {p:?}");
        }
        // A password in the URL is not repeated: the problem says to move it out.
        let p = problems("url = \"mqtts://user:S3cret@b.example\"");
        assert!(
            p[0].starts_with("mqtt.url: holds a user name or password"),
            "{p:?}"
        );
        assert!(!p[0].contains("S3cret"), "{p:?}");
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_refused_by_name() {
        let p = problems("url = \"mqtts://b.example\"\npassword = \"S3cret-value\"");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("mqtt.password: unknown field"), "{p:?}");
        assert!(!p[0].contains("S3cret"), "{p:?}");
        let p = problems("url = \"mqtts://b.example\"\ntopic_prefx = \"a\"");
        assert!(p[0].contains("did you mean `topic_prefix`?"), "{p:?}");
        let p = problems("url = 1883");
        assert!(p[0].starts_with("mqtt.url: invalid type"), "{p:?}");
        let p = problems("client_id = \"x\"");
        assert!(p[0].contains("url"), "{p:?}");
    }

    #[test]
    fn prefixes_client_ids_and_credentials_are_checked() {
        let base = "url = \"mqtts://b.example\"\n";
        for (more, key, needle) in [
            (
                "topic_prefix = \"\"",
                "mqtt.topic_prefix",
                "must not be empty",
            ),
            ("topic_prefix = \"a/+/b\"", "mqtt.topic_prefix", "wildcards"),
            ("topic_prefix = \"a/#\"", "mqtt.topic_prefix", "wildcards"),
            (
                "topic_prefix = \"$SYS/x\"",
                "mqtt.topic_prefix",
                "start with $",
            ),
            ("topic_prefix = \"/a\"", "mqtt.topic_prefix", "empty level"),
            ("topic_prefix = \"a/\"", "mqtt.topic_prefix", "empty level"),
            (
                "topic_prefix = \"a//b\"",
                "mqtt.topic_prefix",
                "empty level",
            ),
            ("client_id = \" \"", "mqtt.client_id", "must not be empty"),
            ("client_id = \"a\\nb\"", "mqtt.client_id", "control"),
            ("username = \"\"", "mqtt.username", "must not be empty"),
            (
                "password_file = \"pw\"",
                "mqtt.password_file",
                "needs mqtt.username",
            ),
            (
                "username = \"u\"\npassword_file = \"\"",
                "mqtt.password_file",
                "must name",
            ),
            ("ca_file = \"\"", "mqtt.ca_file", "must name"),
        ] {
            let p = problems(&format!("{base}{more}"));
            assert_eq!(p.len(), 1, "{more}: {p:?}");
            assert!(p[0].starts_with(key), "{more}: {p:?}");
            assert!(p[0].contains(needle), "{more}: {p:?}");
        }
        let p = problems("url = \"mqtt://127.0.0.1\"\nca_file = \"ca.pem\"");
        assert!(p[0].contains("only used with mqtts://"), "{p:?}");
        // Good ones.
        parse(&format!(
            "{base}topic_prefix = \"fleet/north/gw1\"\nclient_id = \"gw1\"\nusername = \"gw\"\npassword_file = \"pw\"\nca_file = \"ca.pem\""
        ))
        .unwrap();
    }

    /// A folder with the named files, each holding its text, 0600.
    fn files(entries: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in entries {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        dir
    }

    #[test]
    fn the_password_is_read_from_its_file_and_never_shown() {
        let dir = files(&[("mqtt-password", "S3cret-mqtt\n")]);
        let c = parse_in(
            "url = \"mqtts://b.example\"\nusername = \"gw\"\npassword_file = \"mqtt-password\"\nca_file = \"ca.pem\"\nclient_id = \"gw-7\"\ntopic_prefix = \"fleet/gw-7\"",
            dir.path(),
        )
        .unwrap();
        let s = c.mqtt_settings("pi4").unwrap().unwrap();
        assert_eq!(s.password.as_ref().unwrap().expose(), "S3cret-mqtt");
        assert_eq!(s.username.as_deref(), Some("gw"));
        assert_eq!(s.client_id, "gw-7");
        assert_eq!(s.topic_prefix, "fleet/gw-7");
        assert_eq!(s.ca_file, Some(dir.path().join("ca.pem")));
        assert!(!format!("{s:?} {c:?}").contains("S3cret"));
        // A secret file: checked and warned about like the others.
        let keys: Vec<&str> = c.secret_files().iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["mqtt.password_file"]);
        assert!(c.secret_file_warnings().is_empty());
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            dir.path().join("mqtt-password"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let w = c.secret_file_warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("mqtt.password_file: "), "{w:?}");
        assert!(w[0].contains("chmod 600"), "{w:?}");
        // Missing, or a folder: an error naming the file.
        let c = parse_in(
            "url = \"mqtts://b.example\"\nusername = \"gw\"\npassword_file = \"absent\"",
            dir.path(),
        )
        .unwrap();
        let e = c.mqtt_settings("pi4").unwrap_err().to_string();
        assert!(
            e.contains(&dir.path().join("absent").display().to_string()),
            "{e}"
        );
        std::fs::create_dir(dir.path().join("folder")).unwrap();
        let c = parse_in(
            "url = \"mqtts://b.example\"\nusername = \"gw\"\npassword_file = \"folder\"",
            dir.path(),
        )
        .unwrap();
        let e = c.mqtt_settings("pi4").unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
    }

    #[test]
    fn the_hostname_is_fit_for_a_topic() {
        let h = hostname();
        assert!(!h.is_empty());
        assert!(
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)),
            "{h}"
        );
    }
}

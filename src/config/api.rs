//! `[api]`: where the local status and event API listens, its tokens and the web origins it
//! answers.
//!
//! ```toml
//! [api]
//! listen = "127.0.0.1:8780"        # the default; the API is on unless `enabled = false`
//! # token_file = "/etc/zello-gateway/api-token"        # required when listen is not loopback
//! # control_token_file = "/etc/zello-gateway/control-token"  # enables the control endpoints
//! # allowed_origins = ["http://gateway.local:8780"]    # default: the Host's own origin only
//! ```

use super::{Config, ConfigError};
use crate::secret::Secret;
use serde::Deserialize;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// Where the API listens unless `[api] listen` says otherwise: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8780";

/// The fewest characters a token file may hold: a short token on a listener other machines
/// reach is guessed.
pub const MIN_TOKEN_LEN: usize = 16;

/// `[api]`: the local status and event API.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Serve the API (the default); `false` opens no port at all.
    pub enabled: bool,
    /// The IP address and port to listen on (`127.0.0.1:8780`, `[::1]:8780`, `0.0.0.0:8780`);
    /// port 0 lets the system choose.
    pub listen: String,
    /// The file holding the token every request but `/livez` and `/readyz` must carry
    /// (`Authorization: Bearer TOKEN`); required when `listen` is not loopback.
    pub token_file: Option<PathBuf>,
    /// The file holding the token of the control endpoints (TX inhibit, unkey); without it
    /// they answer 403 "control disabled". It also grants all the read token does.
    pub control_token_file: Option<PathBuf>,
    /// Web origins (`http://gateway.local:8780`) whose pages may use the API, besides the
    /// API's own address; their host names are accepted in the `Host` header too.
    pub allowed_origins: Vec<String>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            enabled: true,
            listen: DEFAULT_LISTEN.to_string(),
            token_file: None,
            control_token_file: None,
            allowed_origins: Vec::new(),
        }
    }
}

/// An `[api]` setting that cannot be used; each names its key and says what to write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiConfigError {
    /// `listen` is not an IP address with a port.
    #[error(
        "api.listen = {value:?}: not an IP address and port: write it like 127.0.0.1:8780, or [::1]:8780 for IPv6 (a host name is not looked up)"
    )]
    Listen {
        /// The value as written.
        value: String,
    },
    /// An `allowed_origins` entry is not an origin.
    #[error(
        "api.allowed_origins[{index}] = {value:?}: {reason}: write an origin like http://gateway.local:8780 (scheme, host and port only)"
    )]
    Origin {
        /// Its place in the list.
        index: usize,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        reason: OriginError,
    },
    /// Other machines could reach the API, and nothing would keep them out.
    #[error(
        "api.listen = {listen:?} can be reached from other machines, but api.token_file is not set: set token_file to a file holding a long random token (`openssl rand -hex 32 > FILE`, chmod 600), or listen on 127.0.0.1"
    )]
    NeedsToken {
        /// The listen address as written.
        listen: String,
    },
}

impl ApiConfig {
    /// The listen address.
    pub fn listen_addr(&self) -> Result<SocketAddr, ApiConfigError> {
        self.listen
            .trim()
            .parse()
            .map_err(|_| ApiConfigError::Listen {
                value: self.listen.clone(),
            })
    }

    /// The allowed origins, parsed; the first that is not an origin is the error.
    pub fn origins(&self) -> Result<Vec<Origin>, ApiConfigError> {
        self.allowed_origins
            .iter()
            .enumerate()
            .map(|(index, value)| {
                Origin::parse(value).map_err(|reason| ApiConfigError::Origin {
                    index,
                    value: value.clone(),
                    reason,
                })
            })
            .collect()
    }

    /// Every problem of the section, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        match self.listen_addr() {
            Err(e) => p.push(e.to_string()),
            Ok(addr) if self.enabled && self.token_file.is_none() && !is_loopback(addr.ip()) => p
                .push(
                    ApiConfigError::NeedsToken {
                        listen: self.listen.clone(),
                    }
                    .to_string(),
                ),
            Ok(_) => {}
        }
        for (index, value) in self.allowed_origins.iter().enumerate() {
            if let Err(reason) = Origin::parse(value) {
                p.push(
                    ApiConfigError::Origin {
                        index,
                        value: value.clone(),
                        reason,
                    }
                    .to_string(),
                );
            }
        }
        for (key, file) in [
            ("api.token_file", &self.token_file),
            ("api.control_token_file", &self.control_token_file),
        ] {
            if file.as_ref().is_some_and(|f| f.as_os_str().is_empty()) {
                p.push(format!("{key}: must name the file holding the token"));
            }
        }
        p
    }
}

/// Whether only this machine reaches `ip` (127.0.0.0/8, ::1, and IPv4-mapped loopback).
fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// A web origin: scheme, host and port (`http://gateway.local:8780`), compared as browsers
/// send it in the `Origin` header (host names in lower case, the scheme's default port when
/// none is written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: url::Host<String>,
    port: u16,
}

/// Why a text is not an origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    /// Not a URL at all.
    #[error("not a URL ({0})")]
    NotUrl(url::ParseError),
    /// A scheme pages are not served with.
    #[error("the scheme {0}:// is not http:// or https://")]
    Scheme(String),
    /// A URL with more than an origin.
    #[error("has a path, query or fragment, which an origin has not")]
    NotOnlyOrigin,
    /// A URL with a user name or password.
    #[error("has a user name or password, which an origin has not")]
    Credentials,
}

impl Origin {
    /// Parses `http://host[:port]` or `https://host[:port]` (a trailing `/` is allowed).
    pub fn parse(text: &str) -> Result<Origin, OriginError> {
        let url = url::Url::parse(text.trim()).map_err(OriginError::NotUrl)?;
        let scheme = url.scheme();
        if scheme != "http" && scheme != "https" {
            return Err(OriginError::Scheme(scheme.to_string()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(OriginError::Credentials);
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(OriginError::NotOnlyOrigin);
        }
        // http and https URLs always have a host and a known default port.
        let (Some(host), Some(port)) = (url.host(), url.port_or_known_default()) else {
            return Err(OriginError::NotUrl(url::ParseError::EmptyHost));
        };
        Ok(Origin {
            scheme: scheme.to_string(),
            host: host.to_owned(),
            port,
        })
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The host: a lower-case name, an IPv4 or an IPv6 address.
    pub fn host(&self) -> &url::Host<String> {
        &self.host
    }

    /// The port, the scheme's default (80, 443) when none was written.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port a `Host` header without one means for this origin: the scheme's default.
    pub fn default_port(&self) -> u16 {
        if self.scheme == "https" { 443 } else { 80 }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// The API's tokens as read from their files. `Debug` shows `<redacted>` for each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiTokens {
    /// From `api.token_file`: the read token.
    pub read: Option<Secret>,
    /// From `api.control_token_file`: the control token (which reads too).
    pub control: Option<Secret>,
}

impl Config {
    /// The API's tokens, read from `api.token_file` and `api.control_token_file` (resolved
    /// from the config file's folder, surrounding whitespace and the final newline dropped).
    /// A file that cannot be read, a token too short, holding spaces or characters an
    /// `Authorization` header cannot carry, or one control token equal to the read token is
    /// an error naming the key and the file, never the token.
    pub fn api_tokens(&self) -> Result<ApiTokens, ConfigError> {
        let read = match &self.api.token_file {
            Some(f) => Some(self.read_api_token("api.token_file", f)?),
            None => None,
        };
        let control = match &self.api.control_token_file {
            Some(f) => Some(self.read_api_token("api.control_token_file", f)?),
            None => None,
        };
        if let (Some(r), Some(c)) = (&read, &control)
            && r == c
        {
            return Err(self.token_problem(
                "api.control_token_file holds the same token as api.token_file: give the control token a token of its own, or everyone who reads could also key or inhibit the radios"
                    .to_string(),
            ));
        }
        Ok(ApiTokens { read, control })
    }

    fn read_api_token(&self, key: &str, file: &Path) -> Result<Secret, ConfigError> {
        let path = self.resolve(file);
        if path.is_dir() {
            return Err(self.token_problem(format!(
                "{key}: {} is a directory, and a file is needed: give the path of the file itself",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(&path).map_err(|error| ConfigError::Read {
            path: path.display().to_string(),
            error,
        })?;
        let token = text.trim();
        let problem = if token.is_empty() {
            Some("holds no token")
        } else if !token.bytes().all(|b| b.is_ascii_graphic()) {
            Some(
                "holds spaces, line breaks or characters other than printable ASCII, which an Authorization header cannot carry",
            )
        } else if token.len() < MIN_TOKEN_LEN {
            Some("holds a token too short to be safe from guessing")
        } else {
            None
        };
        match problem {
            Some(problem) => Err(self.token_problem(format!(
                "{key}: {} {problem}: write one token of at least {MIN_TOKEN_LEN} characters on one line (`openssl rand -hex 32 > FILE`)",
                path.display()
            ))),
            None => Ok(Secret::new(token)),
        }
    }

    fn token_problem(&self, problem: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.source.clone(),
            problems: vec![problem],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[zello]
server = "ws://127.0.0.1:8800/ws"
platform_name = "Zello Radio Gateway"

[[radio]]
name = "radio1"
channel = "Dispatch"
audio = { backend = "file" }
"#;

    fn parse_in(api: &str, dir: &Path) -> Result<Config, ConfigError> {
        Config::parse(&format!("{BASE}\n[api]\n{api}\n"), "gw.toml", dir)
    }

    fn parse(api: &str) -> Result<Config, ConfigError> {
        parse_in(api, Path::new("/cfg"))
    }

    /// The problems of `api`, which must not parse.
    fn problems(api: &str) -> Vec<String> {
        match parse(api) {
            Err(ConfigError::Invalid { problems, .. }) => problems,
            other => panic!("{api}: {other:?}"),
        }
    }

    #[test]
    fn the_issue_example_and_the_defaults() {
        let c = Config::parse(BASE, "gw.toml", Path::new("/cfg")).unwrap();
        assert_eq!(c.api, ApiConfig::default());
        assert!(c.api.enabled);
        assert_eq!(
            c.api.listen_addr().unwrap(),
            "127.0.0.1:8780".parse::<SocketAddr>().unwrap()
        );
        // The issue's section, its commented lines switched on.
        let c = parse(
            r#"listen = "127.0.0.1:8780"
token_file = "/etc/zello-gateway/api-token"
control_token_file = "/etc/zello-gateway/control-token"
allowed_origins = ["http://gateway.local:8780"]"#,
        )
        .unwrap();
        assert_eq!(
            c.api.token_file.as_deref(),
            Some(Path::new("/etc/zello-gateway/api-token"))
        );
        let origins = c.api.origins().unwrap();
        assert_eq!(origins.len(), 1);
        assert_eq!(origins[0].to_string(), "http://gateway.local:8780");
        assert!(!parse("enabled = false").unwrap().api.enabled);
    }

    #[test]
    fn an_unknown_key_in_the_section_is_refused_by_name() {
        let p = problems("listen = \"127.0.0.1:8780\"\ntokenfile = \"t\"");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with(
                "api.tokenfile: unknown field `tokenfile`: did you mean `token_file`?"
            ),
            "{p:?}"
        );
        // A token written in the file instead of a token file: refused, and not shown.
        let e = parse("token = \"Tk-S3cret-Value-0123456789\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("api.token"), "{e}");
        assert!(!e.contains("S3cret"), "{e}");
    }

    #[test]
    fn a_listen_address_other_machines_reach_needs_a_token_file() {
        for listen in [
            "0.0.0.0:8780",
            "[::]:8780",
            "192.168.1.5:8780",
            "[2001:db8::1]:80",
        ] {
            let p = problems(&format!("listen = {listen:?}"));
            assert_eq!(p.len(), 1, "{p:?}");
            assert!(
                p[0].starts_with(&format!("api.listen = {listen:?} can be reached")),
                "{p:?}"
            );
            assert!(p[0].contains("set token_file"), "{p:?}");
            assert!(p[0].contains("or listen on 127.0.0.1"), "{p:?}");
            // With a token file, or with the API off, it is fine.
            parse(&format!("listen = {listen:?}\ntoken_file = \"api-token\"")).unwrap();
            parse(&format!("listen = {listen:?}\nenabled = false")).unwrap();
        }
        for listen in [
            "127.0.0.1:8780",
            "127.0.0.2:8780",
            "[::1]:8780",
            "[::ffff:127.0.0.1]:8780",
            "127.0.0.1:0",
        ] {
            parse(&format!("listen = {listen:?}")).unwrap_or_else(|e| panic!("{listen}: {e}"));
        }
    }

    #[test]
    fn an_unparsable_listen_address_names_the_key() {
        for listen in [
            "localhost:8780",
            "127.0.0.1",
            "8780",
            "::1:8780",
            "127.0.0.1:99999",
            "",
            "http://127.0.0.1:8780",
        ] {
            let p = problems(&format!("listen = {listen:?}"));
            assert_eq!(p.len(), 1, "{listen}: {p:?}");
            assert!(
                p[0].starts_with(&format!(
                    "api.listen = {listen:?}: not an IP address and port"
                )),
                "{p:?}"
            );
            assert!(p[0].contains("127.0.0.1:8780"), "{p:?}");
        }
        // Wrongly typed: named by toml's own check.
        let p = problems("listen = 8780");
        assert!(p[0].starts_with("api.listen: invalid type"), "{p:?}");
    }

    #[test]
    fn unparsable_origins_are_each_named_by_index() {
        let p = problems(
            r#"allowed_origins = ["http://ok.local:8780", "gateway.local", "ftp://x", "http://h/dash", "http://u:p@h", "http://h?x=1", "null"]"#,
        );
        assert_eq!(p.len(), 6, "{p:#?}");
        for (i, needle) in [
            (1, "not a URL"),
            (2, "the scheme ftp:// is not http:// or https://"),
            (3, "has a path"),
            (4, "user name or password"),
            (5, "has a path, query or fragment"),
            (6, "not a URL"),
        ] {
            let line = p
                .iter()
                .find(|l| l.starts_with(&format!("api.allowed_origins[{i}] = ")))
                .unwrap_or_else(|| panic!("{i} missing in {p:#?}"));
            assert!(line.contains(needle), "{line}");
            assert!(line.contains("http://gateway.local:8780"), "{line}");
        }
        let e = ApiConfig {
            allowed_origins: vec!["https://a".into(), "b".into()],
            ..ApiConfig::default()
        }
        .origins()
        .unwrap_err();
        assert!(matches!(e, ApiConfigError::Origin { index: 1, .. }), "{e}");
        // Problems of the section are listed with the file's others.
        let p = problems("listen = \"nonsense\"\nallowed_origins = [\"x\"]\ntoken_file = \"\"");
        assert_eq!(p.len(), 3, "{p:#?}");
        assert!(p[2].starts_with("api.token_file: must name"), "{p:#?}");
    }

    #[test]
    fn origins_compare_as_browsers_send_them() {
        let o = |s: &str| Origin::parse(s).unwrap();
        assert_eq!(o("http://Gateway.Local"), o("http://gateway.local:80/"));
        assert_eq!(o("https://gateway.local").port(), 443);
        assert_eq!(o("https://gateway.local").default_port(), 443);
        assert_eq!(o("http://gateway.local:8780").default_port(), 80);
        assert_ne!(o("https://gateway.local"), o("http://gateway.local:443"));
        assert_eq!(o("http://[::1]:8780").to_string(), "http://[::1]:8780");
        assert_eq!(o("http://[::1]:8780").scheme(), "http");
        assert_eq!(
            o("http://127.0.0.1:8780").host(),
            &url::Host::<String>::Ipv4([127, 0, 0, 1].into())
        );
    }

    /// A folder with the named files, each holding its text, 0600.
    fn files(entries: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in entries {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            }
        }
        dir
    }

    const READ: &str = "Rd-S3cret-0123456789abcdef";
    const CONTROL: &str = "Ct-S3cret-0123456789abcdef";

    #[test]
    fn tokens_are_read_from_their_files() {
        let dir = files(&[
            ("api-token", &format!("{READ}\n")),
            ("control-token", &format!("  {CONTROL}\r\n")),
        ]);
        let both = "token_file = \"api-token\"\ncontrol_token_file = \"control-token\"";
        let c = parse_in(both, dir.path()).unwrap();
        let t = c.api_tokens().unwrap();
        assert_eq!(t.read.as_ref().unwrap().expose(), READ);
        assert_eq!(t.control.as_ref().unwrap().expose(), CONTROL);
        let shown = format!("{t:?} {c:?}");
        assert!(!shown.contains("S3cret"), "{shown}");
        let none = parse_in("", dir.path()).unwrap().api_tokens().unwrap();
        assert_eq!(none, ApiTokens::default());
        // Both files are secret files: warned about and checked like the password file.
        let keys: Vec<&str> = c.secret_files().iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["api.token_file", "api.control_token_file"]);
        assert!(c.secret_file_warnings().is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn token_files_others_can_read_are_warned_about_by_key() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = files(&[("api-token", READ)]);
        std::fs::set_permissions(
            dir.path().join("api-token"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let c = parse_in("token_file = \"api-token\"", dir.path()).unwrap();
        let w = c.secret_file_warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("api.token_file: "), "{w:?}");
        assert!(w[0].contains("chmod 600"), "{w:?}");
        assert!(!w[0].contains("S3cret"), "{w:?}");
    }

    #[test]
    fn unusable_token_files_are_named_and_the_token_never_shown() {
        let dir = files(&[
            ("empty", "\n"),
            ("short", "Sh0rt-S3cret"),
            ("spaced", "Sp-S3cret 0123456789abcdef"),
            ("lines", "Ln-S3cret-0123\n456789abcdef\n"),
            ("accent", "Ac-S3cret-0123456789abcdéf"),
            ("same", READ),
            ("api-token", READ),
        ]);
        std::fs::create_dir(dir.path().join("folder")).unwrap();
        for (file, needle) in [
            ("empty", "holds no token"),
            ("short", "too short"),
            ("spaced", "holds spaces"),
            ("lines", "line breaks"),
            ("accent", "printable ASCII"),
            ("folder", "is a directory"),
        ] {
            for key in ["token_file", "control_token_file"] {
                let c = parse_in(&format!("{key} = \"{file}\""), dir.path()).unwrap();
                let e = c.api_tokens().unwrap_err();
                let text = e.to_string();
                assert!(
                    text.starts_with("config file gw.toml has 1 problem"),
                    "{text}"
                );
                assert!(text.contains(&format!("api.{key}: ")), "{text}");
                assert!(text.contains(&dir.path().join(file).display().to_string()));
                assert!(text.contains(needle), "{text}");
                assert!(!text.contains("S3cret"), "{text}");
                assert!(!format!("{e:?}").contains("S3cret"), "{e:?}");
            }
        }
        let c = parse_in("token_file = \"absent\"", dir.path()).unwrap();
        let text = c.api_tokens().unwrap_err().to_string();
        assert!(text.starts_with("cannot read config file "), "{text}");
        assert!(text.contains("absent"), "{text}");
        let c = parse_in(
            "token_file = \"api-token\"\ncontrol_token_file = \"same\"",
            dir.path(),
        )
        .unwrap();
        let text = c.api_tokens().unwrap_err().to_string();
        assert!(
            text.contains("api.control_token_file holds the same token as api.token_file"),
            "{text}"
        );
        assert!(!text.contains("S3cret"), "{text}");
    }
}

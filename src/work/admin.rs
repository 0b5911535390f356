//! The administrator's credentials for the Zello Work API, kept apart from the gateway's
//! configuration: an admin file and the environment, which overrides it.
//!
//! ```toml
//! url = "https://NETWORK.zellowork.com"   # http:// only to loopback (the emulator)
//! username = "admin"
//! password_file = "/etc/zello-gateway/admin-password"   # or password = "..."
//! api_key_file = "/etc/zello-gateway/api-key"           # or api_key = "..."
//! # ca_file = "ca.pem"                    # extra certificates to trust
//! ```
//!
//! `ZELLO_WORK_URL`, `ZELLO_ADMIN_USERNAME`, `ZELLO_ADMIN_PASSWORD` and `ZELLO_API_KEY`
//! override the file's values.

use crate::secret::Secret;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The environment variables that override the admin file.
pub const ENV_URL: &str = "ZELLO_WORK_URL";
/// The admin's username.
pub const ENV_USERNAME: &str = "ZELLO_ADMIN_USERNAME";
/// The admin's password.
pub const ENV_PASSWORD: &str = "ZELLO_ADMIN_PASSWORD";
/// The network's API key.
pub const ENV_API_KEY: &str = "ZELLO_API_KEY";

/// The admin file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    /// The network's URL, like `https://acme.zellowork.com`.
    pub url: Option<String>,
    /// An administrator's username.
    pub username: Option<String>,
    /// Their password.
    pub password: Option<Secret>,
    /// A file holding it (relative to the admin file's folder).
    pub password_file: Option<PathBuf>,
    /// The network's API key.
    pub api_key: Option<Secret>,
    /// A file holding it.
    pub api_key_file: Option<PathBuf>,
    /// Extra PEM certificates to trust.
    pub ca_file: Option<PathBuf>,
}

/// Credentials ready to use.
#[derive(Debug, Clone)]
pub struct Admin {
    /// The network's URL.
    pub url: String,
    /// The administrator's username.
    pub username: String,
    /// Their password.
    pub password: Secret,
    /// The API key.
    pub api_key: Secret,
    /// Extra certificates to trust, resolved.
    pub ca_file: Option<PathBuf>,
    /// Secret files (or the admin file itself) others can read.
    pub warnings: Vec<String>,
}

/// Admin credentials that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The admin file could not be read.
    #[error("cannot read admin file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The admin file is not valid TOML or has unknown keys.
    #[error("admin file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Values are missing or wrong; every problem is listed.
    #[error("{source_name} has {} problem(s):\n  - {}", problems.len(), problems.join("\n  - "))]
    Invalid {
        /// The admin file, or "the environment".
        source_name: String,
        /// Each problem with its key.
        problems: Vec<String>,
    },
}

fn read_secret(
    base: &Path,
    key: &str,
    file: &Path,
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Option<Secret> {
    let path = if file.is_absolute() {
        file.to_path_buf()
    } else {
        base.join(file)
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            if let Some(w) = crate::secret::secret_file_warning(&path) {
                warnings.push(format!("{key}: {w}"));
            }
            Some(Secret::new(text.trim_end_matches(['\n', '\r'])))
        }
        Err(e) => {
            problems.push(format!("{key}: cannot read {}: {e}", path.display()));
            None
        }
    }
}

impl Admin {
    /// Reads `path` (when given) and applies the process environment.
    pub fn load(path: Option<&Path>) -> Result<Admin, AdminError> {
        Self::load_with_env(path, |name| std::env::var(name).ok())
    }

    /// Reads `path` (when given) and applies the variables `env` returns.
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Admin, AdminError> {
        let Some(path) = path else {
            return Self::resolve(AdminFile::default(), "the environment", Path::new("."), env);
        };
        let text = std::fs::read_to_string(path).map_err(|source| AdminError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let name = path.display().to_string();
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut admin = Self::parse(&text, &name, &base, env)?;
        let file = AdminFile::parse(&text, &name)?;
        if (file.password.is_some() || file.api_key.is_some())
            && let Some(w) = crate::secret::secret_file_warning(path)
        {
            admin.warnings.push(w);
        }
        Ok(admin)
    }

    /// Checks admin file text; `source_name` names it in messages, `base_dir` resolves its
    /// relative paths.
    pub fn parse(
        text: &str,
        source_name: &str,
        base_dir: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Admin, AdminError> {
        Self::resolve(
            AdminFile::parse(text, source_name)?,
            source_name,
            base_dir,
            env,
        )
    }

    fn resolve(
        file: AdminFile,
        source_name: &str,
        base: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Admin, AdminError> {
        let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        let url = env(ENV_URL).or(file.url);
        match &url {
            None => problems.push(format!(
                "url: missing: the network's address, like \"https://NETWORK.zellowork.com\" (or set {ENV_URL})"
            )),
            Some(u) => {
                if let Err(e) = super::client::check_base_url(u) {
                    problems.push(format!("url: {e}"));
                }
            }
        }
        let username = env(ENV_USERNAME).or(file.username);
        if username.is_none() {
            problems.push(format!(
                "username: missing: an administrator of the network (or set {ENV_USERNAME})"
            ));
        }
        let mut secret =
            |key: &str, var: &str, value: Option<Secret>, path: Option<PathBuf>, what: &str| {
                if let Some(v) = env(var) {
                    return Some(Secret::new(v));
                }
                match (value, path) {
                    (Some(_), Some(_)) => {
                        problems.push(format!("{key}: set {key} or {key}_file, not both"));
                        None
                    }
                    (Some(v), None) => Some(v),
                    (None, Some(p)) => read_secret(
                        base,
                        &format!("{key}_file"),
                        &p,
                        &mut problems,
                        &mut warnings,
                    ),
                    (None, None) => {
                        problems.push(format!(
                            "{key}: missing: {what} (set {key}, {key}_file or {var})"
                        ));
                        None
                    }
                }
            };
        let password = secret(
            "password",
            ENV_PASSWORD,
            file.password,
            file.password_file,
            "the administrator's password",
        );
        let api_key = secret(
            "api_key",
            ENV_API_KEY,
            file.api_key,
            file.api_key_file,
            "the network's API key (web console: Settings > API)",
        );
        match (url, username, password, api_key) {
            (Some(url), Some(username), Some(password), Some(api_key)) if problems.is_empty() => {
                Ok(Admin {
                    url,
                    username,
                    password,
                    api_key,
                    ca_file: file.ca_file.map(|f| base.join(f)),
                    warnings,
                })
            }
            _ => Err(AdminError::Invalid {
                source_name: source_name.to_string(),
                problems,
            }),
        }
    }
}

impl AdminFile {
    /// Parses admin file text, refusing unknown keys. As for the gateway's configuration, an
    /// error names the line and the key but never shows the text of the line or a secret's
    /// value (the file holds the administrator's password and the API key).
    pub fn parse(text: &str, source_name: &str) -> Result<AdminFile, AdminError> {
        let parse_error = |message: String| AdminError::Parse {
            path: source_name.to_string(),
            message,
        };
        let table: toml::Table = text
            .parse()
            .map_err(|e| parse_error(crate::config::syntax_problem(text, &e)))?;
        let mut problems = Vec::new();
        crate::config::deserialize_lenient::<AdminFile>(table, "", &mut problems)
            .ok_or_else(|| parse_error(problems.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const FILE: &str = r#"
url = "https://acme.zellowork.com"
username = "admin"
password = "pw1"
api_key = "KEY1"
"#;

    fn parse(text: &str, vars: &[(&str, &str)]) -> Result<Admin, AdminError> {
        Admin::parse(text, "admin.toml", Path::new("/nonexistent"), env(vars))
    }

    #[test]
    fn a_complete_file_parses() {
        let a = parse(FILE, &[]).unwrap();
        assert_eq!(a.url, "https://acme.zellowork.com");
        assert_eq!(a.username, "admin");
        assert_eq!(a.password.expose(), "pw1");
        assert_eq!(a.api_key.expose(), "KEY1");
        let debug = format!("{a:?}");
        assert!(!debug.contains("pw1") && !debug.contains("KEY1"), "{debug}");
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let a = parse(
            FILE,
            &[
                (ENV_URL, "http://127.0.0.1:8801"),
                (ENV_USERNAME, "root"),
                (ENV_PASSWORD, "pw2"),
                (ENV_API_KEY, "KEY2"),
            ],
        )
        .unwrap();
        assert_eq!(a.url, "http://127.0.0.1:8801");
        assert_eq!(a.username, "root");
        assert_eq!(a.password.expose(), "pw2");
        assert_eq!(a.api_key.expose(), "KEY2");
        // The environment alone is enough; an empty variable counts as unset.
        let vars = [
            (ENV_URL, "https://acme.zellowork.com"),
            (ENV_USERNAME, "root"),
            (ENV_PASSWORD, "pw2"),
            (ENV_API_KEY, "KEY2"),
        ];
        let a = Admin::load_with_env(None, env(&vars)).unwrap();
        assert_eq!(a.username, "root");
        let e = Admin::load_with_env(None, env(&[(ENV_URL, "")])).unwrap_err();
        assert!(e.to_string().contains("4 problem(s)"), "{e}");
    }

    #[test]
    fn a_broken_secret_line_is_located_but_never_shown() {
        for text in [
            "url = \"https://acme.zellowork.com\"\nusername = \"admin\"\npassword = \"Adm1n-S3cret\napi_key = \"k\"\n",
            "url = \"https://acme.zellowork.com\"\nusername = \"admin\"\npassword = [\"Adm1n-S3cret\"]\n",
            "url = \"https://acme.zellowork.com\"\nusername = \"admin\"\napi_key = 123456789\npasword = \"Adm1n-S3cret\"\n",
        ] {
            let e = AdminFile::parse(text, "admin.toml")
                .unwrap_err()
                .to_string();
            assert!(!e.contains("Adm1n-S3cret"), "{e}");
            assert!(!e.contains("123456789"), "{e}");
            assert!(e.starts_with("admin file admin.toml: "), "{e}");
        }
        let e = AdminFile::parse(
            "username = \"admin\"\npassword = \"Adm1n-S3cret\n",
            "admin.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 2") && e.contains("password"), "{e}");
    }

    #[test]
    fn every_problem_is_listed_by_key() {
        let e = parse("url = \"http://acme.zellowork.com\"\n", &[]).unwrap_err();
        let AdminError::Invalid { problems, .. } = &e else {
            panic!("{e}")
        };
        crate::config::assert_lists_problems(
            problems,
            &e.to_string(),
            4,
            &[
                "url: URL \"http://acme.zellowork.com\": plain http:// is only allowed to loopback",
                "username: missing",
                "password: missing",
                "api_key: missing",
                ENV_API_KEY,
            ],
        );
        // FILE with `from` replaced by `to`, which must fail.
        let fails =
            |from: &str, to: &str| parse(&FILE.replace(from, to), &[]).unwrap_err().to_string();
        let e = fails("api_key = ", "api_key_file = \"k\"\napi_key = ");
        assert!(
            e.contains("api_key: set api_key or api_key_file, not both"),
            "{e}"
        );
        let e = parse(&format!("{FILE}apikey = \"x\"\n"), &[]).unwrap_err();
        assert!(matches!(e, AdminError::Parse { .. }), "{e}");
        assert!(e.to_string().contains("apikey"), "{e}");
        let e = fails("password = \"pw1\"", "password_file = \"pw\"");
        assert!(
            e.contains("password_file: cannot read /nonexistent/pw"),
            "{e}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn secrets_come_from_files_and_readable_ones_are_flagged() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str, mode: u32| {
            let f = dir.path().join(name);
            std::fs::write(&f, text).unwrap();
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
            f
        };
        write("pw", "from-file\n", 0o600);
        write("key", "KEY-FILE\n", 0o644);
        let admin = write(
            "admin.toml",
            "url = \"https://acme.zellowork.com\"\nusername = \"admin\"\npassword_file = \"pw\"\napi_key_file = \"key\"\n",
            0o644,
        );
        let a = Admin::load_with_env(Some(&admin), env(&[])).unwrap();
        assert_eq!(a.password.expose(), "from-file");
        assert_eq!(a.api_key.expose(), "KEY-FILE");
        assert_eq!(a.warnings.len(), 1, "{:?}", a.warnings);
        assert!(
            a.warnings[0].starts_with("api_key_file: "),
            "{:?}",
            a.warnings
        );
        // Secrets written in the admin file itself make its own permissions matter.
        let inline = write("inline.toml", FILE, 0o640);
        let a = Admin::load_with_env(Some(&inline), env(&[])).unwrap();
        assert_eq!(a.warnings.len(), 1, "{:?}", a.warnings);
        assert!(a.warnings[0].contains("chmod 600"), "{:?}", a.warnings);
    }
}

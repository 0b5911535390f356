//! The emulator's accounts file.
//!
//! ```toml
//! [[user]]
//! name = "gateway1"
//! password = "secret"
//! channels = ["Dispatch"]   # omitted: any channel
//! listen_only = false       # optional
//! ```

use super::SimError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// One user the emulator lets on.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// The username.
    pub name: String,
    /// The password (never logged; hidden from Debug).
    pub password: String,
    /// The channels the user may join; `None` means any channel.
    #[serde(default)]
    pub channels: Option<Vec<String>>,
    /// Whether the user may only listen.
    #[serde(default)]
    pub listen_only: bool,
}

impl Account {
    /// Whether the user may join `channel`.
    pub fn may_join(&self, channel: &str) -> bool {
        self.channels
            .as_ref()
            .is_none_or(|list| list.iter().any(|c| c == channel))
    }
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .field("channels", &self.channels)
            .field("listen_only", &self.listen_only)
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountsFile {
    #[serde(default)]
    user: Vec<Account>,
}

/// The set of accounts the emulator enforces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accounts {
    users: BTreeMap<String, Account>,
}

impl Accounts {
    /// Reads and checks an accounts file.
    pub fn load(path: &Path) -> Result<Accounts, SimError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| SimError::AccountsUnreadable {
                path: path.to_path_buf(),
                source,
            })?;
        Self::parse_named(&text, &path.display().to_string())
    }

    /// Parses and checks accounts given as TOML text.
    pub fn parse(text: &str) -> Result<Accounts, SimError> {
        Self::parse_named(text, "<text>")
    }

    fn parse_named(text: &str, source_name: &str) -> Result<Accounts, SimError> {
        let invalid = |message: String| SimError::AccountsInvalid {
            source_name: source_name.to_string(),
            message,
        };
        let file: AccountsFile = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|span| {
                    let end = span.start.min(text.len());
                    let line = text.as_bytes()[..end]
                        .iter()
                        .filter(|b| **b == b'\n')
                        .count();
                    format!("line {}: ", line + 1)
                })
                .unwrap_or_default();
            invalid(format!(
                "{at}{}; each user is a [[user]] table with name, password, and optionally \
                 channels (a list) and listen_only (true/false)",
                e.message().trim_end()
            ))
        })?;
        let mut users = BTreeMap::new();
        for (i, account) in file.user.into_iter().enumerate() {
            let n = i + 1;
            if account.name.trim().is_empty() {
                return Err(invalid(format!("user #{n} has an empty name; give it one")));
            }
            if account.password.is_empty() {
                return Err(invalid(format!(
                    "user {:?} has an empty password; give it one",
                    account.name
                )));
            }
            if let Some(channels) = &account.channels
                && channels.iter().any(|c| c.trim().is_empty())
            {
                return Err(invalid(format!(
                    "user {:?} lists an empty channel name; remove it",
                    account.name
                )));
            }
            if users.contains_key(&account.name) {
                return Err(invalid(format!(
                    "user {:?} appears twice; keep one entry per user",
                    account.name
                )));
            }
            users.insert(account.name.clone(), account);
        }
        Ok(Accounts { users })
    }

    /// A set built from accounts in code (tests, the demo).
    pub fn from_accounts(accounts: impl IntoIterator<Item = Account>) -> Accounts {
        Accounts {
            users: accounts.into_iter().map(|a| (a.name.clone(), a)).collect(),
        }
    }

    /// The account with this name.
    pub fn get(&self, name: &str) -> Option<&Account> {
        self.users.get(name)
    }

    /// The account with this name if `password` is its password.
    pub fn check(&self, name: &str, password: &str) -> Option<&Account> {
        self.get(name).filter(|a| a.password == password)
    }

    /// How many accounts there are.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no accounts (nobody can log on).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// Two accounts in the documented form: `gateway1` (password `secret`, channel
/// `Dispatch` only) and `monitor` (password `pw`, listen only).
#[cfg(test)]
pub(crate) const SAMPLE: &str = r#"
[[user]]
name = "gateway1"
password = "secret"
channels = ["Dispatch"]

[[user]]
name = "monitor"
password = "pw"
listen_only = true
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_form() {
        let a = Accounts::parse(SAMPLE).unwrap();
        assert_eq!(a.len(), 2);
        let g = a.check("gateway1", "secret").unwrap();
        assert!(g.may_join("Dispatch"));
        assert!(!g.may_join("Other"));
        assert!(!g.listen_only);
        assert!(a.check("gateway1", "wrong").is_none());
        let m = a.get("monitor").unwrap();
        assert!(m.listen_only && m.may_join("anything"));
    }

    #[test]
    fn debug_hides_passwords() {
        let a = Accounts::parse(SAMPLE).unwrap();
        let text = format!("{a:?}");
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("<redacted>"));
    }

    #[test]
    fn unknown_keys_and_bad_entries_are_refused_with_the_source_named() {
        let err = Accounts::parse("[[user]]\nname = \"a\"\npassword = \"b\"\nrole = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("<text>") && err.contains("role"), "{err}");
        let err = Accounts::parse("[[users]]\nname = \"a\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("users"), "{err}");
        let err = Accounts::parse("[[user]]\nname = \"a\"\npassword = \"\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("empty password"), "{err}");
        let twice =
            "[[user]]\nname = \"a\"\npassword = \"b\"\n[[user]]\nname = \"a\"\npassword = \"c\"\n";
        let err = Accounts::parse(twice).unwrap_err().to_string();
        assert!(err.contains("twice"), "{err}");
        let err = Accounts::parse("[[user]]\npassword = \"b\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("name"), "{err}");
    }

    #[test]
    fn load_names_the_file() {
        let dir = std::env::temp_dir().join(format!("zg-accounts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("accounts.toml");
        std::fs::write(&path, "[[user]]\nname = 1\n").unwrap();
        let err = Accounts::load(&path).unwrap_err().to_string();
        assert!(err.contains("accounts.toml"), "{err}");
        let missing = dir.join("missing.toml");
        let err = Accounts::load(&missing).unwrap_err().to_string();
        assert!(
            err.contains("missing.toml") && err.contains("cannot read"),
            "{err}"
        );
        std::fs::write(&path, SAMPLE).unwrap();
        assert_eq!(Accounts::load(&path).unwrap().len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! Secrets (passwords, tokens) that never show in logs or Debug output.

use std::fmt;
use std::path::Path;

/// A secret string. `Debug` and `Display` print `<redacted>`; use [`Secret::expose`] where the
/// value is really needed (on the wire).
#[derive(Clone, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the wire only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A warning when the file at `path`, which holds a secret (a password, an auth token, a
/// private key), can be read by its group or by other users, saying to `chmod 600` it. `None`
/// when only its owner can read it, when it cannot be looked at (reading it will report
/// that), and on systems without Unix permissions.
pub fn secret_file_warning(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = std::fs::metadata(path).ok()?;
        // A folder is not a secret file (`check` says a file is needed).
        if meta.is_dir() {
            return None;
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o044 == 0 {
            return None;
        }
        let who = match (mode & 0o040 != 0, mode & 0o004 != 0) {
            (true, true) => "its group and all other users",
            (true, false) => "its group",
            _ => "all other users",
        };
        Some(format!(
            "{} holds a secret but {who} can read it (mode {mode:04o}): run chmod 600 {}",
            path.display(),
            shell_word(&path.display().to_string())
        ))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// `s` quoted for a POSIX shell when it holds anything but plain path characters.
fn shell_word(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+,:@%".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
        assert_eq!(s.expose(), "hunter2");
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Holder {
            password: Secret,
        }
        assert!(!format!("{:?}", Holder { password: s }).contains("hunter2"));
    }

    #[cfg(unix)]
    #[test]
    fn readable_secret_files_are_flagged() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "hunter2\n").unwrap();
        let chmod =
            |mode| std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        for mode in [0o600, 0o400, 0o700, 0o200] {
            chmod(mode);
            assert_eq!(secret_file_warning(&file), None, "{mode:o}");
        }
        for (mode, who) in [
            (0o640, "its group can"),
            (0o604, "all other users can"),
            (0o644, "its group and all other users"),
        ] {
            chmod(mode);
            let w = secret_file_warning(&file).unwrap();
            assert!(w.contains(who), "{w}");
            assert!(w.contains(&format!("mode 0{mode:o}")), "{w}");
            assert!(w.ends_with(&format!("chmod 600 {}", file.display())), "{w}");
            assert!(!w.contains("hunter2"));
        }
        // A file that is not there: nothing to say (reading it reports the error).
        assert_eq!(secret_file_warning(&dir.path().join("absent")), None);
        // Nor a folder, whatever its mode: a file is needed, not a chmod.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(secret_file_warning(dir.path()), None);
        // A path a shell would split is quoted.
        let spaced = dir.path().join("my password");
        std::fs::write(&spaced, "x").unwrap();
        std::fs::set_permissions(&spaced, std::fs::Permissions::from_mode(0o644)).unwrap();
        let w = secret_file_warning(&spaced).unwrap();
        assert!(
            w.ends_with(&format!("chmod 600 '{}'", spaced.display())),
            "{w}"
        );
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}

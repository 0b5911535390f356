//! Where the logon's auth token comes from.

use crate::secret::Secret;
use std::path::PathBuf;

/// Why a token could not be had.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("auth token file {path}: {source} (check [zello] auth_token_file and its permissions)")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("auth token file {0} is empty")]
    Empty(String),
}

/// The auth token sent at logon (needed for consumer Zello; Zello Work needs none).
#[derive(Debug, Clone, Default)]
pub enum TokenSource {
    /// No token.
    #[default]
    None,
    /// A token given in the configuration.
    Static(Secret),
    /// A token read from a file at every logon, so a rotated token is picked up.
    File(PathBuf),
}

impl TokenSource {
    /// The token to send now, if any.
    pub fn token(&self) -> Result<Option<Secret>, AuthError> {
        match self {
            TokenSource::None => Ok(None),
            TokenSource::Static(s) => Ok(Some(s.clone())),
            TokenSource::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| AuthError::File {
                    path: path.display().to_string(),
                    source,
                })?;
                let token = text.trim();
                if token.is_empty() {
                    return Err(AuthError::Empty(path.display().to_string()));
                }
                Ok(Some(Secret::new(token)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        assert!(TokenSource::None.token().unwrap().is_none());
        let s = TokenSource::Static(Secret::new("abc"));
        assert_eq!(s.token().unwrap().unwrap().expose(), "abc");
        let dir = std::env::temp_dir().join(format!("zg-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("token.jwt");
        std::fs::write(&f, "  eyJ.token \n").unwrap();
        let t = TokenSource::File(f.clone()).token().unwrap().unwrap();
        assert_eq!(t.expose(), "eyJ.token");
        std::fs::write(&f, "\n").unwrap();
        assert!(matches!(
            TokenSource::File(f.clone()).token(),
            Err(AuthError::Empty(_))
        ));
        let missing = TokenSource::File(dir.join("nope")).token().unwrap_err();
        assert!(missing.to_string().contains("auth_token_file"), "{missing}");
        std::fs::remove_dir_all(&dir).ok();
    }
}

//! Where the logon's auth token comes from: none, a fixed token, a token file, or tokens the
//! gateway signs itself with the issuer's private key.
//!
//! Zello's auth tokens are RS256 JWTs carrying only `iss` (the issuer from the Zello developer
//! console) and `exp`; Zello's own samples sign them with a 60 to 120 s lifetime. A
//! [`TokenSigner`] signs one that expires [`TOKEN_LIFETIME`] from now and signs a fresh one
//! when fewer than [`RENEW_BEFORE`] are left, so a reconnect never sends a stale token and a
//! development token that expires after 30 days is never needed in production.
//!
//! Signing uses `ring` (already the TLS crypto provider): constant-time RSA, no C library
//! beyond the one rustls builds anyway.

use crate::secret::Secret;
use crate::sync::lock;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a signed token is valid.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(120);

/// A cached token with less than this left is replaced by a fresh one.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30);

/// A wall clock before this (2024-01-01) has not been set yet: a Raspberry Pi has no
/// battery-backed clock and starts from its last saved time until NTP has answered.
const CLOCK_SET_AFTER: u64 = 1_704_067_200;

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
    /// The private key file could not be read.
    #[error(
        "zello.token.private_key_file {path}: {source} (check the path, and that the zello-gateway user can read the file: chown zello-gateway {path} && chmod 600 {path})"
    )]
    KeyFile {
        /// The file.
        path: String,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The private key is not an RSA key ring can sign with.
    #[error(
        "{origin}: not a usable RSA private key: {reason} (use the PEM private key issued with the issuer in the Zello developer console: -----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----, 2048 bits or more)"
    )]
    KeyInvalid {
        /// `zello.token.private_key_file <path>`, or the inline key.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No issuer to put in the token.
    #[error(
        "zello.token.issuer is empty (set it to the issuer shown with the key in the Zello developer console)"
    )]
    NoIssuer,
    /// The system clock has not been set, so any token would be refused as expired.
    #[error(
        "the system clock reads {unix_seconds} s after 1970, before 2024: a token signed now would be refused as expired (wait for time synchronisation; see timedatectl status)"
    )]
    ClockNotSet {
        /// The clock's reading.
        unix_seconds: u64,
    },
    /// ring refused to sign.
    #[error("{origin}: signing the auth token failed (the key may be damaged; replace it)")]
    Sign {
        /// Where the key came from.
        origin: String,
    },
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
    /// A token the gateway signs itself (`[zello.token]`), fresh for every logon.
    Signed(TokenSigner),
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
            TokenSource::Signed(signer) => signer.token().map(Some),
        }
    }
}

/// Where the issuer's RSA private key comes from (PEM: PKCS#8 `BEGIN PRIVATE KEY` or
/// PKCS#1 `BEGIN RSA PRIVATE KEY`).
#[derive(Debug, Clone)]
pub enum PrivateKey {
    /// The PEM text itself.
    Pem(Secret),
    /// A PEM file (`zello.token.private_key_file`), read once when the signer is made:
    /// restart the gateway after replacing it.
    File(PathBuf),
}

/// Signs RS256 JWTs with `iss` and `exp` for the logon, and reuses one until it nears expiry.
/// Cheap to clone: clones share the key and the cached token.
#[derive(Clone)]
pub struct TokenSigner {
    inner: Arc<SignerInner>,
}

struct SignerInner {
    issuer: String,
    key: RsaKeyPair,
    rng: SystemRandom,
    /// Where the key came from, for messages.
    origin: String,
    cached: Mutex<Option<Cached>>,
}

/// The last token signed and its expiry (seconds since 1970).
struct Cached {
    token: Secret,
    exp: u64,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("issuer", &self.inner.issuer)
            .field("key", &self.inner.origin)
            .finish_non_exhaustive()
    }
}

/// What in the key itself makes ring refuse it for RS256, read from its DER form: an
/// algorithm other than RSA, or a modulus outside ring's 2048 to 8192 bits. `None` when the
/// key looks right (ring's own error then says why).
fn rsa_key_problem(der: &PrivateKeyDer<'_>) -> Option<String> {
    let rsa_der = match der {
        PrivateKeyDer::Pkcs8(k) => {
            let info = pkcs8::PrivateKeyInfo::try_from(k.secret_pkcs8_der()).ok()?;
            if info.algorithm.oid != pkcs1::ALGORITHM_OID {
                return Some("it is not an RSA key".into());
            }
            info.private_key
        }
        PrivateKeyDer::Pkcs1(k) => k.secret_pkcs1_der(),
        _ => return None,
    };
    let key = pkcs1::RsaPrivateKey::try_from(rsa_der).ok()?;
    let modulus = key.modulus.as_bytes();
    let bits = (modulus.len() * 8)
        .saturating_sub(modulus.first().map_or(0, |b| b.leading_zeros() as usize));
    if bits < 2048 {
        Some("the key is shorter than 2048 bits".into())
    } else if bits > 8192 {
        Some("the key is longer than 8192 bits".into())
    } else {
        None
    }
}

impl TokenSigner {
    /// A signer for `issuer` with its private key. Fails, naming the key's file, when the key
    /// cannot be read or is not an RSA key of 2048 to 8192 bits.
    pub fn new(issuer: String, key: PrivateKey) -> Result<Self, AuthError> {
        if issuer.trim().is_empty() {
            return Err(AuthError::NoIssuer);
        }
        let (pem, origin) = match key {
            PrivateKey::Pem(secret) => (
                secret.expose().as_bytes().to_vec(),
                "zello.token private key".to_string(),
            ),
            PrivateKey::File(path) => {
                let bytes = std::fs::read(&path).map_err(|source| AuthError::KeyFile {
                    path: path.display().to_string(),
                    source,
                })?;
                (
                    bytes,
                    format!("zello.token.private_key_file {}", path.display()),
                )
            }
        };
        let invalid = |reason: String| AuthError::KeyInvalid {
            origin: origin.clone(),
            reason,
        };
        let der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
            invalid(match e {
                rustls_pki_types::pem::Error::NoItemsFound => {
                    "no PEM private key found in it".to_string()
                }
                other => format!("not readable as PEM: {other}"),
            })
        })?;
        let key = match &der {
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            PrivateKeyDer::Sec1(_) => {
                return Err(invalid(
                    "it is an elliptic-curve key; Zello tokens are signed with RSA (RS256)".into(),
                ));
            }
            _ => return Err(invalid("an unknown kind of private key".into())),
        }
        .map_err(|e| invalid(rsa_key_problem(&der).unwrap_or_else(|| format!("rejected ({e})"))))?;
        Ok(TokenSigner {
            inner: Arc::new(SignerInner {
                issuer,
                key,
                rng: SystemRandom::new(),
                origin,
                cached: Mutex::new(None),
            }),
        })
    }

    /// The issuer the tokens carry.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// A token valid for at least [`RENEW_BEFORE`]: the cached one, or a fresh one expiring
    /// [`TOKEN_LIFETIME`] from now.
    pub fn token(&self) -> Result<Secret, AuthError> {
        self.token_at(SystemTime::now())
    }

    /// [`TokenSigner::token`] as of `now`. A cached token is replaced when fewer than
    /// [`RENEW_BEFORE`] are left, and also when more than [`TOKEN_LIFETIME`] are left (the
    /// clock was set back, as when NTP corrects a Pi's clock after boot).
    fn token_at(&self, now: SystemTime) -> Result<Secret, AuthError> {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if now < CLOCK_SET_AFTER {
            return Err(AuthError::ClockNotSet { unix_seconds: now });
        }
        let mut cached = lock(&self.inner.cached);
        if let Some(c) = cached.as_ref() {
            let left = c.exp.saturating_sub(now);
            if left >= RENEW_BEFORE.as_secs() && left <= TOKEN_LIFETIME.as_secs() {
                return Ok(c.token.clone());
            }
        }
        let exp = now + TOKEN_LIFETIME.as_secs();
        let token = Secret::new(self.sign(exp)?);
        *cached = Some(Cached {
            token: token.clone(),
            exp,
        });
        Ok(token)
    }

    /// A compact JWS: base64url(header) "." base64url(claims) "." base64url(signature).
    fn sign(&self, exp: u64) -> Result<String, AuthError> {
        let inner = &*self.inner;
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = serde_json::json!({ "iss": inner.issuer, "exp": exp });
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{claims}");
        let mut signature = vec![0u8; inner.key.public().modulus_len()];
        inner
            .key
            .sign(
                &RSA_PKCS1_SHA256,
                &inner.rng,
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| AuthError::Sign {
                origin: inner.origin.clone(),
            })?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
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

#[cfg(test)]
mod signer_tests {
    use super::*;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    use rsa::pkcs1::EncodeRsaPrivateKey as _;
    use rsa::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
    use std::sync::OnceLock;

    /// A test key pair: the private key as PKCS#8 and PKCS#1 PEM, the public key as PEM.
    struct TestKey {
        pkcs8: String,
        pkcs1: String,
        public: String,
    }

    /// One 2048-bit key for every test in this process (generating one takes a while in a
    /// debug build).
    fn test_key() -> &'static TestKey {
        static KEY: OnceLock<TestKey> = OnceLock::new();
        KEY.get_or_init(|| {
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
            TestKey {
                pkcs8: key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
                pkcs1: key.to_pkcs1_pem(LineEnding::LF).unwrap().to_string(),
                public: rsa::RsaPublicKey::from(&key)
                    .to_public_key_pem(LineEnding::LF)
                    .unwrap(),
            }
        })
    }

    /// A signer for issuer `iss` holding `pem` inline.
    fn inline_signer(pem: &str) -> TokenSigner {
        TokenSigner::new("iss".into(), PrivateKey::Pem(Secret::new(pem.to_string()))).unwrap()
    }

    fn unix_now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    /// Verifies `token` with jsonwebtoken and the public key: signature, RS256, `iss`, and an
    /// `exp` that has not passed (no leeway). Returns the claims.
    fn verify(token: &str, issuer: &str) -> serde_json::Map<String, serde_json::Value> {
        let key = DecodingKey::from_rsa_pem(test_key().public.as_bytes()).unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &key,
            &validation,
        )
        .unwrap_or_else(|e| panic!("{token}: {e}"));
        assert_eq!(data.header.alg, Algorithm::RS256);
        assert_eq!(data.header.typ.as_deref(), Some("JWT"));
        data.claims
    }

    fn exp_of(token: &str) -> u64 {
        jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(token)
            .unwrap()
            .claims["exp"]
            .as_u64()
            .unwrap()
    }

    #[test]
    fn signed_tokens_verify_with_the_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("zello-key.pem");
        for pem in [&test_key().pkcs8, &test_key().pkcs1] {
            std::fs::write(&file, pem).unwrap();
            let signer =
                TokenSigner::new("issuer-abc123".into(), PrivateKey::File(file.clone())).unwrap();
            let source = TokenSource::Signed(signer.clone());
            let token = source.token().unwrap().unwrap();
            let claims = verify(token.expose(), "issuer-abc123");
            // Only iss and exp, as Zello's tokens carry.
            let mut keys: Vec<_> = claims.keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(keys, ["exp", "iss"]);
            assert_eq!(claims["iss"], "issuer-abc123");
            let exp = claims["exp"].as_u64().unwrap();
            let now = unix_now();
            assert!(
                (now + 118..=now + 120).contains(&exp),
                "exp {exp}, now {now}"
            );
            // A token signed for another issuer does not pass as this one.
            let key = DecodingKey::from_rsa_pem(test_key().public.as_bytes()).unwrap();
            let mut other = Validation::new(Algorithm::RS256);
            other.set_issuer(&["someone-else"]);
            assert!(
                jsonwebtoken::decode::<serde_json::Value>(token.expose(), &key, &other).is_err()
            );
            assert!(!format!("{source:?}").contains(token.expose()));
        }
        let inline = inline_signer(&test_key().pkcs8);
        verify(inline.token().unwrap().expose(), "iss");
        assert_eq!(inline.issuer(), "iss");
        assert!(!format!("{inline:?}").contains("PRIVATE"));
    }

    #[test]
    fn the_token_is_reused_until_30_seconds_are_left() {
        let signer = inline_signer(&test_key().pkcs1);
        let t0 = SystemTime::now();
        let at = |s: u64| signer.token_at(t0 + Duration::from_secs(s)).unwrap();
        let first = at(0);
        let exp0 = exp_of(first.expose());
        assert_eq!(at(60), first, "60 s left: reused");
        assert_eq!(at(90), first, "exactly 30 s left: reused");
        let second = at(91);
        assert_eq!(exp_of(second.expose()), exp0 + 91, "29 s left: signed anew");
        verify(second.expose(), "iss");
        assert_eq!(at(100), second);
        // The clock set back by ten minutes: the cached token would seem to last 12 minutes,
        // so a fresh one is signed.
        let back = signer.token_at(t0 - Duration::from_secs(600)).unwrap();
        assert_eq!(exp_of(back.expose()), exp0 - 600);
    }

    #[test]
    fn an_unset_clock_is_reported() {
        let signer = inline_signer(&test_key().pkcs8);
        // A Pi that booted without network: 1970 plus uptime.
        let e = signer
            .token_at(UNIX_EPOCH + Duration::from_secs(42))
            .unwrap_err();
        assert!(matches!(e, AuthError::ClockNotSet { unix_seconds: 42 }));
        assert!(e.to_string().contains("time synchronisation"), "{e}");
    }

    #[test]
    fn unusable_keys_name_the_file_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let signer = |name: &str, contents: Option<&[u8]>| {
            let path = dir.path().join(name);
            if let Some(c) = contents {
                std::fs::write(&path, c).unwrap();
            }
            TokenSigner::new("iss".into(), PrivateKey::File(path.clone()))
                .map(|_| ())
                .unwrap_err()
        };
        let check = |e: AuthError, name: &str, needle: &str| {
            let text = e.to_string();
            assert!(
                text.contains("zello.token.private_key_file"),
                "no key in: {text}"
            );
            assert!(text.contains(name), "no file name in: {text}");
            assert!(text.contains(needle), "no {needle:?} in: {text}");
        };

        let missing = signer("missing.pem", None);
        assert!(matches!(missing, AuthError::KeyFile { .. }));
        check(missing, "missing.pem", "chmod 600");

        check(
            signer("garbage.pem", Some(b"not a key at all\n")),
            "garbage.pem",
            "no PEM private key",
        );
        check(
            signer(
                "broken.pem",
                Some(b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n"),
            ),
            "broken.pem",
            "not a usable RSA private key",
        );
        let public_only = test_key().public.clone();
        check(
            signer("public.pem", Some(public_only.as_bytes())),
            "public.pem",
            "no PEM private key",
        );
        let ec = rcgen::KeyPair::generate().unwrap().serialize_pem();
        check(
            signer("ec.pem", Some(ec.as_bytes())),
            "ec.pem",
            "not an RSA key",
        );
        let sec1 = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
        check(
            signer("sec1.pem", Some(sec1.as_bytes())),
            "sec1.pem",
            "elliptic-curve",
        );
        let small = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024)
            .unwrap()
            .to_pkcs8_pem(LineEnding::LF)
            .unwrap();
        check(
            signer("small.pem", Some(small.as_bytes())),
            "small.pem",
            "shorter than 2048 bits",
        );
        std::fs::create_dir(dir.path().join("a-folder")).unwrap();
        check(
            signer("a-folder", None),
            "a-folder",
            "zello-gateway user can read",
        );

        let e = TokenSigner::new(
            " ".into(),
            PrivateKey::Pem(Secret::new(test_key().pkcs8.clone())),
        )
        .unwrap_err();
        assert!(matches!(e, AuthError::NoIssuer), "{e}");
    }
}

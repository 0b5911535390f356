//! The Zello Work API's wire details, free of I/O: the login hash, form bodies with
//! `name[]=` arrays, URL-encoded path segments, and their decoding (for the emulator).

use md5::{Digest as _, Md5};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// The lowercase hex md5 of `data`.
pub fn md5_hex(data: &[u8]) -> String {
    let digest = Md5::digest(data);
    let mut out = String::with_capacity(32);
    for b in digest.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The `password` field of `user/login`: md5(md5(password) + token + api_key), in hex.
pub fn login_hash(password: &str, token: &str, api_key: &str) -> String {
    let inner = md5_hex(password.as_bytes());
    md5_hex(format!("{inner}{token}{api_key}").as_bytes())
}

/// The `password` field of `user/save`: the md5 of the new password, in hex.
pub fn password_hash(password: &str) -> String {
    md5_hex(password.as_bytes())
}

/// What a path segment keeps as it is: `A-Z a-z 0-9 - . _ ~` (RFC 3986's unreserved set).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes `s` for one path segment: everything but `A-Z a-z 0-9 - . _ ~`.
pub fn path_segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// Decodes `%XX` escapes of a path segment (a `+` stays a `+`). Bad escapes are kept as
/// they are; invalid UTF-8 is replaced.
pub fn percent_decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// An `application/x-www-form-urlencoded` body (or query) in the order fields are added.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    /// An empty form.
    pub fn new() -> Form {
        Form::default()
    }

    /// Adds `name=value`.
    pub fn field(mut self, name: &str, value: impl Into<String>) -> Form {
        self.pairs.push((name.to_string(), value.into()));
        self
    }

    /// Adds `name=value` when there is a value.
    pub fn opt(self, name: &str, value: Option<impl ToString>) -> Form {
        match value {
            Some(v) => self.field(name, v.to_string()),
            None => self,
        }
    }

    /// Adds `name=true` or `name=false` when there is a value.
    pub fn opt_bool(self, name: &str, value: Option<bool>) -> Form {
        self.opt(name, value.map(|b| if b { "true" } else { "false" }))
    }

    /// Adds an array as `name[]=a&name[]=b`.
    pub fn list<S: AsRef<str>>(mut self, name: &str, values: &[S]) -> Form {
        for v in values {
            self.pairs
                .push((format!("{name}[]"), v.as_ref().to_string()));
        }
        self
    }

    /// True when no field was added.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The encoded text for a query string: everything URL-encoded, `[]` as `%5B%5D`.
    pub fn encode_query(&self) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in &self.pairs {
            s.append_pair(name, value);
        }
        s.finish()
    }

    /// The encoded text for a body. Names and values are URL-encoded, except the `[]` of
    /// array names (`login[]=a&login[]=b`, as the API reference writes them).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        for (name, value) in &self.pairs {
            if !out.is_empty() {
                out.push('&');
            }
            let (base, brackets) = match name.strip_suffix("[]") {
                Some(base) => (base, "[]"),
                None => (name.as_str(), ""),
            };
            out.extend(url::form_urlencoded::byte_serialize(base.as_bytes()));
            out.push_str(brackets);
            out.push('=');
            out.extend(url::form_urlencoded::byte_serialize(value.as_bytes()));
        }
        out
    }
}

/// A decoded form (body or query): every value of every name, `name[]` arrays under
/// `name`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedForm {
    pairs: Vec<(String, String)>,
}

impl ParsedForm {
    /// Decodes `text` (`+` is a space).
    pub fn parse(text: &[u8]) -> ParsedForm {
        let pairs = url::form_urlencoded::parse(text)
            .map(|(k, v)| {
                let k = k.strip_suffix("[]").unwrap_or(&k).to_string();
                (k, v.into_owned())
            })
            .collect();
        ParsedForm { pairs }
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_matches_known_vectors() {
        // RFC 1321, appendix A.5.
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn login_hash_is_md5_of_md5_password_token_key() {
        // Worked out by hand in a shell:
        //   printf %s secret | md5sum            -> 5ebe2294ecd0e0f08eab7690d2a6ee69
        //   printf %s 5ebe2294ecd0e0f08eab7690d2a6ee69tok123key456 | md5sum
        //                                        -> 62baa06b0f583f828ad88a1bee9fe641
        assert_eq!(password_hash("secret"), "5ebe2294ecd0e0f08eab7690d2a6ee69");
        assert_eq!(
            login_hash("secret", "tok123", "key456"),
            "62baa06b0f583f828ad88a1bee9fe641"
        );
    }

    #[test]
    fn forms_encode_values_and_arrays() {
        let f = Form::new()
            .field("name", "test 2&x=y")
            .opt("email", None::<&str>)
            .opt_bool("admin", Some(false))
            .list("login", &["test", "test 2", "t\u{e9}st3"]);
        assert_eq!(
            f.encode(),
            "name=test+2%26x%3Dy&admin=false&login[]=test&login[]=test+2&login[]=t%C3%A9st3"
        );
        let back = ParsedForm::parse(f.encode().as_bytes());
        assert_eq!(back.get("name"), Some("test 2&x=y"));
        assert_eq!(back.all("login"), ["test", "test 2", "t\u{e9}st3"]);
        // The encoded form of the API reference's example decodes the same way.
        let spec = ParsedForm::parse(b"login[]=test&login[]=test%202&login[]=test3");
        assert_eq!(spec.all("login"), ["test", "test 2", "test3"]);
        let spec = ParsedForm::parse(b"northeast%5B%5D=32.87&northeast%5B%5D=-96.70");
        assert_eq!(spec.all("northeast"), ["32.87", "-96.70"]);
    }

    #[test]
    fn path_segments_are_encoded_and_decoded() {
        let odd = "Fire & Rescue/Ch 1?x=%y+z";
        let seg = path_segment(odd);
        assert_eq!(seg, "Fire%20%26%20Rescue%2FCh%201%3Fx%3D%25y%2Bz");
        assert_eq!(percent_decode(&seg), odd);
        assert_eq!(percent_decode("Ал"), "Ал");
        assert_eq!(path_segment("Ал"), "%D0%90%D0%BB");
        assert_eq!(percent_decode("%D0%90%D0%BB"), "Ал");
        assert_eq!(percent_decode("50%"), "50%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}

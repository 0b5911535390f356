//! TOML text as operators write it: syntax errors as one line that shows no secret, unknown
//! keys named with the closest known one, and deserializing that reports every problem.

/// Whether the value of a key with this name (the last part of its path) is a secret that
/// no message may show: passwords, tokens, keys.
pub fn is_secret_key(name: &str) -> bool {
    let name = name.trim().trim_matches(['"', '\'']).to_ascii_lowercase();
    if name.ends_with("_file") {
        return false;
    }
    ["password", "secret", "credential"]
        .iter()
        .any(|word| name.contains(word))
        || name.ends_with("_token")
        || name.ends_with("_key")
        || name.ends_with("apikey")
}

/// A TOML syntax error as one line: where it is (line, column, and the key whose value it is
/// in, when one can be told) and toml's message. The text of the line is never shown: it may
/// hold a password, or a string left open may have swallowed the lines after it.
pub(crate) fn syntax_problem(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim();
    let Some(span) = e.span() else {
        return format!("not valid TOML: {message}");
    };
    let offset = span.start.min(text.len());
    // A multi-line string left open is reported where the file ends: it is shown where it
    // was opened.
    let start = if message.contains("multi-line") {
        let before = text.get(..offset).unwrap_or(text);
        before
            .rfind("\"\"\"")
            .max(before.rfind("'''"))
            .unwrap_or(offset)
    } else {
        offset
    };
    let (line, column) = line_and_column(text, start);
    let mut out = format!("line {line}, column {column}");
    if let Some(key) = key_of_line(text, start) {
        let hidden = if key.rsplit('.').next().is_some_and(is_secret_key) {
            ", value not shown"
        } else {
            ""
        };
        out.push_str(&format!(" (in the value of `{key}`{hidden})"));
    }
    out.push_str(&format!(": {message}"));
    if message.contains("string") {
        out.push_str(" (is a closing quote missing?)");
    }
    out
}

/// The 1-based line and column (in characters) of byte `offset` of `text`.
pub(crate) fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

/// The full key (`zello.password`) set on the line holding byte `offset`: the key before its
/// `=`, under the last `[table]` header above it. `None` when the line sets no key.
fn key_of_line(text: &str, offset: usize) -> Option<String> {
    let line_start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    let bare = |c: char| c.is_ascii_alphanumeric() || "_-.\" '".contains(c);
    if key.is_empty() || !key.chars().all(bare) {
        return None;
    }
    let table = text[..line_start].lines().rev().find_map(|l| {
        let l = l.trim();
        l.starts_with('[').then(|| {
            l.trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim()
        })
    });
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_string(),
    })
}

/// `message` with every quoted or back-quoted part replaced, for errors about a secret's value.
fn hide_values(message: &str) -> String {
    let mut out = String::new();
    let mut open: Option<char> = None;
    for c in message.chars() {
        match open {
            Some(q) if c == q => open = None,
            Some(_) => {}
            None if c == '`' || c == '"' => {
                open = Some(c);
                out.push_str("<hidden>");
            }
            None => out.push(c),
        }
    }
    out
}

/// The names a serde message offers after "expected" (`expected `pin` or `active_low``).
fn expected_names(message: &str) -> Vec<&str> {
    let Some((_, rest)) = message.split_once("expected") else {
        return Vec::new();
    };
    rest.split('`').skip(1).step_by(2).collect()
}

/// The known name closest to a misspelt one, when one is close enough to be meant.
fn closest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(name, c), *c))
        .filter(|(d, c)| *d <= (c.len().max(name.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Deserializes `table` as a `T`, listing in `problems` every unknown key and every value of
/// the wrong kind (each key path after `prefix`): each is taken out and the rest tried again,
/// so that one run names them all. `None` when a problem was found.
pub(crate) fn deserialize_lenient<T: serde::de::DeserializeOwned>(
    mut table: toml::Table,
    prefix: &str,
    problems: &mut Vec<String>,
) -> Option<T> {
    let before = problems.len();
    // Each round takes one key out; a file has far fewer keys than this.
    for _ in 0..256 {
        let e = match T::deserialize(toml::Value::Table(table.clone())) {
            Ok(v) if problems.len() == before => return Some(v),
            Ok(_) => return None,
            Err(e) => e,
        };
        let message = e.message().trim().to_string();
        // toml names the key path on the error's last line: "in `radio.ptt`".
        let display = e.to_string();
        let mut path: Vec<String> = display
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("in `")?.strip_suffix('`'))
            .filter(|p| !p.is_empty())
            .map(|p| p.split('.').map(str::to_string).collect())
            .unwrap_or_default();
        let unknown = message.starts_with("unknown field `");
        if unknown && let Some(field) = message.split('`').nth(1) {
            path.push(field.to_string());
        }
        let key = match (prefix.is_empty(), path.is_empty()) {
            (true, true) => "configuration".to_string(),
            (true, false) => path.join("."),
            (false, true) => prefix.to_string(),
            (false, false) => format!("{prefix}.{}", path.join(".")),
        };
        let text = if unknown {
            let field = path.last().map(String::as_str).unwrap_or_default();
            match closest(field, &expected_names(&message)) {
                Some(name) => format!("unknown field `{field}`: did you mean `{name}`?"),
                None => message.clone(),
            }
        } else if path.last().is_some_and(|k| is_secret_key(k))
            || message.starts_with("invalid type: string")
        {
            // A string where something else belongs may be a secret in the wrong place
            // (`token = "eyJ..."` for `auth_token`): the key says enough.
            hide_values(&message)
        } else {
            message.clone()
        };
        problems.push(format!("{key}: {text}"));
        // An unknown key, or a value of the wrong kind, is taken out and the rest tried again;
        // anything else (a missing key) ends the search.
        let removed = match remove_key(&mut table, &path) {
            Some(toml::Value::Table(_)) if !unknown => false,
            Some(_) => true,
            None => false,
        };
        if !removed {
            return None;
        }
    }
    None
}

/// Takes the value at `path` out of `table`.
fn remove_key(table: &mut toml::Table, path: &[String]) -> Option<toml::Value> {
    let (last, parents) = path.split_last()?;
    let mut t = table;
    for key in parents {
        t = t.get_mut(key)?.as_table_mut()?;
    }
    t.remove(last)
}

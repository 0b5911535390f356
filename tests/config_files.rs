//! Every configuration file shipped in config/ parses, with no unknown key: the gateway's
//! configurations, and the Zello Work admin files (admin*.toml).

use std::path::Path;
use zello_gateway::config::Config;
use zello_gateway::work::admin::{Admin, AdminFile, ENV_API_KEY, ENV_PASSWORD};

#[test]
fn every_shipped_config_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let (mut gateways, mut admins) = (0, 0);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.display().to_string();
        let is_admin = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("admin"));
        if is_admin {
            // Unknown keys are refused; the secret files it names are not on this machine,
            // so the environment stands in for them.
            let file = AdminFile::parse(&text, &name).unwrap_or_else(|e| panic!("{e}"));
            assert!(file.password_file.is_some() && file.api_key_file.is_some());
            let env = |var: &str| {
                [ENV_PASSWORD, ENV_API_KEY]
                    .contains(&var)
                    .then(|| "x".into())
            };
            Admin::parse(&text, &name, &dir, env).unwrap_or_else(|e| panic!("{e}"));
            admins += 1;
        } else {
            Config::parse(&text, &name, &dir).unwrap_or_else(|e| panic!("{e}"));
            gateways += 1;
        }
    }
    assert!(gateways >= 2, "found {gateways} gateway config files");
    assert_eq!(admins, 1, "found {admins} admin files");
}

/// A commented setting: `# key = value` or a commented table header `# [table]`.
fn commented(line: &str) -> Option<&str> {
    let rest = line.strip_prefix('#')?.trim_start();
    let is_header = rest.starts_with('[') && rest.trim_end().ends_with(']');
    let is_setting = rest.split_once('=').is_some_and(|(key, _)| {
        let key = key.trim();
        !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    });
    (is_header || is_setting).then_some(rest)
}

fn key_of(setting: &str) -> &str {
    setting.split_once('=').map_or("", |(k, _)| k.trim())
}

/// The example with the commented setting at `i` switched on: it replaces the active line of
/// the same key in its table; a commented table header comes on with the settings under it.
fn uncomment(lines: &[&str], i: usize) -> String {
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let setting = commented(lines[i]).unwrap();
    if setting.starts_with('[') {
        out[i] = setting.to_string();
        let mut j = i + 1;
        while j < lines.len()
            && let Some(s) = commented(lines[j])
            && !s.starts_with('[')
        {
            out[j] = s.to_string();
            j += 1;
        }
        return out.join("\n");
    }
    // The table the line is in: from the last active header before it to the next one.
    let start = (0..i)
        .rev()
        .find(|&j| lines[j].starts_with('['))
        .unwrap_or(0);
    let end = (i + 1..lines.len())
        .find(|&j| lines[j].starts_with('['))
        .unwrap_or(lines.len());
    for j in start..end {
        if !lines[j].starts_with('#') && key_of(lines[j]) == key_of(setting) {
            out[j] = String::new();
        }
    }
    out[i] = setting.to_string();
    out.join("\n")
}

#[test]
fn every_commented_setting_of_the_example_parses_when_switched_on() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let path = dir.join("gateway.example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut tried = Vec::new();
    for i in 0..lines.len() {
        let Some(setting) = commented(lines[i]) else {
            continue;
        };
        // Settings under a commented header come on with it.
        if !setting.starts_with('[')
            && (0..i)
                .rev()
                .map(|j| lines[j])
                .take_while(|l| commented(l).is_some())
                .any(|l| commented(l).unwrap().starts_with('['))
        {
            continue;
        }
        let variant = uncomment(&lines, i);
        Config::parse(
            &variant,
            &format!("{} line {}", path.display(), i + 1),
            &dir,
        )
        .unwrap_or_else(|e| panic!("line {}: {}\n{e}", i + 1, lines[i]));
        tried.push(key_of(setting).to_string());
    }
    // The options of each kind are all there.
    for key in [
        "auth_token_file",
        "allow_insecure",
        "ca_file",
        "offline_on_hardware_fault",
        "hardware_grace_s",
        "text_channel",
        "text_user",
        "level",
        "for",
        "audio",
        "ptt",
        "carrier",
        "codec",
        "courtesy_tone",
        "cw_id",
    ] {
        assert!(
            tried.iter().any(|k| k == key),
            "{key} is not offered commented; tried {tried:?}"
        );
    }
    assert!(tried.len() >= 25, "{tried:?}");
}

#[test]
fn a_misspelt_setting_is_refused_with_its_key() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let text = std::fs::read_to_string(dir.join("gateway.example.toml")).unwrap();
    for (from, to, key) in [
        (
            "# hardware_grace_s = 60",
            "hardware_grace = 60",
            "hardware_grace",
        ),
        ("# level = \"info\"", "levle = \"info\"", "levle"),
        ("tx_audio = { gain_db = 0", "tx_audio = { gain = 0", "gain"),
    ] {
        assert!(text.contains(from), "{from}");
        let e = Config::parse(&text.replacen(from, to, 1), "example", &dir).unwrap_err();
        assert!(
            e.to_string().contains(&format!("unknown field `{key}`")),
            "{e}"
        );
    }
}

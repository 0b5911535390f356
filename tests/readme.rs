//! The README as a front door: the two commands first, then the way to a real radio, every
//! command it shows one the program has, and no `cargo run` where an installed user types.

mod common;

use common::cli::{assert_success, bin, read_source, root};

fn readme() -> String {
    read_source("README.md")
}

/// The `zello-gateway SUBCOMMAND` words the README shows.
fn subcommands(text: &str) -> Vec<String> {
    let mut found: Vec<String> = text
        .match_indices("zello-gateway ")
        .filter_map(|(i, m)| {
            let rest = &text[i + m.len()..];
            let word: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                .collect();
            // Sentences say "zello-gateway is ..." or name the service; commands are words
            // the CLI knows or claims to.
            (word.len() > 1 && !word.starts_with('-')).then_some(word)
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

#[test]
fn every_command_the_readme_shows_exists() {
    let text = readme();
    let words = subcommands(&text);
    for must in [
        "run", "check", "devices", "ptt-off", "ptt-test", "sim", "bench", "demo",
    ] {
        assert!(words.iter().any(|w| w == must), "README never shows {must}");
    }
    // Words after "zello-gateway " that are prose, not commands.
    let prose = [
        "is",
        "and",
        "the",
        "as",
        "a",
        "to",
        "on",
        "user",
        "service",
        "unit",
        "package",
        "stays",
        "starts",
        "keeps",
        "uses",
        "logs",
        "runs",
        "itself",
        "needs",
        "binary",
        "gives",
        "in",
        "with",
        "for",
        "at",
        "system",
        "releases",
        "waits",
        "never",
        "says",
        "leaves",
        "sends",
        "was",
        "has",
        "can",
        "zello-gateway",
    ];
    for word in words.iter().filter(|w| !prose.contains(&w.as_str())) {
        let out = bin().args([word.as_str(), "--help"]).output().unwrap();
        let what = format!("README shows `zello-gateway {word}`, which the program does not know:");
        assert_success(&out, &what);
    }
}

#[test]
fn the_front_door_leads_from_the_two_commands_to_a_real_radio() {
    let text = readme();
    let two = text.find("scripts/demo.sh").expect("the demo command");
    let tests = text.find("scripts/test.sh").expect("the test command");
    let path = text
        .find("## From the demo to a real radio")
        .expect("a path to a real radio");
    assert!(two < path && tests < path);
    // The steps in the order an operator takes them.
    let mut at = path;
    for step in [
        "scripts/install.sh",
        "zello-gateway devices",
        "sudoedit /etc/zello-gateway/gateway.toml",
        "sudo -u zello-gateway zello-gateway check",
        "ptt-test",
        "systemctl start zello-gateway",
        "journalctl -u zello-gateway -f",
        "Troubleshooting",
    ] {
        let found = text[at..]
            .find(step)
            .unwrap_or_else(|| panic!("{step:?} missing after the previous step"));
        at += found;
    }
    // The long analysis lives in docs/, the README keeps a table.
    assert!(root().join("docs/performance.md").exists());
    assert!(text.contains("docs/performance.md"));
    let perf = &text[text.find("## Performance").unwrap()..];
    let perf = &perf[..perf[3..].find("\n## ").map_or(perf.len(), |i| i + 3)];
    assert!(
        perf.lines().count() < 40,
        "the performance section is short:\n{perf}"
    );
    // An installed user has no cargo project at hand.
    assert!(!text.contains("cargo run"), "README shows `cargo run`");
}

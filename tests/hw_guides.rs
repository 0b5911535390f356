//! The wiring guides in hw/: each has a pin table and at least one `[[radio]]` example, and
//! every example parses as the gateway's configuration, with no unknown key.

mod common;

use common::cli::{assert_contains_all, read_source};
use std::path::Path;
use zello_gateway::config::Config;

const ZELLO: &str = "[zello]\nserver = \"ws://127.0.0.1:8800/ws\"\nusername = \"gateway1\"\npassword = \"secret\"\n\n";

/// The ```toml blocks of a Markdown text.
fn toml_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```toml") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn every_guide_has_a_pin_table_and_a_config_that_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("hw");
    for name in [
        "pi-gpio.md",
        "cm108.md",
        "serial.md",
        "levels.md",
        "rigctld.md",
    ] {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            text.lines().any(|l| l.starts_with("|---")),
            "{name} has no table"
        );
        let radios: Vec<String> = toml_blocks(&text)
            .into_iter()
            .filter(|b| b.contains("[[radio]]"))
            .collect();
        assert!(!radios.is_empty(), "{name} has no [[radio]] example");
        for block in radios {
            Config::parse(&format!("{ZELLO}{block}"), name, &dir)
                .unwrap_or_else(|e| panic!("{name}:\n{block}\n{e}"));
        }
        // Links between the guides point at files that exist.
        for (i, _) in text.match_indices("](") {
            let target: String = text[i + 2..].chars().take_while(|&c| c != ')').collect();
            if !target.contains("://") {
                assert!(dir.join(&target).exists(), "{name} links to {target}");
            }
        }
    }
}

fn guide(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("hw").join(name)).unwrap()
}

/// The AIOC is a USB CDC-ACM device: it appears as /dev/ttyACMn, never /dev/ttyUSBn.
#[test]
fn the_aioc_example_names_an_acm_device() {
    let text = guide("serial.md");
    let aioc = &text[text.find("\nAIOC (").expect("an AIOC example")..];
    let block = &toml_blocks(aioc)[0];
    assert!(block.contains("/dev/ttyACM"), "{block}");
    assert!(!block.contains("ttyUSB"), "{block}");
    assert!(text.contains("/dev/serial/by-id/"));
}

/// The README sends people to levels.md for `gain_db` and `agc`: the guide explains them and
/// does not say the gateway leaves levels alone.
#[test]
fn the_levels_guide_explains_the_gateways_own_gain() {
    let text = guide("levels.md");
    assert!(!text.contains("does not change levels"), "{text}");
    assert_contains_all(
        &text,
        &[
            "rx_audio.gain_db",
            "rx_audio.agc",
            "tx_audio.gain_db",
            "limiter",
        ],
    );
    assert!(read_source("README.md").contains("hw/levels.md"));
}

/// Debian ships rigctld without a unit: the guide gives one, the dummy rig's -P RIG, and the
/// lines that order the gateway after it.
#[test]
fn the_rigctld_guide_gives_a_unit_the_dummy_rigs_ptt_type_and_the_ordering() {
    let text = guide("rigctld.md");
    assert_contains_all(
        &text,
        &[
            "/etc/systemd/system/rigctld.service",
            "ExecStart=/usr/bin/rigctld",
            "Wants=rigctld.service",
            "After=rigctld.service",
            "rigctld -m 1 -P RIG",
            "sudo systemctl edit zello-gateway",
        ],
    );
    let readme = read_source("README.md");
    assert!(readme.contains("hw/rigctld.md"), "README links the guide");
}

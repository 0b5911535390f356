//! Every configuration file shipped in config/ parses, with no unknown key.

use std::path::Path;
use zello_gateway::config::Config;

#[test]
fn every_shipped_config_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        Config::parse(&text, &path.display().to_string(), &dir).unwrap_or_else(|e| panic!("{e}"));
        n += 1;
    }
    assert!(n >= 2, "found {n} config files");
}

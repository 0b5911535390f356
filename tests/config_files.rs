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

//! `provision` against the emulator: the plan, a dry run, a second run that changes nothing,
//! roles, limits, and a failure part-way.

mod common;

use common::work;
use std::time::Duration;
use zello_gateway::config::Config;
use zello_gateway::work::provision::{Desired, ProvisionError, Step, provision};
use zello_gateway::work::sim::{WorkFault, WorkSimHandle};
use zello_gateway::work::types::{Role, RoleSettings};
use zello_gateway::work::wire::password_hash;

/// What to provision for a gateway configuration for `username` with radios on Dispatch
/// (twice) and Gate, giving it `role` in each channel.
fn desired(username: &str, role: Option<&str>) -> Desired {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            "[zello]\nserver = \"wss://zellowork.io/ws/acme\"\nusername = \"{username}\"\npassword = \"gw-pass\"\n\n\
             [[radio]]\nname = \"vhf\"\nchannel = \"Dispatch\"\naudio = {{ backend = \"file\" }}\n\n\
             [[radio]]\nname = \"uhf\"\nchannel = \"Gate\"\naudio = {{ backend = \"file\" }}\n\n\
             [[radio]]\nname = \"spare\"\nchannel = \"Dispatch\"\naudio = {{ backend = \"file\" }}\n"
        ),
    )
    .unwrap();
    Desired::from_config(&Config::load(&path).unwrap(), role.map(Into::into), false).unwrap()
}

fn wrote_nothing(sim: &WorkSimHandle) {
    let changed: Vec<_> = sim.calls().into_iter().filter(|c| c.changed()).collect();
    assert!(changed.is_empty(), "{changed:?}");
}

async fn run(
    sim: &WorkSimHandle,
    desired: &Desired,
    dry_run: bool,
) -> (Result<Vec<Step>, ProvisionError>, Vec<String>) {
    let client = work::admin(sim).await;
    let mut lines = Vec::new();
    let result = provision(&client, desired, dry_run, |l| lines.push(l))
        .await
        .map(|o| o.steps);
    (result, lines)
}

#[tokio::test]
async fn provisioning_twice_changes_nothing_the_second_time() {
    let sim = work::sim(0).await;
    let desired = desired("gw1", None);
    assert_eq!(desired.channels, ["Dispatch", "Gate"]);
    let before = sim.data();

    // A dry run prints the plan and changes nothing.
    sim.clear_calls();
    let (steps, lines) = run(&sim, &desired, true).await;
    let steps = steps.unwrap();
    assert_eq!(
        steps,
        [
            Step::CreateGateway { name: "gw1".into() },
            Step::CreateChannel {
                name: "Gate".into()
            },
            Step::AddToChannels {
                user: "gw1".into(),
                channels: vec!["Dispatch".into(), "Gate".into()]
            },
        ]
    );
    assert!(lines[0].starts_with("Plan (dry run) for gateway \"gw1\" on http://127.0.0.1:"));
    assert_eq!(
        lines[1],
        "  1. create gateway account \"gw1\" with the configured password"
    );
    assert_eq!(lines.last().unwrap(), "dry run: nothing was changed");
    wrote_nothing(&sim);
    assert_eq!(sim.data(), before);

    // The first run does the plan.
    let (steps, lines) = run(&sim, &desired, false).await;
    assert_eq!(steps.unwrap().len(), 3);
    assert_eq!(lines.last().unwrap(), "\"gw1\" is set up");
    let after = sim.data();
    let gw = &after.users["gw1"];
    assert!(gw.gateway && !gw.admin);
    assert_eq!(gw.password_md5, password_hash("gw-pass"));
    assert_eq!(gw.channels.iter().collect::<Vec<_>>(), ["Dispatch", "Gate"]);
    assert!(after.channels["Gate"].shared);

    // The second finds nothing to do, writes nothing, and the network is as it was.
    sim.clear_calls();
    let (steps, lines) = run(&sim, &desired, false).await;
    assert_eq!(steps.unwrap(), []);
    assert_eq!(
        lines,
        [
            "nothing to do: \"gw1\" is a gateway account in every configured channel (\"Dispatch\", \"Gate\")"
        ]
    );
    wrote_nothing(&sim);
    assert_eq!(sim.data(), after);

    // --reset-password sets the password of the existing account, and only that.
    sim.with_data(|d| d.users.get_mut("gw1").unwrap().password_md5 = password_hash("old"));
    let mut reset = desired.clone();
    reset.reset_password = true;
    let (steps, _) = run(&sim, &reset, false).await;
    assert_eq!(steps.unwrap(), [Step::SetPassword { name: "gw1".into() }]);
    assert_eq!(sim.data(), after);
    sim.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn roles_are_given_when_they_exist_and_refused_before_any_change_when_not() {
    let sim = work::sim(0).await;
    let desired = desired("gw1", Some("drivers"));
    // Gate does not exist yet, so it has no role "drivers".
    sim.clear_calls();
    let (e, _) = run(&sim, &desired, false).await;
    let e = e.unwrap_err();
    assert!(matches!(e, ProvisionError::MissingRole { .. }), "{e}");
    assert!(e.to_string().contains("\"Gate\""), "{e}");
    wrote_nothing(&sim);

    let admin = work::admin(&sim).await;
    admin
        .add_channel(&zello_gateway::work::types::NewChannel {
            name: "Gate".into(),
            shared: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    let drivers = Role {
        name: "drivers".into(),
        settings: RoleSettings {
            to: vec!["dispatchers".into()],
            ..RoleSettings::default()
        },
    };
    admin.save_role("Gate", &drivers).await.unwrap();
    let (steps, _) = run(&sim, &desired, false).await;
    assert_eq!(steps.unwrap().len(), 4); // create, add, two roles
    let after = sim.data();
    for c in ["Dispatch", "Gate"] {
        assert_eq!(after.channels[c].assignments["gw1"], "drivers", "{c}");
    }
    // Again: only the role assignments are sent (the API cannot tell them), and they
    // change nothing.
    let (steps, _) = run(&sim, &desired, false).await;
    assert!(
        steps
            .unwrap()
            .iter()
            .all(|s| matches!(s, Step::AssignRole { .. }))
    );
    assert_eq!(sim.data(), after);
    sim.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn an_existing_user_becomes_a_gateway_unless_the_plan_allows_no_more() {
    let sim = work::sim(0).await;
    let desired = desired("driver1", None);
    sim.with_data(|d| d.limits.max_gateways = Some(0));
    sim.clear_calls();
    let (e, _) = run(&sim, &desired, false).await;
    let text = e.unwrap_err().to_string();
    assert!(text.contains("limits reached"), "{text}");
    assert!(
        text.contains("(at most 0)") && text.contains("code 407"),
        "{text}"
    );
    wrote_nothing(&sim);

    sim.with_data(|d| d.limits.max_gateways = Some(1));
    let old_password = sim.data().users["driver1"].password_md5.clone();
    let (steps, _) = run(&sim, &desired, false).await;
    assert_eq!(
        steps.unwrap()[..2],
        [
            Step::MakeGateway {
                name: "driver1".into()
            },
            Step::CreateChannel {
                name: "Gate".into()
            }
        ]
    );
    let u = &sim.data().users["driver1"];
    assert!(u.gateway);
    // Its password is kept (--reset-password would set it).
    assert_eq!(u.password_md5, old_password);
    sim.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn a_failure_part_way_says_what_was_done_and_a_new_run_finishes() {
    let sim = work::sim(0).await;
    let desired = desired("gw1", None);
    sim.fail("user/addtochannels", WorkFault::Code(501), 1);
    let (e, lines) = run(&sim, &desired, false).await;
    let text = e.unwrap_err().to_string();
    assert!(
        text.starts_with("add \"gw1\" to channels \"Dispatch\", \"Gate\" failed after 2 of 3 step(s) were done: user/addtochannels: the server's database failed (code 501"),
        "{text}"
    );
    assert!(text.contains("Running provision again is safe"), "{text}");
    assert_eq!(lines.iter().filter(|l| l.starts_with("done ")).count(), 2);
    let (steps, _) = run(&sim, &desired, false).await;
    assert_eq!(
        steps.unwrap(),
        [Step::AddToChannels {
            user: "gw1".into(),
            channels: vec!["Dispatch".into(), "Gate".into()]
        }]
    );
    let (steps, _) = run(&sim, &desired, false).await;
    assert_eq!(steps.unwrap(), []);
    sim.shutdown(Duration::from_secs(2)).await;
}

#[test]
fn a_configuration_without_an_account_cannot_be_provisioned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.toml");
    std::fs::write(
        &path,
        "[zello]\nserver = \"ws://127.0.0.1:1/ws\"\n[[radio]]\nname = \"r\"\nchannel = \"c\"\naudio = { backend = \"file\" }\n",
    )
    .unwrap();
    let e = Desired::from_config(&Config::load(&path).unwrap(), None, false).unwrap_err();
    assert!(e.to_string().contains("has no username"), "{e}");
}

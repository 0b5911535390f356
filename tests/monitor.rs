//! `zello-gateway monitor` against a running gateway's status API: the live view as a pipe
//! shows it, the level aid, and the clear exits when the API is off, unreachable or
//! refuses the token.

mod common;

use common::api::{READ_TOKEN, Rig, quick, tokens};
use common::cli::{Lines, Scratch, bin, text, write_config};
use std::process::Stdio;
use std::time::Duration;

fn monitor(args: &[&str]) -> std::process::Child {
    bin()
        .arg("monitor")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_follows_a_radio_through_a_message() {
    let rig = Rig::start(&tokens(true, false), quick(), 3.0).await;
    let scratch = Scratch::new("monitor-live");
    let token = scratch.join("token");
    std::fs::write(&token, format!("{READ_TOKEN}\n")).unwrap();
    let url = format!("http://{}", rig.api);
    // A message before the monitor starts: its last-heard list comes from the history.
    let pcm = zello_gateway::audio::speech::speech_like(zello_gateway::audio::CODEC_RATE, 0.4, 5);
    common::emulator::talk_pcm(&rig.app, &pcm[..5 * 960]).await;
    let mut watch = rig.hub.watch();
    tokio::time::timeout(Duration::from_secs(10), async {
        while watch
            .borrow_and_update()
            .radio("vhf1")
            .is_none_or(|r| r.history().is_empty() || r.ptt)
        {
            watch.changed().await.unwrap();
        }
    })
    .await
    .expect("the message played");
    let mut child = monitor(&["--url", &url, "--token-file", token.to_str().unwrap()]);
    let mut out = Lines::of_stdout(&mut child);
    let before = tokio::task::block_in_place(|| out.wait_for("heard dispatcher → vhf1"));
    assert!(before.contains("completed"), "{before}");
    out.drain();
    assert!(
        out.seen.iter().any(|l| l.starts_with("vhf1         idle")),
        "{:#?}",
        out.seen
    );
    assert!(
        out.seen.iter().all(|l| !l.starts_with('*')),
        "{:#?}",
        out.seen
    );
    rig.carrier.set(true);
    tokio::task::block_in_place(|| out.wait_for("vhf1         receiving     radio"));
    tokio::time::sleep(Duration::from_millis(900)).await;
    rig.carrier.set(false);
    let heard = tokio::task::block_in_place(|| out.wait_for("heard vhf1 → Dispatch"));
    assert!(heard.contains("completed"), "{heard}");
    child.kill().unwrap();
    child.wait().unwrap();
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_says_when_it_cannot_watch() {
    let rig = Rig::start(&tokens(true, false), quick(), 1.0).await;
    let scratch = Scratch::new("monitor-refused");
    let url = format!("http://{}", rig.api);
    let run = |args: &[&str]| {
        let out = bin().arg("monitor").args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        text(&out).1
    };
    // A wrong token.
    let wrong = scratch.join("wrong");
    std::fs::write(&wrong, "not-the-token-at-all-000").unwrap();
    let err = tokio::task::block_in_place(|| {
        run(&["--url", &url, "--token-file", wrong.to_str().unwrap()])
    });
    assert!(err.contains("refused the token (401)"), "{err}");
    assert!(!err.contains("not-the-token"), "{err}");
    // A token file that cannot be read.
    let err =
        tokio::task::block_in_place(|| run(&["--url", &url, "--token-file", "/nonexistent/token"]));
    assert!(
        err.contains("cannot read the token file /nonexistent/token"),
        "{err}"
    );
    // Nothing listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let err = tokio::task::block_in_place(|| run(&["--url", &format!("http://127.0.0.1:{port}")]));
    assert!(err.contains("cannot reach the status API"), "{err}");
    // The API turned off in the configuration.
    let config = write_config(
        &scratch,
        "[zello]\nserver = \"ws://127.0.0.1:1/ws\"\nusername = \"gw\"\npassword = \"pw\"\n\n[api]\nenabled = false\n\n[[radio]]\nname = \"vhf1\"\nchannel = \"A\"\naudio = { backend = \"file\" }\n",
    );
    let err = tokio::task::block_in_place(|| run(&["--config", config.to_str().unwrap()]));
    assert!(err.contains("the status API is off"), "{err}");
    // A bad URL.
    let err = tokio::task::block_in_place(|| run(&["--url", "https://example.org/x"]));
    assert!(err.contains("write it like http://127.0.0.1:8780"), "{err}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_level_aid_shows_the_receive_level_with_the_squelch_closed() {
    let rig = Rig::start(&tokens(false, false), quick(), 6.0).await;
    let url = format!("http://{}", rig.api);
    let mut child = monitor(&["--url", &url, "--levels", "vhf1"]);
    let mut out = Lines::of_stdout(&mut child);
    let line = tokio::task::block_in_place(|| out.wait_for("squelch closed"));
    assert!(line.contains("dBFS rms"), "{line}");
    // The engine measures while the monitor watches.
    assert_eq!(rig.meters.meter("vhf1").wanted_by(), 1);
    child.kill().unwrap();
    child.wait().unwrap();
    // A radio the gateway does not have.
    let out = tokio::task::block_in_place(|| {
        bin()
            .args(["monitor", "--url", &url, "--levels", "nope"])
            .output()
            .unwrap()
    });
    assert!(!out.status.success());
    let err = text(&out).1;
    assert!(err.contains("no radio \"nope\""), "{err}");
    assert!(err.contains("vhf1"), "{err}");
    rig.stop().await;
}

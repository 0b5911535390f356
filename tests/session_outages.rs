//! The session on a link that drops every half minute, against the emulator over loopback
//! under tokio's paused clock: short outages must cost no radio message, while a server
//! that refuses is still backed off.

mod common;

use bytes::Bytes;
use common::emulator::{with_gateway, with_gateway_and};
use common::{Captured, Client};
use std::time::Duration;
use tokio::time::Instant;
use zello_gateway::zello::protocol::ErrorCode;
use zello_gateway::zello::session::SessionEvent;

const S: Duration = Duration::from_secs(1);

/// Sends one message of `packets` 60 ms packets, paced like a radio.
async fn talk(gw: &Client, packets: u8) {
    let msg = gw.start_message().await;
    for i in 0..packets {
        msg.send(Bytes::from(vec![i, 0xfc, 0x00, i]));
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    msg.finish().await;
}

#[tokio::test(start_paused = true)]
#[serial_test::serial] // log captures: no test of this file runs beside another
async fn a_link_dropping_every_30_s_reconnects_at_once_and_loses_no_message() {
    let log = Captured::default();
    let _log = log.start();
    let (sim, mut gw, app) = with_gateway_and("alice").await;
    // The listener counts the messages that arrive from the gateway.
    let (done, mut done_rx) = tokio::sync::oneshot::channel::<()>();
    let heard = tokio::spawn(async move {
        let mut app = app;
        let mut n = 0;
        loop {
            tokio::select! {
                _ = &mut done_rx => break,
                e = app.events.recv() => match e {
                    Some(SessionEvent::IncomingStart { from, .. }) if from == "gateway1" => n += 1,
                    Some(_) => {}
                    None => break,
                },
            }
        }
        app.shutdown().await;
        n
    });
    let mut sent = 0;
    let mut waits = Vec::new();
    // Five minutes: each session logs on, carries a message, and drops after 30 s.
    for round in 0..10 {
        let session_start = Instant::now();
        tokio::time::sleep(10 * S).await;
        talk(&gw, 30).await;
        sent += 1;
        tokio::time::sleep_until(session_start + 30 * S).await;
        assert!(
            sim.faults().drop_connection("gateway1"),
            "round {round}: not connected when the link dropped"
        );
        let dropped = Instant::now();
        gw.expect(5 * S, |e| matches!(e, SessionEvent::Disconnected { .. }))
            .await;
        gw.expect(90 * S, |e| {
            matches!(e, SessionEvent::Channel { ready: true, .. })
        })
        .await;
        waits.push(dropped.elapsed());
    }
    assert!(
        waits.iter().all(|w| *w <= 2 * S),
        "every reconnect within the minimum backoff: {waits:?}"
    );
    tokio::time::sleep(5 * S).await;
    gw.shutdown().await;
    done.send(()).unwrap();
    let heard = heard.await.unwrap();
    assert_eq!(heard, sent, "messages that reached the channel");
    // Each drop is one line saying when the session tries again, in readable seconds.
    let retries: Vec<String> = log
        .lines()
        .into_iter()
        .filter(|l| l.contains("retry_in_s="))
        .collect();
    assert_eq!(retries.len(), 10, "{retries:#?}");
    for line in &retries {
        let value = line.split("retry_in_s=").nth(1).unwrap();
        let value = value.split_whitespace().next().unwrap();
        assert!(
            value
                .split('.')
                .nth(1)
                .is_none_or(|decimals| decimals.len() <= 1),
            "{line}"
        );
    }
}

#[tokio::test(start_paused = true)]
#[serial_test::serial] // log captures: no test of this file runs beside another
async fn a_server_that_refuses_the_logon_is_still_backed_off_exponentially() {
    let (sim, mut gw) = with_gateway().await;
    // The session worked; then the server refuses every logon.
    tokio::time::sleep(20 * S).await;
    sim.faults()
        .refuse_logon_always(ErrorCode::InternalServerError);
    assert!(sim.faults().drop_connection("gateway1"));
    let start = Instant::now();
    let mut at = Vec::new();
    while start.elapsed() < 120 * S {
        let left = (start + 120 * S).saturating_duration_since(Instant::now());
        let seen = tokio::time::timeout(left, async {
            loop {
                match gw.events.recv().await {
                    Some(SessionEvent::LogonRefused { .. }) => return,
                    Some(_) => {}
                    None => std::future::pending::<()>().await,
                }
            }
        })
        .await;
        if seen.is_err() {
            break;
        }
        at.push(start.elapsed());
    }
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        (4..=9).contains(&at.len()),
        "{} refusals in two minutes: {at:?}",
        at.len()
    );
    assert!(
        gaps.last().is_some_and(|g| *g >= 8 * S),
        "the waits grow: {gaps:?}"
    );
    sim.faults().accept_logon();
    gw.expect(120 * S, |e| matches!(e, SessionEvent::LoggedOn { .. }))
        .await;
    gw.shutdown().await;
}

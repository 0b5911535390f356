//! `history` against the emulator: listing with filters over several channels, and
//! downloads through the server's conversion.

mod common;

use common::work;
use std::time::Duration;
use zello_gateway::work::history::{Filters, download_all, list, row};
use zello_gateway::work::types::MediaType;

fn filters(channels: &[&str]) -> Filters {
    Filters {
        channels: channels.iter().map(|c| c.to_string()).collect(),
        max: 20,
        ..Filters::default()
    }
}

#[tokio::test]
async fn lists_the_channels_messages_with_filters() {
    let sim = work::sim(0).await;
    let c = work::admin(&sim).await;
    let ids = |l: &zello_gateway::work::history::Listing| {
        l.messages.iter().map(|m| m.id).collect::<Vec<_>>()
    };
    // Dispatch and Yard; direct messages (4, 6) are not on a channel.
    let all = list(&c, &filters(&["Dispatch", "Yard"])).await.unwrap();
    assert_eq!(ids(&all), [5, 3, 2, 1]);
    assert_eq!(all.total, 4);
    assert!(row(&all.messages[0]).contains("Yard          driver2         voice 3.0 s"));
    let mut f = filters(&["Dispatch", "Yard"]);
    f.max = 2;
    let newest = list(&c, &f).await.unwrap();
    assert_eq!((ids(&newest), newest.total), (vec![5, 3], 4));
    let mut f = filters(&["Dispatch", "Yard"]);
    f.sender = Some("driver2".into());
    f.media_type = Some(MediaType::Voice);
    assert_eq!(ids(&list(&c, &f).await.unwrap()), [5]);
    let mut f = filters(&["Dispatch"]);
    f.since = Some(work::now() - 3300);
    f.until = Some(work::now() - 2000);
    assert_eq!(ids(&list(&c, &f).await.unwrap()), [3, 2]);
    sim.shutdown(Duration::from_secs(2)).await;
}

/// Downloads `messages` into `dir`: how many were saved, and the progress lines.
async fn download(
    c: &zello_gateway::work::WorkClient,
    messages: &[zello_gateway::work::types::Message],
    dir: &std::path::Path,
    progress_bar: bool,
) -> (usize, Vec<String>) {
    let mut lines = Vec::new();
    let n = download_all(c, messages, dir, progress_bar, |l| lines.push(l))
        .await
        .unwrap();
    (n, lines)
}

#[tokio::test]
async fn downloads_through_the_conversion_and_keeps_what_is_there() {
    let sim = work::sim(2).await;
    let c = work::admin(&sim).await;
    let listing = list(&c, &filters(&["Dispatch"])).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (n, lines) = download(&c, &listing.messages, dir.path(), false).await;
    assert_eq!(n, 3);
    assert!(
        lines[0].starts_with("saved ") && lines[0].ends_with(" bytes)"),
        "{lines:?}"
    );
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["1-dispatcher1.wav", "2-driver1.wav", "3-driver2.png"]
    );
    let png = std::fs::read(dir.path().join("3-driver2.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    // Again, with the progress bar: nothing is written twice.
    let (n, lines) = download(&c, &listing.messages, dir.path(), true).await;
    assert_eq!(n, 0);
    assert!(
        lines.iter().all(|l| l.contains("already there")),
        "{lines:?}"
    );
    sim.shutdown(Duration::from_secs(2)).await;
}

//! A dashboard as the bench plays it: one WebSocket client of a gateway's status API,
//! subscribed to every room (`gateway`, `radio:*`, `channel:*`, `levels:*`), reading every
//! message. It runs on a thread and runtime of its own so its CPU time can be told apart
//! from the gateway's (a dashboard runs in a browser, not in the gateway), and it counts
//! what it got, so a run that measured nothing shows.

use super::BenchError;
use super::rig::{TimedThread, answer_cpu, start_runtime_thread};
use futures_util::{SinkExt as _, StreamExt as _};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// What the dashboard subscribes to: every room there is.
const SUBSCRIBE: &str =
    r#"{"op":"SUBSCRIBE","rooms":["gateway","radio:*","channel:*","levels:*"],"id":1}"#;

/// The messages the gateway sends that are not events.
const NOT_EVENTS: [&str; 7] = [
    "READY",
    "SUBSCRIBED",
    "UNSUBSCRIBED",
    "SNAPSHOT",
    "PONG",
    "RESYNC",
    "ERROR",
];

/// What the dashboard received so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Received {
    /// Events of the gateway, radio and channel rooms (`MESSAGE_START`, `CARRIER_UP`, ...).
    pub(crate) events: u64,
    /// `LEVEL`s of the levels rooms.
    pub(crate) levels: u64,
    /// `MESSAGE_START`s among the events.
    pub(crate) message_starts: u64,
    /// `RESYNC`s: the dashboard fell behind and missed events.
    pub(crate) resyncs: u64,
    /// `ERROR`s: the gateway refused something the dashboard sent.
    pub(crate) errors: u64,
}

impl Received {
    /// The sum of two dashboards' counts.
    pub(crate) fn plus(&self, other: &Received) -> Received {
        Received {
            events: self.events + other.events,
            levels: self.levels + other.levels,
            message_starts: self.message_starts + other.message_starts,
            resyncs: self.resyncs + other.resyncs,
            errors: self.errors + other.errors,
        }
    }
}

#[derive(Default)]
struct Counts {
    events: AtomicU64,
    levels: AtomicU64,
    message_starts: AtomicU64,
    resyncs: AtomicU64,
    errors: AtomicU64,
}

impl Counts {
    fn note(&self, text: &str) {
        #[derive(serde::Deserialize)]
        struct Head<'a> {
            #[serde(rename = "type", borrow)]
            kind: std::borrow::Cow<'a, str>,
        }
        let Ok(head) = serde_json::from_str::<Head>(text) else {
            self.errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let counter = match head.kind.as_ref() {
            "LEVEL" => &self.levels,
            "RESYNC" => &self.resyncs,
            "ERROR" => &self.errors,
            kind if NOT_EVENTS.contains(&kind) => return,
            kind => {
                if kind == "MESSAGE_START" {
                    self.message_starts.fetch_add(1, Ordering::Relaxed);
                }
                &self.events
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self) -> Received {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Received {
            events: get(&self.events),
            levels: get(&self.levels),
            message_starts: get(&self.message_starts),
            resyncs: get(&self.resyncs),
            errors: get(&self.errors),
        }
    }
}

/// One dashboard connected to a gateway's API, reading until the API closes or the
/// dashboard is dropped.
pub(crate) struct Dashboard {
    counts: Arc<Counts>,
    /// Hears when the API closed the socket.
    closed: std::sync::mpsc::Receiver<()>,
    thread: TimedThread,
}

impl Dashboard {
    /// Connects to the API at `addr` on a thread named `thread`, and returns once its
    /// subscription is taken (`SUBSCRIBED`).
    pub(crate) fn start(addr: SocketAddr, thread: &str) -> Result<Dashboard, BenchError> {
        let counts = Arc::new(Counts::default());
        let noted = counts.clone();
        let (closed_tx, closed) = std::sync::mpsc::channel();
        let (commands, mut command_rx) = TimedThread::channel();
        let (thread, ()) = start_runtime_thread(
            thread.into(),
            format!("a dashboard of the API at {addr}"),
            || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            },
            move |rt, ready_tx| {
                rt.block_on(async move {
                    let url = format!("ws://{addr}/api/v1/ws");
                    let mut ws = match tokio_tungstenite::connect_async(url.as_str()).await {
                        Ok((ws, _)) => ws,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    if let Err(e) = ws.send(Message::text(SUBSCRIBE)).await {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                    let mut ready = Some(ready_tx);
                    loop {
                        tokio::select! {
                            message = ws.next() => match message {
                                Some(Ok(Message::Text(text))) => {
                                    if text.contains(r#""type":"SUBSCRIBED""#)
                                        && let Some(r) = ready.take()
                                    {
                                        let _ = r.send(Ok(()));
                                    }
                                    noted.note(&text);
                                }
                                Some(Ok(_)) => {}
                                Some(Err(_)) | None => break,
                            },
                            command = command_rx.recv() => match command {
                                Some(reply) => answer_cpu(reply),
                                None => return,
                            },
                        }
                    }
                    if let Some(r) = ready.take() {
                        let _ = r.send(Err("the API closed the socket before SUBSCRIBED".into()));
                    }
                    let _ = closed_tx.send(());
                    // The API has closed: answer what is asked until dropped.
                    while let Some(reply) = command_rx.recv().await {
                        answer_cpu(reply);
                    }
                });
            },
        )?;
        Ok(Dashboard {
            counts,
            closed,
            thread: TimedThread::new("dashboard", commands, thread),
        })
    }

    /// What it received so far.
    pub(crate) fn received(&self) -> Received {
        self.counts.get()
    }

    /// What it received once the API has closed the socket (the gateway stopped), or
    /// `limit` has passed.
    pub(crate) fn received_by_close(&self, limit: Duration) -> Received {
        let _ = self.closed.recv_timeout(limit);
        self.received()
    }

    /// The CPU time the dashboard's thread has used so far.
    pub(crate) fn cpu(&self) -> Result<Duration, BenchError> {
        self.thread.cpu()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_counted_by_kind() {
        let counts = Counts::default();
        for text in [
            r#"{"type":"READY","data":{}}"#,
            r#"{"type":"SUBSCRIBED","room":"gateway","id":1}"#,
            r#"{"type":"SNAPSHOT","room":"radio:a","seq":3,"data":{}}"#,
            r#"{"type":"MESSAGE_START","room":"radio:a","seq":4,"ts":"","data":{}}"#,
            r#"{"type":"CARRIER_UP","room":"radio:a","seq":5,"ts":"","data":{}}"#,
            r#"{"type":"LEVEL","room":"levels:a","seq":5,"ts":"","data":{}}"#,
            r#"{"type":"RESYNC","data":{"missed":3}}"#,
            r#"{"type":"ERROR","kind":"unknown_room"}"#,
            "not json",
        ] {
            counts.note(text);
        }
        assert_eq!(
            counts.get(),
            Received {
                events: 2,
                levels: 1,
                message_starts: 1,
                resyncs: 1,
                errors: 2,
            }
        );
    }
}

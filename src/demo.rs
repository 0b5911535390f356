//! `zello-gateway demo`: the embedded default. A local Zello-compatible server, a gateway
//! bridged to a simulated radio, and a simulated dispatcher (an app user on the same channel)
//! talk to each other over real loopback sockets. No account, no hardware.
//!
//! The radio hears a spoken clip; VOX raises the carrier; the gateway sends it to the channel;
//! the dispatcher hears it and answers; the gateway keys the radio and plays the answer.

use crate::audio::file::{FileInput, FileOutput};
use crate::audio::level::{peak_dbfs, rms_dbfs};
use crate::audio::opus::{EncoderSettings, OpusDecoder, OpusEncoder, max_packet_samples};
use crate::audio::{AudioError, CODEC_RATE, speech, wav};
use crate::gateway::{self, RadioParts};
use crate::radio::sim::SimPtt;
use crate::radio::vox::{Vox, VoxSettings};
use crate::secret::Secret;
use crate::state::{GatewayEvent, StateHub};
use crate::zello::protocol::CodecHeader;
use crate::zello::session::{self, SessionConfig, SessionEvent};
use crate::zello::sim::{SimConfig, SimServer};
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Options of `zello-gateway demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Folder for the WAV files each side received.
    #[arg(long, default_value = "demo-out")]
    pub out: PathBuf,
    /// A WAV file the radio receives (any rate, mono or stereo); a generated speech-like
    /// clip when not given.
    #[arg(long)]
    pub clip: Option<PathBuf>,
    /// Keep the server, the gateway and the dispatcher running after the exchange (the
    /// dispatcher talks again every 20 s), to watch the dashboard; Ctrl-C stops.
    #[arg(long)]
    pub linger: bool,
}

/// Where the demo's dashboard listens when the port is free (else a port the system picks).
pub const DASHBOARD_LISTEN: &str = "127.0.0.1:8780";

/// How often the dispatcher talks while the demo lingers.
const LINGER_EVERY: Duration = Duration::from_secs(20);

/// Why the demo did not complete.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot start the local server: {0}")]
    Server(String),
    #[error("cannot write to {path}: {source}")]
    Output {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Audio(#[from] AudioError),
    #[error(transparent)]
    Session(#[from] session::SessionError),
    #[error(transparent)]
    Gateway(#[from] gateway::GatewayError),
    #[error("the demo did not complete within {0:?}: {1}")]
    Timeout(Duration, String),
}

const CHANNEL: &str = "Demo";
const DEADLINE: Duration = Duration::from_secs(40);

struct Timeline {
    start: Instant,
}

impl Timeline {
    fn say(&self, who: &str, what: impl AsRef<str>) {
        let t = self.start.elapsed().as_secs_f64();
        println!("{t:7.3}s  {who:<10} {}", what.as_ref());
    }
}

fn describe(ev: &GatewayEvent) -> Option<String> {
    Some(match ev {
        GatewayEvent::LoggedOn => "logged on".into(),
        GatewayEvent::LogonRefused(e) => format!("logon refused: {e}"),
        GatewayEvent::Disconnected { detail, .. } => format!("disconnected: {detail}"),
        GatewayEvent::ChannelStatus {
            channel,
            online,
            users_online,
            ..
        } => format!(
            "channel {channel:?} {} ({users_online} users online)",
            if *online { "online" } else { "offline" }
        ),
        GatewayEvent::CarrierUp { radio } => format!("[{radio}] carrier up (VOX)"),
        GatewayEvent::CarrierDown { radio } => format!("[{radio}] carrier down"),
        GatewayEvent::Kerchunk { radio } => format!("[{radio}] carrier too short, ignored"),
        GatewayEvent::StreamStarted { radio, stream_id } => {
            format!("[{radio}] stream id {stream_id} assigned, sending")
        }
        GatewayEvent::Sent {
            radio,
            stream_id,
            packets,
            duration_ms,
            peak_dbfs,
            rms_dbfs,
            outcome,
            ..
        } => format!(
            "[{radio}] message to channel: stream {} {outcome:?}, {packets} packets, {:.2} s, peak {peak_dbfs:.1} dBFS, rms {rms_dbfs:.1} dBFS",
            stream_id.map(|s| s.to_string()).unwrap_or("-".into()),
            *duration_ms as f64 / 1000.0
        ),
        GatewayEvent::Incoming {
            radio,
            stream_id,
            from,
            ..
        } => format!("[{radio}] incoming stream {stream_id} from {from}"),
        GatewayEvent::PttOn { radio } => format!("[{radio}] PTT on"),
        GatewayEvent::Playing { radio, stream_id } => {
            format!("[{radio}] playing stream {stream_id} into the transmitter")
        }
        GatewayEvent::Played {
            radio,
            stream_id,
            outcome,
            packets,
            concealed,
            ..
        } => {
            format!(
                "[{radio}] stream {stream_id} played ({outcome:?}): {packets} packets, {concealed} concealed"
            )
        }
        GatewayEvent::PttOff { radio } => format!("[{radio}] PTT off"),
        GatewayEvent::TimeOut { radio, stream_id } => {
            format!("[{radio}] time-out timer cut stream {stream_id}")
        }
        GatewayEvent::Text { from, text, .. } => format!("text from {from}: {text}"),
        GatewayEvent::Location {
            from,
            latitude,
            longitude,
            ..
        } => format!("location from {from}: {latitude:.5}, {longitude:.5}"),
        GatewayEvent::TxInhibited { radio, reason } => format!(
            "[{radio}] transmitting inhibited{}",
            reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
        GatewayEvent::TxAllowed { radio } => format!("[{radio}] transmitting allowed"),
        GatewayEvent::CarrierStuck { radio } => format!("[{radio}] carrier stuck, ignored"),
        GatewayEvent::CarrierFlapping { radio } => {
            format!("[{radio}] carrier flapping, messages suppressed")
        }
        GatewayEvent::DeviceLost { radio, error } => {
            format!("[{radio}] audio device lost: {error}")
        }
        GatewayEvent::DeviceBack { radio } => format!("[{radio}] audio device back"),
        GatewayEvent::HardwareWaiting { radio, error } => match error {
            Some(e) => format!("[{radio}] waiting for its hardware: {e}"),
            None => format!("[{radio}] hardware found"),
        },
        GatewayEvent::Started => return None,
        GatewayEvent::ConnectFailed { error, .. } => format!("cannot connect: {error}"),
        GatewayEvent::CarrierFault { radio, error } => match error {
            Some(e) => format!("[{radio}] carrier detect failed: {e}"),
            None => format!("[{radio}] carrier detect back"),
        },
        GatewayEvent::PttFault { radio, error } => match error {
            Some(e) => format!("[{radio}] PTT interface failed: {e}"),
            None => format!("[{radio}] PTT interface back"),
        },
        GatewayEvent::HeldOffline { reason } => match reason {
            Some(r) => format!("left Zello on purpose: {r}"),
            None => "back online: the radio hardware works again".into(),
        },
    })
}

/// Runs the demo; returns once both directions have been exercised.
pub async fn run(args: DemoArgs) -> Result<(), DemoError> {
    std::fs::create_dir_all(&args.out).map_err(|source| DemoError::Output {
        path: args.out.display().to_string(),
        source,
    })?;
    let tl = Timeline {
        start: Instant::now(),
    };
    println!(
        "zello-gateway demo: local server, gateway on a simulated radio, simulated dispatcher"
    );
    println!("output folder: {}\n", args.out.display());

    // 1. The local server.
    let server = SimServer::start(
        "127.0.0.1:0".parse().expect("valid address"),
        SimConfig::default(),
    )
    .await
    .map_err(|e| DemoError::Server(e.to_string()))?;
    tl.say("server", format!("listening at {}", server.url()));

    // 2. The radio's received audio.
    let clip = match &args.clip {
        Some(p) => wav::read_wav_mono(p, CODEC_RATE)?,
        None => speech::speech_like(CODEC_RATE, 3.0, 7),
    };
    let radio_heard = args.out.join("radio-received.wav");
    wav::write_wav_mono(&radio_heard, CODEC_RATE, &clip)?;

    // 3. The gateway on a simulated radio.
    let ptt = SimPtt::new();
    let radio_tx = args.out.join("radio-transmitted.wav");
    let parts = RadioParts::new(
        "radio1",
        CHANNEL,
        Box::new(FileInput::from_samples(clip.clone(), CODEC_RATE).with_leading_silence(1500)),
        Box::new(FileOutput::create(&radio_tx, CODEC_RATE)?),
        Box::new(
            Vox::new(VoxSettings::default())
                .map_err(|e| DemoError::Server(format!("VOX settings: {e}")))?,
        ),
        Box::new(ptt.clone()),
    );
    let gw_config = SessionConfig {
        server: server.url(),
        username: "gateway1".into(),
        password: Secret::new("demo"),
        channels: vec![CHANNEL.into()],
        ..SessionConfig::default()
    };
    let shutdown = CancellationToken::new();
    let observer = StateHub::new(crate::state::GatewayState::new([(
        "radio1".to_string(),
        CHANNEL.to_string(),
    )]));
    let mut watch = observer.subscribe();
    let meters = gateway::Meters::new();
    let dashboard = dashboard(&observer, &meters, &shutdown).await;
    match dashboard {
        Some(addr) => tl.say(
            "dashboard",
            format!("http://{addr}/ (demo --linger keeps it open)"),
        ),
        None => tl.say("dashboard", "not started (no free port on 127.0.0.1)"),
    }
    let gw = tokio::spawn(gateway::run_with(
        gw_config,
        vec![parts],
        shutdown.clone(),
        observer,
        gateway::RunOptions {
            meters,
            ..Default::default()
        },
    ));

    // 4. The dispatcher.
    let d_stop = CancellationToken::new();
    let d_config = SessionConfig {
        server: server.url(),
        username: "dispatcher".into(),
        password: Secret::new("demo"),
        channels: vec![CHANNEL.into()],
        platform_name: "Zello Demo Dispatcher".into(),
        ..SessionConfig::default()
    };
    let (dispatcher, mut d_events, d_task) = session::spawn(d_config, d_stop.clone())?;
    let reply_clip = speech::speech_like(CODEC_RATE, 2.0, 11);
    let dispatcher_heard_path = args.out.join("dispatcher-received.wav");

    let mut heard: Vec<i16> = Vec::new();
    let mut decoder: Option<OpusDecoder> = None;
    let mut dec_buf = vec![0i16; max_packet_samples(CODEC_RATE)];
    let mut heard_packets = 0u64;
    let mut replied = false;
    let mut played = false;
    let mut ptt_released = false;
    let mut reply_task: Option<tokio::task::JoinHandle<Result<u64, DemoError>>> = None;
    let deadline = tokio::time::sleep(DEADLINE);
    tokio::pin!(deadline);

    let outcome: Result<(), DemoError> = loop {
        tokio::select! {
            _ = &mut deadline => {
                let missing = if !replied { "the dispatcher heard no message from the radio" }
                    else if !played { "the radio did not play the dispatcher's answer" }
                    else { "PTT was not released" };
                break Err(DemoError::Timeout(DEADLINE, missing.into()));
            }
            ev = watch.recv() => match ev {
                Ok(ev) => {
                    if let Some(text) = describe(&ev) { tl.say("gateway", text); }
                    match ev {
                        GatewayEvent::Played { .. } => played = true,
                        GatewayEvent::PttOff { .. } if played => ptt_released = true,
                        _ => {}
                    }
                    if played && ptt_released {
                        break Ok(());
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break Err(DemoError::Timeout(DEADLINE, "the gateway stopped".into())),
            },
            ev = d_events.recv() => {
                let Some(ev) = ev else { break Err(DemoError::Timeout(DEADLINE, "the dispatcher's session stopped".into())) };
                match ev {
                    SessionEvent::Channel { status, ready: true } => {
                        tl.say("dispatcher", format!("channel {:?} online ({} users online)", status.channel, status.users_online));
                    }
                    SessionEvent::IncomingStart { stream_id, from, header, .. } => {
                        tl.say("dispatcher", format!("incoming stream {stream_id} from {from} ({} Hz, {} ms frames)", header.sample_rate, header.frame_ms));
                        decoder = Some(OpusDecoder::new(CODEC_RATE)?);
                    }
                    SessionEvent::IncomingAudio { data, .. } => {
                        if let Some(d) = decoder.as_mut()
                            && let Ok(n) = d.decode(Some(&data), &mut dec_buf)
                        {
                            heard.extend_from_slice(&dec_buf[..n]);
                            heard_packets += 1;
                        }
                    }
                    SessionEvent::IncomingEnd { stream_id, reason, .. } => {
                        tl.say("dispatcher", format!("stream {stream_id} ended ({reason:?}): {heard_packets} packets, {:.2} s, peak {:.1} dBFS",
                            heard.len() as f64 / CODEC_RATE as f64, peak_dbfs(&heard)));
                        if !replied && heard_packets > 0 {
                            replied = true;
                            wav::write_wav_mono(&dispatcher_heard_path, CODEC_RATE, &heard)?;
                            tl.say("dispatcher", "answering with a 2 s message");
                            reply_task = Some(tokio::spawn(talk(dispatcher.clone(), reply_clip.clone())));
                        }
                    }
                    SessionEvent::OutgoingStarted { stream_id, .. } => {
                        tl.say("dispatcher", format!("answer got stream id {stream_id}"));
                    }
                    SessionEvent::OutgoingEnded { reason, packets_sent, .. } => {
                        tl.say("dispatcher", format!("answer ended ({reason:?}), {packets_sent} packets sent"));
                    }
                    _ => {}
                }
            }
        }
    };

    if args.linger && outcome.is_ok() {
        if let Some(addr) = dashboard {
            println!(
                "\nlingering: the dashboard is at http://{addr}/; the dispatcher talks every {} s; Ctrl-C stops",
                LINGER_EVERY.as_secs()
            );
        }
        linger(&tl, &mut watch, &dispatcher, &reply_clip).await;
    }
    shutdown.cancel();
    d_stop.cancel();
    let _ = gw.await;
    let _ = d_task.await;
    if let Some(t) = reply_task {
        let _ = t.await;
    }
    server.shutdown();
    outcome?;

    let transmitted = wav::read_wav_mono(&radio_tx, CODEC_RATE)?;
    println!();
    summary_line(&radio_heard, &clip, "what the radio received (the clip)");
    summary_line(&dispatcher_heard_path, &heard, "what the dispatcher heard");
    summary_line(
        &radio_tx,
        &transmitted,
        "what the radio transmitted (the answer)",
    );
    println!(
        "\nPTT is {}; demo complete.",
        if ptt.is_keyed() {
            "KEYED (fault)"
        } else {
            "released"
        }
    );
    if ptt.is_keyed() {
        return Err(DemoError::Timeout(DEADLINE, "PTT left keyed".into()));
    }
    Ok(())
}

/// The status API and dashboard of the demo's gateway, on [`DASHBOARD_LISTEN`] or else a
/// free port; `None` when neither can be bound.
async fn dashboard(
    hub: &StateHub,
    meters: &gateway::Meters,
    shutdown: &CancellationToken,
) -> Option<std::net::SocketAddr> {
    use crate::api::protocol::Codec;
    for listen in [DASHBOARD_LISTEN, "127.0.0.1:0"] {
        let config = crate::config::ApiConfig {
            listen: listen.into(),
            ..Default::default()
        };
        let radio = crate::api::server::ApiRadio {
            name: "radio1".into(),
            channel: CHANNEL.into(),
            codec: Codec::from(&crate::config::CodecConfig::default()),
        };
        let setup = crate::api::Setup::for_radios(&[radio], meters, None);
        let tokens = crate::config::ApiTokens::default();
        if let Ok(running) =
            crate::api::start(&config, &tokens, hub.clone(), setup, shutdown.clone()).await
        {
            return Some(running.addr);
        }
    }
    None
}

/// Keeps the demo running until Ctrl-C, the dispatcher talking every [`LINGER_EVERY`].
async fn linger(
    tl: &Timeline,
    watch: &mut broadcast::Receiver<GatewayEvent>,
    dispatcher: &session::SessionHandle,
    clip: &[i16],
) {
    let mut every = tokio::time::interval(LINGER_EVERY);
    every.tick().await;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = every.tick() => {
                tl.say("dispatcher", "talking again");
                tokio::spawn(talk(dispatcher.clone(), clip.to_vec()));
            }
            ev = watch.recv() => match ev {
                Ok(ev) => if let Some(text) = describe(&ev) { tl.say("gateway", text) },
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
}

fn summary_line(path: &Path, samples: &[i16], what: &str) {
    println!(
        "  {:<28} {:5.2} s  peak {:6.1} dBFS  rms {:6.1} dBFS  {}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or(""),
        samples.len() as f64 / CODEC_RATE as f64,
        peak_dbfs(samples),
        rms_dbfs(samples),
        what
    );
}

/// Sends `clip` as one voice message, paced in real time like an app does.
async fn talk(session: session::SessionHandle, clip: Vec<i16>) -> Result<u64, DemoError> {
    let header = CodecHeader::default();
    let mut encoder = OpusEncoder::new(&EncoderSettings::default())?;
    let message = session.start_message(CHANNEL, header, None).await?;
    let mut ticker = tokio::time::interval(Duration::from_millis(header.packet_ms() as u64));
    let mut sent = 0;
    let mut buf = Vec::new();
    for chunk in clip.chunks(header.packet_samples()) {
        ticker.tick().await;
        let mut pcm = chunk.to_vec();
        pcm.resize(header.packet_samples(), 0);
        encoder.encode_packet(&pcm, &mut buf)?;
        message.send(Bytes::copy_from_slice(&buf));
        sent += 1;
    }
    message.finish().await;
    Ok(sent)
}

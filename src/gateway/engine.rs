//! The per-radio codec engine: one OS thread that ticks at absolute deadlines, one codec frame
//! per tick. Each tick it takes a captured frame, runs carrier detect, encodes while the
//! carrier is up, and feeds the transmitter's audio output from the message being played.
//!
//! The engine talks to the tokio side through one ordered queue each way
//! ([`super::link`]): commands in (`try_recv`), events out (`try_send`). Only audio is lossy
//! (`PlayPacket` in, `RxPacket` out: dropped when the other side falls behind, and counted);
//! control is never dropped. [`Engine::tick`] does one frame of work, so tests
//! and benchmarks drive it by hand without real time passing.

use crate::audio::dsp::{RxChain, RxSettings, TxChain, TxSettings, VoxFilter};
use crate::audio::level::SILENCE_DBFS;
use crate::audio::meter::{Levels, LiveMeter, MeterDirection};
use crate::audio::opus::{EncoderSettings, OpusDecoder, OpusEncoder, max_packet_samples};
use crate::audio::playout::{PlayoutBuffer, PlayoutSettings, Pop};
use crate::audio::{AudioError, AudioInput, AudioOutput};
use crate::gateway::link::{LinkReceiver, LinkSender, Lossy};
use crate::radio::CarrierDetect;
use crate::zello::protocol::CodecHeader;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Commands from the bridge.
#[derive(Debug)]
pub enum EngineCommand {
    /// The transmitter is keyed: ignore the carrier (never forward what we transmit).
    Transmitting(bool),
    /// Keep encoding (silence while the carrier is down: a message's hang time), or stop.
    /// The engine starts encoding by itself when the carrier comes up, so the first frame
    /// is never lost; the bridge stops it when it does not want that audio.
    KeepEncoding(bool),
    /// Start playing an incoming message.
    PlayBegin { stream_id: u32, header: CodecHeader },
    /// One packet of the message being played, with the server's packet number and when it
    /// arrived (the playout buffer reorders by the first and measures jitter with the second).
    PlayPacket {
        stream_id: u32,
        packet_id: u32,
        data: Bytes,
        arrival: Instant,
    },
    /// No more packets will come: play what is left, then report `PlaybackDrained`.
    PlayEnd { stream_id: u32 },
    /// Stop playing at once (time-out timer, shutdown).
    PlayAbort { stream_id: u32 },
    /// Play raw samples at the output rate (a tone, station identification), then report
    /// `PcmDrained`.
    PlayPcm(Vec<i16>),
}

impl Lossy for EngineCommand {
    fn is_audio(&self) -> bool {
        matches!(self, EngineCommand::PlayPacket { .. })
    }
}

/// Events to the bridge.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineEvent {
    /// The carrier came up (`up`) or dropped. Reported as down while transmitting. `age`:
    /// how long ago the end of the frame that showed it reached the sound card (audio still
    /// waiting to be read after it), so the bridge times the carrier by the audio, not by
    /// when the codec thread got to it.
    Carrier { up: bool, age: Duration },
    /// One encoded packet, with the levels of the received audio in it.
    RxPacket { data: Bytes, levels: PacketLevels },
    /// The first samples of a message went to the output.
    PlaybackStarted { stream_id: u32 },
    /// A message finished playing (all its audio is in the output).
    PlaybackDrained {
        stream_id: u32,
        packets: u64,
        concealed: u64,
        /// Packets the playout buffer dropped: late, duplicate, or pushed out of a full
        /// buffer.
        dropped: u64,
        /// Levels of the message as it went to the transmitter (after the transmit chain,
        /// concealment and gaps included).
        levels: Levels,
    },
    /// Raw samples given with `PlayPcm` have all been played.
    PcmDrained,
    /// The carrier detector failed (`Some`, reported once) or works again (`None`).
    CarrierFault(Option<String>),
    /// The audio input or output failed.
    DeviceError(String),
    /// The audio input and output work again after a failure.
    DeviceRecovered,
}

impl Lossy for EngineEvent {
    fn is_audio(&self) -> bool {
        matches!(self, EngineEvent::RxPacket { .. })
    }
}

/// Where an engine takes its commands from: the gateway's link ([`super::link::channel`]), or a
/// plain bounded channel (benchmarks and tests that send a handful of commands).
pub enum CommandQueue {
    Link(LinkReceiver<EngineCommand>),
    Bounded(mpsc::Receiver<EngineCommand>),
}

impl CommandQueue {
    fn try_recv(&mut self) -> Option<EngineCommand> {
        match self {
            CommandQueue::Link(rx) => rx.try_recv().ok(),
            CommandQueue::Bounded(rx) => rx.try_recv().ok(),
        }
    }
}

impl From<LinkReceiver<EngineCommand>> for CommandQueue {
    fn from(rx: LinkReceiver<EngineCommand>) -> Self {
        CommandQueue::Link(rx)
    }
}

impl From<mpsc::Receiver<EngineCommand>> for CommandQueue {
    fn from(rx: mpsc::Receiver<EngineCommand>) -> Self {
        CommandQueue::Bounded(rx)
    }
}

/// Where an engine sends its events: the gateway's link ([`super::link::channel`]: only
/// `RxPacket` is ever dropped), or a plain bounded channel (anything dropped when full).
pub enum EventQueue {
    Link(LinkSender<EngineEvent>),
    Bounded(mpsc::Sender<EngineEvent>),
}

impl EventQueue {
    /// Whether the event was queued.
    fn try_send(&self, event: EngineEvent) -> bool {
        match self {
            EventQueue::Link(tx) => tx.try_send(event).is_ok(),
            EventQueue::Bounded(tx) => tx.try_send(event).is_ok(),
        }
    }
}

impl From<LinkSender<EngineEvent>> for EventQueue {
    fn from(tx: LinkSender<EngineEvent>) -> Self {
        EventQueue::Link(tx)
    }
}

impl From<mpsc::Sender<EngineEvent>> for EventQueue {
    fn from(tx: mpsc::Sender<EngineEvent>) -> Self {
        EventQueue::Bounded(tx)
    }
}

/// Levels of the received audio in one packet (silence sent during a hang counts as none).
pub type PacketLevels = Levels;

/// Counters the engine keeps.
#[derive(Debug, Default)]
pub struct EngineStats {
    pub ticks: AtomicU64,
    pub late_ticks: AtomicU64,
    pub events_dropped: AtomicU64,
    pub input_underruns: AtomicU64,
    pub packets_encoded: AtomicU64,
    pub packets_decoded: AtomicU64,
    pub decode_errors: AtomicU64,
    pub concealed: AtomicU64,
}

struct Playback {
    stream_id: u32,
    decoder: OpusDecoder,
    buffer: PlayoutBuffer,
    pcm: VecDeque<i16>,
    started: bool,
    /// Consecutive concealed frames; after a few, silence.
    gap: u32,
    /// Levels of what has gone to the output so far.
    levels: Levels,
}

/// Consecutive loss-concealment frames before output falls silent.
const MAX_CONCEAL: u32 = 3;

/// The engine of one radio.
pub struct Engine {
    input: Box<dyn AudioInput>,
    output: Box<dyn AudioOutput>,
    carrier_detect: Box<dyn CarrierDetect>,
    carrier_failed: bool,
    rx_chain: RxChain,
    /// What a level-based detector (VOX) measures: the receive chain's high-pass.
    vox_filter: VoxFilter,
    tx_chain: TxChain,
    playout: PlayoutSettings,
    encoder: OpusEncoder,
    frame_ms: u32,
    frame: Vec<i16>,
    packet_pcm: Vec<i16>,
    packet_fill: usize,
    encoded: Vec<u8>,
    decoded: Vec<i16>,
    out_frame: Vec<i16>,
    carrier: bool,
    encoding: bool,
    packet_levels: PacketLevels,
    transmitting: bool,
    playback: Option<Playback>,
    pcm: Option<(Vec<i16>, usize)>,
    commands: CommandQueue,
    events: EventQueue,
    stats: Arc<EngineStats>,
    input_failed: bool,
    output_failed: bool,
    /// The receive chain has not seen the audio since the last frame it processed.
    rx_idle: bool,
    /// Live levels for the level setup aid and the API.
    meter: Arc<LiveMeter>,
    /// The meter's latest reading of each side says open (squelch, playback): a closed one
    /// is recorded once when it ends, so a reading never stays open by itself.
    rx_metered_open: bool,
    tx_metered_open: bool,
    /// Frames to skip before the next one measured with the squelch closed: a watcher reads
    /// at most every [`CLOSED_METER_EVERY`], so most closed frames stay unconverted.
    closed_meter_wait: u32,
}

/// How often a closed squelch's level is measured while someone watches: as often as the
/// API sends a `LEVEL`. Converting every closed frame would cost what an idle radio saves.
pub const CLOSED_METER_EVERY: Duration = Duration::from_millis(200);

impl Engine {
    /// Builds an engine. The input must deliver audio at the encoder's rate, and the output
    /// must run at an Opus rate (8, 12, 16, 24 or 48 kHz).
    pub fn new(
        input: Box<dyn AudioInput>,
        output: Box<dyn AudioOutput>,
        carrier: Box<dyn CarrierDetect>,
        settings: &EncoderSettings,
        commands: impl Into<CommandQueue>,
        events: impl Into<EventQueue>,
    ) -> Result<Engine, AudioError> {
        let (commands, events) = (commands.into(), events.into());
        if input.sample_rate() != settings.sample_rate {
            return Err(AudioError::Codec(crate::audio::opus::CodecError::Settings(
                format!(
                    "audio input runs at {} Hz but messages are encoded at {} Hz",
                    input.sample_rate(),
                    settings.sample_rate
                ),
            )));
        }
        // Checks that the output rate is one Opus can decode to.
        OpusDecoder::new(output.sample_rate())?;
        let encoder = OpusEncoder::new(settings)?;
        let frame_ms = settings.frame_ms as u32;
        let frame_samples = (settings.sample_rate * frame_ms / 1000) as usize;
        let out_samples = (output.sample_rate() * frame_ms / 1000) as usize;
        let packet_samples = encoder.samples_per_packet();
        let rx_chain =
            RxChain::new(&RxSettings::default(), settings.sample_rate).map_err(AudioError::Dsp)?;
        Ok(Engine {
            input,
            carrier_detect: carrier,
            carrier_failed: false,
            vox_filter: rx_chain.vox_filter(),
            rx_chain,
            tx_chain: TxChain::new(&TxSettings::default(), output.sample_rate())
                .map_err(AudioError::Dsp)?,
            playout: PlayoutSettings::default(),
            encoder,
            frame_ms,
            frame: vec![0; frame_samples],
            packet_pcm: vec![0; packet_samples],
            packet_fill: 0,
            encoded: Vec::with_capacity(4000),
            decoded: vec![0; max_packet_samples(output.sample_rate())],
            out_frame: Vec::with_capacity(out_samples),
            output,
            carrier: false,
            encoding: false,
            packet_levels: PacketLevels::default(),
            transmitting: false,
            playback: None,
            pcm: None,
            commands,
            events,
            stats: Arc::new(EngineStats::default()),
            input_failed: false,
            output_failed: false,
            rx_idle: false,
            meter: Arc::new(LiveMeter::new()),
            rx_metered_open: false,
            tx_metered_open: false,
            closed_meter_wait: 0,
        })
    }

    /// Sets the audio chains and the playout buffer (defaults otherwise: 300 Hz high-pass and
    /// limiter on the received audio, limiter on the transmitted audio).
    pub fn with_audio(
        mut self,
        rx: &RxSettings,
        tx: &TxSettings,
        playout: PlayoutSettings,
    ) -> Result<Self, AudioError> {
        self.rx_chain =
            RxChain::new(rx, self.encoder.settings().sample_rate).map_err(AudioError::Dsp)?;
        self.vox_filter = self.rx_chain.vox_filter();
        self.tx_chain = TxChain::new(tx, self.output.sample_rate()).map_err(AudioError::Dsp)?;
        playout.validate().map_err(AudioError::Playout)?;
        self.playout = playout;
        Ok(self)
    }

    /// Writes the live levels to `meter` (shared with readers; the engine makes one of its
    /// own otherwise).
    pub fn with_meter(mut self, meter: Arc<LiveMeter>) -> Self {
        self.meter = meter;
        self
    }

    /// The live levels this engine writes (read them from any thread).
    pub fn meter(&self) -> Arc<LiveMeter> {
        self.meter.clone()
    }

    /// The engine's counters (shared; read them from any thread).
    pub fn stats(&self) -> Arc<EngineStats> {
        self.stats.clone()
    }

    /// The tick period.
    pub fn frame_duration(&self) -> Duration {
        Duration::from_millis(self.frame_ms as u64)
    }

    fn emit(&self, event: EngineEvent) {
        if !self.events.try_send(event) {
            self.stats.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Nothing is happening: no carrier, nothing encoded, played or transmitted. The engine's
    /// thread then takes several short frames per wake-up (see [`spawn`]).
    pub fn is_idle(&self) -> bool {
        !self.carrier
            && !self.encoding
            && !self.transmitting
            && self.playback.is_none()
            && self.pcm.is_none()
    }

    /// One frame of work.
    pub fn tick(&mut self) {
        self.tick_at(Instant::now());
    }

    /// One frame of work, at `now` (what [`tick`](Self::tick) does with the clock's time;
    /// tests give made-up instants).
    pub fn tick_at(&mut self, now: Instant) {
        self.stats.ticks.fetch_add(1, Ordering::Relaxed);
        while let Some(cmd) = self.commands.try_recv() {
            self.on_command(cmd);
        }
        self.capture();
        self.play(now);
    }

    fn on_command(&mut self, cmd: EngineCommand) {
        match cmd {
            EngineCommand::Transmitting(on) => {
                self.transmitting = on;
                if on {
                    self.encoding = false;
                    self.packet_fill = 0;
                    if self.carrier {
                        self.carrier = false;
                        self.emit(EngineEvent::Carrier {
                            up: false,
                            age: Duration::ZERO,
                        });
                    }
                }
            }
            EngineCommand::KeepEncoding(on) => {
                if on && !self.encoding {
                    self.packet_fill = 0;
                    self.packet_levels = PacketLevels::default();
                }
                self.encoding = on && !self.transmitting;
            }
            EngineCommand::PlayPcm(samples) => {
                self.pcm = Some((samples, 0));
            }
            EngineCommand::PlayBegin { stream_id, header } => {
                match OpusDecoder::new(self.output.sample_rate()) {
                    Ok(decoder) => {
                        self.tx_chain.reset();
                        self.playback = Some(Playback {
                            stream_id,
                            decoder,
                            buffer: PlayoutBuffer::new(self.playout, header.packet_ms()),
                            pcm: VecDeque::new(),
                            started: false,
                            gap: 0,
                            levels: Levels::default(),
                        });
                    }
                    Err(e) => self.emit(EngineEvent::DeviceError(e.to_string())),
                }
            }
            EngineCommand::PlayPacket {
                stream_id,
                packet_id,
                data,
                arrival,
            } => {
                if let Some(pb) = self.playback.as_mut().filter(|p| p.stream_id == stream_id) {
                    pb.buffer.push(packet_id, data, arrival);
                }
            }
            EngineCommand::PlayEnd { stream_id } => {
                if let Some(pb) = self.playback.as_mut().filter(|p| p.stream_id == stream_id) {
                    pb.buffer.end();
                }
            }
            EngineCommand::PlayAbort { stream_id } => {
                if self
                    .playback
                    .as_ref()
                    .is_some_and(|p| p.stream_id == stream_id)
                {
                    self.playback = None;
                    let _ = self.output.end_of_message();
                }
            }
        }
    }

    fn capture(&mut self) {
        // A detector that reads a line says first whether the audio is wanted: while the
        // squelch is closed the frame is taken unconverted and the chain does not run, which
        // is most of what an idle radio costs. Someone watching the levels wants it all.
        let early = if self.carrier_detect.needs_level() {
            None
        } else {
            Some(self.detect(SILENCE_DBFS))
        };
        let metered = self.meter.is_wanted() && self.closed_meter_due(early == Some(false));
        let taken = if early == Some(false) && !metered {
            self.input.skip_frame(&mut self.frame)
        } else {
            self.input.read_frame(&mut self.frame)
        };
        match taken {
            Ok(true) => self.input_ok(),
            Ok(false) => {
                self.stats.input_underruns.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(e) => {
                if !self.input_failed {
                    self.input_failed = true;
                    self.emit(EngineEvent::DeviceError(e.to_string()));
                }
                if self.carrier {
                    self.carrier = false;
                    self.emit(EngineEvent::Carrier {
                        up: false,
                        age: Duration::ZERO,
                    });
                }
                return;
            }
        }
        // Carrier detect (VOX) sees the card's level after the high-pass (no CTCSS tone or
        // hum), before gain and AGC move it.
        let (carrier, detector) = match early {
            Some(up) => (up, None),
            None => {
                let level = self.vox_filter.peak_dbfs(&self.frame);
                (self.detect(level), Some(level))
            }
        };
        self.meter_receive(carrier || metered, carrier, detector);
        // The chain runs on the audio that is sent; after a gap it starts from silence.
        if carrier {
            if self.rx_idle {
                self.rx_idle = false;
                self.rx_chain.resume();
            }
            self.rx_chain.process(&mut self.frame);
        } else {
            self.rx_idle = true;
        }
        if carrier != self.carrier {
            self.carrier = carrier;
            let age = self.input.age();
            self.emit(EngineEvent::Carrier { up: carrier, age });
            if carrier && !self.encoding {
                // Start at once so the first syllable is kept; the bridge stops it if unwanted.
                self.encoding = true;
                self.packet_fill = 0;
                self.packet_levels = PacketLevels::default();
            }
        }
        if !self.encoding {
            return;
        }
        let n = self.frame.len();
        let slot = &mut self.packet_pcm[self.packet_fill..self.packet_fill + n];
        if carrier {
            slot.copy_from_slice(&self.frame);
            self.packet_levels
                .merge(&PacketLevels::measure(&self.frame));
        } else {
            // The hang after the carrier dropped: silence, not the squelch tail.
            slot.fill(0);
        }
        self.packet_fill += n;
        if self.packet_fill == self.packet_pcm.len() {
            self.encode_packet();
        }
    }

    /// Whether a watched radio's frame is to be measured: every frame while the squelch is
    /// open (`closed` false), else one every [`CLOSED_METER_EVERY`].
    fn closed_meter_due(&mut self, closed: bool) -> bool {
        if !closed {
            self.closed_meter_wait = 0;
            return true;
        }
        if self.closed_meter_wait > 0 {
            self.closed_meter_wait -= 1;
            return false;
        }
        let every = (CLOSED_METER_EVERY.as_millis() as u32 / self.frame_ms.max(1)).max(1);
        self.closed_meter_wait = every - 1;
        true
    }

    /// Records the received frame's levels, as the card gave them (before the receive
    /// chain's filters, gain and limiter), when `measure`; otherwise, once after the squelch
    /// closed, a closed reading at the floor.
    fn meter_receive(&mut self, measure: bool, open: bool, detector: Option<f32>) {
        if measure {
            let levels = Levels::measure(&self.frame);
            self.meter
                .record(MeterDirection::Receive, &levels, open, detector);
            self.rx_metered_open = open;
        } else if self.rx_metered_open {
            self.rx_metered_open = false;
            self.meter
                .record(MeterDirection::Receive, &Levels::default(), false, None);
        }
    }

    /// Records the levels of a frame going to the transmitter, or once after the last one,
    /// a closed reading at the floor. Returns the frame's levels.
    fn meter_transmit(&mut self, playing: bool) -> Levels {
        if playing {
            let levels = Levels::measure(&self.out_frame);
            self.meter
                .record(MeterDirection::Transmit, &levels, true, None);
            self.tx_metered_open = true;
            levels
        } else {
            if self.tx_metered_open {
                self.tx_metered_open = false;
                self.meter
                    .record(MeterDirection::Transmit, &Levels::default(), false, None);
            }
            Levels::default()
        }
    }

    /// Asks the carrier detector (`level` is the frame's peak, for VOX); a failing detector
    /// is reported once and counts as no carrier until it works again.
    fn detect(&mut self, level: f32) -> bool {
        match self.carrier_detect.update(level, self.frame_ms) {
            Ok(up) => {
                if self.carrier_failed {
                    self.carrier_failed = false;
                    self.emit(EngineEvent::CarrierFault(None));
                }
                up && !self.transmitting
            }
            Err(e) => {
                if !self.carrier_failed {
                    self.carrier_failed = true;
                    self.emit(EngineEvent::CarrierFault(Some(e.to_string())));
                }
                false
            }
        }
    }

    fn input_ok(&mut self) {
        if self.input_failed {
            self.input_failed = false;
            if !self.output_failed {
                self.emit(EngineEvent::DeviceRecovered);
            }
        }
    }

    fn encode_packet(&mut self) {
        self.packet_fill = 0;
        let levels = std::mem::take(&mut self.packet_levels);
        match self
            .encoder
            .encode_packet(&self.packet_pcm, &mut self.encoded)
        {
            Ok(()) => {
                self.stats.packets_encoded.fetch_add(1, Ordering::Relaxed);
                self.emit(EngineEvent::RxPacket {
                    data: Bytes::copy_from_slice(&self.encoded),
                    levels,
                });
            }
            Err(e) => self.emit(EngineEvent::DeviceError(e.to_string())),
        }
    }

    fn write_out(&mut self) {
        match self.output.write_frame(&self.out_frame) {
            Ok(()) => {
                if self.output_failed {
                    self.output_failed = false;
                    if !self.input_failed {
                        self.emit(EngineEvent::DeviceRecovered);
                    }
                }
            }
            Err(e) => {
                if !self.output_failed {
                    self.output_failed = true;
                    self.emit(EngineEvent::DeviceError(e.to_string()));
                }
            }
        }
    }

    fn play_pcm(&mut self, need: usize) -> bool {
        let Some((samples, pos)) = self.pcm.as_mut() else {
            return false;
        };
        let end = (*pos + need).min(samples.len());
        self.out_frame.clear();
        self.out_frame.extend_from_slice(&samples[*pos..end]);
        *pos = end;
        let done = end == samples.len();
        if !self.out_frame.is_empty() {
            self.meter_transmit(true);
            self.write_out();
        }
        if done {
            self.pcm = None;
            let _ = self.output.end_of_message();
            self.emit(EngineEvent::PcmDrained);
        }
        true
    }

    fn play(&mut self, now: Instant) {
        let rate = self.output.sample_rate();
        let need = (rate * self.frame_ms / 1000) as usize;
        if self.play_pcm(need) {
            return;
        }
        if self.playback.is_none() {
            self.meter_transmit(false);
            self.output.idle();
            return;
        }
        let frame = self.frame_duration();
        let delay = self.output.delay(need);
        let Some(pb) = self.playback.as_mut() else {
            return;
        };
        // A message that has not started plays from when it is due: what is written now is
        // heard at `heard`; if the message is due before what the next tick writes would be
        // heard, it starts now, with silence ahead of its first packet up to that instant.
        let mut at = now;
        let mut lead = 0;
        if !pb.buffer.is_started() {
            let heard = now + delay;
            if let Some(due) = pb.buffer.start_due() {
                if due >= heard + frame {
                    return;
                }
                at = due.max(heard);
                let early = due.saturating_duration_since(heard);
                lead = ((early.as_nanos() * u128::from(rate) / 1_000_000_000) as usize)
                    .min(need.saturating_sub(1));
            }
        }
        let mut drained = false;
        while pb.pcm.len() < need {
            let pop = pb.buffer.pop(at);
            if lead > 0 && !matches!(pop, Pop::Filling) {
                pb.pcm
                    .extend(std::iter::repeat_n(0, std::mem::take(&mut lead)));
            }
            match pop {
                Pop::Filling => break,
                Pop::Packet(packet) => match pb.decoder.decode(Some(&packet), &mut self.decoded) {
                    Ok(n) => {
                        pb.gap = 0;
                        self.stats.packets_decoded.fetch_add(1, Ordering::Relaxed);
                        pb.pcm.extend(&self.decoded[..n]);
                    }
                    Err(_) => {
                        // Undecodable data: counted, and concealed like a lost packet.
                        self.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                        conceal(pb, &mut self.decoded, &self.stats);
                    }
                },
                Pop::Missing => conceal(pb, &mut self.decoded, &self.stats),
                Pop::Drained => {
                    drained = true;
                    break;
                }
            }
        }
        if !pb.started {
            if pb.pcm.is_empty() {
                if drained {
                    // A message with nothing to play.
                    let id = pb.stream_id;
                    let stats = pb.buffer.stats();
                    self.playback = None;
                    self.emit(EngineEvent::PlaybackDrained {
                        stream_id: id,
                        packets: 0,
                        concealed: 0,
                        dropped: stats.late + stats.duplicates + stats.overflow,
                        levels: Levels::default(),
                    });
                }
                return;
            }
            pb.started = true;
            let id = pb.stream_id;
            self.emit(EngineEvent::PlaybackStarted { stream_id: id });
        }
        let Some(pb) = self.playback.as_mut() else {
            return;
        };
        if !drained && pb.pcm.len() < need {
            // Mid-message and nothing to play (concealment exhausted): silence keeps time.
            pb.pcm.extend(std::iter::repeat_n(0, need - pb.pcm.len()));
        }
        let take = need.min(pb.pcm.len());
        self.out_frame.clear();
        // Whole slices: extending from `drain` would push sample by sample.
        let (front, back) = pb.pcm.as_slices();
        let from_front = take.min(front.len());
        self.out_frame.extend_from_slice(&front[..from_front]);
        self.out_frame.extend_from_slice(&back[..take - from_front]);
        pb.pcm.drain(..take);
        let done = drained && pb.pcm.is_empty();
        let id = pb.stream_id;
        let stats = pb.buffer.stats();
        let mut levels = pb.levels;
        if !self.out_frame.is_empty() {
            self.tx_chain.process(&mut self.out_frame);
            levels.merge(&self.meter_transmit(true));
            self.write_out();
        }
        if done {
            self.playback = None;
            let _ = self.output.end_of_message();
            self.emit(EngineEvent::PlaybackDrained {
                stream_id: id,
                packets: stats.played,
                concealed: stats.concealed,
                dropped: stats.late + stats.duplicates + stats.overflow,
                levels,
            });
        } else if let Some(pb) = self.playback.as_mut() {
            pb.levels = levels;
        }
    }

    /// Finishes: ends what was playing.
    pub fn finish(&mut self) {
        if self.playback.take().is_some() || self.pcm.take().is_some() {
            let _ = self.output.end_of_message();
        }
    }
}

/// Fills a lost packet's slot with Opus loss concealment, a few times in a row at most.
fn conceal(pb: &mut Playback, decoded: &mut [i16], stats: &EngineStats) {
    if pb.gap >= MAX_CONCEAL {
        let n = pb.buffer.packet_ms() as usize * pb.decoder.sample_rate() as usize / 1000;
        pb.pcm.extend(std::iter::repeat_n(0, n));
        return;
    }
    pb.gap += 1;
    stats.concealed.fetch_add(1, Ordering::Relaxed);
    if let Ok(n) = pb.decoder.decode(None, decoded) {
        pb.pcm.extend(&decoded[..n]);
    }
}

/// Audio an idle engine takes per wake-up, at least (in whole frames, at least one).
const IDLE_WAKE: Duration = Duration::from_millis(60);

/// How many frames an idle engine ticks per wake-up, for frames of `frame`.
fn idle_frames(frame: Duration) -> u32 {
    let frame = frame.as_micros().max(1);
    (IDLE_WAKE.as_micros() / frame).clamp(1, 8) as u32
}

/// Runs an engine on its own thread, one tick per frame at absolute deadlines, until
/// `stop` is cancelled. While the engine is idle (squelch closed, nothing playing) and its
/// frames are short, it ticks for 60 ms of frames per wake-up: each wake-up of a thread costs
/// tens of microseconds, as much as an idle tick's own work. The frame that brings the
/// carrier is then up to 40 ms later than at one frame per wake-up; the bridge times the
/// carrier by its audio ([`EngineEvent::Carrier`]'s `age`), so rx_min and the start of the
/// message on the wire do not move.
///
/// The thread runs in the radio's span ([`super::radio_span`]). With a `heartbeat` (registered in the service's [`Liveness`](crate::service::Liveness)),
/// the thread beats it once per tick, so systemd's watchdog is fed only while the codec keeps
/// ticking; a tick stuck in a device or the codec stops the beats. The heartbeat is retired
/// when the thread ends normally; a thread that panics leaves it unretired and is reported
/// as stuck.
pub fn spawn(
    mut engine: Engine,
    name: &str,
    stop: CancellationToken,
    heartbeat: Option<Arc<crate::service::Heartbeat>>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let span = super::radio_span(name);
    std::thread::Builder::new()
        .name(format!("codec-{name}"))
        .spawn(move || {
            let _span = span.entered();
            let period = engine.frame_duration();
            let per_idle_wake = idle_frames(period);
            let stats = engine.stats();
            let mut deadline = Instant::now();
            while !stop.is_cancelled() {
                let frames = if engine.is_idle() { per_idle_wake } else { 1 };
                for _ in 0..frames {
                    engine.tick();
                }
                if let Some(beat) = &heartbeat {
                    beat.beat();
                }
                deadline += period * frames;
                let now = Instant::now();
                if deadline > now {
                    std::thread::sleep(deadline - now);
                } else if now - deadline > period * 5 {
                    // Far behind (the machine was suspended or overloaded): start afresh
                    // rather than burst to catch up.
                    stats.late_ticks.fetch_add(1, Ordering::Relaxed);
                    deadline = now;
                }
            }
            engine.finish();
            if let Some(beat) = &heartbeat {
                beat.retire();
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::file::{FileInput, MemoryOutput};
    use crate::audio::speech::speech_like;
    use crate::gateway::link;
    use crate::radio::sim::{FlagCarrier, ScheduleCarrier};

    /// A carrier change whose audio waited for nothing.
    fn carrier(up: bool) -> EngineEvent {
        EngineEvent::Carrier {
            up,
            age: Duration::ZERO,
        }
    }

    struct Rig {
        engine: Engine,
        cmd: mpsc::Sender<EngineCommand>,
        ev: mpsc::Receiver<EngineEvent>,
    }

    fn rig(input: Vec<i16>, carrier: Box<dyn CarrierDetect>, out: MemoryOutput) -> Rig {
        let (cmd, crx) = mpsc::channel(256);
        let (etx, ev) = mpsc::channel(4096);
        let engine = Engine::new(
            Box::new(FileInput::from_samples(input, 16000)),
            Box::new(out),
            carrier,
            &EncoderSettings::default(),
            crx,
            etx,
        )
        .unwrap();
        Rig { engine, cmd, ev }
    }

    fn play(stream_id: u32, packet_id: u32, data: Bytes) -> EngineCommand {
        EngineCommand::PlayPacket {
            stream_id,
            packet_id,
            data,
            arrival: Instant::now(),
        }
    }

    /// A `PlaybackDrained`'s stream id, packets, concealed and dropped (not its levels).
    fn drained(e: &EngineEvent) -> Option<(u32, u64, u64, u64)> {
        match e {
            EngineEvent::PlaybackDrained {
                stream_id,
                packets,
                concealed,
                dropped,
                ..
            } => Some((*stream_id, *packets, *concealed, *dropped)),
            _ => None,
        }
    }

    fn drain(ev: &mut mpsc::Receiver<EngineEvent>) -> Vec<EngineEvent> {
        let mut v = Vec::new();
        while let Ok(e) = ev.try_recv() {
            v.push(e);
        }
        v
    }

    /// `pcm` encoded packet by packet with `settings` (a last part packet is left out).
    fn encoded(settings: &EncoderSettings, pcm: &[i16]) -> Vec<Bytes> {
        let mut enc = OpusEncoder::new(settings).unwrap();
        pcm.chunks_exact(enc.samples_per_packet())
            .map(|chunk| {
                let mut buf = Vec::new();
                enc.encode_packet(chunk, &mut buf).unwrap();
                Bytes::from(buf)
            })
            .collect()
    }

    /// Hands `packets` to the engine as stream `stream_id`, numbered from 0.
    fn send(r: &Rig, stream_id: u32, packets: &[Bytes]) {
        for (i, p) in packets.iter().enumerate() {
            r.cmd
                .try_send(play(stream_id, i as u32, p.clone()))
                .unwrap();
        }
    }

    #[test]
    fn carrier_starts_encoding_at_once_and_the_hang_is_silence() {
        let speech = speech_like(16000, 2.0, 1);
        let mut r = rig(
            speech,
            Box::new(ScheduleCarrier::new(vec![(0.24, 1.2)])),
            MemoryOutput::new(16000),
        );
        for _ in 0..25 {
            r.engine.tick();
        }
        let events = drain(&mut r.ev);
        assert_eq!(events.first(), Some(&carrier(true)));
        assert!(events.contains(&carrier(false)));
        let packets: Vec<&PacketLevels> = events
            .iter()
            .filter_map(|e| match e {
                EngineEvent::RxPacket { levels, .. } => Some(levels),
                _ => None,
            })
            .collect();
        // 0.24 s to 1.2 s is 16 frames of 60 ms with audio; then silence until told to stop.
        let voiced = packets.iter().filter(|l| l.samples > 0).count();
        assert_eq!(voiced, 16);
        assert_eq!(
            packets.len(),
            25 - 4,
            "encoding goes on (hang) until the bridge stops it"
        );
        let mut all = PacketLevels::default();
        for l in &packets {
            all.merge(l);
        }
        assert_eq!(all.samples, 16 * 960);
        assert!(all.peak_dbfs() > -20.0 && all.rms_dbfs() < all.peak_dbfs());
        r.cmd.try_send(EngineCommand::KeepEncoding(false)).unwrap();
        r.engine.tick();
        r.engine.tick();
        assert!(drain(&mut r.ev).is_empty(), "stopped");
    }

    /// An input that counts the frames read and skipped.
    struct Counting {
        inner: FileInput,
        reads: Arc<AtomicU64>,
        skips: Arc<AtomicU64>,
    }

    impl AudioInput for Counting {
        fn sample_rate(&self) -> u32 {
            self.inner.sample_rate()
        }
        fn read_frame(&mut self, frame: &mut [i16]) -> Result<bool, AudioError> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            self.inner.read_frame(frame)
        }
        fn skip_frame(&mut self, frame: &mut [i16]) -> Result<bool, AudioError> {
            self.skips.fetch_add(1, Ordering::Relaxed);
            self.inner.skip_frame(frame)
        }
    }

    /// An input whose audio waited behind 30 ms more.
    struct Aged(FileInput);

    impl AudioInput for Aged {
        fn sample_rate(&self) -> u32 {
            self.0.sample_rate()
        }
        fn read_frame(&mut self, frame: &mut [i16]) -> Result<bool, AudioError> {
            self.0.read_frame(frame)
        }
        fn age(&self) -> Duration {
            Duration::from_millis(30)
        }
    }

    #[test]
    fn idle_wakes_take_sixty_ms_of_short_frames() {
        assert_eq!(idle_frames(Duration::from_millis(10)), 6);
        assert_eq!(idle_frames(Duration::from_millis(20)), 3);
        assert_eq!(idle_frames(Duration::from_millis(40)), 1);
        assert_eq!(idle_frames(Duration::from_millis(60)), 1);
        assert_eq!(idle_frames(Duration::ZERO), 8);
    }

    #[test]
    fn the_engine_is_idle_only_with_nothing_to_do() {
        let (cmd, crx) = mpsc::channel(16);
        let (etx, _ev) = mpsc::channel(64);
        let carrier = FlagCarrier::new();
        let mut engine = Engine::new(
            Box::new(FileInput::from_samples(vec![1000; 16_000], 16000)),
            Box::new(MemoryOutput::new(16000)),
            Box::new(carrier.clone()),
            &EncoderSettings::default(),
            crx,
            etx,
        )
        .unwrap();
        engine.tick();
        assert!(engine.is_idle());
        carrier.set(true);
        engine.tick();
        assert!(!engine.is_idle(), "a carrier");
        carrier.set(false);
        engine.tick();
        assert!(!engine.is_idle(), "still encoding until the bridge says");
        cmd.try_send(EngineCommand::KeepEncoding(false)).unwrap();
        engine.tick();
        assert!(engine.is_idle());
        cmd.try_send(EngineCommand::PlayPcm(vec![1; 16_000]))
            .unwrap();
        engine.tick();
        assert!(!engine.is_idle(), "playing");
        cmd.try_send(EngineCommand::Transmitting(true)).unwrap();
        engine.tick();
        assert!(!engine.is_idle(), "transmitting");
    }

    #[test]
    fn a_carrier_change_carries_the_age_of_its_audio() {
        let (_cmd, crx) = mpsc::channel(16);
        let (etx, mut ev) = mpsc::channel(64);
        let mut engine = Engine::new(
            Box::new(Aged(FileInput::from_samples(vec![0; 16_000], 16000))),
            Box::new(MemoryOutput::new(16000)),
            Box::new(FlagCarrier::fixed(true)),
            &EncoderSettings::default(),
            crx,
            etx,
        )
        .unwrap();
        engine.tick();
        assert_eq!(
            drain(&mut ev).first(),
            Some(&EngineEvent::Carrier {
                up: true,
                age: Duration::from_millis(30)
            })
        );
    }

    /// An engine on a counting input: (engine, commands, events, reads, skips).
    fn counting_rig(carrier: Box<dyn CarrierDetect>) -> (Rig, Arc<AtomicU64>, Arc<AtomicU64>) {
        let (reads, skips) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let input = Counting {
            inner: FileInput::from_samples(speech_like(16000, 3.0, 4), 16000),
            reads: reads.clone(),
            skips: skips.clone(),
        };
        let (cmd, crx) = mpsc::channel(256);
        let (etx, ev) = mpsc::channel(4096);
        let engine = Engine::new(
            Box::new(input),
            Box::new(MemoryOutput::new(16000)),
            carrier,
            &EncoderSettings::default(),
            crx,
            etx,
        )
        .unwrap();
        (Rig { engine, cmd, ev }, reads, skips)
    }

    #[test]
    fn a_closed_squelch_skips_the_audio_and_the_first_frame_of_a_carrier_is_kept() {
        let flag = FlagCarrier::new();
        let (mut r, reads, skips) = counting_rig(Box::new(flag.clone()));
        let counts = || (reads.load(Ordering::Relaxed), skips.load(Ordering::Relaxed));
        for _ in 0..5 {
            r.engine.tick();
        }
        assert_eq!(
            counts(),
            (0, 5),
            "idle: every frame skipped, none converted"
        );
        assert!(drain(&mut r.ev).is_empty());
        flag.set(true);
        for _ in 0..3 {
            r.engine.tick();
        }
        assert_eq!(counts(), (3, 5), "carrier: every frame read");
        let events = drain(&mut r.ev);
        assert_eq!(events[0], carrier(true));
        let voiced: Vec<u32> = events
            .iter()
            .filter_map(|e| match e {
                EngineEvent::RxPacket { levels, .. } => Some(levels.samples),
                _ => None,
            })
            .collect();
        assert_eq!(
            voiced,
            [960, 960, 960],
            "the frame the carrier rose in is sent"
        );
        flag.set(false);
        r.engine.tick();
        r.engine.tick();
        assert_eq!(counts(), (3, 7), "the hang is silence: nothing to convert");
        // Transmitting suppresses the carrier: skipped too.
        flag.set(true);
        r.cmd.try_send(EngineCommand::Transmitting(true)).unwrap();
        r.engine.tick();
        assert_eq!(counts(), (3, 8));
    }

    #[test]
    fn vox_reads_every_frame_for_its_level() {
        let vox = crate::radio::vox::Vox::new(Default::default()).unwrap();
        let (mut r, reads, skips) = counting_rig(Box::new(vox));
        for _ in 0..6 {
            r.engine.tick();
        }
        assert_eq!(reads.load(Ordering::Relaxed), 6);
        assert_eq!(skips.load(Ordering::Relaxed), 0);
    }

    /// Whether a default VOX on a default engine opens while `input` (at least 3 s) plays.
    fn vox_opens_on(input: Vec<i16>) -> bool {
        let vox = crate::radio::vox::Vox::new(Default::default()).unwrap();
        let mut r = rig(input, Box::new(vox), MemoryOutput::new(16000));
        for _ in 0..50 {
            r.engine.tick();
        }
        drain(&mut r.ev).contains(&carrier(true))
    }

    #[test]
    fn vox_listens_after_the_high_pass_so_ctcss_alone_never_opens_it() {
        use crate::audio::speech::tone;
        // A 100 Hz CTCSS tone at -12 dBFS, far above the VOX's -35 dBFS, and no voice.
        let ctcss = crate::audio::dsp::fade_in(tone(16000, 100.0, 3.0, -12.0), 16000);
        assert!(crate::audio::level::peak_dbfs(&ctcss) > -13.0);
        assert!(
            !vox_opens_on(ctcss.clone()),
            "the sub-audible tone opened VOX"
        );
        // The same tone with a voice-band 1 kHz tone on top opens it.
        let voice = tone(16000, 1000.0, 3.0, -20.0);
        let both: Vec<i16> = ctcss.iter().zip(&voice).map(|(a, b)| a + b).collect();
        assert!(vox_opens_on(both), "voice over CTCSS must open VOX");
        assert!(vox_opens_on(voice), "voice alone opens VOX");
    }

    #[test]
    fn transmitting_suppresses_the_carrier() {
        let mut r = rig(
            speech_like(16000, 1.0, 2),
            Box::new(FlagCarrier::fixed(true)),
            MemoryOutput::new(16000),
        );
        r.cmd.try_send(EngineCommand::Transmitting(true)).unwrap();
        for _ in 0..5 {
            r.engine.tick();
        }
        assert!(drain(&mut r.ev).is_empty());
        r.cmd.try_send(EngineCommand::Transmitting(false)).unwrap();
        r.engine.tick();
        assert_eq!(drain(&mut r.ev)[0], carrier(true));
        // Keying while receiving reports the carrier down and stops encoding.
        r.cmd.try_send(EngineCommand::Transmitting(true)).unwrap();
        r.engine.tick();
        assert_eq!(drain(&mut r.ev), [carrier(false)]);
        r.engine.tick();
        assert!(drain(&mut r.ev).is_empty());
    }

    #[test]
    fn pcm_plays_then_reports_drained() {
        let out = MemoryOutput::new(16000);
        let samples = out.samples();
        let mut r = rig(vec![], Box::new(FlagCarrier::fixed(false)), out);
        r.cmd
            .try_send(EngineCommand::PlayPcm(vec![1000; 1500]))
            .unwrap();
        r.engine.tick();
        assert!(drain(&mut r.ev).is_empty());
        r.engine.tick();
        assert_eq!(drain(&mut r.ev), [EngineEvent::PcmDrained]);
        assert_eq!(samples.lock().unwrap().len(), 1500);
    }

    /// An output that fails while `fail` is set.
    struct Flaky {
        fail: Arc<std::sync::atomic::AtomicBool>,
    }

    impl AudioOutput for Flaky {
        fn sample_rate(&self) -> u32 {
            16000
        }
        fn write_frame(&mut self, _frame: &[i16]) -> Result<(), AudioError> {
            if self.fail.load(Ordering::SeqCst) {
                Err(AudioError::Device {
                    device: "test".into(),
                    message: "unplugged".into(),
                })
            } else {
                Ok(())
            }
        }
    }

    #[test]
    fn device_failure_and_recovery_are_reported_once_each() {
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (cmd, crx) = mpsc::channel(16);
        let (etx, mut ev) = mpsc::channel(64);
        let mut engine = Engine::new(
            Box::new(FileInput::from_samples(vec![], 16000)),
            Box::new(Flaky { fail: fail.clone() }),
            Box::new(FlagCarrier::fixed(false)),
            &EncoderSettings::default(),
            crx,
            etx,
        )
        .unwrap();
        cmd.try_send(EngineCommand::PlayPcm(vec![1; 960 * 10]))
            .unwrap();
        for _ in 0..3 {
            engine.tick();
        }
        let e = drain(&mut ev);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(matches!(&e[0], EngineEvent::DeviceError(m) if m.contains("unplugged")));
        fail.store(false, Ordering::SeqCst);
        engine.tick();
        engine.tick();
        assert_eq!(drain(&mut ev), [EngineEvent::DeviceRecovered]);
    }

    /// With both audio queues full (the bridge behind on encoded packets, the engine behind
    /// on packets to play), every control message still arrives, in order, both ways.
    #[test]
    fn control_gets_through_when_the_audio_queues_are_full_both_ways() {
        let (cmd, crx) = link::channel(4);
        let (etx, mut ev) = link::channel(2);
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = FlagCarrier::new();
        let mut engine = Engine::new(
            Box::new(FileInput::from_samples(speech_like(16000, 3.0, 2), 16000)),
            Box::new(Flaky { fail: fail.clone() }),
            Box::new(flag.clone()),
            &EncoderSettings::default(),
            crx,
            etx,
        )
        .unwrap();
        flag.set(true);
        for _ in 0..6 {
            engine.tick();
        }
        // The engine's queue to the bridge holds two of the six packets encoded.
        assert_eq!(engine.stats().events_dropped.load(Ordering::Relaxed), 4);
        // The bridge's queue to the engine fills with packets to play.
        cmd.try_send(EngineCommand::PlayBegin {
            stream_id: 1,
            header: CodecHeader::default(),
        })
        .unwrap();
        let full = (0..10)
            .filter(|&i| {
                cmd.try_send(play(1, i, Bytes::from_static(&[0xf8])))
                    .is_err()
            })
            .count();
        assert_eq!((full, cmd.dropped()), (6, 6));
        cmd.try_send(EngineCommand::Transmitting(true)).unwrap();
        cmd.try_send(EngineCommand::PlayAbort { stream_id: 1 })
            .unwrap();
        fail.store(true, Ordering::SeqCst);
        cmd.try_send(EngineCommand::PlayPcm(vec![1; 960 * 3]))
            .unwrap();
        engine.tick();
        assert!(engine.playback.is_none(), "the abort arrived");
        assert!(engine.transmitting);
        cmd.try_send(EngineCommand::Transmitting(false)).unwrap();
        engine.tick();
        assert!(!engine.transmitting, "the end of the transmission arrived");
        let events: Vec<EngineEvent> = std::iter::from_fn(|| ev.try_recv().ok()).collect();
        let control: Vec<&EngineEvent> = events
            .iter()
            .filter(|e| !matches!(e, EngineEvent::RxPacket { .. }))
            .collect();
        assert_eq!(
            control,
            [
                &carrier(true),
                &carrier(false),
                &EngineEvent::DeviceError("audio device test: unplugged".into()),
                &carrier(true),
            ],
            "{events:?}"
        );
        assert_eq!(events.len() - control.len(), 2, "two packets fit");
        assert!(ev.dropped() >= 4);
    }

    /// An output that counts the ticks it is told nothing plays.
    struct IdleCounter(Arc<AtomicU64>);

    impl AudioOutput for IdleCounter {
        fn sample_rate(&self) -> u32 {
            16000
        }
        fn write_frame(&mut self, _frame: &[i16]) -> Result<(), AudioError> {
            Ok(())
        }
        fn idle(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_output_hears_of_every_tick_with_nothing_to_play_and_only_those() {
        let idle = Arc::new(AtomicU64::new(0));
        let (cmd, crx) = mpsc::channel(16);
        let (etx, _ev) = mpsc::channel(64);
        let mut engine = Engine::new(
            Box::new(FileInput::from_samples(vec![], 16000)),
            Box::new(IdleCounter(idle.clone())),
            Box::new(FlagCarrier::fixed(false)),
            &EncoderSettings::default(),
            crx,
            etx,
        )
        .unwrap();
        engine.tick();
        engine.tick();
        assert_eq!(idle.load(Ordering::SeqCst), 2);
        // Three frames of a tone: no idle ticks while it plays, then idle again.
        let frame = engine.frame_duration().as_millis() as usize * 16;
        cmd.try_send(EngineCommand::PlayPcm(vec![1; frame * 3]))
            .unwrap();
        for _ in 0..3 {
            engine.tick();
        }
        assert_eq!(idle.load(Ordering::SeqCst), 2);
        engine.tick();
        assert_eq!(idle.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn playback_decodes_prefills_and_drains() {
        let out = MemoryOutput::new(16000);
        let samples = out.samples();
        let mut r = rig(vec![], Box::new(FlagCarrier::fixed(false)), out);
        // 10 packets of speech to play.
        let packets = encoded(&EncoderSettings::default(), &speech_like(16000, 0.6, 3));
        let header = CodecHeader::default();
        r.cmd
            .try_send(EngineCommand::PlayBegin {
                stream_id: 9,
                header,
            })
            .unwrap();
        r.engine.tick();
        assert!(drain(&mut r.ev).is_empty(), "waits for the prefill");
        send(&r, 9, &packets);
        r.cmd
            .try_send(EngineCommand::PlayEnd { stream_id: 9 })
            .unwrap();
        for _ in 0..15 {
            r.engine.tick();
        }
        let events = drain(&mut r.ev);
        assert_eq!(events[0], EngineEvent::PlaybackStarted { stream_id: 9 });
        assert_eq!(events.last().and_then(drained), Some((9, 10, 0, 0)));
        assert_eq!(samples.lock().unwrap().len(), 9600);
    }

    #[test]
    fn a_played_message_reports_the_levels_of_what_went_to_the_transmitter() {
        let out = MemoryOutput::new(16000);
        let samples = out.samples();
        let mut r = rig(vec![], Box::new(FlagCarrier::fixed(false)), out);
        let meter = Arc::new(LiveMeter::new());
        r.engine = r.engine.with_meter(meter.clone());
        let packets = encoded(&EncoderSettings::default(), &speech_like(16000, 0.6, 3));
        r.cmd
            .try_send(EngineCommand::PlayBegin {
                stream_id: 9,
                header: CodecHeader::default(),
            })
            .unwrap();
        send(&r, 9, &packets);
        r.cmd
            .try_send(EngineCommand::PlayEnd { stream_id: 9 })
            .unwrap();
        let (mut open_frames, mut seen) = (0, 0);
        for _ in 0..15 {
            r.engine.tick();
            let tx = meter.read(MeterDirection::Transmit);
            if tx.open && tx.frames != seen {
                open_frames += 1;
            }
            seen = tx.frames;
        }
        let levels = drain(&mut r.ev)
            .into_iter()
            .find_map(|e| match e {
                EngineEvent::PlaybackDrained { levels, .. } => Some(levels),
                _ => None,
            })
            .expect("drained");
        let written = Levels::measure(&samples.lock().unwrap());
        assert_eq!(levels.samples, 9600);
        assert_eq!(levels.peak, written.peak);
        assert!((levels.rms_dbfs() - written.rms_dbfs()).abs() < 1e-3);
        assert!(levels.peak_dbfs() > -12.0 && levels.rms_dbfs() < levels.peak_dbfs() - 6.0);
        assert_eq!(levels.clips, 0);
        // The transmit side of the live meter followed every frame, then read closed.
        assert_eq!(open_frames, 10);
        let tx = meter.read(MeterDirection::Transmit);
        assert_eq!(tx.frames, 11, "ten frames played, one closed reading after");
        assert!(!tx.open);
        assert_eq!(tx.peak_dbfs, SILENCE_DBFS);
        assert_eq!(
            meter.read(MeterDirection::Receive).frames,
            0,
            "squelch closed"
        );
        // A message with nothing in it reads the floor, not minus infinity.
        r.cmd
            .try_send(EngineCommand::PlayBegin {
                stream_id: 10,
                header: CodecHeader::default(),
            })
            .unwrap();
        r.cmd
            .try_send(EngineCommand::PlayEnd { stream_id: 10 })
            .unwrap();
        r.engine.tick();
        let empty = drain(&mut r.ev)
            .into_iter()
            .find_map(|e| match e {
                EngineEvent::PlaybackDrained { levels, .. } => Some(levels),
                _ => None,
            })
            .expect("drained");
        assert_eq!(
            (empty.peak_dbfs(), empty.rms_dbfs()),
            (SILENCE_DBFS, SILENCE_DBFS)
        );
    }

    /// An engine on a counting input of a steady -20 dBFS tone, with a meter: (rig, meter,
    /// reads, skips).
    fn metered_rig(
        carrier: Box<dyn CarrierDetect>,
    ) -> (Rig, Arc<LiveMeter>, Arc<AtomicU64>, Arc<AtomicU64>) {
        let (reads, skips) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let input = Counting {
            inner: FileInput::from_samples(
                crate::audio::speech::tone(16000, 1000.0, 3.0, -20.0),
                16000,
            ),
            reads: reads.clone(),
            skips: skips.clone(),
        };
        let (cmd, crx) = mpsc::channel(256);
        let (etx, ev) = mpsc::channel(4096);
        let meter = Arc::new(LiveMeter::new());
        let engine = Engine::new(
            Box::new(input),
            Box::new(MemoryOutput::new(16000)),
            carrier,
            &EncoderSettings::default(),
            crx,
            etx,
        )
        .unwrap()
        .with_meter(meter.clone());
        assert!(Arc::ptr_eq(&engine.meter(), &meter));
        (Rig { engine, cmd, ev }, meter, reads, skips)
    }

    #[test]
    fn a_closed_squelch_is_measured_only_while_someone_wants_the_levels() {
        let flag = FlagCarrier::new();
        let (mut r, meter, reads, skips) = metered_rig(Box::new(flag.clone()));
        let counts = || (reads.load(Ordering::Relaxed), skips.load(Ordering::Relaxed));
        let rx = || meter.read(MeterDirection::Receive);
        for _ in 0..3 {
            r.engine.tick();
        }
        assert_eq!(counts(), (0, 3), "nobody watches: skipped, not converted");
        assert_eq!(rx().frames, 0, "and not measured");
        // An installer watches: one frame in CLOSED_METER_EVERY (three of 60 ms here) read
        // and measured with the squelch closed, the others still skipped.
        let guard = meter.want();
        for _ in 0..6 {
            r.engine.tick();
        }
        assert_eq!(counts(), (2, 7));
        let reading = rx();
        assert_eq!(reading.frames, 2);
        assert!(!reading.open);
        assert!((reading.peak_dbfs + 20.0).abs() < 0.1, "{reading:?}");
        assert!((reading.rms_dbfs + 23.0).abs() < 0.1, "{reading:?}");
        assert_eq!(reading.detector_dbfs, None, "the detector reads a line");
        assert!(r.engine.is_idle(), "watching does not open anything");
        assert!(drain(&mut r.ev).is_empty(), "nor send anything");
        // Squelch open: measured, open.
        flag.set(true);
        r.engine.tick();
        assert!(rx().open);
        assert_eq!(rx().frames, 3);
        // The installer leaves: back to skipping, but an open squelch is still measured.
        drop(guard);
        r.engine.tick();
        assert_eq!(rx().frames, 4);
        assert!(rx().open);
        flag.set(false);
        r.cmd.try_send(EngineCommand::KeepEncoding(false)).unwrap();
        let before = counts();
        for _ in 0..3 {
            r.engine.tick();
        }
        assert_eq!(counts(), (before.0, before.1 + 3), "skipped again");
        let closed = rx();
        assert_eq!(
            closed.frames, 5,
            "one closed reading when the squelch closed"
        );
        assert!(!closed.open);
        assert_eq!(closed.rms_dbfs, SILENCE_DBFS);
        assert_eq!(meter.read(MeterDirection::Transmit).frames, 0);
    }

    #[test]
    fn a_vox_radio_reports_the_level_its_detector_compares() {
        use crate::radio::vox::{Vox, VoxSettings};
        // The tone at -20 dBFS opens a VOX set to -35 within its first 60 ms frame.
        let vox = Vox::new(VoxSettings::default()).unwrap();
        let (mut r, meter, _, _) = metered_rig(Box::new(vox));
        for frames in 1..=3 {
            r.engine.tick();
            let reading = meter.read(MeterDirection::Receive);
            assert_eq!(reading.frames, frames);
            assert!(reading.open, "{reading:?}");
            let detector = reading.detector_dbfs.expect("a VOX measures");
            assert!((detector + 20.0).abs() < 1.0, "{reading:?}");
        }
        assert_eq!(drain(&mut r.ev).first(), Some(&carrier(true)));
    }

    /// An output whose audio is heard `delay` after it is written (a sound card's ring).
    struct Delayed {
        inner: MemoryOutput,
        delay: Duration,
    }

    impl AudioOutput for Delayed {
        fn sample_rate(&self) -> u32 {
            self.inner.sample_rate()
        }
        fn write_frame(&mut self, frame: &[i16]) -> Result<(), AudioError> {
            self.inner.write_frame(frame)
        }
        fn end_of_message(&mut self) -> Result<(), AudioError> {
            self.inner.end_of_message()
        }
        fn delay(&self, _frame_len: usize) -> Duration {
            self.delay
        }
    }

    /// Plays ten packets that arrive `offset_ms` after each of the engine's 60 ms ticks,
    /// with an output that delays by `delay_ms`. Returns the samples written after each
    /// tick and the playout events.
    fn timed_playback(offset_ms: u64, delay_ms: u64) -> (Vec<usize>, Vec<EngineEvent>) {
        let out = MemoryOutput::new(16000);
        let samples = out.samples();
        let output = Delayed {
            inner: out,
            delay: Duration::from_millis(delay_ms),
        };
        let (cmd, crx) = mpsc::channel(256);
        let (etx, mut ev) = mpsc::channel(4096);
        let mut engine = Engine::new(
            Box::new(FileInput::from_samples(vec![], 16000)),
            Box::new(output),
            Box::new(FlagCarrier::fixed(false)),
            &EncoderSettings::default(),
            crx,
            etx,
        )
        .unwrap();
        let packets = encoded(&EncoderSettings::default(), &speech_like(16000, 0.6, 3));
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        cmd.try_send(EngineCommand::PlayBegin {
            stream_id: 4,
            header: CodecHeader::default(),
        })
        .unwrap();
        let mut written = Vec::new();
        for tick in 0..16u64 {
            let now = tick * 60;
            // Packet k arrives at 60 k + offset: the engine sees it at its next tick.
            for (k, data) in packets.iter().enumerate() {
                let arrival = k as u64 * 60 + offset_ms;
                if arrival < now && arrival + 60 >= now {
                    cmd.try_send(EngineCommand::PlayPacket {
                        stream_id: 4,
                        packet_id: k as u32,
                        data: data.clone(),
                        arrival: at(arrival),
                    })
                    .unwrap();
                    if k + 1 == packets.len() {
                        cmd.try_send(EngineCommand::PlayEnd { stream_id: 4 })
                            .unwrap();
                    }
                }
            }
            engine.tick_at(at(now));
            written.push(samples.lock().unwrap().len());
        }
        (written, drain(&mut ev))
    }

    #[test]
    fn a_message_starts_when_its_first_packet_has_waited_the_depth() {
        // Packet 0 arrives at 13 ms: due at 133 ms (the default depth is 120 ms). The tick at
        // 60 ms would be early even with a whole frame of silence first; the tick at 120 ms
        // starts it with 13 ms (208 samples) of silence, so it is heard at 133 ms.
        let (written, events) = timed_playback(13, 0);
        assert_eq!(written[..3], [0, 0, 960], "{written:?}");
        assert_eq!(events[0], EngineEvent::PlaybackStarted { stream_id: 4 });
        assert_eq!(events.last().and_then(drained), Some((4, 10, 0, 0)));
        // Every packet played, after 208 samples of silence: packet k is heard at
        // 133 + 60 k ms, exactly the depth after it arrived.
        assert_eq!(*written.last().unwrap(), 208 + 10 * 960);

        // An output that holds 50 ms: written at the 60 ms tick, heard from 110 ms, packet 0
        // after 23 ms (368 samples) more.
        let (written, _) = timed_playback(13, 50);
        assert_eq!(written[..2], [0, 960], "{written:?}");
        assert_eq!(*written.last().unwrap(), 368 + 10 * 960);

        // Packets right on the tick: due exactly at a tick, no silence first.
        let (written, _) = timed_playback(0, 0);
        assert_eq!(written[..3], [0, 0, 960], "{written:?}");
        assert_eq!(*written.last().unwrap(), 10 * 960);
    }

    #[test]
    fn gaps_are_concealed_then_silent_and_bad_packets_counted() {
        let out = MemoryOutput::new(16000);
        let samples = out.samples();
        let mut r = rig(vec![], Box::new(FlagCarrier::fixed(false)), out);
        let packets = encoded(&EncoderSettings::default(), &speech_like(16000, 0.12, 4));
        r.cmd
            .try_send(EngineCommand::PlayBegin {
                stream_id: 1,
                header: CodecHeader::default(),
            })
            .unwrap();
        send(&r, 1, &packets);
        let n = packets.len() as u32;
        r.cmd
            .try_send(play(1, n, Bytes::from_static(&[0xff, 0xff, 0xff])))
            .unwrap();
        // A packet for another stream is ignored.
        r.cmd
            .try_send(play(2, 0, Bytes::from_static(&[1])))
            .unwrap();
        for _ in 0..8 {
            r.engine.tick();
        }
        // Every tick produced a full frame: no hole in the output.
        assert_eq!(samples.lock().unwrap().len(), 8 * 960);
        let stats = r.engine.stats();
        assert_eq!(stats.concealed.load(Ordering::Relaxed), MAX_CONCEAL as u64);
        assert!(stats.decode_errors.load(Ordering::Relaxed) <= 1);
        r.cmd
            .try_send(EngineCommand::PlayAbort { stream_id: 1 })
            .unwrap();
        r.engine.tick();
        let n = samples.lock().unwrap().len();
        r.engine.tick();
        assert_eq!(
            samples.lock().unwrap().len(),
            n,
            "nothing plays after abort"
        );
    }

    #[test]
    fn late_and_duplicate_packets_are_counted_when_the_message_ends() {
        let out = MemoryOutput::new(16000);
        let mut r = rig(vec![], Box::new(FlagCarrier::fixed(false)), out);
        let packets = encoded(&EncoderSettings::default(), &speech_like(16000, 0.6, 3));
        r.cmd
            .try_send(EngineCommand::PlayBegin {
                stream_id: 6,
                header: CodecHeader::default(),
            })
            .unwrap();
        // Packet 4 held up; packet 5 twice.
        for (i, p) in packets.iter().enumerate().filter(|&(i, _)| i != 4) {
            r.cmd.try_send(play(6, i as u32, p.clone())).unwrap();
        }
        r.cmd.try_send(play(6, 5, packets[5].clone())).unwrap();
        for _ in 0..8 {
            r.engine.tick();
        }
        // Packet 4 comes after its turn was concealed.
        r.cmd.try_send(play(6, 4, packets[4].clone())).unwrap();
        r.cmd
            .try_send(EngineCommand::PlayEnd { stream_id: 6 })
            .unwrap();
        for _ in 0..8 {
            r.engine.tick();
        }
        let events = drain(&mut r.ev);
        assert_eq!(
            events.last().and_then(drained),
            Some((6, 9, 1, 2)),
            "{events:?}"
        );
    }

    #[test]
    fn a_codec_header_that_lies_does_not_stop_the_audio() {
        // The packets are 16 kHz, 60 ms (Opus says so in each packet); the headers claim
        // otherwise. The playout buffer paces by the header's packet duration, the decoder
        // by the packets themselves: every packet plays at its true length.
        for (rate, fpp, ms) in [(8000, 1, 20), (48000, 2, 60), (24000, 1, 10)] {
            let out = MemoryOutput::new(16000);
            let messages = out.messages();
            let mut r = rig(vec![], Box::new(FlagCarrier::fixed(false)), out);
            r.cmd
                .try_send(EngineCommand::PlayBegin {
                    stream_id: 5,
                    header: CodecHeader::new(rate, fpp, ms).unwrap(),
                })
                .unwrap();
            send(
                &r,
                5,
                &encoded(&EncoderSettings::default(), &speech_like(16000, 0.6, 9)),
            );
            r.cmd
                .try_send(EngineCommand::PlayEnd { stream_id: 5 })
                .unwrap();
            for _ in 0..40 {
                r.engine.tick();
            }
            let events = drain(&mut r.ev);
            assert!(
                events
                    .iter()
                    .filter_map(drained)
                    .any(|d| d == (5, 10, 0, 0)),
                "{rate} {fpp} {ms}: {events:?}"
            );
            let played = messages.lock().unwrap();
            assert_eq!(played.len(), 1);
            assert_eq!(played[0].len(), 10 * 960, "{rate} {fpp} {ms}");
            assert_eq!(r.engine.stats().decode_errors.load(Ordering::Relaxed), 0);
        }
    }

    #[test]
    fn plays_any_header_the_apps_send_at_the_output_rate() {
        for (rate, fpp, ms) in [
            (48000, 2, 20),
            (8000, 1, 60),
            (24000, 1, 10),
            (12000, 2, 40),
        ] {
            let out = MemoryOutput::new(16000);
            let messages = out.messages();
            let mut r = rig(vec![], Box::new(FlagCarrier::fixed(false)), out);
            let header = CodecHeader::new(rate, fpp, ms).unwrap();
            let packets = encoded(
                &EncoderSettings {
                    sample_rate: rate,
                    frame_ms: ms,
                    frames_per_packet: fpp,
                    ..EncoderSettings::default()
                },
                &speech_like(rate, 1.0, 6),
            );
            r.cmd
                .try_send(EngineCommand::PlayBegin {
                    stream_id: 3,
                    header,
                })
                .unwrap();
            send(&r, 3, &packets);
            let n = packets.len();
            r.cmd
                .try_send(EngineCommand::PlayEnd { stream_id: 3 })
                .unwrap();
            for _ in 0..40 {
                r.engine.tick();
            }
            let played = messages.lock().unwrap();
            assert_eq!(played.len(), 1, "{header:?}");
            // Every packet decoded to its duration at the output's 16 kHz.
            assert_eq!(
                played[0].len(),
                n * header.packet_ms() as usize * 16,
                "{header:?}"
            );
        }
    }
}

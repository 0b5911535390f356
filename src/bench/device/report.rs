//! What `bench --device` measures, turn by turn, and the figures it reports from them.

use super::*;

// --- What is measured, run by run -------------------------------------------------------

/// One idle condition: the gateway and `arecord` over the same seconds.
#[derive(Debug, Clone)]
pub(crate) struct IdleRun {
    pub(crate) gateway: Usage,
    pub(crate) arecord: Usage,
}

/// One message through the gateway.
#[derive(Debug, Clone)]
pub(crate) struct MessageRun {
    pub(crate) usage: Usage,
    pub(crate) packets: u64,
}

/// CPU time of a paced floor and the audio it coded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PacedFloor {
    pub(crate) cpu: Duration,
    pub(crate) audio: Duration,
}

/// One turn.
#[derive(Debug, Clone)]
pub(crate) struct DeviceRun {
    /// Large blocks, small blocks, source stopped.
    pub(crate) idle: [IdleRun; 3],
    pub(crate) radio_to_zello: MessageRun,
    pub(crate) zello_to_radio: MessageRun,
    pub(crate) encoder_floor: PacedFloor,
    pub(crate) decoder_floor: PacedFloor,
}

/// Everything the device phase measured.
#[derive(Debug, Clone)]
pub(crate) struct DeviceMeasured {
    pub(crate) runs: Vec<DeviceRun>,
    pub(crate) capture: Opened,
    pub(crate) playback: Option<Opened>,
    pub(crate) arecord_period_us: u64,
    pub(crate) arecord_buffer_us: u64,
    pub(crate) onsets_sent: usize,
    pub(crate) start_latencies_ms: Vec<f64>,
    pub(crate) peak_rss_kb: Option<u64>,
}

// --- The report ---------------------------------------------------------------------------

/// One idle condition, medians of the turns; CPU in percent of one core.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdleFigures {
    /// The latency the player feeding silence asked for; `null`: no player (source stopped).
    pub feeder_latency_ms: Option<u32>,
    /// The gateway.
    pub gateway_percent_of_core: f64,
    /// `arecord` on the same device at the same period, over the same seconds.
    pub arecord_percent_of_core: f64,
    /// `gateway_percent_of_core - arecord_percent_of_core`: what the gateway adds.
    pub excess_percent_of_core: f64,
    /// Wake-ups (voluntary + involuntary context switches) per second, all threads.
    pub gateway_wakeups_per_s: f64,
    pub arecord_wakeups_per_s: f64,
    /// The gateway, turn by turn.
    pub gateway_runs_percent_of_core: Vec<f64>,
    /// `arecord`, turn by turn.
    pub arecord_runs_percent_of_core: Vec<f64>,
}

/// One direction through the gateway, medians of the turns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DirectionFigures {
    /// The gateway's CPU seconds per second of audio carried, its idle cost (source fed in
    /// large blocks) over the same time subtracted; 0 for a turn whose message cost less
    /// than idling did while watched.
    pub cpu_s_per_audio_s: f64,
    pub runs_cpu_s_per_audio_s: Vec<f64>,
    /// Turns whose message cost less than idling did: the idle cost moved between the watch
    /// and the message (a capture thread spinning, say), and the gross figure and the
    /// threads say more than the subtraction.
    pub turns_below_idle: usize,
    /// The same with nothing subtracted: when the gateway's idle cost moves between the
    /// idle watch and the message, this says what the message took in all.
    pub gross_cpu_s_per_audio_s: f64,
    /// libopus alone, paced one frame per sleep in real time, same settings: the encoder
    /// for radio -> Zello, the decoder at the card's rate for Zello -> radio.
    pub paced_floor_cpu_s_per_audio_s: f64,
    pub paced_floor_runs_cpu_s_per_audio_s: Vec<f64>,
    /// `cpu_s_per_audio_s / paced_floor_cpu_s_per_audio_s` (of the medians).
    pub ratio_to_paced_floor: f64,
    /// Packets carried, all turns.
    pub packets: u64,
    /// Wake-ups of all the gateway's threads per packet while the message went through
    /// (idle wake-ups included: they are what a real-time message costs).
    pub wakeups_per_packet: f64,
    /// The same per second.
    pub wakeups_per_s: f64,
}

/// One thread name of the gateway in one condition (the last turn).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThreadFigures {
    /// The thread's name (`comm`).
    pub name: String,
    /// Threads of that name.
    pub threads: usize,
    pub cpu_percent_of_core: f64,
    pub wakeups_per_s: f64,
}

/// The gateway's threads in each condition, busiest first (the last turn).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceThreads {
    pub idle_large_blocks: Vec<ThreadFigures>,
    pub idle_small_blocks: Vec<ThreadFigures>,
    pub idle_source_stopped: Vec<ThreadFigures>,
    pub radio_to_zello: Vec<ThreadFigures>,
    pub zello_to_radio: Vec<ThreadFigures>,
}

/// From the audio reaching the source to the message's first packet at the emulator.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StartLatency {
    /// Bursts played.
    pub onsets: usize,
    /// Bursts heard at the source whose message reached the emulator.
    pub measured: usize,
    pub median_ms: Option<f64>,
    pub min_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Burst by burst.
    pub onsets_ms: Vec<f64>,
    /// The gateway's `timing.rx_min_ms`: a carrier must last this long to start a message.
    pub rx_min_ms: u32,
    /// `rx_min_ms` + one frame + 20 ms, to compare with.
    pub compare_ms: f64,
}

/// The device phase's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceReport {
    /// The ALSA capture and playback devices.
    pub input: String,
    pub output: String,
    /// The device period asked for (`--period-ms`); `null`: the gateway's default.
    pub period_ms_requested: Option<u32>,
    /// What the gateway got, from its log.
    pub capture: Opened,
    pub playback: Option<Opened>,
    /// The capture period, ms.
    pub capture_period_ms: f64,
    /// `arecord`'s `--period-time` and `--buffer-time` (the gateway's capture period and
    /// buffer; four periods when its log gives no buffer).
    pub arecord_period_us: u64,
    pub arecord_buffer_us: u64,
    /// Turns, and seconds each idle condition was watched.
    pub runs: usize,
    pub idle_seconds: f64,
    pub idle_large_blocks: IdleFigures,
    pub idle_small_blocks: IdleFigures,
    pub idle_source_stopped: IdleFigures,
    pub radio_to_zello: DirectionFigures,
    pub zello_to_radio: DirectionFigures,
    pub threads: DeviceThreads,
    /// The gateway's peak resident set (VmHWM), MiB.
    pub peak_rss_mb: Option<f64>,
    pub start_latency: StartLatency,
}

/// `part` over `whole`, 0 when there is no whole.
pub(super) fn ratio(part: f64, whole: f64) -> f64 {
    if whole > 0.0 { part / whole } else { 0.0 }
}

/// The gateway's CPU seconds per audio second in a message, its idle cost over the same
/// time taken off: below zero when the message cost less than idling did while watched.
pub(crate) fn excess_per_audio_s(message: &MessageRun, idle: &Usage, packet: Duration) -> f64 {
    let idle_rate = ratio(idle.cpu.as_secs_f64(), idle.wall.as_secs_f64());
    let excess = message.usage.cpu.as_secs_f64() - idle_rate * message.usage.wall.as_secs_f64();
    let audio = packet.as_secs_f64() * message.packets as f64;
    ratio(excess, audio)
}

pub(super) fn thread_figures(u: &Usage) -> Vec<ThreadFigures> {
    let wall = u.wall.as_secs_f64();
    u.threads
        .iter()
        .map(|t| ThreadFigures {
            name: t.name.clone(),
            threads: t.threads,
            cpu_percent_of_core: round(procstat::percent(t.cpu, u.wall), 3),
            wakeups_per_s: round(ratio(t.wakeups as f64, wall), 1),
        })
        .collect()
}

pub(super) fn idle_figures(
    runs: &[DeviceRun],
    which: usize,
    feeder_latency_ms: Option<u32>,
) -> IdleFigures {
    let of = |f: &dyn Fn(&IdleRun) -> f64| -> Vec<f64> {
        runs.iter().map(|r| f(&r.idle[which])).collect()
    };
    let gateway = of(&|i| i.gateway.percent_of_core());
    let arecord = of(&|i| i.arecord.percent_of_core());
    let m = |v: &[f64]| median(v).unwrap_or(0.0);
    IdleFigures {
        feeder_latency_ms,
        gateway_percent_of_core: round(m(&gateway), 3),
        arecord_percent_of_core: round(m(&arecord), 3),
        excess_percent_of_core: round(m(&gateway) - m(&arecord), 3),
        gateway_wakeups_per_s: round(m(&of(&|i| i.gateway.wakeups_per_s())), 1),
        arecord_wakeups_per_s: round(m(&of(&|i| i.arecord.wakeups_per_s())), 1),
        gateway_runs_percent_of_core: gateway.iter().map(|&x| round(x, 3)).collect(),
        arecord_runs_percent_of_core: arecord.iter().map(|&x| round(x, 3)).collect(),
    }
}

pub(super) fn direction_figures(
    runs: &[DeviceRun],
    packet: Duration,
    message: impl Fn(&DeviceRun) -> &MessageRun,
    floor: impl Fn(&DeviceRun) -> PacedFloor,
) -> DirectionFigures {
    let net: Vec<f64> = runs
        .iter()
        .map(|r| excess_per_audio_s(message(r), &r.idle[0].gateway, packet))
        .collect();
    let per_audio: Vec<f64> = net.iter().map(|&x| x.max(0.0)).collect();
    let gross: Vec<f64> = runs
        .iter()
        .map(|r| {
            let m = message(r);
            ratio(
                m.usage.cpu.as_secs_f64(),
                packet.as_secs_f64() * m.packets as f64,
            )
        })
        .collect();
    let floors: Vec<f64> = runs
        .iter()
        .map(|r| {
            let f = floor(r);
            ratio(f.cpu.as_secs_f64(), f.audio.as_secs_f64())
        })
        .collect();
    let per_packet: Vec<f64> = runs
        .iter()
        .map(|r| ratio(message(r).usage.wakeups as f64, message(r).packets as f64))
        .collect();
    let per_s: Vec<f64> = runs
        .iter()
        .map(|r| message(r).usage.wakeups_per_s())
        .collect();
    let m = |v: &[f64]| median(v).unwrap_or(0.0);
    let six = |v: &[f64]| v.iter().map(|&x| round(x, 6)).collect();
    DirectionFigures {
        cpu_s_per_audio_s: round(m(&per_audio), 6),
        runs_cpu_s_per_audio_s: six(&per_audio),
        turns_below_idle: net.iter().filter(|&&x| x < 0.0).count(),
        gross_cpu_s_per_audio_s: round(m(&gross), 6),
        paced_floor_cpu_s_per_audio_s: round(m(&floors), 6),
        paced_floor_runs_cpu_s_per_audio_s: six(&floors),
        ratio_to_paced_floor: round(ratio(m(&per_audio), m(&floors)), 2),
        packets: runs.iter().map(|r| message(r).packets).sum(),
        wakeups_per_packet: round(m(&per_packet), 2),
        wakeups_per_s: round(m(&per_s), 1),
    }
}

/// The report: medians of the turns, ratios of the medians.
pub(crate) fn report(
    opts: &BenchOptions,
    d: &DeviceOptions,
    m: &DeviceMeasured,
) -> Result<DeviceReport, BenchError> {
    let settings = opts.encoder_settings();
    let packet_ms = u64::from(settings.frame_ms) * u64::from(settings.frames_per_packet);
    let packet = Duration::from_millis(packet_ms);
    let last = m.runs.last().ok_or(BenchError::Failed {
        phase: "device",
        message: "no turn was measured".into(),
    })?;
    let rx_min_ms = TimingConfig::default().rx_min_ms;
    let lat = &m.start_latencies_ms;
    let ms = |v: Option<f64>| v.map(|x| round(x, 1));
    Ok(DeviceReport {
        input: d.input.clone(),
        output: d.output.clone(),
        period_ms_requested: d.period_ms,
        capture: m.capture,
        playback: m.playback,
        capture_period_ms: round(
            frames_us(m.capture.period_frames, m.capture.rate) as f64 / 1000.0,
            2,
        ),
        arecord_period_us: m.arecord_period_us,
        arecord_buffer_us: m.arecord_buffer_us,
        runs: m.runs.len(),
        idle_seconds: f64::from(opts.idle_seconds),
        idle_large_blocks: idle_figures(&m.runs, 0, Some(LARGE_BLOCKS_MS)),
        idle_small_blocks: idle_figures(&m.runs, 1, Some(SMALL_BLOCKS_MS)),
        idle_source_stopped: idle_figures(&m.runs, 2, None),
        radio_to_zello: direction_figures(
            &m.runs,
            packet,
            |r| &r.radio_to_zello,
            |r| r.encoder_floor,
        ),
        zello_to_radio: direction_figures(
            &m.runs,
            packet,
            |r| &r.zello_to_radio,
            |r| r.decoder_floor,
        ),
        threads: DeviceThreads {
            idle_large_blocks: thread_figures(&last.idle[0].gateway),
            idle_small_blocks: thread_figures(&last.idle[1].gateway),
            idle_source_stopped: thread_figures(&last.idle[2].gateway),
            radio_to_zello: thread_figures(&last.radio_to_zello.usage),
            zello_to_radio: thread_figures(&last.zello_to_radio.usage),
        },
        peak_rss_mb: m.peak_rss_kb.map(|kb| round(kb as f64 / 1024.0, 1)),
        start_latency: StartLatency {
            onsets: m.onsets_sent,
            measured: lat.len(),
            median_ms: ms(median(lat)),
            min_ms: ms(lat.iter().copied().min_by(f64::total_cmp)),
            max_ms: ms(lat.iter().copied().max_by(f64::total_cmp)),
            onsets_ms: lat.iter().map(|&x| round(x, 1)).collect(),
            rx_min_ms,
            compare_ms: f64::from(rx_min_ms) + packet_ms as f64 + START_MARGIN_MS,
        },
    })
}

impl DeviceReport {
    /// The device phase's rows of the table.
    pub(crate) fn write_table(&self, t: &mut String) {
        let row = |t: &mut String, what: &str, value: String, note: String| {
            let _ = writeln!(t, "  {what:<44} {value:>14}  {note}");
        };
        let buffer = |o: &Opened| {
            o.buffer_frames
                .map_or_else(String::new, |b| format!(", buffer {b} frames"))
        };
        let _ = writeln!(
            t,
            "\nThrough the sound devices {} / {} (the gateway as a child process; turns: {}, \
             medians shown):",
            self.input, self.output, self.runs
        );
        row(
            t,
            "device period the gateway got",
            format!("{:.1} ms", self.capture_period_ms),
            format!(
                "capture {} frames at {} Hz{}{}",
                self.capture.period_frames,
                self.capture.rate,
                buffer(&self.capture),
                self.playback.as_ref().map_or_else(String::new, |p| format!(
                    "; playback {} frames{}",
                    p.period_frames,
                    buffer(p)
                ))
            ),
        );
        for (what, f) in [
            ("idle, source fed in large blocks", &self.idle_large_blocks),
            ("idle, source fed in small blocks", &self.idle_small_blocks),
            ("idle, source stopped", &self.idle_source_stopped),
        ] {
            let feeder = f
                .feeder_latency_ms
                .map_or_else(|| "no player".into(), |ms| format!("player at {ms} ms"));
            row(
                t,
                what,
                format!("{:.2} %", f.gateway_percent_of_core),
                format!(
                    "of one core ({feeder}); arecord {:.2} %, excess {:+.2} %; wake-ups/s {:.0} \
                     (arecord {:.0})",
                    f.arecord_percent_of_core,
                    f.excess_percent_of_core,
                    f.gateway_wakeups_per_s,
                    f.arecord_wakeups_per_s
                ),
            );
        }
        for (what, f, floor) in [
            ("radio -> Zello", &self.radio_to_zello, "encoder"),
            ("Zello -> radio", &self.zello_to_radio, "decoder"),
        ] {
            row(
                t,
                &format!("{what}, idle subtracted"),
                format!("{:.5}", f.cpu_s_per_audio_s),
                format!(
                    "CPU s per audio s (gross {:.5}), {:.2}x the paced {floor} ({:.5}); {:.1} \
                     wake-ups per packet, {} packets{}",
                    f.gross_cpu_s_per_audio_s,
                    f.ratio_to_paced_floor,
                    f.paced_floor_cpu_s_per_audio_s,
                    f.wakeups_per_packet,
                    f.packets,
                    if f.turns_below_idle > 0 {
                        format!(
                            "; {} of {} turns cost less than idling did: the idle cost moved, \
                             see gross and threads",
                            f.turns_below_idle, self.runs
                        )
                    } else {
                        String::new()
                    }
                ),
            );
        }
        let l = &self.start_latency;
        let opt = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.1} ms"));
        row(
            t,
            &format!("start latency (median of {} of {})", l.measured, l.onsets),
            opt(l.median_ms),
            format!(
                "min {}, max {}; rx_min_ms {} + one frame + 20 ms = {:.0} ms",
                opt(l.min_ms),
                opt(l.max_ms),
                l.rx_min_ms,
                l.compare_ms
            ),
        );
        row(
            t,
            "peak RSS of the gateway",
            self.peak_rss_mb
                .map_or_else(|| "-".into(), |v| format!("{v:.1} MiB")),
            String::new(),
        );
        for (what, threads) in [
            ("idle, large blocks", &self.threads.idle_large_blocks),
            ("idle, small blocks", &self.threads.idle_small_blocks),
            ("idle, source stopped", &self.threads.idle_source_stopped),
            ("radio -> Zello", &self.threads.radio_to_zello),
            ("Zello -> radio", &self.threads.zello_to_radio),
        ] {
            let list: Vec<String> = threads
                .iter()
                .map(|th| {
                    let n = if th.threads > 1 {
                        format!(" x{}", th.threads)
                    } else {
                        String::new()
                    };
                    format!(
                        "{}{n} {:.2} % {:.0}/s",
                        th.name, th.cpu_percent_of_core, th.wakeups_per_s
                    )
                })
                .collect();
            let _ = writeln!(t, "    threads, {what}: {}", list.join(", "));
        }
    }
}

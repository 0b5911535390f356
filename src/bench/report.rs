//! The figures `bench` reports, as JSON and as a table.

use super::*;

/// The figures of one run. Times are CPU seconds (user + system) per second of audio;
/// latencies are milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchReport {
    /// The machine: architecture, cores, CPU model.
    pub machine: String,
    /// Opus encoder complexity.
    pub complexity: u8,
    /// Opus bitrate asked for; `null`: chosen by libopus.
    pub bitrate: Option<i32>,
    /// Whether Opus in-band FEC was on (10 % expected loss), in every phase.
    pub fec: bool,
    /// Worker threads of the gateways' runtimes (0: the daemon's current-thread runtime).
    pub runtime_workers: usize,
    /// The bitrate the encoder produced on the clip (floor run), bit/s.
    pub bitrate_measured_bps: f64,
    /// Opus frame duration (one frame per packet).
    pub frame_ms: u8,
    /// Codec rate (Hz).
    pub sample_rate: u32,
    /// The sound card's rate in the pipeline (Hz), both ways.
    pub card_rate: u32,
    /// Seconds of speech in the floors and through the pipeline.
    pub audio_seconds: f64,

    /// Times the floors and the pipeline were each measured (in turns).
    pub runs: usize,
    /// libopus alone: encode + decode at 16 kHz, one thread (median of the runs).
    pub floor_cpu_s_per_audio_s: f64,
    /// The same work paced like the pipeline: one sleep until the next deadline after every
    /// frame, `speedup` times real time, the sleeps' CPU time included (median of the runs).
    /// What running in real time costs on this machine before the gateway does anything.
    pub paced_floor_cpu_s_per_audio_s: f64,
    /// The whole duplex pipeline, both gateways, without the emulator (median of the runs).
    pub pipeline_cpu_s_per_audio_s: f64,
    /// `pipeline_cpu_s_per_audio_s / floor_cpu_s_per_audio_s`.
    pub ratio_to_floor: f64,
    /// `pipeline_cpu_s_per_audio_s / paced_floor_cpu_s_per_audio_s`: the gateway's own work
    /// beside Opus, with the cost of pacing on both sides.
    pub ratio_to_paced_floor: f64,
    /// The floor, run by run.
    pub floor_runs_cpu_s_per_audio_s: Vec<f64>,
    /// The paced floor, run by run.
    pub paced_floor_runs_cpu_s_per_audio_s: Vec<f64>,
    /// The pipeline, run by run.
    pub pipeline_runs_cpu_s_per_audio_s: Vec<f64>,
    /// Of the pipeline: the codec engines' ticks and the sound cards' callbacks (resampling,
    /// carrier detect, Opus, rings), on the thread that drives them (median).
    pub pipeline_engines_cpu_s_per_audio_s: f64,
    /// Of the pipeline: everything else (bridges, sessions, WebSocket, router, tokio)
    /// (median).
    pub pipeline_network_cpu_s_per_audio_s: f64,
    /// The emulator's thread (not in the pipeline figure).
    pub emulator_cpu_s_per_audio_s: f64,
    /// Audio seconds carried per wall-clock second in the pipeline run.
    pub realtime_factor: f64,
    /// The pace the pipeline and the paced floor aimed at (times real time).
    pub speedup: f64,
    /// Packets A sent, all received and played by B.
    pub packets: u64,
    /// Packets B played late (Opus loss concealment filled in).
    pub concealed: u64,
    /// Times the pipeline loop waited for packets in flight (the machine fell behind).
    pub held_back: u64,
    /// Radio -> Zello: context switches (voluntary + involuntary) of gateway A's network
    /// threads per packet sent, from the engine's packet to the WebSocket (median of the
    /// runs).
    pub wakeups_radio_to_zello_per_packet: f64,
    /// Zello -> radio: the same for gateway B's network threads, from the WebSocket to the
    /// engine's command queue (median).
    pub wakeups_zello_to_radio_per_packet: f64,
    /// The thread that plays both sound cards and ticks both gateways' engines, per packet
    /// (one sleep per frame, and the waits when held back) (median).
    pub wakeups_engines_per_packet: f64,
    /// The emulator's thread, per packet (median).
    pub wakeups_emulator_per_packet: f64,
    /// Thread by thread (threads of one name together), medians of the runs.
    pub wakeups_threads: Vec<ThreadWakeups>,

    /// The same pipeline with both gateways serving their status API as the daemon does,
    /// each watched by one dashboard subscribed to every room (`gateway`, `radio:*`,
    /// `channel:*`, `levels:*`); run in turns with the plain one, the dashboards' threads
    /// left out as the emulator's is (median of the runs).
    pub api_pipeline_cpu_s_per_audio_s: f64,
    /// That pipeline, run by run.
    pub api_pipeline_runs_cpu_s_per_audio_s: Vec<f64>,
    /// Of that pipeline: the engines and sound cards, as `pipeline_engines_cpu_s_per_audio_s`
    /// (median), so the API's cost can be told by side.
    pub api_pipeline_engines_cpu_s_per_audio_s: f64,
    /// Of that pipeline: the network side, where the API's server and sessions run (median).
    pub api_pipeline_network_cpu_s_per_audio_s: f64,
    /// What the API and its dashboards' sessions add to the pipeline:
    /// `api_pipeline_cpu_s_per_audio_s - pipeline_cpu_s_per_audio_s` (can be below zero
    /// when the machine's noise is larger).
    pub api_added_cpu_s_per_audio_s: f64,
    /// The same in percent of `pipeline_cpu_s_per_audio_s`.
    pub api_added_cpu_percent_of_pipeline: f64,
    /// The two dashboards' own threads, per audio second (median; not in the figures above).
    pub api_dashboard_cpu_s_per_audio_s: f64,
    /// Events the two dashboards received together (room events, `LEVEL` left out), the
    /// fewest of any run.
    pub api_dashboard_events: u64,
    /// `MESSAGE_START`s among them, the fewest of any run (4: each gateway's radio and
    /// channel rooms).
    pub api_dashboard_message_starts: u64,
    /// `LEVEL`s the two dashboards received together, the fewest of any run (at most five a
    /// second of wall-clock time per radio and direction, so a fast run gets few).
    pub api_dashboard_levels: u64,
    /// `RESYNC`s the dashboards got in all runs (they fell behind): 0 when they kept up.
    pub api_dashboard_resyncs: u64,

    /// Clicks timed.
    pub latency_clicks: usize,
    /// Radio -> Zello, worst click: from the click entering A's capture ring (the callback
    /// that wrote it) to the packet encoding the frame where it starts leaving A's socket.
    pub latency_radio_to_zello_ms: Option<f64>,
    /// Radio -> Zello, median click.
    pub latency_radio_to_zello_median_ms: Option<f64>,
    /// The target: one frame + 5 ms.
    pub latency_radio_to_zello_target_ms: f64,
    /// Zello -> radio, worst click: from the packet carrying the click arriving in B's
    /// socket to the playback callback that took that packet's first sample out of B's
    /// ring (found from the callback that took the click out and the click's place in its
    /// packet's decoded audio).
    pub latency_zello_to_radio_ms: Option<f64>,
    /// Zello -> radio, median click.
    pub latency_zello_to_radio_median_ms: Option<f64>,
    /// The target: the playout depth + 10 ms.
    pub latency_zello_to_radio_target_ms: f64,
    /// The engine's playout depth: packets held before a message plays, in ms.
    pub playout_depth_ms: f64,
    /// Median time from A's socket to B's socket (the emulator and two loopback hops).
    pub latency_server_median_ms: Option<f64>,
    /// Median time from the click entering A's capture ring to it leaving B's playback
    /// ring: everything above plus where the click sits in its packet and Opus's lookahead.
    pub latency_end_to_end_median_ms: Option<f64>,
    /// Packets B concealed during the latency run (late arrivals).
    pub latency_concealed: u64,
    /// Radio -> Zello, click by click (clicks at successive 5 ms phases of the frame).
    pub latency_radio_to_zello_clicks_ms: Vec<f64>,
    /// Zello -> radio, click by click.
    pub latency_zello_to_radio_clicks_ms: Vec<f64>,

    /// An idle gateway with one radio (logged on, squelch closed, nothing on the channel),
    /// in real time: CPU time per wall-clock time in percent of one core, the emulator left
    /// out. `null` when the idle phase was skipped.
    pub idle_cpu_percent_of_core: Option<f64>,
    /// Seconds the idle gateway was watched, each run.
    pub idle_seconds: f64,
    /// The idle gateway serving its status API as the daemon does, nobody connected, run in
    /// turns with the plain one (median of the runs); `null` when the idle phase was skipped.
    pub idle_api_cpu_percent_of_core: Option<f64>,
    /// The idle gateway without the API, run by run (its median is
    /// `idle_cpu_percent_of_core`).
    pub idle_runs_cpu_percent_of_core: Vec<f64>,
    /// With the API, run by run.
    pub idle_api_runs_cpu_percent_of_core: Vec<f64>,

    /// Peak resident set of a gateway process with one active duplex radio, MiB, its
    /// status API on as the daemon runs it (nobody connected).
    pub peak_rss_mb_1_radio: Option<f64>,
    /// The same with ten.
    pub peak_rss_mb_10_radios: Option<f64>,
    /// Peak resident set with one radio and no status API, MiB.
    pub peak_rss_mb_1_radio_no_api: Option<f64>,
    /// The same with ten.
    pub peak_rss_mb_10_radios_no_api: Option<f64>,

    /// The gateway itself through real sound devices (`--device`); `null` without it.
    pub device: Option<DeviceReport>,
}

/// The wake-ups of the threads of one name in the pipeline, per packet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThreadWakeups {
    /// What the threads do: `radio_to_zello` (gateway A's network side), `zello_to_radio`
    /// (gateway B's), `engines`, `emulator`.
    pub role: String,
    /// The threads' name (at most 15 bytes, as the kernel keeps it).
    pub thread: String,
    /// How many threads had this name (most in any run).
    pub threads: usize,
    /// Slept and woken, per packet.
    pub voluntary_per_packet: f64,
    /// Preempted, per packet.
    pub involuntary_per_packet: f64,
}

impl BenchReport {
    /// The report as one JSON object on one line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The report as a table for people.
    pub fn to_table(&self) -> String {
        let mut t = String::new();
        let bitrate = match self.bitrate {
            Some(b) => format!("{b} bit/s"),
            None => "auto".into(),
        };
        let opt = |v: Option<f64>, unit: &str| match v {
            Some(v) => format!("{v:.1} {unit}"),
            None => "-".into(),
        };
        let _ = writeln!(t, "zello-gateway bench on {}", self.machine);
        let _ = writeln!(
            t,
            "Opus {} Hz mono, complexity {}, bitrate {bitrate} (measured {:.0} bit/s), {} ms \
             frames, 1 frame per packet, FEC {}; sound card {} Hz; runtime {}",
            self.sample_rate,
            self.complexity,
            self.bitrate_measured_bps,
            self.frame_ms,
            if self.fec {
                "on (10 % expected loss)"
            } else {
                "off"
            },
            self.card_rate,
            match self.runtime_workers {
                0 => "current-thread".to_string(),
                n => format!("{n} worker(s)"),
            }
        );
        let _ = writeln!(
            t,
            "{:.1} s of speech; pipeline paced at {}x real time; floors and pipeline measured \
             {} times in turns, medians shown\n",
            self.audio_seconds, self.speedup, self.runs
        );
        let row = |t: &mut String, what: &str, value: String, note: String| {
            let _ = writeln!(t, "  {what:<44} {value:>14}  {note}");
        };
        row(
            &mut t,
            "floor: libopus encode + decode",
            format!("{:.5}", self.floor_cpu_s_per_audio_s),
            "CPU s per audio s".into(),
        );
        row(
            &mut t,
            "floor paced like the pipeline",
            format!("{:.5}", self.paced_floor_cpu_s_per_audio_s),
            "CPU s per audio s, one sleep per frame".into(),
        );
        row(
            &mut t,
            "pipeline: both gateways, duplex",
            format!("{:.5}", self.pipeline_cpu_s_per_audio_s),
            format!(
                "CPU s per audio s, {:.2}x the floor, {:.2}x the paced floor",
                self.ratio_to_floor, self.ratio_to_paced_floor
            ),
        );
        row(
            &mut t,
            "  of which engines and sound cards",
            format!("{:.5}", self.pipeline_engines_cpu_s_per_audio_s),
            "codec thread: rings, resampling, carrier detect, Opus".into(),
        );
        row(
            &mut t,
            "  of which network side",
            format!("{:.5}", self.pipeline_network_cpu_s_per_audio_s),
            "bridges, sessions, WebSocket, tokio".into(),
        );
        row(
            &mut t,
            "emulator (not in the pipeline figure)",
            format!("{:.5}", self.emulator_cpu_s_per_audio_s),
            "CPU s per audio s".into(),
        );
        row(
            &mut t,
            "real-time factor",
            format!("{:.1}x", self.realtime_factor),
            format!(
                "{} packets, {} concealed, held back {} times",
                self.packets, self.concealed, self.held_back
            ),
        );
        let threads = |role: &str| {
            self.wakeups_threads
                .iter()
                .filter(|w| w.role == role)
                .map(|w| {
                    format!(
                        "{} {:.2} + {:.2}",
                        w.thread, w.voluntary_per_packet, w.involuntary_per_packet
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        row(
            &mut t,
            "wake-ups per packet, radio -> Zello",
            format!("{:.2}", self.wakeups_radio_to_zello_per_packet),
            format!(
                "gateway A's network threads: {} (slept + preempted)",
                threads("radio_to_zello")
            ),
        );
        row(
            &mut t,
            "wake-ups per packet, Zello -> radio",
            format!("{:.2}", self.wakeups_zello_to_radio_per_packet),
            format!("gateway B's network threads: {}", threads("zello_to_radio")),
        );
        row(
            &mut t,
            "wake-ups per packet, engines and cards",
            format!("{:.2}", self.wakeups_engines_per_packet),
            format!(
                "the thread ticking both engines (one sleep per frame); emulator {:.2}",
                self.wakeups_emulator_per_packet
            ),
        );
        row(
            &mut t,
            "pipeline with status API and dashboards",
            format!("{:.5}", self.api_pipeline_cpu_s_per_audio_s),
            format!(
                "CPU s per audio s: the API adds {:.5} ({:+.1} % of the pipeline)",
                self.api_added_cpu_s_per_audio_s, self.api_added_cpu_percent_of_pipeline
            ),
        );
        row(
            &mut t,
            "  of which engines / network side",
            format!(
                "{:.5} / {:.5}",
                self.api_pipeline_engines_cpu_s_per_audio_s,
                self.api_pipeline_network_cpu_s_per_audio_s
            ),
            "the API's server and sessions run on the network side".into(),
        );
        row(
            &mut t,
            "  what the dashboards received (fewest)",
            format!("{} events", self.api_dashboard_events),
            format!(
                "{} MESSAGE_START, {} LEVEL, {} RESYNC; their own threads {:.5} CPU s per audio s",
                self.api_dashboard_message_starts,
                self.api_dashboard_levels,
                self.api_dashboard_resyncs,
                self.api_dashboard_cpu_s_per_audio_s
            ),
        );
        row(
            &mut t,
            &format!("latency radio -> Zello (worst of {})", self.latency_clicks),
            opt(self.latency_radio_to_zello_ms, "ms"),
            format!(
                "median {}, target <= {:.0} ms",
                opt(self.latency_radio_to_zello_median_ms, "ms"),
                self.latency_radio_to_zello_target_ms
            ),
        );
        row(
            &mut t,
            &format!("latency Zello -> radio (worst of {})", self.latency_clicks),
            opt(self.latency_zello_to_radio_ms, "ms"),
            format!(
                "median {}, target <= {:.0} ms (playout depth {:.0} ms)",
                opt(self.latency_zello_to_radio_median_ms, "ms"),
                self.latency_zello_to_radio_target_ms,
                self.playout_depth_ms
            ),
        );
        row(
            &mut t,
            "emulator hop, socket to socket (median)",
            opt(self.latency_server_median_ms, "ms"),
            String::new(),
        );
        row(
            &mut t,
            "click end to end (median)",
            opt(self.latency_end_to_end_median_ms, "ms"),
            format!("{} packets concealed", self.latency_concealed),
        );
        row(
            &mut t,
            "idle gateway, 1 radio, real time",
            self.idle_cpu_percent_of_core
                .map_or_else(|| "-".into(), |v| format!("{v:.2} %")),
            format!(
                "of one core over {} s: squelch closed, nothing on the channel",
                self.idle_seconds
            ),
        );
        row(
            &mut t,
            "idle gateway with status API, nobody on it",
            self.idle_api_cpu_percent_of_core
                .map_or_else(|| "-".into(), |v| format!("{v:.2} %")),
            "of one core, in turns with the one above".into(),
        );
        let growth = |with: Option<f64>, without: Option<f64>| match (with, without) {
            (Some(w), Some(wo)) => format!(
                "{} without the API ({:+.1} MiB)",
                opt(without, "MiB"),
                w - wo
            ),
            _ => "status API on, as the daemon runs".into(),
        };
        row(
            &mut t,
            "peak RSS, 1 radio",
            opt(self.peak_rss_mb_1_radio, "MiB"),
            growth(self.peak_rss_mb_1_radio, self.peak_rss_mb_1_radio_no_api),
        );
        row(
            &mut t,
            "peak RSS, 10 radios",
            opt(self.peak_rss_mb_10_radios, "MiB"),
            growth(
                self.peak_rss_mb_10_radios,
                self.peak_rss_mb_10_radios_no_api,
            ),
        );
        if let Some(d) = &self.device {
            d.write_table(&mut t);
        }
        t
    }
}

/// What the phases measured, run by run.
pub(super) struct Measured {
    pub(super) floors: Vec<Floor>,
    pub(super) paced_floors: Vec<Floor>,
    pub(super) pipelines: Vec<pipeline::PipelineRun>,
    /// With the status API and a dashboard on each gateway.
    pub(super) api_pipelines: Vec<pipeline::PipelineRun>,
    pub(super) latencies: latency::Latencies,
    pub(super) idle: Vec<idle::IdleRun>,
    /// With the status API, nobody connected.
    pub(super) idle_api: Vec<idle::IdleRun>,
    /// With 1 and with 10 radios, the status API on, MiB.
    pub(super) peak_rss_mb: (Option<f64>, Option<f64>),
    /// The same without the status API.
    pub(super) peak_rss_mb_no_api: (Option<f64>, Option<f64>),
    pub(super) device: Option<DeviceReport>,
}

/// The report: per audio second, medians of the runs, ratios of the medians.
pub(super) fn report(opts: &BenchOptions, m: &Measured) -> BenchReport {
    let settings = opts.encoder_settings();
    let seconds = f64::from(opts.seconds);
    let floor_per_audio_s = |floors: &[Floor]| -> Vec<f64> {
        floors
            .iter()
            .map(|f| f.cpu.as_secs_f64() / seconds)
            .collect()
    };
    let floor_runs = floor_per_audio_s(&m.floors);
    let paced_floor_runs = floor_per_audio_s(&m.paced_floors);
    let pipelines = &m.pipelines;
    let per_audio_s = |p: &pipeline::PipelineRun, cpu: Duration| {
        cpu.as_secs_f64() / p.audio.as_secs_f64().max(f64::MIN_POSITIVE)
    };
    let pipeline_runs: Vec<f64> = pipelines.iter().map(|p| per_audio_s(p, p.cpu)).collect();
    let api_pipeline_runs: Vec<f64> = m
        .api_pipelines
        .iter()
        .map(|p| per_audio_s(p, p.cpu))
        .collect();
    let dashboard_runs: Vec<f64> = m
        .api_pipelines
        .iter()
        .map(|p| per_audio_s(p, p.dashboard_cpu))
        .collect();
    let received: Vec<_> = m
        .api_pipelines
        .iter()
        .map(|p| p.dashboard.unwrap_or_default())
        .collect();
    let fewest =
        |f: fn(&super::dashboard::Received) -> u64| received.iter().map(f).min().unwrap_or(0);
    let idle_runs: Vec<f64> = m
        .idle
        .iter()
        .map(|i| round(i.percent_of_core(), 3))
        .collect();
    let idle_api_runs: Vec<f64> = m
        .idle_api
        .iter()
        .map(|i| round(i.percent_of_core(), 3))
        .collect();
    let engines_runs: Vec<f64> = pipelines
        .iter()
        .map(|p| per_audio_s(p, p.engines_cpu))
        .collect();
    let network_runs: Vec<f64> = pipelines
        .iter()
        .map(|p| per_audio_s(p, p.cpu.saturating_sub(p.engines_cpu)))
        .collect();
    let api_engines_runs: Vec<f64> = m
        .api_pipelines
        .iter()
        .map(|p| per_audio_s(p, p.engines_cpu))
        .collect();
    let api_network_runs: Vec<f64> = m
        .api_pipelines
        .iter()
        .map(|p| per_audio_s(p, p.cpu.saturating_sub(p.engines_cpu)))
        .collect();
    let emulator_runs: Vec<f64> = pipelines
        .iter()
        .map(|p| per_audio_s(p, p.emulator_cpu))
        .collect();
    let realtime_runs: Vec<f64> = pipelines
        .iter()
        .map(|p| p.audio.as_secs_f64() / p.wall.as_secs_f64().max(1e-9))
        .collect();
    let per_packet = |p: &pipeline::PipelineRun, n: u64| n as f64 / p.packets.max(1) as f64;
    let wakeups = |f: &dyn Fn(&pipeline::PipelineWakeups) -> u64| -> f64 {
        let runs: Vec<f64> = pipelines
            .iter()
            .map(|p| per_packet(p, f(&p.wakeups)))
            .collect();
        round(median(&runs).unwrap_or(0.0), 2)
    };
    let floor_per_s = median(&floor_runs).unwrap_or(0.0);
    let paced_floor_per_s = median(&paced_floor_runs).unwrap_or(0.0);
    let pipeline_per_s = median(&pipeline_runs).unwrap_or(0.0);
    let api_pipeline_per_s = median(&api_pipeline_runs).unwrap_or(0.0);
    let api_added = if m.api_pipelines.is_empty() {
        0.0
    } else {
        api_pipeline_per_s - pipeline_per_s
    };
    let packets = pipelines.first().map_or(0, |p| p.packets);
    let bytes = m.floors.first().map_or(0, |f| f.bytes);
    let lat = &m.latencies;

    let packet_ms = f64::from(settings.frame_ms) * f64::from(settings.frames_per_packet);
    // The playout buffer's depth at the start of a message (it then follows the jitter).
    let depth = f64::from(crate::audio::playout::PlayoutSettings::default().initial_depth_ms);
    let ms = |v: Option<f64>| v.map(|x| round(x, 2));
    let runs = |v: &[f64]| v.iter().map(|&x| round(x, 6)).collect();
    BenchReport {
        machine: machine(),
        complexity: settings.complexity,
        bitrate: settings.bitrate,
        fec: settings.fec,
        runtime_workers: opts.runtime_workers,
        bitrate_measured_bps: round(bytes as f64 * 8.0 / seconds, 0),
        frame_ms: settings.frame_ms,
        sample_rate: settings.sample_rate,
        card_rate: rig::CARD_RATE,
        audio_seconds: round(seconds, 3),
        runs: opts.runs,
        floor_cpu_s_per_audio_s: round(floor_per_s, 6),
        paced_floor_cpu_s_per_audio_s: round(paced_floor_per_s, 6),
        pipeline_cpu_s_per_audio_s: round(pipeline_per_s, 6),
        ratio_to_floor: round(pipeline_per_s / floor_per_s.max(1e-9), 2),
        ratio_to_paced_floor: round(pipeline_per_s / paced_floor_per_s.max(1e-9), 2),
        floor_runs_cpu_s_per_audio_s: runs(&floor_runs),
        paced_floor_runs_cpu_s_per_audio_s: runs(&paced_floor_runs),
        pipeline_runs_cpu_s_per_audio_s: runs(&pipeline_runs),
        pipeline_engines_cpu_s_per_audio_s: round(median(&engines_runs).unwrap_or(0.0), 6),
        pipeline_network_cpu_s_per_audio_s: round(median(&network_runs).unwrap_or(0.0), 6),
        emulator_cpu_s_per_audio_s: round(median(&emulator_runs).unwrap_or(0.0), 6),
        realtime_factor: round(median(&realtime_runs).unwrap_or(0.0), 2),
        speedup: f64::from(opts.speedup),
        packets,
        concealed: pipelines.iter().map(|p| p.concealed).sum(),
        held_back: pipelines.iter().map(|p| p.held_back).sum(),
        wakeups_radio_to_zello_per_packet: wakeups(&|w| wakeups::total(&w.radio_to_zello).total()),
        wakeups_zello_to_radio_per_packet: wakeups(&|w| wakeups::total(&w.zello_to_radio).total()),
        wakeups_engines_per_packet: wakeups(&|w| w.engines.total()),
        wakeups_emulator_per_packet: wakeups(&|w| w.emulator.total()),
        wakeups_threads: thread_wakeups(pipelines),
        api_pipeline_cpu_s_per_audio_s: round(api_pipeline_per_s, 6),
        api_pipeline_runs_cpu_s_per_audio_s: runs(&api_pipeline_runs),
        api_pipeline_engines_cpu_s_per_audio_s: round(median(&api_engines_runs).unwrap_or(0.0), 6),
        api_pipeline_network_cpu_s_per_audio_s: round(median(&api_network_runs).unwrap_or(0.0), 6),
        api_added_cpu_s_per_audio_s: round(api_added, 6),
        api_added_cpu_percent_of_pipeline: round(100.0 * api_added / pipeline_per_s.max(1e-9), 2),
        api_dashboard_cpu_s_per_audio_s: round(median(&dashboard_runs).unwrap_or(0.0), 6),
        api_dashboard_events: fewest(|r| r.events),
        api_dashboard_message_starts: fewest(|r| r.message_starts),
        api_dashboard_levels: fewest(|r| r.levels),
        api_dashboard_resyncs: received.iter().map(|r| r.resyncs).sum(),
        latency_clicks: lat.radio_to_zello.len(),
        latency_radio_to_zello_ms: ms(worst(&lat.radio_to_zello)),
        latency_radio_to_zello_median_ms: ms(median(&lat.radio_to_zello)),
        latency_radio_to_zello_target_ms: packet_ms + 5.0,
        latency_zello_to_radio_ms: ms(worst(&lat.zello_to_radio)),
        latency_zello_to_radio_median_ms: ms(median(&lat.zello_to_radio)),
        latency_zello_to_radio_target_ms: depth + 10.0,
        playout_depth_ms: depth,
        latency_server_median_ms: ms(median(&lat.server)),
        latency_end_to_end_median_ms: ms(median(&lat.end_to_end)),
        latency_concealed: lat.concealed,
        latency_radio_to_zello_clicks_ms: lat.radio_to_zello.iter().map(|&x| round(x, 2)).collect(),
        latency_zello_to_radio_clicks_ms: lat.zello_to_radio.iter().map(|&x| round(x, 2)).collect(),
        idle_cpu_percent_of_core: median(&idle_runs),
        idle_seconds: m
            .idle
            .first()
            .map_or(0.0, |i| round(i.wall.as_secs_f64(), 1)),
        idle_api_cpu_percent_of_core: median(&idle_api_runs),
        idle_runs_cpu_percent_of_core: idle_runs,
        idle_api_runs_cpu_percent_of_core: idle_api_runs,
        peak_rss_mb_1_radio: m.peak_rss_mb.0,
        peak_rss_mb_10_radios: m.peak_rss_mb.1,
        peak_rss_mb_1_radio_no_api: m.peak_rss_mb_no_api.0,
        peak_rss_mb_10_radios_no_api: m.peak_rss_mb_no_api.1,
        device: m.device.clone(),
    }
}

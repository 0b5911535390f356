//! `zello-gateway history`: the recent messages on the gateway's channels, from the Zello
//! Work network's recordings, and their media downloaded with progress while the server
//! converts them.

use super::admin::{Admin, AdminError};
use super::client::{ClientOptions, MediaProgress, WorkClient};
use super::error::WorkError;
use super::types::{MediaType, Message, MetadataQuery};
use crate::config::{Config, ConfigError};
use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::Offset;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Options of `zello-gateway history`.
#[derive(clap::Args, Debug, Clone)]
pub struct HistoryArgs {
    /// The admin file (as for `provision`); ZELLO_* environment variables override it.
    #[arg(long)]
    pub admin: Option<PathBuf>,
    /// Only messages sent by this user.
    #[arg(long)]
    pub sender: Option<String>,
    /// Only this channel (may be given more than once); by default every channel of the
    /// configuration.
    #[arg(long = "channel", value_name = "CHANNEL")]
    pub channels: Vec<String>,
    /// Only this kind of message.
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    pub media_type: Option<MediaType>,
    /// Only messages sent since then: Unix seconds, a UTC date and time like
    /// 2024-05-01T12:00:00Z or 2024-05-01, or an age like 90m, 2h, 7d.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only messages sent until then (as for --since).
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// At most this many messages, newest first.
    #[arg(long, default_value_t = 20)]
    pub max: u64,
    /// Download the media (voice, images) of the listed messages into this folder, as
    /// ID-SENDER.EXT; files already there are kept.
    #[arg(long, value_name = "DIR")]
    pub download: Option<PathBuf>,
}

/// Why the history could not be listed or downloaded.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The gateway configuration cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The admin credentials cannot be used.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// A call failed.
    #[error(transparent)]
    Work(#[from] WorkError),
    /// A time option cannot be read.
    #[error("{option} {value:?}: {cause}")]
    Time {
        /// `--since` or `--until`.
        option: &'static str,
        /// What was given.
        value: String,
        /// Why, and what to give instead.
        #[source]
        cause: TimeError,
    },
    /// The download folder cannot be made.
    #[error("cannot create the download folder {path}: {cause}")]
    Folder {
        /// The folder.
        path: String,
        /// Why.
        cause: std::io::Error,
    },
}

/// `ts` (Unix seconds) as `YYYY-MM-DD HH:MM:SS`, UTC.
pub fn format_utc(ts: u64) -> String {
    match i64::try_from(ts).map(Timestamp::from_second) {
        Ok(Ok(t)) => t.strftime("%Y-%m-%d %H:%M:%S").to_string(),
        // Past the year 9999: no message is that late, show the number.
        _ => ts.to_string(),
    }
}

/// What `--since`/`--until` accept, said in every error.
const TIME_FORMS: &str = "use Unix seconds, a UTC date and time like 2024-05-01T12:00:00Z or 2024-05-01, or an age like 90m, 2h, 7d";

/// Why a time given to `--since`/`--until` cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum TimeError {
    /// Not in one of the accepted forms.
    #[error("{TIME_FORMS}")]
    Form,
    /// A number too large for a time.
    #[error("too large; {TIME_FORMS}")]
    TooLarge,
    /// In the form of a date, but no day of the calendar (2024-02-31, 25:00).
    #[error("not a date and time of the calendar ({0}); {TIME_FORMS}")]
    Calendar(#[source] jiff::Error),
}

/// Reads a time given to `--since`/`--until`: Unix seconds, a UTC date (and time), or an
/// age (`90m`, `2h`, `7d`, `30s`) before `now`.
pub fn parse_time(text: &str, now: u64) -> Result<u64, TimeError> {
    let t = text.trim();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if digits(t) {
        return t.parse().map_err(|_| TimeError::TooLarge);
    }
    // One number and one unit: "2h30m" is refused, as the forms above say.
    if t.ends_with(['s', 'm', 'h', 'd']) && digits(&t[..t.len() - 1]) {
        let age = humantime::parse_duration(t).map_err(|_| TimeError::TooLarge)?;
        return Ok(now.saturating_sub(age.as_secs()));
    }
    let t = t.strip_suffix('Z').unwrap_or(t);
    let (date, time) = match t.split_once(['T', ' ']) {
        Some((d, tm)) => (d, Some(tm)),
        None => (t, None),
    };
    let fields = |s: &str, sep: char| -> Result<Vec<i64>, TimeError> {
        s.split(sep)
            .map(|n| {
                if !digits(n) || n.len() > 4 {
                    return Err(TimeError::Form);
                }
                n.parse().map_err(|_| TimeError::Form)
            })
            .collect()
    };
    let [y, m, d] = fields(date, '-')?[..] else {
        return Err(TimeError::Form);
    };
    let (h, min, sec) = match time.map(|tm| fields(tm, ':')).transpose()?.as_deref() {
        None => (0, 0, 0),
        Some(&[h, min]) => (h, min, 0),
        // A leap second counts as the second before it.
        Some(&[h, min, sec]) => (h, min, sec.min(59)),
        Some(_) => return Err(TimeError::Form),
    };
    if y < 1970 {
        return Err(TimeError::Form);
    }
    let small = |n: i64| i8::try_from(n).unwrap_or(i8::MAX);
    let civil = DateTime::new(
        i16::try_from(y).map_err(|_| TimeError::Form)?,
        small(m),
        small(d),
        small(h),
        small(min),
        small(sec),
        0,
    )
    .map_err(TimeError::Calendar)?;
    let ts = Offset::UTC
        .to_timestamp(civil)
        .map_err(TimeError::Calendar)?;
    u64::try_from(ts.as_second()).map_err(|_| TimeError::Form)
}

/// What to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters {
    /// The channels.
    pub channels: Vec<String>,
    /// Only from this sender.
    pub sender: Option<String>,
    /// Only this type.
    pub media_type: Option<MediaType>,
    /// Sent since (Unix seconds).
    pub since: Option<u64>,
    /// Sent until (Unix seconds).
    pub until: Option<u64>,
    /// At most this many.
    pub max: u64,
}

/// The messages found, newest first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Listing {
    /// Those shown.
    pub messages: Vec<Message>,
    /// How many match in all.
    pub total: u64,
}

/// The `history/getmetadata` query for one channel.
pub fn query(filters: &Filters, channel: &str) -> MetadataQuery {
    MetadataQuery {
        via_channel: Some(channel.to_string()),
        sender: filters.sender.clone(),
        media_type: filters.media_type,
        start_ts: filters.since,
        end_ts: filters.until,
        max: Some(filters.max),
        ..MetadataQuery::default()
    }
}

/// The newest `max` of several channels' messages.
pub fn merge(per_channel: Vec<(Vec<Message>, u64)>, max: u64) -> Listing {
    let mut total = 0;
    let mut messages: Vec<Message> = Vec::new();
    for (list, t) in per_channel {
        total += t;
        messages.extend(list);
    }
    messages.sort_by_key(|m| std::cmp::Reverse(m.id));
    messages.dedup_by_key(|m| m.id);
    messages.truncate(max as usize);
    Listing { messages, total }
}

/// Lists the messages matching `filters`, one query per channel.
pub async fn list(client: &WorkClient, filters: &Filters) -> Result<Listing, WorkError> {
    let mut per_channel = Vec::new();
    for c in &filters.channels {
        let m = client.metadata(&query(filters, c)).await?;
        per_channel.push((m.messages, m.total));
    }
    Ok(merge(per_channel, filters.max))
}

/// The heading of [`row`]'s columns.
pub const HEADING: &str = "     ID  TIME (UTC)           CHANNEL       SENDER          MESSAGE";

/// One message as a line of the listing.
pub fn row(m: &Message) -> String {
    let what = match m.kind.as_str() {
        "voice" => {
            let mut s = match m.duration {
                Some(ms) => format!("voice {:.1} s", ms as f64 / 1000.0),
                None => "voice".into(),
            };
            if let Some(t) = m.transcription.as_deref().filter(|t| !t.is_empty()) {
                s.push_str(&format!(" {t:?}"));
            }
            s
        }
        "call_alert" => format!("call alert {:?}", m.text.as_deref().unwrap_or_default()),
        other => other.replace('_', " "),
    };
    format!(
        "{:>7}  {}  {:<13} {:<15} {what}",
        m.id,
        format_utc(m.ts),
        m.recipient,
        m.sender
    )
}

/// A name safe in a file name: letters, digits, `.`, `_` and `-` kept, others `_`.
fn file_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The file a message's media is saved as: `ID-SENDER.EXT`, the extension from the URL
/// (or mp3 for voice, jpg for images).
pub fn file_name(m: &Message, url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let last = path.rsplit('/').next().unwrap_or_default();
    let ext = match last.rsplit_once('.') {
        Some((_, ext)) if !ext.is_empty() && ext.len() <= 5 => file_safe(ext),
        _ if m.kind == "image" => "jpg".into(),
        _ => "mp3".into(),
    };
    format!("{}-{}.{ext}", m.id, file_safe(&m.sender))
}

/// Shows how a download is going: a bar on a terminal, plain lines otherwise (journald,
/// pipes, tests).
enum Progress {
    Bar(indicatif::ProgressBar),
    Lines { label: String, last: String },
}

impl Progress {
    fn new(label: String, terminal: bool) -> Progress {
        if terminal {
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(100),
                indicatif::ProgressDrawTarget::stderr(),
            );
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix:>7} [{bar:30}] {percent:>3}% {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(label);
            bar.set_message("asking the server");
            Progress::Bar(bar)
        } else {
            Progress::Lines {
                label,
                last: String::new(),
            }
        }
    }

    fn line(&mut self, text: String) {
        if let Progress::Lines { label, last } = self
            && *last != text
        {
            eprintln!("{label}: {text}");
            *last = text;
        }
    }

    fn converting(&mut self, p: MediaProgress) {
        let (text, percent) = match p {
            MediaProgress::Waiting(p) => ("waiting in the server's queue", p),
            MediaProgress::Working(p) => ("converting", p),
            MediaProgress::Repolling => ("still converting", 0),
        };
        match self {
            Progress::Bar(bar) => {
                bar.set_message(text);
                if percent > 0 {
                    bar.set_position(percent.min(100));
                }
            }
            Progress::Lines { .. } => self.line(match p {
                MediaProgress::Repolling => text.to_string(),
                _ => format!("{text} ({percent}%)"),
            }),
        }
    }

    fn downloading(&mut self, done: u64, total: Option<u64>) {
        match self {
            Progress::Bar(bar) => {
                if done == 0 {
                    bar.set_length(total.unwrap_or(0));
                    bar.set_position(0);
                    bar.set_style(
                        indicatif::ProgressStyle::with_template(
                            "{prefix:>7} [{bar:30}] {bytes}/{total_bytes} {msg}",
                        )
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    bar.set_message("downloading");
                } else {
                    if total.is_none() {
                        bar.set_length(done);
                    }
                    bar.set_position(done);
                }
            }
            Progress::Lines { .. } => {
                if done == 0 {
                    self.line(match total {
                        Some(t) => format!("downloading {t} bytes"),
                        None => "downloading".into(),
                    });
                }
            }
        }
    }

    fn finish(self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// Downloads the media of `messages` into `dir`, printing each file saved with `print`.
/// Files already there are kept. Returns how many files were written.
pub async fn download_all(
    client: &WorkClient,
    messages: &[Message],
    dir: &Path,
    terminal: bool,
    mut print: impl FnMut(String),
) -> Result<usize, HistoryError> {
    std::fs::create_dir_all(dir).map_err(|cause| HistoryError::Folder {
        path: dir.display().to_string(),
        cause,
    })?;
    let mut written = 0;
    for m in messages {
        let Some(key) = &m.media_key else { continue };
        let mut progress = Progress::new(m.id.to_string(), terminal);
        let result = async {
            let ready = client.media(key, |p| progress.converting(p)).await?;
            let dest = dir.join(file_name(m, &ready.url));
            if dest.exists() {
                return Ok((dest, None));
            }
            let n = client
                .download(&ready.url, &dest, |done, total| {
                    progress.downloading(done, total)
                })
                .await?;
            Ok::<_, WorkError>((dest, Some(n)))
        }
        .await;
        progress.finish();
        match result? {
            (dest, Some(n)) => {
                written += 1;
                print(format!("saved {} ({n} bytes)", dest.display()));
            }
            (dest, None) => print(format!("kept {} (already there)", dest.display())),
        }
    }
    Ok(written)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl HistoryArgs {
    /// The filters these options and the configuration's channels describe.
    pub fn filters(&self, config: &Config, now: u64) -> Result<Filters, HistoryError> {
        let time = |option: &'static str, value: &Option<String>| {
            value
                .as_ref()
                .map(|v| {
                    parse_time(v, now).map_err(|cause| HistoryError::Time {
                        option,
                        value: v.clone(),
                        cause,
                    })
                })
                .transpose()
        };
        let mut channels = self.channels.clone();
        if channels.is_empty() {
            for r in &config.radios {
                if !channels.contains(&r.channel) {
                    channels.push(r.channel.clone());
                }
            }
        }
        Ok(Filters {
            channels,
            sender: self.sender.clone(),
            media_type: self.media_type,
            since: time("--since", &self.since)?,
            until: time("--until", &self.until)?,
            max: self.max,
        })
    }
}

/// `zello-gateway history`: the whole command, logging in and out.
pub async fn run(config_path: &Path, args: &HistoryArgs) -> Result<(), HistoryError> {
    let config = Config::load(config_path)?;
    let filters = args.filters(&config, now())?;
    let admin = Admin::load(args.admin.as_deref())?;
    for w in &admin.warnings {
        eprintln!("warning: {w}");
    }
    let mut client = super::login(&admin, ClientOptions::default()).await?;
    let result = async {
        let listing = list(&client, &filters).await?;
        let names = filters
            .channels
            .iter()
            .map(|c| format!("{c:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "{} of {} message(s) on {names}, newest first",
            listing.messages.len(),
            listing.total
        );
        if listing.messages.is_empty() {
            return Ok(());
        }
        println!("{HEADING}");
        for m in &listing.messages {
            println!("{}", row(m));
        }
        if let Some(dir) = &args.download {
            let terminal = std::io::stderr().is_terminal();
            download_all(&client, &listing.messages, dir, terminal, |l| {
                println!("{l}")
            })
            .await?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = client.logout().await {
        tracing::debug!("logout: {e}");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_714_564_800; // 2024-05-01 12:00:00 UTC

    #[test]
    fn dates_convert_both_ways() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(NOW), "2024-05-01 12:00:00");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(format_utc(4_102_444_799), "2099-12-31 23:59:59");
        for ts in [0, 59, 86_399, 951_782_400, NOW, NOW + 12_345, 4_102_444_799] {
            let text = format_utc(ts).replace(' ', "T") + "Z";
            assert_eq!(parse_time(&text, 0).ok(), Some(ts), "{text}");
        }
    }

    #[test]
    fn times_in_every_form() {
        assert_eq!(parse_time("1714564800", 0).ok(), Some(NOW));
        assert_eq!(parse_time("2024-05-01", 0).ok(), Some(NOW - 12 * 3600));
        assert_eq!(parse_time("2024-05-01 12:00", 0).ok(), Some(NOW));
        assert_eq!(parse_time("2024-05-01T12:00:07", 0).ok(), Some(NOW + 7));
        assert_eq!(parse_time("90m", NOW).ok(), Some(NOW - 5400));
        assert_eq!(parse_time("2h", NOW).ok(), Some(NOW - 7200));
        assert_eq!(parse_time("7d", NOW).ok(), Some(NOW - 7 * 86_400));
        assert_eq!(parse_time("30s", NOW).ok(), Some(NOW - 30));
        for bad in [
            "",
            "yesterday",
            "2h30m",
            "2024-13-01",
            "2024-05-01T25:00",
            "-5m",
            "m",
        ] {
            let e = parse_time(bad, NOW).unwrap_err().to_string();
            assert!(e.contains("like 90m"), "{bad}: {e}");
        }
    }

    #[test]
    fn days_past_the_end_of_the_month_are_refused() {
        for bad in ["2024-02-31", "2023-02-29T12:00", "2024-04-31 00:00:00Z"] {
            let e = parse_time(bad, NOW).unwrap_err();
            assert!(matches!(e, TimeError::Calendar(_)), "{bad}: {e:?}");
            let e = e.to_string();
            assert!(
                e.starts_with("not a date and time of the calendar (")
                    && e.contains("day")
                    && e.contains("like 2024-05-01T12:00:00Z"),
                "{bad}: {e}"
            );
        }
        // The last day of each month is still a date, a leap year's 29 February too.
        assert_eq!(parse_time("2024-02-29", 0).ok(), Some(1_709_164_800));
        assert_eq!(
            parse_time("2024-04-30T23:59:59Z", 0).ok(),
            Some(1_714_521_599)
        );
        // And ages are read by their unit.
        assert_eq!(parse_time("1d", NOW).ok(), Some(NOW - 86_400));
    }

    fn message(id: u64, kind: &str) -> Message {
        Message {
            id,
            kind: kind.into(),
            ts: NOW,
            sender: "driver 1".into(),
            recipient: "Dispatch".into(),
            ..Message::default()
        }
    }

    #[test]
    fn rows_and_file_names() {
        let mut m = message(6, "voice");
        m.duration = Some(2500);
        m.transcription = Some("at the gate".into());
        assert_eq!(
            row(&m),
            "      6  2024-05-01 12:00:00  Dispatch      driver 1        voice 2.5 s \"at the gate\""
        );
        let mut a = message(7, "call_alert");
        a.text = Some("Call me".into());
        assert!(row(&a).ends_with("call alert \"Call me\""));
        assert!(row(&message(8, "end_call")).ends_with("end call"));
        assert_eq!(
            file_name(&m, "https://x.zellowork.com/media/abc.mp3?sig=1"),
            "6-driver_1.mp3"
        );
        assert_eq!(
            file_name(&m, "http://127.0.0.1:1/media/k.wav"),
            "6-driver_1.wav"
        );
        assert_eq!(
            file_name(&message(9, "image"), "https://x/get"),
            "9-driver_1.jpg"
        );
        let mut odd = message(10, "voice");
        odd.sender = "../../etc/passwd".into();
        assert_eq!(
            file_name(&odd, "https://x/a.mp3"),
            "10-.._.._etc_passwd.mp3"
        );
    }

    #[test]
    fn channels_merge_newest_first() {
        let a = vec![
            message(9, "voice"),
            message(5, "voice"),
            message(1, "voice"),
        ];
        let b = vec![message(8, "image"), message(2, "voice")];
        let l = merge(vec![(a, 30), (b, 2)], 3);
        assert_eq!(l.total, 32);
        assert_eq!(
            l.messages.iter().map(|m| m.id).collect::<Vec<_>>(),
            [9, 8, 5]
        );
        let f = Filters {
            channels: vec!["Dispatch".into()],
            sender: Some("x".into()),
            media_type: Some(MediaType::Image),
            since: Some(1),
            until: Some(2),
            max: 5,
        };
        let q = query(&f, "Dispatch");
        assert_eq!(q.via_channel.as_deref(), Some("Dispatch"));
        assert_eq!((q.start_ts, q.end_ts, q.max), (Some(1), Some(2), Some(5)));
        assert_eq!(q.media_type, Some(MediaType::Image));
    }
}

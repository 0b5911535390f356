//! The `devices` listing: the sound cards the kernel knows and the ALSA devices with what
//! each can do.

use std::fmt::Write as _;

use cpal::traits::{DeviceTrait, HostTrait};
use cpal::{SampleFormat, SupportedStreamConfigRange};

pub(super) fn alsa_host() -> Result<cpal::Host, cpal::Error> {
    cpal::host_from_id(cpal::HostId::Alsa)
}

/// Generic ALSA plugin templates that are never a radio's sound card; left out of listings.
const PLUGIN_TEMPLATES: [&str; 11] = [
    "null",
    "jack",
    "oss",
    "lavrate",
    "samplerate",
    "speexrate",
    "speex",
    "upmix",
    "vdownmix",
    "a52",
    "usbstream",
];

fn listed(name: &str) -> bool {
    !PLUGIN_TEMPLATES.contains(&name)
}

fn device_name(device: &cpal::Device) -> Option<String> {
    device.id().ok().map(|id| id.id().to_string())
}

/// The names of the ALSA devices that exist (plugin templates left out).
pub(super) fn device_names(host: &cpal::Host) -> Vec<String> {
    host.devices()
        .map(|devices| {
            devices
                .filter_map(|d| device_name(&d))
                .filter(|n| listed(n))
                .collect()
        })
        .unwrap_or_default()
}

/// Standard rates shown for devices that take any rate in a range.
const STANDARD_RATES: [u32; 13] = [
    8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 88_200, 96_000, 176_400,
    192_000,
];

/// Supported rates in words: discrete rates listed, continuous ranges as `min-max`.
pub(super) fn describe_rates(ranges: &[(u32, u32)]) -> String {
    let mut discrete: Vec<u32> = ranges
        .iter()
        .filter(|(lo, hi)| lo == hi)
        .map(|(lo, _)| *lo)
        .collect();
    discrete.sort_unstable();
    discrete.dedup();
    let mut continuous: Vec<(u32, u32)> =
        ranges.iter().filter(|(lo, hi)| lo < hi).copied().collect();
    continuous.sort_unstable();
    continuous.dedup();
    let mut parts: Vec<String> = discrete.iter().map(u32::to_string).collect();
    parts.extend(continuous.iter().map(|(lo, hi)| format!("{lo}-{hi}")));
    if parts.is_empty() {
        "none".to_string()
    } else {
        format!("{} Hz", parts.join(", "))
    }
}

fn usable_format(f: SampleFormat) -> bool {
    matches!(f, SampleFormat::I16 | SampleFormat::F32)
}

/// An ALSA device as the `devices` command shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The name to put in the configuration (`audio.input` / `audio.output`).
    pub name: String,
    /// ALSA's description.
    pub description: String,
    /// It opened for capture.
    pub input: bool,
    /// It opened for playback.
    pub output: bool,
    /// Sample rates it takes with 16-bit or float samples (for devices that take any rate in
    /// a range, the standard rates in it).
    pub sample_rates: Vec<u32>,
    /// Channel counts it takes.
    pub channels: Vec<u16>,
}

/// Every ALSA device with what it can do. Opens each device briefly to ask: a device in use
/// (by this gateway too) may show as neither input nor output.
pub fn list_devices() -> Vec<DeviceInfo> {
    let Ok(host) = alsa_host() else {
        return Vec::new();
    };
    let Ok(devices) = host.devices() else {
        return Vec::new();
    };
    devices
        .filter_map(|device| {
            let name = device_name(&device)?;
            if !listed(&name) {
                return None;
            }
            let description = device
                .description()
                .map(|d| {
                    std::iter::once(d.name().to_string())
                        .chain(d.extended().map(str::to_string))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            let mut description = description;
            description.dedup();
            let input: Vec<SupportedStreamConfigRange> = device
                .supported_input_configs()
                .map(Iterator::collect)
                .unwrap_or_default();
            let output: Vec<SupportedStreamConfigRange> = device
                .supported_output_configs()
                .map(Iterator::collect)
                .unwrap_or_default();
            let (sample_rates, channels) = capabilities(input.iter().chain(output.iter()));
            Some(DeviceInfo {
                name,
                description: description.join(" / "),
                input: !input.is_empty(),
                output: !output.is_empty(),
                sample_rates,
                channels,
            })
        })
        .collect()
}

fn capabilities<'a>(
    ranges: impl Iterator<Item = &'a SupportedStreamConfigRange>,
) -> (Vec<u32>, Vec<u16>) {
    let mut rates = Vec::new();
    let mut channels = Vec::new();
    for r in ranges.filter(|r| usable_format(r.sample_format())) {
        channels.push(r.channels());
        if r.min_sample_rate() == r.max_sample_rate() {
            rates.push(r.min_sample_rate());
        } else {
            rates.extend(STANDARD_RATES.iter().filter(|&&s| r.contains_rate(s)));
        }
    }
    rates.sort_unstable();
    rates.dedup();
    channels.sort_unstable();
    channels.dedup();
    (rates, channels)
}

/// A sound card from `/proc/asound/cards`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlsaCard {
    /// Card number (may change between boots; prefer the id).
    pub index: u32,
    /// Card id, as in `plughw:CARD=<id>,DEV=0`.
    pub id: String,
    /// Driver and short name, e.g. `USB-Audio - USB Audio Device`.
    pub description: String,
    /// The long name (USB vendor, bus position...).
    pub long_name: String,
}

/// The sound cards the kernel knows (empty without `/proc/asound/cards`).
pub fn alsa_cards() -> Vec<AlsaCard> {
    std::fs::read_to_string("/proc/asound/cards")
        .map(|text| parse_asound_cards(&text))
        .unwrap_or_default()
}

/// Parses the text of `/proc/asound/cards`:
/// ```text
///  1 [Device         ]: USB-Audio - USB Audio Device
///                       C-Media Electronics Inc. USB Audio Device at usb-3f980000.usb-1.2
/// ```
pub fn parse_asound_cards(text: &str) -> Vec<AlsaCard> {
    let mut cards: Vec<AlsaCard> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with("---") {
            continue;
        }
        let head = (|| {
            let (index, rest) = trimmed.split_once(' ')?;
            let index: u32 = index.parse().ok()?;
            let rest = rest.trim_start().strip_prefix('[')?;
            let (id, rest) = rest.split_once(']')?;
            let description = rest.trim_start().strip_prefix(':')?.trim();
            Some(AlsaCard {
                index,
                id: id.trim().to_string(),
                description: description.to_string(),
                long_name: String::new(),
            })
        })();
        match head {
            Some(card) => cards.push(card),
            None => {
                if let Some(card) = cards.last_mut().filter(|c| c.long_name.is_empty()) {
                    card.long_name = trimmed.to_string();
                }
            }
        }
    }
    cards
}

fn describe_numbers<T: Copy + Into<u64> + PartialEq>(values: &[T]) -> String {
    let v: Vec<u64> = values.iter().map(|&x| x.into()).collect();
    if v.is_empty() {
        return "-".to_string();
    }
    let contiguous = v.windows(2).all(|w| w[1] == w[0] + 1);
    if contiguous && v.len() > 2 {
        format!("{}-{}", v[0], v[v.len() - 1])
    } else {
        v.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
    }
}

/// A listing of the sound cards and ALSA devices, with the names to put in the configuration.
pub fn describe_devices() -> String {
    format_devices(
        &alsa_cards(),
        &list_devices(),
        super::pulse::pulse_server_running(),
    )
}

/// The listing; `pulse_running` tells whether a PulseAudio server answers, which is why
/// ALSA's `pulse` device would not open when none does.
fn format_devices(cards: &[AlsaCard], devices: &[DeviceInfo], pulse_running: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Sound cards (/proc/asound/cards):");
    if cards.is_empty() {
        let _ = writeln!(s, "  none");
    }
    for c in cards {
        let _ = writeln!(s, "  card {} \"{}\": {}", c.index, c.id, c.description);
        if !c.long_name.is_empty() {
            let _ = writeln!(s, "      {}", c.long_name);
        }
        let _ = writeln!(
            s,
            "      use: plughw:CARD={},DEV=0 (converts rates and formats; stays the same when \
             card numbers change)",
            c.id
        );
    }
    let _ = writeln!(
        s,
        "\nALSA devices (the name goes in audio.input / audio.output):"
    );
    if devices.is_empty() {
        let _ = writeln!(s, "  none");
    }
    for d in devices {
        let dir = match (d.input, d.output) {
            (true, true) => "capture+playback",
            (true, false) => "capture",
            (false, true) => "playback",
            (false, false) if d.name == "pulse" && !pulse_running => {
                "unavailable: no PulseAudio (or PipeWire) server is running for this user; \
                 start one, or use a card's plughw: name"
            }
            (false, false) => {
                "unavailable: another program has it open (busy), or it cannot be opened"
            }
        };
        let _ = writeln!(s, "  {}", d.name);
        let _ = writeln!(
            s,
            "      {dir}; rates: {}; channels: {}",
            describe_numbers(&d.sample_rates),
            describe_numbers(&d.channels)
        );
        if !d.description.is_empty() {
            let _ = writeln!(s, "      {}", d.description);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_numbers_described() {
        assert_eq!(
            describe_rates(&[(48_000, 48_000), (44_100, 44_100), (48_000, 48_000)]),
            "44100, 48000 Hz"
        );
        assert_eq!(describe_rates(&[(1, 384_000)]), "1-384000 Hz");
        assert_eq!(describe_rates(&[]), "none");
        assert_eq!(describe_numbers(&[1u16, 2, 3, 4]), "1-4");
        assert_eq!(describe_numbers(&[1u16, 2]), "1,2");
        assert_eq!(describe_numbers(&[44_100u32, 48_000]), "44100,48000");
        assert_eq!(describe_numbers::<u32>(&[]), "-");
    }

    #[test]
    fn asound_cards_parsed() {
        let text = " 0 [vc4hdmi        ]: vc4-hdmi - vc4-hdmi\n                      vc4-hdmi\n 1 [Device         ]: USB-Audio - USB Audio Device\n                      C-Media Electronics Inc. USB Audio Device at usb-3f980000.usb-1.2, full speed\n";
        let cards = parse_asound_cards(text);
        assert_eq!(cards.len(), 2);
        assert_eq!(cards[1].index, 1);
        assert_eq!(cards[1].id, "Device");
        assert_eq!(cards[1].description, "USB-Audio - USB Audio Device");
        assert!(cards[1].long_name.starts_with("C-Media"));
        assert!(parse_asound_cards("--- no soundcards ---\n").is_empty());
        assert!(parse_asound_cards("garbage [\n]]\n 7 [x").is_empty());
        let listing = format_devices(
            &cards,
            &[DeviceInfo {
                name: "plughw:CARD=Device,DEV=0".into(),
                description: "USB Audio Device".into(),
                input: true,
                output: true,
                sample_rates: vec![44_100, 48_000],
                channels: vec![1, 2],
            }],
            true,
        );
        assert!(listing.contains("plughw:CARD=Device,DEV=0"), "{listing}");
        assert!(
            listing.contains("capture+playback; rates: 44100,48000"),
            "{listing}"
        );
    }

    #[test]
    fn a_pulse_device_without_a_server_is_told_from_a_busy_one() {
        let pulse = DeviceInfo {
            name: "pulse".into(),
            description: "PulseAudio Sound Server".into(),
            input: false,
            output: false,
            sample_rates: vec![],
            channels: vec![],
        };
        let busy = DeviceInfo {
            name: "plughw:CARD=Device,DEV=0".into(),
            ..pulse.clone()
        };
        let listing = format_devices(&[], &[pulse.clone(), busy.clone()], false);
        assert!(
            listing.contains(
                "pulse\n      unavailable: no PulseAudio (or PipeWire) server is running"
            ),
            "{listing}"
        );
        assert!(
            listing.contains("DEV=0\n      unavailable: another program has it open (busy)"),
            "{listing}"
        );
        assert!(!listing.contains("busy?"), "{listing}");
        let listing = format_devices(&[], &[pulse], true);
        assert!(
            listing.contains("pulse\n      unavailable: another program has it open (busy)"),
            "{listing}"
        );
    }
}

//! CM108/CM119-family USB sound cards: PTT on one of the chip's GPIO pins and carrier detect
//! on one of its HID input bits, both through the card's `/dev/hidrawN` node.
//!
//! # Output report
//! Every write is the 5-byte report `[0x00, 0x00, DATA, MASK, 0x00]`: bit n-1 of DATA is
//! GPIOn's level, bit n-1 of MASK makes GPIOn an output. GPIO3 high is `00 00 04 04 00`,
//! low `00 00 00 04 00`. A write sets every pin in MASK at once, so the levels of all the
//! pins driven through a node are kept (a shadow) and written together: keying one pin never
//! disturbs another. Pins nobody drives stay out of MASK.
//!
//! # Input report
//! The chip sends a report when a button input changes; byte 0 holds the bits: VOL_UP 0x01,
//! VOL_DN 0x02, MUTE_PLAY 0x04, MUTE_REC 0x08. A set bit means the input is active
//! ("pressed", the pin pulled low). AllStarLink interfaces wire COS to VOL_DN. A thread
//! waits for reports and keeps the last state; `update` only loads it. Until the first
//! report arrives after opening, the carrier reads as down whatever `invert` says: the chip
//! reports changes only, and a closed squelch (no carrier) is the usual state at start.
//!
//! # Finding the node
//! `device = "auto"` finds the hidraw node on the same USB device as the sound card named by
//! `card` (its ALSA id from `/proc/asound/cards` or `aplay -l`, an ALSA device string such as
//! `plughw:CARD=Device,DEV=0` or `hw:1,0`, or a card number). Unknown vendor and product ids
//! are used anyway (clones are common), with a log line. [`list_hidraw_for_cards`] lists the
//! candidates.
//!
//! # Sharing and unplugging
//! A PTT and a carrier detect on the same node share one open file. A failed write or read
//! closes it; the next PTT `set` reopens it (finding the node again with `"auto"`, since its
//! number may change), the carrier retries every second, and a reopened node gets the
//! shadowed pin levels written back at once.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use serde::Deserialize;
use tracing::{info, warn};

use super::polled::{LineState, PolledCarrier};
use super::{Fault, Ptt, RadioError};
use crate::audio::debug_fields;
use crate::sync::lock;

/// The `device` value that finds the node from the sound card.
pub const AUTO: &str = "auto";

fn default_device() -> String {
    AUTO.to_string()
}

fn default_gpio() -> u8 {
    3
}

/// `ptt = { type = "cm108", gpio = 3 }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cm108PttSettings {
    /// `"auto"` (default: the hidraw node of `card`) or a path such as `/dev/hidraw0`.
    #[serde(default = "default_device")]
    pub device: String,
    /// The GPIO pin, 1 to 8 (default 3, the usual PTT pin).
    #[serde(default = "default_gpio")]
    pub gpio: u8,
    /// Drive the pin low to key (default false: high keys).
    #[serde(default)]
    pub invert: bool,
    /// The sound card whose node `"auto"` finds; unset, the radio's audio device is used.
    #[serde(default)]
    pub card: Option<String>,
}

impl Default for Cm108PttSettings {
    fn default() -> Self {
        Cm108PttSettings {
            device: default_device(),
            gpio: default_gpio(),
            invert: false,
            card: None,
        }
    }
}

/// `carrier = { type = "cm108", bit = "VOL_DN" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cm108CarrierSettings {
    /// `"auto"` (default) or a path such as `/dev/hidraw0`.
    #[serde(default = "default_device")]
    pub device: String,
    /// The input bit: "VOL_UP", "VOL_DN", "MUTE_PLAY" or "MUTE_REC".
    pub bit: String,
    /// Carrier is up while the bit is clear (default false: while set).
    #[serde(default)]
    pub invert: bool,
    /// The sound card whose node `"auto"` finds; unset, the radio's audio device is used.
    #[serde(default)]
    pub card: Option<String>,
}

/// The mask of an input bit name (any case).
pub fn parse_bit(name: &str) -> Option<u8> {
    match name.trim().to_ascii_uppercase().as_str() {
        "VOL_UP" => Some(0x01),
        "VOL_DN" => Some(0x02),
        "MUTE_PLAY" => Some(0x04),
        "MUTE_REC" => Some(0x08),
        _ => None,
    }
}

/// The 5-byte output report setting the pins of `mask` to the levels in `data`.
pub fn output_report(data: u8, mask: u8) -> [u8; 5] {
    [0x00, 0x00, data & mask, mask, 0x00]
}

/// Writes one output report in one write call (a partial report is an error).
fn write_report(out: &mut dyn Write, data: u8, mask: u8) -> io::Result<()> {
    let report = output_report(data, mask);
    let n = out.write(&report)?;
    if n != report.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("wrote {n} of the {} bytes of the report", report.len()),
        ));
    }
    Ok(())
}

// --- Finding the node through sysfs ---

/// Where `"auto"` looks: the sysfs root and the folder holding the device nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// Normally `/sys`.
    pub sysfs: PathBuf,
    /// Normally `/dev`.
    pub dev: PathBuf,
}

impl Default for Discovery {
    fn default() -> Self {
        Discovery {
            sysfs: PathBuf::from("/sys"),
            dev: PathBuf::from("/dev"),
        }
    }
}

/// A sound card and the hidraw node on the same USB device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HidrawCard {
    /// ALSA card number (`hw:N`).
    pub card_index: u32,
    /// ALSA card id (`CARD=...`).
    pub card_id: String,
    /// The hidraw node, such as `/dev/hidraw0`.
    pub hidraw: PathBuf,
    /// USB vendor id.
    pub vendor: u16,
    /// USB product id.
    pub product: u16,
}

/// The chip of known CM108-family ids, for logs.
pub fn chip_name(vendor: u16, product: u16) -> Option<&'static str> {
    Some(match (vendor, product) {
        (0x0d8c, 0x000c) => "C-Media CM108",
        (0x0d8c, 0x0012) => "C-Media CM108B",
        (0x0d8c, 0x013c) => "C-Media CM108AH",
        (0x0d8c, 0x013a) => "C-Media CM119",
        (0x0d8c, 0x0013) => "C-Media CM119B",
        (0x0c76, _) => "SSS1621/1623",
        (0x1209, 0x7388) => "AIOC",
        _ => return None,
    })
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn read_hex_id(path: &Path) -> Option<u16> {
    u16::from_str_radix(&read_trimmed(path)?, 16).ok()
}

/// The USB device (the nearest ancestor with `idVendor`) of a sysfs class entry, inside
/// `root`.
fn usb_device_of(entry: &Path, root: &Path) -> Option<PathBuf> {
    let real = std::fs::canonicalize(entry).ok()?;
    let root = std::fs::canonicalize(root).ok()?;
    real.ancestors()
        .take_while(|p| p.starts_with(&root) && *p != root)
        .find(|p| p.join("idVendor").is_file() && p.join("idProduct").is_file())
        .map(Path::to_path_buf)
}

/// The entries `<prefix>N` of a sysfs class folder, with N, sorted by N.
fn numbered_entries(dir: &Path, prefix: &str) -> Vec<(u32, String, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(u32, String, PathBuf)> = rd
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let n = name.strip_prefix(prefix)?.parse().ok()?;
            Some((n, name, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// Every sound card (card number, id, USB device if any).
fn sound_cards(sysfs: &Path) -> Vec<(u32, String, Option<PathBuf>)> {
    numbered_entries(&sysfs.join("class/sound"), "card")
        .into_iter()
        .map(|(n, _, path)| {
            let id = read_trimmed(&path.join("id")).unwrap_or_default();
            (n, id, usb_device_of(&path, sysfs))
        })
        .collect()
}

fn list_in(d: &Discovery) -> Vec<HidrawCard> {
    let hidraws: Vec<(String, PathBuf)> = numbered_entries(&d.sysfs.join("class/hidraw"), "hidraw")
        .into_iter()
        .filter_map(|(_, name, path)| Some((name, usb_device_of(&path, &d.sysfs)?)))
        .collect();
    let mut out = Vec::new();
    for (card_index, card_id, usb) in sound_cards(&d.sysfs) {
        let Some(usb) = usb else { continue };
        for (name, hid_usb) in &hidraws {
            if *hid_usb == usb {
                out.push(HidrawCard {
                    card_index,
                    card_id: card_id.clone(),
                    hidraw: d.dev.join(name),
                    vendor: read_hex_id(&usb.join("idVendor")).unwrap_or(0),
                    product: read_hex_id(&usb.join("idProduct")).unwrap_or(0),
                });
            }
        }
    }
    out
}

/// Every sound card that has a hidraw node on the same USB device, by card number (for the
/// `devices` command). `sysfs_root` is normally `/sys`; the paths returned are in `/dev`.
pub fn list_hidraw_for_cards(sysfs_root: &Path) -> Vec<HidrawCard> {
    list_in(&Discovery {
        sysfs: sysfs_root.to_path_buf(),
        ..Discovery::default()
    })
}

/// How `card` names a sound card.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CardName {
    Index(u32),
    Id(String),
}

/// Reads a card name: an id (`Device`), `CARD=Device` inside an ALSA device string, `hw:1`
/// / `plughw:1,0` / `hw:Device`, `card1` or `1`.
fn parse_card(spec: &str) -> CardName {
    let s = spec.trim();
    let name = if let Some(pos) = s.find("CARD=") {
        s[pos + 5..].split(',').next().unwrap_or("")
    } else if let Some((_, rest)) = s.split_once(':') {
        rest.split(',').next().unwrap_or("")
    } else {
        s.strip_prefix("card")
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .unwrap_or(s)
    };
    let name = name.trim().trim_matches('"');
    match name.parse() {
        Ok(n) => CardName::Index(n),
        Err(_) => CardName::Id(name.to_string()),
    }
}

fn describe_candidates(list: &[HidrawCard]) -> String {
    if list.is_empty() {
        return "no sound card has a hidraw node (is a CM108-family card plugged in?)".into();
    }
    let items: Vec<String> = list
        .iter()
        .map(|c| {
            format!(
                "\"{}\" (card {}, {}, {:04x}:{:04x})",
                c.card_id,
                c.card_index,
                c.hidraw.display(),
                c.vendor,
                c.product
            )
        })
        .collect();
    format!("cards with a hidraw node: {}", items.join(", "))
}

/// Finds the hidraw node of a sound card; the error says which cards are there.
pub fn find_hidraw(d: &Discovery, card: Option<&str>) -> Result<HidrawCard, Fault> {
    let list = list_in(d);
    let Some(spec) = card else {
        let advice = format!(
            "no sound card named for \"auto\": set card (the radio's sound card, see \
             `aplay -l`) or device = \"/dev/hidrawN\"; {}",
            describe_candidates(&list)
        );
        return match list.as_slice() {
            [one] => Ok(one.clone()),
            // None plugged in (yet): a USB card may enumerate late.
            [] => Err(Fault::io(advice, io::Error::from(io::ErrorKind::NotFound))),
            _ => Err(Fault::Setting(advice)),
        };
    };
    let wanted = parse_card(spec);
    let matches = |index: u32, id: &str| match &wanted {
        CardName::Index(n) => *n == index,
        CardName::Id(name) => name == id,
    };
    if let Some(found) = list.iter().find(|c| matches(c.card_index, &c.card_id)) {
        return Ok(found.clone());
    }
    if let Some((index, id, _)) = sound_cards(&d.sysfs)
        .into_iter()
        .find(|(index, id, _)| matches(*index, id))
    {
        return Err(Fault::Device(format!(
            "sound card \"{id}\" (card {index}) has no hidraw node on its USB device: it is \
             not a CM108-family card, or its HID interface is missing; {}",
            describe_candidates(&list)
        )));
    }
    // Not plugged in (yet): a USB card may enumerate late.
    Err(Fault::io(
        format!(
            "no sound card {spec:?} (see `aplay -l`); {}",
            describe_candidates(&list)
        ),
        io::Error::from(io::ErrorKind::NotFound),
    ))
}

/// Logs what chip a node belongs to: one line, at info level for unknown ids.
fn log_chip(path: &Path, vendor: u16, product: u16) {
    match chip_name(vendor, product) {
        Some(chip) => info!(device = %path.display(), "{chip} ({vendor:04x}:{product:04x})"),
        None => info!(
            device = %path.display(),
            "USB id {vendor:04x}:{product:04x} is not a known CM108-family chip; using it \
             anyway (clones are common)"
        ),
    }
}

// --- The shared node ---

#[cfg(test)]
type Opener = Box<dyn Fn() -> io::Result<(PathBuf, File)> + Send + Sync>;

/// How a node is (re)opened.
enum Source {
    /// A fixed path.
    Path(PathBuf),
    /// Found from the sound card each time.
    Auto {
        card: Option<String>,
        discovery: Discovery,
    },
    /// Anything else (tests).
    #[cfg(test)]
    Custom(Opener),
}

impl Source {
    fn open(&self) -> io::Result<(PathBuf, File)> {
        let path = match self {
            Source::Path(p) => p.clone(),
            Source::Auto { card, discovery } => {
                let found = find_hidraw(discovery, card.as_deref())
                    .map_err(|f| io::Error::new(io::ErrorKind::NotFound, f))?;
                found.hidraw
            }
            #[cfg(test)]
            Source::Custom(open) => return open(),
        };
        let file = File::options().read(true).write(true).open(&path)?;
        Ok((path, file))
    }
}

struct NodeState {
    /// The path opened last.
    path: PathBuf,
    /// The open node; readers get duplicates of it (the same open file).
    file: Option<File>,
    writer: Option<Box<dyn Write + Send>>,
    /// Counts opens, so a reader's failure only closes the file it was reading.
    generation: u64,
    /// Shadow: the levels last written and the output mask of every pin driven through
    /// this node, and each pin's unkeyed level, written first after every (re)open.
    data: u8,
    mask: u8,
    idle: u8,
    /// Each pin can be driven by one PTT.
    owners: u8,
}

/// One hidraw node, shared by the PTTs and carrier detects that use it.
struct HidNode {
    source: Source,
    state: Mutex<NodeState>,
}

impl HidNode {
    fn new(source: Source, path: PathBuf, file: File) -> io::Result<Self> {
        let writer: Box<dyn Write + Send> = Box::new(file.try_clone()?);
        Ok(HidNode {
            source,
            state: Mutex::new(NodeState {
                path,
                file: Some(file),
                writer: Some(writer),
                generation: 1,
                data: 0,
                mask: 0,
                idle: 0,
                owners: 0,
            }),
        })
    }

    /// The path opened last.
    fn path(&self) -> PathBuf {
        lock(&self.state).path.clone()
    }

    /// Opens the node if it is closed, and puts every driven pin at its unkeyed level at
    /// once: after a replug the transmitter is unkeyed until the next `set`.
    fn ensure_open(&self, st: &mut NodeState) -> io::Result<()> {
        if st.file.is_some() {
            return Ok(());
        }
        let (path, file) = self.source.open()?;
        let mut writer: Box<dyn Write + Send> = Box::new(file.try_clone()?);
        if st.mask != 0 {
            write_report(writer.as_mut(), st.idle, st.mask)?;
            st.data = st.idle;
        }
        tracing::debug!(device = %path.display(), "hidraw node reopened");
        st.path = path;
        st.file = Some(file);
        st.writer = Some(writer);
        st.generation += 1;
        Ok(())
    }

    /// Takes pin `gpio` (1 to 8) for a PTT whose unkeyed level is `idle_high`; the pin
    /// joins the output mask. `AlreadyExists` if another PTT has it.
    fn claim(&self, gpio: u8, idle_high: bool) -> io::Result<()> {
        let bit = 1u8 << (gpio - 1);
        let mut st = lock(&self.state);
        if st.owners & bit != 0 {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("GPIO{gpio} is already used by another PTT"),
            ));
        }
        st.owners |= bit;
        st.mask |= bit;
        if idle_high {
            st.idle |= bit;
            st.data |= bit;
        } else {
            st.idle &= !bit;
            st.data &= !bit;
        }
        Ok(())
    }

    fn release(&self, gpio: u8) {
        let bit = 1u8 << (gpio - 1);
        lock(&self.state).owners &= !bit;
    }

    /// Drives claimed pin `gpio` (1 to 8) high or low, keeping every other driven pin's
    /// level. A closed node is reopened first. A failure closes the node.
    fn write_pin(&self, gpio: u8, high: bool) -> io::Result<()> {
        let bit = 1u8 << (gpio - 1);
        let mut st = lock(&self.state);
        self.ensure_open(&mut st)?;
        let data = if high { st.data | bit } else { st.data & !bit };
        let mask = st.mask | bit;
        let result = match st.writer.as_deref_mut() {
            Some(w) => write_report(w, data, mask),
            None => Err(io::Error::other("the node is closed")),
        };
        match result {
            Ok(()) => {
                st.data = data;
                st.mask = mask;
            }
            Err(_) => {
                st.file = None;
                st.writer = None;
            }
        }
        result
    }

    /// A handle to read input reports from, and the generation it belongs to.
    fn reader(&self) -> io::Result<(File, u64)> {
        let mut st = lock(&self.state);
        self.ensure_open(&mut st)?;
        match &st.file {
            Some(f) => Ok((f.try_clone()?, st.generation)),
            None => Err(io::Error::other("the node is closed")),
        }
    }

    /// Closes the node after a read failure, unless it was reopened since.
    fn invalidate(&self, generation: u64) {
        let mut st = lock(&self.state);
        if st.generation == generation {
            st.file = None;
            st.writer = None;
        }
    }
}

/// The open nodes by path, so users of one node share it.
fn nodes() -> &'static Mutex<HashMap<PathBuf, Weak<HidNode>>> {
    static NODES: OnceLock<Mutex<HashMap<PathBuf, Weak<HidNode>>>> = OnceLock::new();
    NODES.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Opens `device` (or finds and opens it), or shares the node already open at that path.
/// Errors are messages naming `key` ("ptt" or "carrier").
fn open_node(
    key: &str,
    device: &str,
    card: Option<&str>,
    d: &Discovery,
) -> Result<Arc<HidNode>, Fault> {
    let device = device.trim();
    if device.is_empty() {
        return Err(Fault::Setting(format!(
            "{key}.device is empty: use \"auto\" or a path such as /dev/hidraw0"
        )));
    }
    let (source, label, found) = if device.eq_ignore_ascii_case(AUTO) {
        let found = find_hidraw(d, card).map_err(|f| f.within(&format!("{key}.device auto")))?;
        let source = Source::Auto {
            card: card.map(str::to_string),
            discovery: d.clone(),
        };
        (source, format!("{key}.device auto"), Some(found))
    } else {
        let path = PathBuf::from(device);
        (
            Source::Path(path.clone()),
            format!("{key}.device {device}"),
            None,
        )
    };
    let path = match (&source, &found) {
        (_, Some(f)) => f.hidraw.clone(),
        (Source::Path(p), None) => p.clone(),
        _ => PathBuf::new(),
    };
    open_shared(source, &path, |e| open_advice(&label, &path, e)).inspect(|_| {
        let ids = found.as_ref().map(|f| (f.vendor, f.product)).or_else(|| {
            let name = path.file_name()?.to_str()?;
            let usb = usb_device_of(&d.sysfs.join("class/hidraw").join(name), &d.sysfs)?;
            Some((
                read_hex_id(&usb.join("idVendor"))?,
                read_hex_id(&usb.join("idProduct"))?,
            ))
        });
        if let Some((vendor, product)) = ids {
            log_chip(&path, vendor, product);
        }
    })
}

/// The shared node of `path`, opened through `source` if nobody has it open.
fn open_shared(
    source: Source,
    path: &Path,
    advice: impl Fn(&io::Error) -> String,
) -> Result<Arc<HidNode>, Fault> {
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut map = lock(nodes());
    map.retain(|_, w| w.strong_count() > 0);
    if !path.as_os_str().is_empty()
        && let Some(node) = map.get(&key).and_then(Weak::upgrade)
    {
        return Ok(node);
    }
    let (opened, file) = source.open().map_err(|e| Fault::io(advice(&e), e))?;
    let node = Arc::new(HidNode::new(source, opened, file).map_err(|e| Fault::io(advice(&e), e))?);
    if !path.as_os_str().is_empty() {
        map.insert(key, Arc::downgrade(&node));
    }
    Ok(node)
}

/// What to do about an error opening a node.
fn open_advice(label: &str, path: &Path, e: &io::Error) -> String {
    let what = if path.as_os_str().is_empty() || label.ends_with(&*path.to_string_lossy()) {
        label.to_string()
    } else {
        format!("{label} ({})", path.display())
    };
    match e.kind() {
        io::ErrorKind::NotFound => format!(
            "{what}: no such device: is the sound card plugged in? `zello-gateway devices` \
             lists the cards with a hidraw node"
        ),
        io::ErrorKind::PermissionDenied => format!(
            "{what}: permission denied: install hw/99-zello-gateway.rules (hidraw nodes of \
             CM108-family cards to the audio group) and add the user to the audio group"
        ),
        _ => format!("{what}: cannot open: {e}"),
    }
}

// --- PTT ---

/// PTT on a GPIO pin of a CM108-family chip.
pub struct Cm108Ptt {
    node: Arc<HidNode>,
    gpio: u8,
    invert: bool,
    label: String,
    failed: bool,
}

debug_fields!(Cm108Ptt { label });

fn check_gpio(gpio: u8) -> Result<(), Fault> {
    if !(1..=8).contains(&gpio) {
        return Err(Fault::Setting(format!(
            "ptt.gpio = {gpio}: CM108-family chips have GPIO1 to GPIO8 (the CM108 has 1 to \
             4); the PTT is usually GPIO3"
        )));
    }
    Ok(())
}

impl Cm108Ptt {
    /// Opens the node (finding it from the sound card with `"auto"`) and writes the unkeyed
    /// level before returning.
    pub fn open(s: &Cm108PttSettings) -> Result<Self, RadioError> {
        Self::open_with(s, &Discovery::default())
    }

    /// [`Cm108Ptt::open`] looking for `"auto"` nodes in the given places.
    pub fn open_with(s: &Cm108PttSettings, d: &Discovery) -> Result<Self, RadioError> {
        check_gpio(s.gpio).map_err(|f| RadioError::ptt("cm108", f))?;
        let node = open_node("ptt", &s.device, s.card.as_deref(), d)
            .map_err(|f| RadioError::ptt("cm108", f))?;
        Self::on_node(node, s.gpio, s.invert)
    }

    fn on_node(node: Arc<HidNode>, gpio: u8, invert: bool) -> Result<Self, RadioError> {
        let path = node.path();
        node.claim(gpio, invert).map_err(|e| {
            let message = format!("ptt.gpio = {gpio} on {}: {e}", path.display());
            RadioError::ptt("cm108", Fault::io(message, e))
        })?;
        let mut ptt = Cm108Ptt {
            node,
            gpio,
            invert,
            label: format!("cm108 {} GPIO{gpio}", path.display()),
            failed: false,
        };
        ptt.set(false)?;
        info!(ptt = %ptt.label, invert, "PTT ready, unkeyed");
        Ok(ptt)
    }
}

impl Ptt for Cm108Ptt {
    fn set(&mut self, keyed: bool) -> Result<(), RadioError> {
        match self.node.write_pin(self.gpio, keyed != self.invert) {
            Ok(()) => {
                if self.failed {
                    self.failed = false;
                    info!(ptt = %self.label, "hidraw node back");
                }
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                let message = format!(
                    "ptt.device {}: cannot {}: {e}; if the sound card was unplugged, it is \
                     reopened on the next attempt",
                    self.node.path().display(),
                    if keyed { "key" } else { "unkey" }
                );
                Err(RadioError::ptt("cm108", Fault::io(message, e)))
            }
        }
    }

    fn describe(&self) -> String {
        self.label.clone()
    }
}

impl Drop for Cm108Ptt {
    fn drop(&mut self) {
        self.node.release(self.gpio);
    }
}

/// Forces the transmitter off (the `ptt-off` command): opens the node, writes the unkeyed
/// level, closes it. The chip keeps the level.
pub fn force_off(s: &Cm108PttSettings) -> Result<(), RadioError> {
    Cm108Ptt::open(s).map(drop)
}

// --- Carrier detect ---

/// How long a read waits before checking whether to stop.
const WAIT: Duration = Duration::from_millis(200);
/// How long to wait before reopening a node that failed.
const RETRY: Duration = Duration::from_secs(1);

/// Carrier detect on an input bit of a CM108-family chip.
pub type Cm108Carrier = PolledCarrier<Cm108>;

/// Marks the CM108 card's [`PolledCarrier`].
#[derive(Debug)]
pub enum Cm108 {}

impl Cm108Carrier {
    /// Opens (or shares) the node and starts reading its input reports.
    pub fn open(s: &Cm108CarrierSettings) -> Result<Self, RadioError> {
        Self::open_with(s, &Discovery::default())
    }

    /// [`Cm108Carrier::open`] looking for `"auto"` nodes in the given places.
    pub fn open_with(s: &Cm108CarrierSettings, d: &Discovery) -> Result<Self, RadioError> {
        let mask = parse_bit(&s.bit).ok_or_else(|| {
            RadioError::carrier(
                "cm108",
                Fault::Setting(format!(
                    "carrier.bit = {:?}: unknown input; use \"VOL_UP\", \"VOL_DN\" (the usual \
                     COS input), \"MUTE_PLAY\" or \"MUTE_REC\"",
                    s.bit
                )),
            )
        })?;
        let node = open_node("carrier", &s.device, s.card.as_deref(), d)
            .map_err(|f| RadioError::carrier("cm108", f))?;
        Self::on_node(node, mask, s.invert, s.bit.trim().to_ascii_uppercase())
    }

    fn on_node(
        node: Arc<HidNode>,
        mask: u8,
        invert: bool,
        bit_name: String,
    ) -> Result<Self, RadioError> {
        let label = format!(
            "cm108 {} {}{bit_name}",
            node.path().display(),
            if invert { "!" } else { "" }
        );
        // Down until the first report (see the module documentation). `verify`: the node
        // opened for reading and no read failed for a while (a card sends no report until an
        // input changes, so a silent node is a working one).
        PolledCarrier::start(
            "cm108",
            false,
            label,
            "cm108-carrier",
            Some((Duration::from_millis(300), Duration::from_secs(3))),
            move |state, label| read_reports(node, mask, invert, state, label),
        )
    }
}

/// Waits up to `timeout` for `file` to be readable. `Ok(false)` on timeout; an error when
/// the device is gone.
fn wait_readable(file: &File, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: pfd is a valid pollfd for the duration of the call and nfds is 1.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(e)
        };
    }
    if n == 0 {
        return Ok(false);
    }
    if pfd.revents & libc::POLLIN != 0 {
        return Ok(true);
    }
    if pfd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
        return Err(io::Error::new(
            io::ErrorKind::BrokenPipe,
            "the device went away",
        ));
    }
    Ok(false)
}

/// Reads input reports until stopped, reopening the node after failures.
fn read_reports(node: Arc<HidNode>, mask: u8, invert: bool, state: Arc<LineState>, label: String) {
    let mut failing = false;
    let fail = |failing: &mut bool, e: io::Error| {
        if !*failing {
            *failing = true;
            warn!(carrier = %label, error = %e, "hidraw node unavailable, retrying every second");
        }
        state.fail(Fault::io(format!("{label}: cannot read: {e}"), e));
    };
    while !state.stopped() {
        let (mut file, generation) = match node.reader() {
            Ok(r) => r,
            Err(e) => {
                fail(&mut failing, e);
                if !state.sleep(RETRY) {
                    return;
                }
                continue;
            }
        };
        if failing {
            failing = false;
            info!(carrier = %label, "hidraw node back");
        }
        // A fresh node has sent no report yet: down until it does.
        state.set(false);
        let mut buf = [0u8; 64];
        let error = loop {
            if state.stopped() {
                return;
            }
            match wait_readable(&file, WAIT) {
                Ok(false) => continue,
                Ok(true) => {}
                Err(e) => break e,
            }
            match file.read(&mut buf) {
                Ok(0) => {
                    break io::Error::new(io::ErrorKind::UnexpectedEof, "the device went away");
                }
                Ok(_) => {
                    let active = buf[0] & mask != 0;
                    state.set(active != invert);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                    ) => {}
                Err(e) => break e,
            }
        };
        node.invalidate(generation);
        fail(&mut failing, error);
        if !state.sleep(RETRY) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radio::CarrierDetect as _;
    use crate::radio::testing::{empty_file, eventually};
    use std::os::unix::fs::symlink;

    fn bytes(path: &Path) -> Vec<u8> {
        std::fs::read(path).unwrap()
    }

    fn ptt_on(path: &Path, gpio: u8, invert: bool) -> Result<Cm108Ptt, RadioError> {
        Cm108Ptt::open(&Cm108PttSettings {
            device: path.to_str().unwrap().into(),
            gpio,
            invert,
            card: None,
        })
    }

    #[test]
    fn reports_for_gpio3() {
        assert_eq!(output_report(0x04, 0x04), [0, 0, 4, 4, 0]);
        assert_eq!(output_report(0x00, 0x04), [0, 0, 0, 4, 0]);
        // Levels outside the mask never leak into DATA.
        assert_eq!(output_report(0xff, 0x04), [0, 0, 4, 4, 0]);
    }

    #[test]
    fn ptt_writes_exact_reports_starting_unkeyed() {
        let dir = tempfile::tempdir().unwrap();
        let node = empty_file(dir.path(), "hidraw0");
        let mut ptt = ptt_on(&node, 3, false).unwrap();
        assert_eq!(bytes(&node), [0, 0, 0, 4, 0], "unkeyed right after open");
        ptt.set(true).unwrap();
        ptt.set(false).unwrap();
        assert_eq!(bytes(&node), [0, 0, 0, 4, 0, 0, 0, 4, 4, 0, 0, 0, 0, 4, 0]);
        assert_eq!(ptt.describe(), format!("cm108 {} GPIO3", node.display()));
    }

    #[test]
    fn invert_and_other_pins() {
        let dir = tempfile::tempdir().unwrap();
        let node = empty_file(dir.path(), "hidraw0");
        let mut ptt = ptt_on(&node, 1, true).unwrap();
        ptt.set(true).unwrap();
        assert_eq!(bytes(&node), [0, 0, 1, 1, 0, 0, 0, 0, 1, 0]);

        let node8 = empty_file(dir.path(), "hidraw8");
        let mut ptt = ptt_on(&node8, 8, false).unwrap();
        ptt.set(true).unwrap();
        assert_eq!(bytes(&node8), [0, 0, 0, 0x80, 0, 0, 0, 0x80, 0x80, 0]);
    }

    #[test]
    fn two_pins_on_one_node_keep_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let node = empty_file(dir.path(), "hidraw0");
        let mut a = ptt_on(&node, 3, false).unwrap();
        let mut b = ptt_on(&node, 4, false).unwrap();
        a.set(true).unwrap();
        b.set(true).unwrap();
        a.set(false).unwrap();
        let all = bytes(&node);
        let reports: Vec<&[u8]> = all.chunks(5).collect();
        assert_eq!(
            reports,
            [
                &[0, 0, 0x00, 0x04, 0][..], // a opens unkeyed
                &[0, 0, 0x00, 0x0c, 0],     // b opens unkeyed, a untouched
                &[0, 0, 0x04, 0x0c, 0],     // a keyed
                &[0, 0, 0x0c, 0x0c, 0],     // b keyed, a still keyed
                &[0, 0, 0x08, 0x0c, 0],     // a unkeyed, b still keyed
            ]
        );
        // One pin, one PTT.
        let e = ptt_on(&node, 3, false).unwrap_err().to_string();
        assert!(e.contains("GPIO3 is already used by another PTT"), "{e}");
        drop(a);
        let _again = ptt_on(&node, 3, false).unwrap();
    }

    #[test]
    fn gpio_is_validated() {
        for gpio in [0, 9, 255] {
            let e = ptt_on(Path::new("/dev/null"), gpio, false)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!(
                    "ptt.gpio = {gpio}: CM108-family chips have GPIO1 to GPIO8"
                )),
                "{e}"
            );
        }
    }

    #[test]
    fn missing_node_and_empty_device() {
        let e = ptt_on(Path::new("/dev/hidraw99"), 3, false)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "PTT cm108: ptt.device /dev/hidraw99: no such device: is the sound card plugged \
             in? `zello-gateway devices` lists the cards with a hidraw node"
        );
        let e = Cm108Ptt::open(&Cm108PttSettings {
            device: " ".into(),
            ..Cm108PttSettings::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("ptt.device is empty"), "{e}");
        assert!(
            force_off(&Cm108PttSettings {
                device: "/dev/hidraw99".into(),
                ..Cm108PttSettings::default()
            })
            .is_err()
        );
    }

    #[test]
    fn force_off_writes_the_unkeyed_report() {
        let dir = tempfile::tempdir().unwrap();
        let node = empty_file(dir.path(), "hidraw0");
        force_off(&Cm108PttSettings {
            device: node.to_str().unwrap().into(),
            invert: true,
            ..Cm108PttSettings::default()
        })
        .unwrap();
        assert_eq!(bytes(&node), [0, 0, 4, 4, 0]);
    }

    /// A node whose first open is a pipe the test can break, and whose later opens are a
    /// regular file.
    fn breakable_node(dir: &Path) -> (Arc<HidNode>, std::io::PipeReader, PathBuf, Arc<Mutex<u32>>) {
        let (reader, writer) = std::io::pipe().unwrap();
        let file = File::from(std::os::fd::OwnedFd::from(writer));
        let later = empty_file(dir, "hidraw-later");
        let opens = Arc::new(Mutex::new(0));
        let (l, o) = (later.clone(), opens.clone());
        let source = Source::Custom(Box::new(move || {
            *o.lock().unwrap() += 1;
            let f = File::options().read(true).write(true).open(&l)?;
            Ok((l.clone(), f))
        }));
        let node = Arc::new(HidNode::new(source, PathBuf::from("pipe"), file).unwrap());
        (node, reader, later, opens)
    }

    #[test]
    fn a_write_error_is_reported_and_the_next_set_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let (node, mut reader, later, opens) = breakable_node(dir.path());
        let mut ptt = Cm108Ptt::on_node(node, 3, false).unwrap();
        let mut first = [0u8; 5];
        reader.read_exact(&mut first).unwrap();
        assert_eq!(first, [0, 0, 0, 4, 0]);
        // Unplugged: the write fails (EPIPE here, ENODEV on a real node).
        drop(reader);
        let e = ptt.set(true).unwrap_err().to_string();
        assert!(
            e.starts_with("PTT cm108: ptt.device pipe: cannot key:"),
            "{e}"
        );
        assert!(e.contains("reopened on the next attempt"), "{e}");
        assert_eq!(*opens.lock().unwrap(), 0);
        // Back: the next set reopens, puts the pin at its unkeyed level first, then keys.
        ptt.set(true).unwrap();
        assert_eq!(*opens.lock().unwrap(), 1);
        assert_eq!(bytes(&later), [0, 0, 0, 4, 0, 0, 0, 4, 4, 0]);
        ptt.set(false).unwrap();
        assert_eq!(bytes(&later), [0, 0, 0, 4, 0, 0, 0, 4, 4, 0, 0, 0, 0, 4, 0]);
        assert!(ptt.describe().contains("pipe"));
    }

    fn mkfifo(path: &Path) {
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: c is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    fn carrier_on(path: &Path, bit: &str, invert: bool) -> Result<Cm108Carrier, RadioError> {
        Cm108Carrier::open(&Cm108CarrierSettings {
            device: path.to_str().unwrap().into(),
            bit: bit.into(),
            invert,
            card: None,
        })
    }

    #[test]
    fn carrier_follows_input_reports() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("hidraw0");
        mkfifo(&fifo);
        let mut cos = carrier_on(&fifo, "vol_dn", false).unwrap();
        assert_eq!(cos.describe(), format!("cm108 {} VOL_DN", fifo.display()));
        let mut chip = File::options().write(true).open(&fifo).unwrap();
        assert!(!cos.update(-90.0, 20).unwrap());
        chip.write_all(&[0x02, 0, 0, 0]).unwrap();
        assert!(eventually(|| cos.update(-90.0, 20).unwrap()));
        // Other bits do not matter.
        chip.write_all(&[0x0d, 0, 0, 0]).unwrap();
        assert!(eventually(|| !cos.update(-90.0, 20).unwrap()));
        chip.write_all(&[0x03, 0, 0, 0]).unwrap();
        assert!(eventually(|| cos.update(-90.0, 20).unwrap()));

        let fifo2 = dir.path().join("hidraw1");
        mkfifo(&fifo2);
        let mut inverted = carrier_on(&fifo2, "VOL_UP", true).unwrap();
        let mut chip2 = File::options().write(true).open(&fifo2).unwrap();
        assert!(
            !inverted.update(-90.0, 20).unwrap(),
            "down until the first report, even inverted"
        );
        chip2.write_all(&[0x00, 0, 0, 0]).unwrap();
        assert!(
            eventually(|| inverted.update(-90.0, 20).unwrap()),
            "bit clear: up"
        );
        chip2.write_all(&[0x01, 0, 0, 0]).unwrap();
        assert!(
            eventually(|| !inverted.update(-90.0, 20).unwrap()),
            "bit set: down"
        );
    }

    #[test]
    fn carrier_reports_errors_and_recovers() {
        let (reader, writer) = std::io::pipe().unwrap();
        let (next_tx, next_rx) = std::sync::mpsc::channel::<File>();
        let next_rx = Mutex::new(next_rx);
        let source = Source::Custom(Box::new(move || {
            let f = next_rx
                .lock()
                .unwrap()
                .try_recv()
                .map_err(|_| io::Error::new(io::ErrorKind::NotFound, "unplugged"))?;
            Ok((PathBuf::from("pipe"), f))
        }));
        let file = File::from(std::os::fd::OwnedFd::from(reader));
        let node = Arc::new(HidNode::new(source, PathBuf::from("pipe"), file).unwrap());
        let mut cos = Cm108Carrier::on_node(node, 0x08, false, "MUTE_REC".into()).unwrap();
        let mut chip = writer;
        chip.write_all(&[0x08]).unwrap();
        assert!(eventually(|| cos.update(-90.0, 20).is_ok_and(|up| up)));
        // Unplugged: the reader sees the end, the reopen fails.
        drop(chip);
        assert!(eventually(|| cos.update(-90.0, 20).is_err()));
        let e = cos.update(-90.0, 20).unwrap_err().to_string();
        assert!(
            e.starts_with("carrier detect cm108: cm108 pipe MUTE_REC: cannot read"),
            "{e}"
        );
        // Plugged back in: read again, starting down.
        let (reader, mut chip) = std::io::pipe().unwrap();
        next_tx
            .send(File::from(std::os::fd::OwnedFd::from(reader)))
            .unwrap();
        assert!(eventually(|| cos.update(-90.0, 20).is_ok_and(|up| !up)));
        chip.write_all(&[0x08]).unwrap();
        assert!(eventually(|| cos.update(-90.0, 20).is_ok_and(|up| up)));
    }

    #[test]
    fn bits_are_validated() {
        assert_eq!(parse_bit("VOL_UP"), Some(1));
        assert_eq!(parse_bit("vol_dn"), Some(2));
        assert_eq!(parse_bit("MUTE_PLAY"), Some(4));
        assert_eq!(parse_bit("MUTE_REC"), Some(8));
        let e = carrier_on(Path::new("/dev/null"), "VOL_DOWN", false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("carrier.bit = \"VOL_DOWN\": unknown input"),
            "{e}"
        );
    }

    /// A fake sysfs: a CM108AH card, an AIOC, a card with no HID, a keyboard with no sound.
    fn fake_sysfs(root: &Path) {
        let dev = |p: &str| root.join("devices").join(p);
        let mk = |p: &Path| std::fs::create_dir_all(p).unwrap();
        let write = |p: PathBuf, s: &str| std::fs::write(p, s).unwrap();
        mk(&root.join("class/sound"));
        mk(&root.join("class/hidraw"));
        // The root hub has ids of its own; the nearest USB device must win.
        let hub = dev("pci0000:00/usb1");
        mk(&hub);
        write(hub.join("idVendor"), "1d6b\n");
        write(hub.join("idProduct"), "0002\n");
        let usb = |name: &str, vid: &str, pid: &str| {
            let d = hub.join(name);
            mk(&d);
            write(d.join("idVendor"), &format!("{vid}\n"));
            write(d.join("idProduct"), &format!("{pid}\n"));
            d
        };
        let card = |usb_dev: &Path, iface: &str, n: u32, id: &str| {
            let d = usb_dev.join(iface).join(format!("sound/card{n}"));
            mk(&d);
            write(d.join("id"), &format!("{id}\n"));
            symlink(&d, root.join(format!("class/sound/card{n}"))).unwrap();
        };
        let hidraw = |usb_dev: &Path, iface: &str, n: u32| {
            let d = usb_dev
                .join(iface)
                .join("0003:0D8C:013C.0001/hidraw")
                .join(format!("hidraw{n}"));
            mk(&d);
            symlink(&d, root.join(format!("class/hidraw/hidraw{n}"))).unwrap();
        };
        let cm = usb("1-1", "0d8c", "013c");
        card(&cm, "1-1:1.0", 1, "Device");
        hidraw(&cm, "1-1:1.3", 3);
        let aioc = usb("1-2", "1209", "7388");
        card(&aioc, "1-2:1.0", 2, "AllInOneCable");
        hidraw(&aioc, "1-2:1.4", 0);
        let kbd = usb("1-3", "046d", "c31c");
        hidraw(&kbd, "1-3:1.0", 1);
        // An on-board card: no USB device at all.
        let onboard = dev("platform/bcm2835_audio/sound/card0");
        mk(&onboard);
        write(onboard.join("id"), "Headphones\n");
        symlink(&onboard, root.join("class/sound/card0")).unwrap();
        // Entries that are not cards or nodes are ignored.
        mk(&root.join("class/sound/controlC1"));
    }

    fn discovery(dir: &Path) -> Discovery {
        let sysfs = dir.join("sys");
        fake_sysfs(&sysfs);
        let dev = dir.join("dev");
        std::fs::create_dir_all(&dev).unwrap();
        for n in 0..4 {
            std::fs::write(dev.join(format!("hidraw{n}")), b"").unwrap();
        }
        Discovery { sysfs, dev }
    }

    #[test]
    fn lists_cards_with_their_hidraw_node() {
        let dir = tempfile::tempdir().unwrap();
        let d = discovery(dir.path());
        let list = list_hidraw_for_cards(&d.sysfs);
        assert_eq!(
            list,
            [
                HidrawCard {
                    card_index: 1,
                    card_id: "Device".into(),
                    hidraw: "/dev/hidraw3".into(),
                    vendor: 0x0d8c,
                    product: 0x013c
                },
                HidrawCard {
                    card_index: 2,
                    card_id: "AllInOneCable".into(),
                    hidraw: "/dev/hidraw0".into(),
                    vendor: 0x1209,
                    product: 0x7388
                },
            ]
        );
        assert_eq!(chip_name(0x0d8c, 0x013c), Some("C-Media CM108AH"));
        assert_eq!(chip_name(0x1234, 0x5678), None);
        // No sysfs at all: nothing, no panic.
        assert!(list_hidraw_for_cards(&dir.path().join("nowhere")).is_empty());
        // The real one answers too (empty on machines without such cards).
        let _ = list_hidraw_for_cards(Path::new("/sys"));
    }

    #[test]
    fn finds_a_card_by_any_of_its_names() {
        let dir = tempfile::tempdir().unwrap();
        let d = discovery(dir.path());
        let node = |spec: &str| {
            find_hidraw(&d, Some(spec))
                .map(|c| c.hidraw)
                .map_err(|e| e.to_string())
        };
        let hid3 = d.dev.join("hidraw3");
        let hid0 = d.dev.join("hidraw0");
        for spec in [
            "Device",
            "CARD=Device",
            "plughw:CARD=Device,DEV=0",
            "hw:1,0",
            "hw:1",
            "1",
            "card1",
            "hw:Device",
        ] {
            assert_eq!(node(spec), Ok(hid3.clone()), "{spec}");
        }
        for spec in [
            "AllInOneCable",
            "sysdefault:CARD=AllInOneCable",
            "plughw:2,0",
        ] {
            assert_eq!(node(spec), Ok(hid0.clone()), "{spec}");
        }
        let e = node("Headphones").unwrap_err();
        assert!(
            e.starts_with("sound card \"Headphones\" (card 0) has no hidraw node"),
            "{e}"
        );
        assert!(e.contains("\"Device\" (card 1,"), "{e}");
        let e = node("Nope").unwrap_err();
        assert!(
            e.starts_with("no sound card \"Nope\" (see `aplay -l`)"),
            "{e}"
        );
        assert!(e.contains("\"AllInOneCable\" (card 2,"), "{e}");
        // Case matters, as in ALSA.
        assert!(node("device").is_err());
        // Unset with two candidates: ambiguous.
        let e = find_hidraw(&d, None).unwrap_err().to_string();
        assert!(e.contains("set card"), "{e}");
    }

    #[test]
    fn auto_opens_the_cards_node() {
        let dir = tempfile::tempdir().unwrap();
        let d = discovery(dir.path());
        let mut ptt = Cm108Ptt::open_with(
            &Cm108PttSettings {
                card: Some("plughw:CARD=AllInOneCable,DEV=0".into()),
                ..Cm108PttSettings::default()
            },
            &d,
        )
        .unwrap();
        ptt.set(true).unwrap();
        assert_eq!(
            bytes(&d.dev.join("hidraw0")),
            [0, 0, 0, 4, 0, 0, 0, 4, 4, 0]
        );
        assert!(bytes(&d.dev.join("hidraw3")).is_empty());

        let e = Cm108Ptt::open_with(&Cm108PttSettings::default(), &d)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("PTT cm108: ptt.device auto: no sound card named"),
            "{e}"
        );
        let e = Cm108Carrier::open_with(
            &Cm108CarrierSettings {
                device: "auto".into(),
                bit: "VOL_DN".into(),
                invert: false,
                card: Some("Headphones".into()),
            },
            &d,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("carrier detect cm108: carrier.device auto: sound card \"Headphones\""),
            "{e}"
        );

        // No cards at all.
        let empty = Discovery {
            sysfs: dir.path().join("nowhere"),
            dev: d.dev.clone(),
        };
        let e = Cm108Ptt::open_with(&Cm108PttSettings::default(), &empty)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no sound card has a hidraw node"), "{e}");
    }

    #[test]
    fn ptt_and_carrier_share_one_open_file() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("hidraw0");
        mkfifo(&fifo);
        let ptt = ptt_on(&fifo, 3, false).unwrap();
        let cos = carrier_on(&fifo, "VOL_DN", false).unwrap();
        let device = fifo.to_str().unwrap();
        let a = open_node("ptt", device, None, &Discovery::default()).unwrap();
        assert!(Arc::ptr_eq(&a, &ptt.node), "one node per path");
        // The PTT, the carrier's reading thread and `a`.
        assert_eq!(Arc::strong_count(&a), 3);
        drop((ptt, cos, a));
    }

    #[test]
    fn settings_deserialize_with_defaults() {
        let s: Cm108PttSettings = toml::from_str("").unwrap();
        assert_eq!(s, Cm108PttSettings::default());
        assert_eq!(s.device, "auto");
        assert_eq!(s.gpio, 3);
        let s: Cm108PttSettings =
            toml::from_str("device = \"/dev/hidraw2\"\ngpio = 4\ninvert = true\ncard = \"Device\"")
                .unwrap();
        assert_eq!(s.gpio, 4);
        assert_eq!(s.card.as_deref(), Some("Device"));
        assert!(toml::from_str::<Cm108PttSettings>("pin = 3").is_err());
        let s: Cm108CarrierSettings = toml::from_str("bit = \"VOL_DN\"").unwrap();
        assert_eq!(s.device, "auto");
        assert!(!s.invert && s.card.is_none());
        assert!(
            toml::from_str::<Cm108CarrierSettings>("").is_err(),
            "bit is required"
        );
        assert!(toml::from_str::<Cm108CarrierSettings>("bit = \"VOL_DN\"\ngpio = 3").is_err());
    }
}
